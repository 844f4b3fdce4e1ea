"""Overlay sheds (issue 13) on this machine's ext4 root filesystem, where FICLONE does not work
and instance_disk auto therefore makes every shed an overlay: a real `shed-server serve`,
real runc sheds from the Debian fixture image (tests/fixtures/fixture_image.py) on a loopback
registry, commands inside the sheds through `shed-server exec`.

Suites (one ctest each):
  ManyShedsTest   20 sheds of one image: each writes and reads back its own data and sees the
                  image's files unchanged; a file of the image deleted in one shed is gone
                  only there; the image's file (the lower) keeps its sha256 and stays mounted
                  once; a server restart keeps them running with their data; after a stop
                  every upper.ext4 passes e2fsck -fn and they start again with their data;
                  df counts each upper.ext4 as the shed's own, exactly what du says, and the
                  image once; after deleting them nothing of ours is in /proc/mounts or
                  `losetup -a`
  PinTest         a re-pull of a moved tag keeps the old content alive (and the old shed
                  running and restartable) until its last shed is gone; `images rm`, image
                  prune and system prune refuse the image and name the sheds; then it goes
  CrashTest       kill -9 of the server at every crash point of an overlay create and of a
                  delete, restart, delete everything: nothing of ours mounted or attached,
                  the lower never modified
  ExportTest      `shed-server export` of an overlay shed equals, entry for entry, the export
                  of a full copy (instance_disk copy) after the same changes, and both are
                  e2fsck clean
  AccountingTest  on a loop-mounted ext4 of its own (the root file system is shared with
                  other processes, so only a private one shows what prune frees): df per
                  shed = du, prune's freed bytes = statvfs, an old lower freed with its last
                  shed

  test_overlay.py SUITE
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "container"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "imaged"))
import ctrtest  # noqa: E402
import shedserver  # noqa: E402  (on sys.path through ctrtest: SHED_FIXTURES)
import shedtest  # noqa: E402
import treecmp  # noqa: E402
from loop_xfs import LoopExt4  # noqa: E402
from shedserver import wait_for  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER")
EXT4_LIST = os.environ.get("SHED_EXT4_LIST", "ext4_list")
FIXTURE = None  # ctrtest.FixtureRegistry, one per process
WORK = None     # temp dir of this process, on the root file system
MiB = 1 << 20
OLD = 5 * 24 * 3600
# Files of the image every shed must see unchanged (they are in the fixture image).
IMAGE_FILES = ["usr/bin/tmux", "usr/lib/os-release", "usr/bin/dash", "etc/debian_version",
               "usr/lib/x86_64-linux-gnu/libc.so.6"]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fs_type(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                          text=True).stdout.strip()


def mounts_of(data_dir):
    """Every mount whose point or source is ours (in /proc/mounts: mount points)."""
    data_dir = os.path.realpath(data_dir)
    with open("/proc/mounts") as f:
        return [line for line in f if data_dir in line.encode().decode("unicode_escape")]


def file_bytes(top, skip=()):
    """st_blocks*512 of every non-directory below top (each inode once), not crossing into
    another file system and not into the subdirectories of top named in skip."""
    seen, total = set(), 0
    dev = os.lstat(top).st_dev
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top:
            dirnames[:] = [d for d in dirnames if d not in skip]
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_dev == dev and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def losetup_of(data_dir):
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if os.path.realpath(data_dir) in line]


def create_concurrently(server, names):
    """One create of the base image per name, all released at once; {name: (status, body)}."""
    results = {}
    barrier = threading.Barrier(len(names))

    def create(name):
        barrier.wait()
        results[name] = server.request("POST", "/api/sheds", {"name": name})

    threads = [threading.Thread(target=create, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


class Server(shedserver.ServerProcess):
    def __init__(self, data_dir, extra_config="", images=None):
        config = ("name: overlay\nbase_image: %s\nrootfs_size: 2G\ndefault_cpus: 1\n"
                  "default_memory_mb: 256\n" % FIXTURE.ref("shed/tmux"))
        if images:
            config += "images:\n" + "".join("  %s: %s\n" % kv for kv in images.items())
        super().__init__(SHED_SERVER, data_dir, config + extra_config, stop_timeout=120,
                         log_tail=6000)

    def rewrite_config(self, extra_config="", images=None):
        Server.__init__(self, self.data_dir, extra_config, images)


class OverlayCase(unittest.TestCase):
    """One server per class over its own data dir on the root file system."""
    extra_config = ""
    images = None

    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="shed-overlay-", dir=WORK)
        cls.instance_dir = os.path.join(cls.data_dir, "instances")
        cls.images_dir = os.path.join(cls.data_dir, "images")
        cls.server = Server(cls.data_dir, cls.extra_config, cls.images)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        if cls.server.proc is None:
            cls.server.env = None
            cls.server.start()
        status, body = cls.server.request("GET", "/api/sheds")
        for shed in body["sheds"] if status == 200 else []:
            cls.server.request("DELETE", "/api/sheds/" + shed["name"])
        cls.server.stop()
        ctrtest.force_cleanup(cls.data_dir)

    # ---- helpers ----

    def create(self, name, expect=201, **fields):
        status, body = self.server.request("POST", "/api/sheds", dict(name=name, **fields))
        self.assertEqual(status, expect, body)
        return body

    def request_ok(self, method, path, expect=200):
        status, body = self.server.request(method, path)
        self.assertEqual(status, expect, body)
        return body

    def sh(self, name, script, check=True, stdin=None):
        proc = subprocess.run([SHED_SERVER, "exec", "--config", self.server.config, "--data-dir",
                               self.data_dir, name, "--", "sh", "-c", script],
                              capture_output=True, input=stdin)
        if check:
            self.assertEqual(proc.returncode, 0, (name, script, proc.stdout, proc.stderr))
        return proc

    def offline(self, *args, check=True):
        proc = subprocess.run([SHED_SERVER] + list(args) + ["--config", self.server.config,
                                                            "--data-dir", self.data_dir],
                              capture_output=True, text=True)
        if check:
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        return proc

    def df(self):
        return json.loads(self.offline("system", "df", "--json").stdout)

    def metadata(self, name):
        with open(os.path.join(self.instance_dir, name, "metadata.json")) as f:
            return json.load(f)

    def lower_path(self, name):
        disk = self.metadata(name)["disk"]
        self.assertEqual(disk["kind"], "overlay")
        return os.path.join(self.images_dir, "rootfs", "sha256", "%s-%d.ext4" % (
            disk["lower_digest"][len("sha256:"):], disk["lower_size"]))

    def upper(self, name):
        return os.path.join(self.instance_dir, name, "upper.ext4")

    def assert_fsck_clean(self, image):
        proc = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, image + ":\n" + proc.stdout + proc.stderr)

    def assert_nothing_of_ours(self):
        """Nothing below the data dir mounted, no loop device backed by a file of it."""
        self.assertEqual(mounts_of(self.data_dir), [], "mounts left behind")
        wait_for(lambda: not losetup_of(self.data_dir))
        self.assertEqual(losetup_of(self.data_dir), [], "loop devices left behind")

    def delete_all(self):
        for shed in self.request_ok("GET", "/api/sheds")["sheds"]:
            self.request_ok("DELETE", "/api/sheds/" + shed["name"], 204)


# ---- 20 sheds ---------------------------------------------------------------------------------

class ManyShedsTest(OverlayCase):
    COUNT = 20

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.names = ["shed-%02d" % i for i in range(cls.COUNT)]
        # Five at a time, released together: concurrent creates share one lower mount.
        for first in range(0, cls.COUNT, 5):
            results = create_concurrently(cls.server, cls.names[first:first + 5])
            for name, (status, body) in results.items():
                if status != 201:
                    raise AssertionError("create %s: %s %s\n%s" % (name, status, body,
                                                                    cls.server.log()))

    def expected_image_files(self):
        image = treecmp.list_image(self.lower_path(self.names[0]), EXT4_LIST)
        return {p: image[p.encode()].sha256 for p in IMAGE_FILES}

    def test_a_every_shed_is_an_overlay_on_one_shared_untouched_lower(self):
        self.assertEqual(fs_type(self.data_dir), "ext2/ext3")  # stat -f names ext4 so
        lowers = {self.lower_path(n) for n in self.names}
        self.assertEqual(len(lowers), 1)
        lower = lowers.pop()
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, self.names[0],
                                                     "rootfs.ext4")))
        # one read-only mount and one loop device for all twenty
        lower_mounts = [m for m in mounts_of(self.data_dir) if "/lowers/" in m.split()[1]]
        self.assertEqual(len(lower_mounts), 1, lower_mounts)
        self.assertIn(" ro,", lower_mounts[0])
        self.assertEqual(len([line for line in losetup_of(self.data_dir) if lower in line]), 1)
        before = sha256_file(lower)
        expected = self.expected_image_files()
        for i, name in enumerate(self.names):
            data = ("data of %s " % name) * (1000 + i)
            self.sh(name, "printf %%s '%s' > /root/own && echo %s >> /etc/issue" % (data, name))
        for i, name in enumerate(self.names):
            data = ("data of %s " % name) * (1000 + i)
            out = self.sh(name, "cat /root/own; echo; tail -n 1 /etc/issue; ls /root; "
                          "sha256sum /" + " /".join(IMAGE_FILES)).stdout.decode().splitlines()
            self.assertEqual(out[0], data)
            self.assertEqual(out[1], name)
            self.assertEqual(out[2], "own")  # nobody else's data
            seen = {line.split()[1].lstrip("/"): line.split()[0] for line in out[3:]}
            self.assertEqual(seen, expected)
        self.assertEqual(sha256_file(lower), before, "the lower image was modified")
        self.assert_fsck_clean(lower)

    def test_b_deleting_a_file_of_the_image_hides_it_only_in_that_shed(self):
        lower = self.lower_path(self.names[0])
        before = sha256_file(lower)
        self.sh(self.names[0], "rm /etc/debian_version && rm -r /usr/share/doc/tmux")
        gone = self.sh(self.names[0], "test ! -e /etc/debian_version && "
                       "test ! -e /usr/share/doc/tmux && echo gone")
        self.assertEqual(gone.stdout, b"gone\n")
        for name in self.names[1:4]:
            self.sh(name, "test -f /etc/debian_version && test -d /usr/share/doc/tmux")
        image = treecmp.list_image(lower, EXT4_LIST)
        self.assertIn(b"etc/debian_version", image)
        self.assertEqual(sha256_file(lower), before)

    def test_c_server_restart_keeps_the_sheds_running_with_their_data(self):
        pids = {s["name"]: s["pid"] for s in self.request_ok("GET", "/api/sheds")["sheds"]}
        self.server.stop()
        self.server.start()
        sheds = self.request_ok("GET", "/api/sheds")["sheds"]
        self.assertEqual({s["name"]: (s["status"], s["pid"]) for s in sheds},
                         {n: ("running", pids[n]) for n in self.names})
        for name in self.names[:3]:
            self.assertEqual(self.sh(name, "tail -n 1 /etc/issue").stdout.decode().strip(), name)

    def test_d_stop_leaves_fsck_clean_uppers_and_start_reassembles_them(self):
        for name in self.names:
            self.request_ok("POST", "/api/sheds/%s/stop" % name)
        self.assertEqual([m for m in mounts_of(self.data_dir)], [],
                         "a stopped overlay shed (and its unused lower) stays mounted")
        for name in self.names:
            self.assert_fsck_clean(self.upper(name))
        # df: each shed's own bytes are those of its directory's files (upper.ext4 and the
        # small ones), exactly; the image once, under the image; together every file of the
        # data dir that df knows of, each inode once
        df = self.df()
        for shed in df["sheds"]:
            self.assertEqual(shed["rootfs"]["kind"], "upper")
            self.assertEqual(shed["rootfs"]["path"], self.upper(shed["name"]))
            self.assertEqual(shed["total"]["physical_bytes"],
                             file_bytes(os.path.join(self.instance_dir, shed["name"])))
            # what an overlay shed costs on disk: far below the image (~300 MB)
            self.assertLess(shed["rootfs"]["size"]["physical_bytes"], 40 * MiB)
        lower = self.lower_path(self.names[0])
        blocks = os.stat(lower).st_blocks * 512
        # (exclusive_bytes, from FIEMAP, leaves out the file's own extent-tree blocks)
        counted = [(image["size"]["logical_bytes"], image["size"]["physical_bytes"])
                   for image in df["images"]
                   if image["path"] and os.path.samefile(image["path"], lower)]
        self.assertEqual(counted, [(os.stat(lower).st_size, blocks)])
        self.assertEqual(df["totals"]["all"]["physical_bytes"],
                         file_bytes(self.images_dir, skip=("refs",)) +
                         file_bytes(self.instance_dir, skip=(".locks",)))
        for name in self.names:
            body = self.request_ok("POST", "/api/sheds/%s/start" % name)
            self.assertEqual(body["status"], "running")
        for name in self.names[1:]:
            self.assertEqual(self.sh(name, "tail -n 1 /etc/issue; cat /root/own | head -c 12")
                             .stdout.decode(), name + "\ndata of shed")

    def test_e_deleting_them_leaves_nothing_of_ours(self):
        lower = self.lower_path(self.names[0])
        before = sha256_file(lower)
        self.delete_all()
        self.assertEqual(os.listdir(self.instance_dir), [".locks"])
        self.assert_nothing_of_ours()
        self.assertEqual(sha256_file(lower), before)


# ---- the pin ------------------------------------------------------------------------------------

class PinTest(OverlayCase):
    @classmethod
    def setUpClass(cls):
        cls.pusher = shedtest.Pusher(FIXTURE.registry.url)
        ctrtest.push_gz_layers(cls.pusher, "shed/moving", "v1", FIXTURE.layers)
        cls.images = {"moving": FIXTURE.ref("shed/moving")}
        super().setUpClass()

    def test_a_moved_tag_keeps_the_old_content_until_its_last_shed_is_gone(self):
        self.create("old", image="moving")
        self.sh("old", "echo kept > /root/mine")
        old_lower = self.lower_path("old")
        # the tag moves to another image; the next create re-pulls it
        shedtest.push_image(self.pusher, "shed/moving", "v1", [(ctrtest.notmux_layer(), "gzip")])
        self.create("new", image="moving")
        new_lower = self.lower_path("new")
        self.assertNotEqual(old_lower, new_lower)
        self.assertEqual(os.stat(old_lower).st_nlink, 1)  # no variant links it any more
        # prunes keep it: it is old's root
        self.offline("images", "prune")
        prune = json.loads(self.offline("system", "prune", "--scope", "images", "--scope", "orphans",
                                        "--json").stdout)
        self.assertNotIn(old_lower, [i["path"] for i in prune["items"]])
        self.assertTrue(os.path.exists(old_lower))
        df = self.df()
        moving = [i for i in df["images"] if i["name"] == "moving"][0]
        self.assertIn({"path": old_lower, "kind": "lower"},
                      [{"path": f["path"], "kind": f["kind"]} for f in moving["other_files"]])
        self.assertNotIn(old_lower, [o["path"] for o in df["orphans"]])
        # the old shed still stops, starts and has its data, over the old image
        self.request_ok("POST", "/api/sheds/old/stop")
        self.assert_fsck_clean(self.upper("old"))
        self.request_ok("POST", "/api/sheds/old/start")
        self.assertEqual(self.sh("old", "cat /root/mine; test -x /usr/bin/tmux && echo tmux")
                         .stdout, b"kept\ntmux\n")
        self.assertNotEqual(self.sh("new", "test -x /usr/bin/tmux", check=False).returncode, 0)

        # the image is refused while overlay sheds need it, naming them (once it is no longer
        # in the config, which would refuse it first)
        self.server.stop()
        self.server.rewrite_config()
        self.server.start()
        rm = self.offline("images", "rm", "moving", check=False)
        self.assertNotEqual(rm.returncode, 0)
        self.assertIn("IMAGE_IN_USE", rm.stderr)
        self.assertIn("used by shed(s) new, old", rm.stderr)
        status, body = self.server.request("DELETE", "/api/images/moving")
        self.assertEqual((status, body["error"]["code"]), (409, "IMAGE_IN_USE"))
        self.assertIn("new, old", body["error"]["message"])
        self.offline("images", "prune")
        prune = json.loads(self.offline("system", "prune", "--scope", "images", "--json").stdout)
        self.assertIn({"kind": "image", "name": "moving", "reason": "used by overlay shed(s) new, old"},
                      [{k: s[k] for k in ("kind", "name", "reason")} for s in prune["skipped"]])
        self.assertTrue(os.path.exists(old_lower) and os.path.exists(new_lower))

        # the old content goes with its last shed; then the image with the new one
        self.request_ok("DELETE", "/api/sheds/old", 204)
        self.assertFalse(os.path.exists(old_lower), "the old content outlived its last shed")
        self.assertTrue(os.path.exists(new_lower))
        self.delete_all()
        prune = json.loads(self.offline("system", "prune", "--scope", "images", "--scope", "orphans",
                                        "--json").stdout)
        self.assertIn(("image", "moving"), [(i["kind"], i.get("name")) for i in prune["items"]])
        self.assertFalse(os.path.exists(new_lower))
        self.assert_nothing_of_ours()


# ---- crashes ------------------------------------------------------------------------------------

class CrashTest(OverlayCase):
    # overlay-lower-mounted comes first among those that start: then no overlay uses the
    # lower, so what the reaper does with a lower nobody uses is seen
    CREATE_POINTS = ["create-metadata", "overlay-lower-mounted", "create-rootfs",
                     "container-mounted", "container-running"]
    DELETE_POINTS = ["overlay-unmounted", "delete-released"]

    def pause_at(self, point, action):
        """Runs action (a request) in a thread against a server that stops dead at point,
        and kills it there (kill -9); then starts the server again, which reaps."""
        self.server.stop()
        marker = os.path.join(WORK, "paused-" + point)
        self.server.env = {"SHED_TEST_PAUSE_AT": point, "SHED_TEST_PAUSE_MARKER": marker}
        self.server.start()
        outcome = {}

        def run():
            try:
                outcome["response"] = action()
            except OSError as e:
                outcome["error"] = e
        thread = threading.Thread(target=run)
        thread.start()
        self.assertTrue(wait_for(lambda: os.path.exists(marker)), "never reached " + point)
        self.server.kill()
        thread.join()
        self.assertNotIn("response", outcome, "finished despite the pause at " + point)
        os.unlink(marker)
        self.server.env = None
        self.server.start()

    def lower_mounts(self):
        return [m for m in mounts_of(self.data_dir) if "/lowers/" in m.split()[1]]

    def test_kill_9_anywhere_leaves_sheds_that_start_or_delete_and_nothing_of_ours(self):
        lower, before = None, None
        for point in self.CREATE_POINTS:
            name = "c-" + point.replace("create-", "").replace("container-", "k-").replace(
                "overlay-", "o-")
            self.pause_at(point, lambda: self.server.request("POST", "/api/sheds",
                                                             {"name": name}))
            if lower is None:
                lower = self.lower_path(name)
                before = sha256_file(lower)
            status, body = self.server.request("GET", "/api/sheds/" + name)
            self.assertEqual((status, body["status"]), (200, "error"), (point, body))
            if point == "create-metadata":
                continue  # no disk yet: it can only be deleted
            if point == "overlay-lower-mounted":
                self.assertEqual(self.lower_mounts(), [], "a lower nobody uses stayed mounted")
            body = self.request_ok("POST", "/api/sheds/%s/start" % name)
            self.assertEqual(body["status"], "running")
            self.sh(name, "echo after-%s > /root/x && cat /root/x" % point)
        for point in self.DELETE_POINTS:
            name = "d-" + point
            self.create(name)
            self.pause_at(point, lambda: self.server.request("DELETE", "/api/sheds/" + name))
            status, body = self.server.request("GET", "/api/sheds/" + name)
            self.assertEqual(status, 200, (point, body))
            self.assertIn(body["status"], ("stopped", "error"), (point, body))
            self.assertEqual(mounts_of(os.path.join(self.instance_dir, name)), [])
        # the sheds that ran before and after every crash still run
        running = [s["name"] for s in self.request_ok("GET", "/api/sheds")["sheds"]
                   if s["status"] == "running"]
        self.assertEqual(sorted(running), ["c-k-mounted", "c-k-running", "c-o-lower-mounted",
                                           "c-rootfs"])
        self.delete_all()
        self.assertEqual(os.listdir(self.instance_dir), [".locks"])
        self.assert_nothing_of_ours()
        self.assertEqual(sha256_file(lower), before, "the lower image was modified")
        self.assert_fsck_clean(lower)


# ---- export -------------------------------------------------------------------------------------

CHANGES = r"""
set -e
T=@1700000000
echo new > /root/new-file
echo appended >> /etc/issue
rm /etc/debian_version
rm -r /usr/share/doc/tmux
mv /usr/share/man /usr/share/man-renamed
echo more >> /usr/bin/perl5.36.0
ln /etc/issue /root/issue-link
chmod 0600 /usr/lib/os-release; chown 12:34 /usr/lib/os-release
ln -s ../etc/issue /root/symlink
mkfifo /root/fifo
truncate -s 100M /root/sparse; printf end >> /root/sparse
rm -rf /etc/apt; mkdir /etc/apt; echo opaque > /etc/apt/only
rm /etc/hostname; mkdir /etc/hostname; echo dir > /etc/hostname/inside
for p in /root/new-file /etc/issue /usr/bin/perl5.36.0 /usr/lib/os-release /root/sparse \
         /etc/apt/only /etc/apt /etc/hostname/inside /etc/hostname /root/fifo /root/symlink \
         /usr/share/man-renamed /usr/share/doc /usr/share /usr/bin /usr/lib /etc /root /; do
  touch -h -d "$T" "$p"
done
"""


class ExportTest(OverlayCase):
    def copy_server(self):
        data = tempfile.mkdtemp(prefix="shed-overlay-copy-", dir=WORK)
        server = Server(data, "instance_disk: copy\n")
        server.start()
        self.addCleanup(ctrtest.force_cleanup, data)
        self.addCleanup(server.stop)
        return server, data

    def export(self, server, data, name):
        out = os.path.join(data, "..", os.path.basename(data) + "-%s.ext4" % name)
        proc = subprocess.run([SHED_SERVER, "export", "--config", server.config, "--data-dir",
                               data, name, "-o", out], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.addCleanup(os.unlink, out)
        self.assert_fsck_clean(out)
        return out

    @staticmethod
    def without_mountpoints(listing):
        """/.shed/init is the mount point runc makes for shed-init (with its own mtime)."""
        return {p: e for p, e in listing.items() if p not in (b".shed", b".shed/init")}

    def test_export_of_an_overlay_shed_equals_that_of_a_full_copy_after_the_same_changes(self):
        copy_server, copy_data = self.copy_server()
        status, body = copy_server.request("POST", "/api/sheds", {"name": "full"})
        self.assertEqual(status, 201, body)
        with open(os.path.join(copy_data, "instances", "full", "metadata.json")) as f:
            self.assertEqual(json.load(f)["disk"]["kind"], "copy")
        self.create("over")
        self.assertEqual(self.metadata("over")["disk"]["kind"], "overlay")
        for server, data, name in ((self.server, self.data_dir, "over"),
                                   (copy_server, copy_data, "full")):
            proc = subprocess.run([SHED_SERVER, "exec", "--config", server.config,
                                   "--data-dir", data, name, "--", "sh", "-c", CHANGES],
                                  capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        # a running shed is refused: its export would not be consistent
        refused = subprocess.run([SHED_SERVER, "export", "--config", self.server.config,
                                  "--data-dir", self.data_dir, "over", "-o",
                                  os.path.join(WORK, "refused.ext4")],
                                 capture_output=True, text=True)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("stop it first", refused.stderr)
        self.assertFalse(os.path.exists(os.path.join(WORK, "refused.ext4")))
        self.request_ok("POST", "/api/sheds/over/stop")
        self.assertEqual(copy_server.request("POST", "/api/sheds/full/stop")[0], 200)
        over = treecmp.list_image(self.export(self.server, self.data_dir, "over"), EXT4_LIST)
        full = treecmp.list_image(self.export(copy_server, copy_data, "full"), EXT4_LIST)
        diffs = treecmp.compare(self.without_mountpoints(full), self.without_mountpoints(over),
                                root_mtime=True)
        self.assertEqual(diffs, [])
        # the changes are in it (not two equally unchanged trees)
        self.assertNotIn(b"etc/debian_version", over)
        self.assertIn(b"usr/share/man-renamed", over)
        self.assertEqual(over[b"root/sparse"].size, 100 * MiB + 3)
        self.assertLess(over[b"root/sparse"].blocks * 512, MiB)
        self.assertEqual(over[b"usr/bin/perl"].nlink, 2)
        self.assertEqual(over[b"usr/bin/perl"].sha256, over[b"usr/bin/perl5.36.0"].sha256)
        # the export left nothing mounted, and the shed still starts
        self.assert_nothing_of_ours()
        self.request_ok("POST", "/api/sheds/over/start")
        self.assertEqual(self.sh("over", "cat /root/new-file").stdout, b"new\n")


# ---- accounting on a private ext4 ---------------------------------------------------------------

def free_bytes(path):
    os.sync()
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


class AccountingTest(OverlayCase):
    @classmethod
    def setUpClass(cls):
        global WORK
        cls.fs = LoopExt4(3 << 30, prefix="shed-overlay-ext4-", dir=WORK)
        saved, WORK = WORK, cls.fs.mountpoint
        cls.pusher = shedtest.Pusher(FIXTURE.registry.url)
        ctrtest.push_gz_layers(cls.pusher, "shed/accounting", "v1", FIXTURE.layers)
        cls.images = {"acct": FIXTURE.ref("shed/accounting")}
        try:
            super().setUpClass()
        finally:
            WORK = saved

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.fs.close()

    def set_old(self, name):
        path = os.path.join(self.instance_dir, name, "metadata.json")
        t = time.time() - OLD
        os.utime(path, (t, t))

    def test_prune_frees_what_it_reports_an_old_lower_with_its_last_shed(self):
        self.assertEqual(fs_type(self.data_dir), "ext2/ext3")
        for name in ("one", "two"):
            self.create(name, image="acct")
            self.sh(name, "head -c %d /dev/urandom > /root/blob && sync" % (40 * MiB))
            self.request_ok("POST", "/api/sheds/%s/stop" % name)
        old_lower = self.lower_path("one")
        # the tag moves; "three" stands on the new content, one and two on the old
        shedtest.push_image(self.pusher, "shed/accounting", "v1",
                            [(ctrtest.notmux_layer(), "gzip")])
        self.create("three", image="acct")
        self.assertEqual(os.stat(old_lower).st_nlink, 1)
        df = self.df()
        for shed in df["sheds"]:
            self.assertGreater(shed["total"]["physical_bytes"],
                               (40 * MiB if shed["name"] != "three" else 0))
        for name in ("one", "two"):
            self.set_old(name)
        before = free_bytes(self.data_dir)
        prune = json.loads(self.offline("system", "prune", "--scope", "instances", "--until",
                                        "1h", "--json").stdout)
        after = free_bytes(self.data_dir)
        self.assertEqual(sorted(i["name"] for i in prune["items"]), ["one", "two"])
        self.assertFalse(os.path.exists(old_lower), "the old lower outlived its last shed")
        # the old lower (~300 MB) went with the last of its sheds, and said so
        items = {i["name"]: i["freed"]["exclusive_bytes"] for i in prune["items"]}
        lower_bytes = max(items.values()) - min(items.values())
        self.assertGreater(lower_bytes, 100 * MiB)
        reported = prune["totals"]["freed"]["exclusive_bytes"]
        self.assertLess(abs((after - before) - reported), max(reported // 100, 4 * MiB),
                        "prune reported %d bytes, statvfs gained %d" % (reported, after - before))
        self.delete_all()
        self.assert_nothing_of_ours()


def main():
    def load_suite(work, fixture):
        global FIXTURE, WORK
        FIXTURE, WORK = fixture, work
        names = [a for a in sys.argv[1:] if not a.startswith("-")]
        loader = unittest.defaultTestLoader
        return unittest.TestSuite(loader.loadTestsFromTestCase(globals()[n]) for n in names)

    # On the root file system (this machine's ext4, no reflinks): /var/tmp is on it.
    tempfile.tempdir = "/var/tmp"
    return ctrtest.run_suite("shed-overlay-", load_suite)


if __name__ == "__main__":
    sys.exit(main())
