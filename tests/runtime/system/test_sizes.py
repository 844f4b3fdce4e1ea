"""One size vocabulary: `images ls`, `system df`, `images prune` and `system prune` show the
same on-disk bytes for the same image in the same state (each block counted once: a hardlinked
_base shown once and marked shared, a layer two images share counted for the first), and what
`images rm` and images prune leave behind in the OCI store is nothing only that image needed:
its layer blobs and its ref index entry go, blobs other images need stay.

Images pulled from a loopback docker-registry with `shed-server pull-images`; every command is
the real binary."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import shedtest
import testrun

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
KIB = 1 << 10


def run(*argv):
    proc = subprocess.run([SHED_SERVER] + list(argv), capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), proc.returncode,
                                                        proc.stdout, proc.stderr))
    return proc


def layer(name, size):
    return (shedtest.LayerBuilder().dir("etc").file("etc/" + name, name + "\n")
            .file(name + ".bin", os.urandom(size)).tar_bytes())


def format_size(n):
    """shed's format_size (common/fsutil.c)."""
    value, unit = float(n), 0
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and unit + 1 < len(units):
        value /= 1024
        unit += 1
    return "%d B" % n if unit == 0 else "%.1f %s" % (value, units[unit])


def inode_usage(paths):
    seen, total = set(), 0
    for path in paths:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


class SizesTestCase(unittest.TestCase):
    """deb (also the base image: _base shares its rootfs), four and mid (which share a base
    layer), pulled into a fresh data dir per test."""

    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry().start()
        pusher = shedtest.Pusher(cls.registry.url)
        common = layer("common", 400 * KIB)
        cls.layers = {}
        for name, layers in (("deb", [layer("deb", 700 * KIB)]),
                             ("four", [common, layer("four", 1500 * KIB)]),
                             ("mid", [common, layer("mid", 1000 * KIB)])):
            _, _, descs = shedtest.push_image(pusher, "sizes/" + name, "v1",
                                              [(tar, "gzip") for tar in layers])
            cls.layers[name] = [d["digest"] for d in descs]
        cls.common_layer = cls.layers["four"][0]
        assert cls.layers["mid"][0] == cls.common_layer

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def ref(self, name):
        return "%s/sizes/%s:v1" % (self.registry.host, name)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shed-sizes-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_dir = os.path.join(self.dir, "data")
        self.images_dir = os.path.join(self.data_dir, "images")
        self.config = os.path.join(self.dir, "server.yaml")
        self.write_config(["deb", "four", "mid"])
        run("pull-images", "--config", self.config)

    def write_config(self, names):
        with open(self.config, "w") as f:
            f.write("data_dir: %s\nrootfs_size: 64M\nbase_image: %s\nimages:\n"
                    % (self.data_dir, self.ref("deb")))
            for name in names:
                f.write("  %s: %s\n" % (name, self.ref(name)))

    def cmd(self, *argv):
        return run(*argv, "--config", self.config)

    def cmd_json(self, *argv):
        return json.loads(self.cmd(*argv, "--json").stdout)

    def blob_exists(self, digest):
        return os.path.exists(os.path.join(self.images_dir, "blobs", "sha256", digest[7:]))

    def ref_entries(self):
        return sorted(os.listdir(os.path.join(self.images_dir, "refs")))


class AgreementTest(SizesTestCase):
    def test_the_same_image_has_the_same_size_in_every_table(self):
        self.write_config(["deb", "four"])  # mid: no longer configured, so prunable
        listed = {i["name"]: i for i in self.cmd_json("images", "ls")["images"]}
        df = self.cmd_json("system", "df")
        df_images = {i["name"]: i for i in df["images"]}
        pruned = self.cmd_json("images", "prune", "--dry-run")
        system = self.cmd_json("system", "prune", "--dry-run", "--scope", "images")
        [image_item] = [i for i in system["items"] if i["kind"] == "image"]
        [deleted] = pruned["deleted"]
        self.assertEqual((image_item["name"], deleted["name"]), ("mid", "mid"))

        disk = listed["mid"]["disk_bytes"]
        self.assertGreater(disk, 1000 * KIB)  # its rootfs blocks and its own layer
        self.assertEqual(df_images["mid"]["disk_bytes"], disk)
        self.assertEqual(df_images["mid"]["total"]["disk_bytes"], disk)
        self.assertEqual(deleted["disk_bytes"], disk)
        self.assertEqual(image_item["disk_bytes"], disk)
        # Nothing of mid is held by anything that stays: deleting it frees exactly that.
        self.assertEqual(deleted["freed"]["disk_bytes"], disk)
        self.assertEqual(image_item["freed"]["disk_bytes"], disk)
        self.assertEqual(pruned["freed"]["disk_bytes"], system["totals"]["freed"]["disk_bytes"])
        # The layer it shares with four is counted for four, listed first.
        self.assertEqual(listed["mid"]["shared_with"], "four")
        self.assertEqual(listed["mid"]["size_bytes"], 64 << 20)  # logical, the second column

        # And the people-facing tables print that same number.
        shown = format_size(disk)
        for argv in (("images", "ls"), ("system", "df", "-v"), ("images", "prune", "--dry-run"),
                     ("system", "prune", "--dry-run", "--scope", "images")):
            out = self.cmd(*argv).stdout
            line = [l for l in out.splitlines() if re.search(r"\bmid\b", l)]
            self.assertTrue(line and shown in line[0], "%s: %r lacks %s" % (argv, line, shown))

    def test_a_hardlinked_base_image_is_shown_once_and_marked_shared(self):
        listed = {i["name"]: i for i in self.cmd_json("images", "ls")["images"]}
        self.assertEqual(os.stat(listed["deb"]["path"]).st_ino,
                         os.stat(listed["_base"]["path"]).st_ino)
        self.assertNotIn("shared_with", listed["deb"])
        self.assertEqual(listed["_base"]["shared_with"], "deb")
        # _base's own bytes are only its small sidecars: the rootfs is deb's.
        self.assertLess(listed["_base"]["disk_bytes"], 64 * KIB)
        self.assertGreater(listed["deb"]["disk_bytes"], 700 * KIB)
        table = self.cmd("images", "ls").stdout
        self.assertRegex(table, r"(?m)^_base +yes +\S+ \S*B \(shares deb\) ")
        df = self.cmd_json("system", "df")
        self.assertEqual([i["shared_with"] for i in df["images"] if i["name"] == "_base"],
                         ["deb"])

    def test_totals_count_every_block_once(self):
        df = self.cmd_json("system", "df")
        items = sum(i["disk_bytes"] for i in df["images"])
        items += sum(b["size"]["disk_bytes"] for b in df["blobs"])
        self.assertEqual(df["totals"]["images"]["disk_bytes"], items)
        # What the images take on disk: every file of images_dir df measures, each inode once
        # (the ref index entries are the OCI store's bookkeeping, not measured).
        files = []
        for dirpath, _, names in os.walk(self.images_dir):
            if os.path.relpath(dirpath, self.images_dir).startswith("refs"):
                continue
            files.extend(os.path.join(dirpath, n) for n in names)
        self.assertEqual(df["totals"]["all"]["disk_bytes"], inode_usage(files))

    def test_df_says_when_sheds_are_full_copies(self):
        fs_type = subprocess.run(["stat", "-f", "-c", "%T", self.dir], capture_output=True,
                                 text=True).stdout.strip()
        os.makedirs(os.path.join(self.data_dir, "instances"), exist_ok=True)
        # instance_disk auto: reflinks there, else overlay sheds: no full copies either way.
        self.assertNotIn("no reflinks", self.cmd("system", "df").stdout)
        if fs_type in ("xfs", "btrfs"):
            return
        with open(self.config, "a") as f:
            f.write("container:\n  userns: true\n")  # overlay cannot be idmapped: copies
        out = self.cmd("system", "df").stdout
        note = [l for l in out.splitlines() if l.startswith("Note: no reflinks:")]
        self.assertEqual(len(note), 1, out)
        self.assertIn("cannot reflink", note[0])
        deb = {i["name"]: i for i in self.cmd_json("system", "df")["images"]}["deb"]
        self.assertIn("deb %s" % format_size(deb["size"]["physical_bytes"]), note[0])


class ReclaimTest(SizesTestCase):
    def test_images_rm_takes_the_blobs_and_ref_only_it_needed(self):
        self.write_config(["deb", "mid"])
        refs_before = self.ref_entries()
        out = self.cmd("images", "rm", "four").stdout
        # four's own layer, its config and manifest; the layer mid shares stays.
        self.assertRegex(out, r"^removed image four and 3 blob\(s\) only it needed \(.+\)$")
        self.assertFalse(self.blob_exists(self.layers["four"][1]))
        self.assertTrue(self.blob_exists(self.common_layer))
        self.assertTrue(all(self.blob_exists(d) for d in self.layers["mid"]))
        self.assertEqual(len(self.ref_entries()), len(refs_before) - 1)
        self.assertFalse([r for r in self.ref_entries() if "four" in r])
        df = self.cmd_json("system", "df")
        self.assertEqual([o for o in df["orphans"] if o["kind"] == "blob"], [])

    def test_image_prune_takes_the_blobs_of_the_images_it_deletes(self):
        self.write_config(["deb"])  # four and mid: both unused now
        dry = self.cmd_json("images", "prune", "--dry-run")
        self.assertEqual(sorted(i["name"] for i in dry["deleted"]), ["four", "mid"])
        self.assertTrue(self.blob_exists(self.common_layer))
        real = self.cmd_json("images", "prune")
        self.assertEqual(real["deleted"], dry["deleted"])
        self.assertEqual(real["freed"]["disk_bytes"], dry["freed"]["disk_bytes"])
        for name in ("four", "mid"):
            for digest in self.layers[name]:
                self.assertFalse(self.blob_exists(digest), "%s's %s stayed" % (name, digest))
        self.assertTrue(all(self.blob_exists(d) for d in self.layers["deb"]))
        self.assertFalse([r for r in self.ref_entries() if "four" in r or "mid" in r])
        self.assertTrue([r for r in self.ref_entries() if "deb" in r])
        # Nothing left for the next prune, and df sees no orphaned blob.
        self.assertEqual(self.cmd_json("images", "prune")["deleted"], [])
        self.assertEqual([o for o in self.cmd_json("system", "df")["orphans"]
                          if o["kind"] == "blob"], [])


if __name__ == "__main__":
    import sys
    sys.exit(testrun.main())
