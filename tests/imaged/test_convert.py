"""Integration tests of `shed-server convert`: fixture images pushed to a loopback registry,
converted, checked with `e2fsck -fn`, and compared entry for entry (tree comparer) with a
reference extraction (GNU tar -x per layer + OCI whiteouts, as root; see reference.py).

Environment: SHED_SERVER (the binary), SHED_EXT4_LIST (the libext2fs lister),
SHED_BUILD_CACHE (where the Debian image is cached), SHED_FIXTURES (shedtest.py).
Exit status 77 (ctest SKIP_RETURN_CODE) when every test was skipped (testrun).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(HERE, "..", "fixtures")))
sys.path.insert(0, HERE)

import debian_image  # noqa: E402
import reference  # noqa: E402
import shedtest  # noqa: E402
import testrun  # noqa: E402
import treecmp  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
EXT4_LIST = os.environ.get("SHED_EXT4_LIST", "ext4_list")
BUILD_CACHE = os.environ.get("SHED_BUILD_CACHE", os.path.join(HERE, "..", "..", "build-cache"))
IS_ROOT = os.geteuid() == 0
NEEDS_ROOT = "needs root: the reference extraction creates devices, owners and trusted.* xattrs"

MiB = 1 << 20
GiB = 1 << 30


def layer(build):
    """Runs build(LayerBuilder) and returns the tar bytes."""
    b = shedtest.LayerBuilder()
    build(b)
    return b.tar_bytes()


def gnu_tar(src_dir, members, fmt):
    """A tar of real files made by GNU tar (for its sparse formats)."""
    out = subprocess.run(["tar", "--sparse", "--format=%s" % fmt, "--numeric-owner", "-C",
                          src_dir, "-cf", "-"] + members, check=True, capture_output=True)
    return out.stdout


class ConvertTestCase(unittest.TestCase):
    registry = None

    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry().start()
        cls.pusher = shedtest.Pusher(cls.registry.url)

    @classmethod
    def tearDownClass(cls):
        if cls.registry is not None:
            cls.registry.stop()

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="shed-imaged-test-")
        os.chmod(self.work, 0o755)
        self.data_dir = os.path.join(self.work, "data")
        self.out_dir = os.path.join(self.work, "out")
        os.makedirs(self.out_dir)

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- helpers ---------------------------------------------------------------------------

    def push(self, name, layers, fmt="oci"):
        """layers: list of tar bytes, or (tar bytes, compression). Returns the ref."""
        specs = [entry if isinstance(entry, tuple) else (entry, "gzip") for entry in layers]
        shedtest.push_image(self.pusher, "test/" + name, "v1", specs, fmt=fmt)
        return "%s/test/%s:v1" % (self.registry.host, name)

    def push_manifest_of_blobs(self, repo, blobs):
        """Pushes a manifest over blobs already pushed: [(digest, size, compression)]."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        config_digest = self.pusher.push_blob(repo, config)
        manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
                    "config": {"mediaType": shedtest.OCI_CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": [{"mediaType": shedtest.LAYER_TYPES[("oci", c)], "digest": d,
                                "size": n} for d, n, c in blobs]}
        self.pusher.push_manifest(repo, "v1", json.dumps(manifest).encode(),
                                  shedtest.OCI_MANIFEST)
        return "%s/%s:v1" % (self.registry.host, repo)

    def run_convert(self, ref, out, *extra, user=None):
        cmd = [SHED_SERVER, "convert", ref, "-o", out, "--data-dir", self.data_dir] + list(extra)
        if user is not None:
            cmd = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=900)

    def convert_ok(self, ref, *extra, name="rootfs.ext4"):
        out = os.path.join(self.out_dir, name)
        result = self.run_convert(ref, out, *extra)
        self.assertEqual(result.returncode, 0, "convert failed: %s" % result.stderr)
        self.assertTrue(os.path.exists(out))
        self.assertFalse(os.path.exists(out + ".tmp"))
        self.assert_fsck_clean(out)
        return out

    def assert_fsck_clean(self, image):
        result = subprocess.run(["e2fsck", "-fn", image], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, "e2fsck -fn: %s%s" % (result.stdout, result.stderr))

    def assert_fails_cleanly(self, ref, *extra, pattern=None):
        out = os.path.join(self.out_dir, "rootfs.ext4")
        result = self.run_convert(ref, out, *extra)
        self.assertNotEqual(result.returncode, 0)
        # The line of a phase that completed (the download) may come first; the error is
        # one line, the last.
        lines = result.stderr.strip().splitlines()
        errors = [l for l in lines if l.startswith("shed-server")]
        self.assertEqual(len(errors), 1, "expected a one-line error, got %r" % result.stderr)
        self.assertEqual(errors[0], lines[-1], result.stderr)
        self.assertTrue(errors[0].startswith("shed-server: "), errors[0])
        if pattern is not None:
            self.assertRegex(errors[0], pattern)
        self.assertEqual(os.listdir(self.out_dir), [], "left behind after a failure")
        return errors[0]

    def reference_tree(self, layers):
        paths = []
        for i, entry in enumerate(layers):
            tar_bytes = entry[0] if isinstance(entry, tuple) else entry
            path = os.path.join(self.work, "layer%d.tar" % i)
            with open(path, "wb") as f:
                f.write(tar_bytes)
            paths.append(path)
        return self.reference_tree_from_files(paths)

    def reference_tree_from_files(self, paths):
        dest = tempfile.mkdtemp(prefix="reference-", dir=self.work)
        os.rmdir(dest)
        reference.extract_layers(paths, dest)
        return treecmp.list_directory(dest)

    def image_tree(self, image):
        return treecmp.list_image(image, EXT4_LIST)

    def assert_same_tree(self, expected, image, root_mtime=False):
        diffs = treecmp.compare(expected, self.image_tree(image), root_mtime=root_mtime)
        self.assertEqual(diffs, [], "image differs from the reference extraction:\n" +
                         "\n".join(diffs))

    def check_image(self, name, layers, root_mtime=False, fmt="oci", extra=()):
        """Push, convert, fsck, compare with the reference. Returns the image tree."""
        if not IS_ROOT:
            self.skipTest(NEEDS_ROOT)
        ref = self.push(name, layers, fmt=fmt)
        image = self.convert_ok(ref, *extra)
        self.assert_same_tree(self.reference_tree(layers), image, root_mtime=root_mtime)
        return self.image_tree(image)


class LayerSemanticsTest(ConvertTestCase):
    """Each OCI rule as its own small image."""

    def test_whiteout_removes_file(self):
        base = layer(lambda b: b.dir("etc").file("etc/keep", "k").file("etc/gone", "g"))
        top = layer(lambda b: b.whiteout("etc/gone"))
        tree = self.check_image("wh-file", [base, top])
        self.assertNotIn(b"etc/gone", tree)
        self.assertNotIn(b"etc/.wh.gone", tree)

    def test_whiteout_removes_directory_with_children(self):
        base = layer(lambda b: b.dir("a").dir("a/sub").file("a/sub/x", "x").dir("a/sub/deep")
                     .file("a/sub/deep/y", "y").file("a/z", "z"))
        top = layer(lambda b: b.whiteout("a/sub"))
        tree = self.check_image("wh-dir", [base, top])
        self.assertNotIn(b"a/sub", tree)
        self.assertNotIn(b"a/sub/deep/y", tree)
        self.assertIn(b"a/z", tree)

    def test_opaque_directory_hides_lower_content_keeps_new(self):
        base = layer(lambda b: b.dir("d").file("d/old", "o").dir("d/olddir").file("d/olddir/f"))
        top = layer(lambda b: b.dir("d", mtime=1700000500).opaque("d").file("d/new", "n"))
        tree = self.check_image("opaque", [base, top])
        self.assertEqual(sorted(p for p in tree if p.startswith(b"d/")), [b"d/new"])

    def test_opaque_marker_at_the_root(self):
        base = layer(lambda b: b.dir("etc").file("etc/a", "a").file("top", "t"))
        top = layer(lambda b: b.opaque("").file("new", "n"))
        tree = self.check_image("opaque-root", [base, top])
        self.assertEqual(sorted(p for p in tree if p and p != b"lost+found"), [b"new"])

    def test_whiteout_spares_entries_of_its_own_layer(self):
        base = layer(lambda b: b.dir("d").file("d/a", "lower"))
        top = layer(lambda b: b.file("d/a", "upper").whiteout("d/a").file("d/b", "b")
                    .opaque("d"))
        tree = self.check_image("wh-same-layer", [base, top])
        self.assertIn(b"d/a", tree)
        self.assertIn(b"d/b", tree)

    def test_file_replaced_by_directory_and_reverse(self):
        base = layer(lambda b: b.file("was-file", "f").dir("was-dir").file("was-dir/child", "c"))
        top = layer(lambda b: b.dir("was-file").file("was-file/inside", "i")
                    .file("was-dir", "now a file"))
        tree = self.check_image("file-dir", [base, top])
        self.assertEqual(tree[b"was-file"].type, "d")
        self.assertEqual(tree[b"was-dir"].type, "f")
        self.assertNotIn(b"was-dir/child", tree)

    def test_symlink_replaced_by_file(self):
        base = layer(lambda b: b.file("target", "t").symlink("link", "target"))
        top = layer(lambda b: b.file("link", "real file now"))
        tree = self.check_image("symlink-file", [base, top])
        self.assertEqual(tree[b"link"].type, "f")

    def test_directory_entry_in_later_layer_keeps_children(self):
        base = layer(lambda b: b.dir("d", mode=0o755).file("d/child", "c"))
        top = layer(lambda b: b.dir("d", mode=0o700, uid=5, gid=6, mtime=1600000000))
        tree = self.check_image("dir-update", [base, top])
        self.assertIn(b"d/child", tree)
        self.assertEqual(tree[b"d"].mode, 0o700)

    def test_hardlinks_share_one_inode(self):
        top = layer(lambda b: b.dir("bin").file("bin/busybox", "#!bb", mode=0o755)
                    .hardlink("bin/sh", "bin/busybox").hardlink("bin/ls", "bin/busybox")
                    .file("solo", "s"))
        tree = self.check_image("hardlinks", [top])
        self.assertEqual(tree[b"bin/sh"].ino, tree[b"bin/busybox"].ino)
        self.assertEqual(tree[b"bin/busybox"].nlink, 3)

    def test_hardlink_keeps_content_when_target_deleted_or_overwritten_later(self):
        base = layer(lambda b: b.file("a", "original a").hardlink("a-link", "a")
                     .file("b", "original b").hardlink("b-link", "b"))
        top = layer(lambda b: b.whiteout("a").file("b", "new b"))
        tree = self.check_image("hardlink-later", [base, top])
        self.assertNotIn(b"a", tree)
        self.assertEqual(tree[b"a-link"].nlink, 1)
        self.assertNotEqual(tree[b"b"].sha256, tree[b"b-link"].sha256)

    def test_xattrs_including_capability_and_large_value(self):
        cap = "\x01\x00\x00\x02\x00\x04\x00\x00" + "\x00" * 12  # cap_net_bind_service
        big = "".join(chr(32 + i % 90) for i in range(3 * 1024))
        headers = {"SCHILY.xattr.security.capability": cap,
                   "SCHILY.xattr.user.small": "v",
                   "SCHILY.xattr.user.binary": "\udc80\udcff\x00\x01",
                   "SCHILY.xattr.user.big": big,
                   "SCHILY.xattr.trusted.overlay": "y",
                   "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0\x00"}
        top = layer(lambda b: b.file("ping", "elf", mode=0o755, pax_headers=headers)
                    .dir("d", pax_headers={"SCHILY.xattr.user.on-dir": "1"})
                    .symlink("l", "ping"))
        tree = self.check_image("xattrs", [top])
        names = dict(tree[b"ping"].xattrs)
        self.assertEqual(len(names[b"user.big"]), 3 * 1024)
        self.assertIn(b"security.capability", names)

    def test_devices_and_fifo(self):
        top = layer(lambda b: b.dir("dev").device("dev/null", "char", 1, 3, mode=0o666)
                    .device("dev/sda", "block", 8, 0, mode=0o660, gid=6)
                    .device("dev/big", "char", 300, 70000).fifo("dev/initctl", mode=0o600))
        tree = self.check_image("devices", [top])
        self.assertEqual(tree[b"dev/null"].rdev, (1, 3))
        self.assertEqual(tree[b"dev/big"].rdev, (300, 70000))
        self.assertEqual(tree[b"dev/initctl"].type, "p")

    def test_setuid_setgid_sticky_bits(self):
        top = layer(lambda b: b.file("suid", "x", mode=0o4755).file("sgid", "x", mode=0o2755)
                    .dir("tmp", mode=0o1777).file("all", "x", mode=0o7777))
        tree = self.check_image("modes", [top])
        self.assertEqual(tree[b"tmp"].mode, 0o1777)
        self.assertEqual(tree[b"all"].mode, 0o7777)

    def test_sparse_files_keep_holes(self):
        src = os.path.join(self.work, "sparse-src")
        os.makedirs(src)
        for name in ("gnu", "pax"):
            with open(os.path.join(src, name), "wb") as f:
                f.truncate(64 * MiB)
                f.seek(8 * MiB)
                f.write(b"data in the middle")
                f.seek(64 * MiB - 5)
                f.write(b"tail!")
        gnu_layer = gnu_tar(src, ["gnu"], "gnu")
        pax_layer = gnu_tar(src, ["pax"], "posix")
        zeros = layer(lambda b: b.file("zero-runs", b"head" + b"\0" * (16 * MiB) + b"tail"))
        tree = self.check_image("sparse", [gnu_layer, pax_layer, zeros])
        for name in (b"gnu", b"pax", b"zero-runs"):
            self.assertLessEqual(tree[name].blocks * 512, 256 * 1024,
                                 "%s: holes were allocated" % name.decode())

    def test_5gib_sparse_file(self):
        src = os.path.join(self.work, "big-src")
        os.makedirs(src)
        with open(os.path.join(src, "big"), "wb") as f:
            f.truncate(5 * GiB)
            for offset in (0, 2 * GiB + 12345, 5 * GiB - 4096):
                f.seek(offset)
                f.write(b"x" * 4096)
        tree = self.check_image("sparse-5g", [gnu_tar(src, ["big"], "posix")])
        self.assertEqual(tree[b"big"].size, 5 * GiB)
        self.assertLessEqual(tree[b"big"].blocks * 512, 1 * MiB)

    def test_255_byte_names(self):
        ascii_name, utf8_name = "n" * 255, "\u20ac" * 85  # 85 x 3 bytes
        self.assertEqual(len(utf8_name.encode()), 255)
        top = layer(lambda b: b.dir("d" * 255).file("d" * 255 + "/" + ascii_name, "a")
                    .file(utf8_name, "u").symlink("s" * 255, ascii_name))
        tree = self.check_image("long-names", [top])
        self.assertIn(utf8_name.encode(), tree)

    def test_4000_byte_path(self):
        dirs = ["%03d" % i + "p" * 196 for i in range(19)]  # 19 x (199 + "/") = 3800
        path = "/".join(dirs) + "/" + "f" * 200  # + 200 = 4000 bytes
        self.assertEqual(len(path), 4000)

        def build(b):
            for i in range(len(dirs)):
                b.dir("/".join(dirs[:i + 1]))
            b.file(path, "deep")
        tree = self.check_image("deep-path", [layer(build)])
        self.assertIn(path.encode(), tree)

    def test_directory_of_20000_files(self):
        def build(b):
            b.dir("many")
            for i in range(20000):
                b.file("many/file-%05d" % i, "%d" % i)
        tree = self.check_image("many-files", [layer(build)])
        self.assertEqual(sum(1 for p in tree if p.startswith(b"many/")), 20000)

    def test_uid_gid_100000(self):
        top = layer(lambda b: b.dir("home", uid=100000, gid=100000)
                    .file("home/f", "x", uid=100000, gid=100001)
                    .symlink("home/l", "f", uid=4000000000, gid=100000))
        tree = self.check_image("uids", [top])
        self.assertEqual((tree[b"home/f"].uid, tree[b"home/f"].gid), (100000, 100001))

    def test_mtimes_before_1970_and_after_2038(self):
        top = layer(lambda b: b.file("old", "o", mtime=-86400 * 365 * 10)
                    .file("future", "f", mtime=2**33 + 7).dir("d", mtime=-1)
                    .file("frac", "x", mtime=1700000000.25))
        tree = self.check_image("mtimes", [top])
        self.assertEqual(tree[b"future"].mtime, (2**33 + 7, 0))
        self.assertEqual(tree[b"old"].mtime[0], -86400 * 365 * 10)

    def test_empty_layer(self):
        base = layer(lambda b: b.file("a", "a"))
        empty = layer(lambda b: None)
        self.check_image("empty-layer", [base, empty, (empty, "none")])

    def test_member_named_slash_sets_root_attributes(self):
        top = layer(lambda b: b.dir("/", mode=0o750, uid=7, gid=8, mtime=1234567890)
                    .file("a", "a"))
        tree = self.check_image("root-member", [top], root_mtime=True)
        self.assertEqual(tree[b""].mode, 0o750)
        self.assertEqual(tree[b""].mtime, (1234567890, 0))

    def test_member_names_are_normalized(self):
        top = layer(lambda b: b.dir("./etc/").file("/etc/a", "a").file("etc//b", "b")
                    .dir("./usr").dir("usr/lib/").file("./usr/lib/./c", "c"))
        tree = self.check_image("normalize", [top])
        for path in (b"etc/a", b"etc/b", b"usr/lib/c"):
            self.assertIn(path, tree)

    def test_dotdot_inside_the_root_is_resolved(self):
        # GNU tar refuses ".." members, so no reference extraction: check the image itself.
        top = layer(lambda b: b.dir("usr").dir("usr/lib").file("usr/lib/../lib/c", "c")
                    .file("usr/x/../y", "y"))
        image = self.convert_ok(self.push("dotdot-inside", [top]))
        tree = self.image_tree(image)
        self.assertIn(b"usr/lib/c", tree)
        self.assertIn(b"usr/y", tree)
        self.assertNotIn(b"usr/x/../y", tree)

    def test_fast_and_slow_symlinks(self):
        long_target = "/".join(["t" * 50] * 40)  # 2039 bytes: a block, not i_block
        top = layer(lambda b: b.symlink("fast", "a/b").symlink("slow", long_target)
                    .symlink("edge60", "x" * 60))
        tree = self.check_image("symlinks", [top])
        self.assertEqual(tree[b"slow"].link, long_target.encode())

    def test_gzip_zstd_and_uncompressed_layers(self):
        layers = [(layer(lambda b: b.file("gz", "g" * 10000)), "gzip"),
                  (layer(lambda b: b.file("zst", "z" * 10000)), "zstd"),
                  (layer(lambda b: b.file("plain", "p")), "none")]
        self.check_image("compressions", layers)
        self.check_image("compressions-docker", layers, fmt="docker")

    def test_multi_member_gzip_layer(self):
        if not IS_ROOT:
            self.skipTest(NEEDS_ROOT)
        tar = layer(lambda b: b.file("a", "a" * 50000).file("b", "b" * 50000))
        blob = shedtest.compress(tar[:30000], "gzip") + shedtest.compress(tar[30000:], "gzip")
        repo = "test/multi-gzip"
        digest = self.pusher.push_blob(repo, blob)
        image = self.convert_ok(self.push_manifest_of_blobs(repo, [(digest, len(blob), "gzip")]))
        self.assert_same_tree(self.reference_tree([tar]), image)

class FilesystemTest(ConvertTestCase):
    """Properties of the ext4 image itself."""

    def small_image(self, name, *extra):
        ref = self.push(name, [layer(lambda b: b.dir("etc").file("etc/hostname", "h\n"))])
        return self.convert_ok(ref, *extra, name=name + ".ext4")

    def superblock(self, image):
        out = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True,
                             check=True).stdout
        return dict(re.findall(r"^([^:\n]+):\s*(.*)$", out, re.M))

    def test_features_size_and_fresh_uuid(self):
        first = self.small_image("fs-a", "--size", "3G")
        second = self.small_image("fs-b", "--size", "3G")
        sb = self.superblock(first)
        features = sb["Filesystem features"].split()
        for feature in ("has_journal", "extent", "dir_index", "64bit", "metadata_csum",
                        "huge_file"):
            self.assertIn(feature, features)
        self.assertEqual(sb["Inode size"], "256")
        self.assertEqual(int(sb["Block count"]) * int(sb["Block size"]), 3 * GiB)
        self.assertEqual(os.stat(first).st_size, 3 * GiB)
        self.assertLess(os.stat(first).st_blocks * 512, 256 * MiB, "image is not sparse")
        self.assertNotEqual(sb["Filesystem UUID"], self.superblock(second)["Filesystem UUID"])

    def test_default_size_is_20g(self):
        image = self.small_image("fs-default")
        self.assertEqual(os.stat(image).st_size, 20 * GiB)

    def test_kernel_mounts_image_read_write(self):
        if not IS_ROOT:
            self.skipTest("needs root to mount")
        image = self.small_image("fs-mount", "--size", "1G")
        mnt = os.path.join(self.work, "mnt")
        os.makedirs(mnt)
        result = subprocess.run(["mount", "-o", "loop,rw", image, mnt], capture_output=True,
                                text=True)
        if result.returncode != 0:
            self.skipTest("cannot loop-mount here: %s" % result.stderr.strip())
        try:
            with open(os.path.join(mnt, "etc/hostname")) as f:
                self.assertEqual(f.read(), "h\n")
            with open(os.path.join(mnt, "written-by-kernel"), "w") as f:
                f.write("ok")
            os.mkdir(os.path.join(mnt, "etc/newdir"))
        finally:
            subprocess.run(["umount", mnt], check=True)
        self.assert_fsck_clean(image)


class BadInputTest(ConvertTestCase):
    """Each failure: one-line error, exit status != 0, nothing left behind."""

    def test_corrupt_gzip_fails_cleanly(self):
        tar = layer(lambda b: b.file("a", os.urandom(200000)))
        blob = bytearray(shedtest.compress(tar, "gzip"))
        for i in range(1000, 1200):
            blob[i] ^= 0x5A
        repo = "test/corrupt-gzip"
        digest = self.pusher.push_blob(repo, bytes(blob))
        ref = self.push_manifest_of_blobs(repo, [(digest, len(blob), "gzip")])
        self.assert_fails_cleanly(ref, pattern="gzip")

    def test_truncated_tar_fails_cleanly(self):
        tar = layer(lambda b: b.file("a", "x" * 100000).file("b", "y"))
        ref = self.push("truncated", [tar[:50000]])
        self.assert_fails_cleanly(ref, pattern="(?i)truncated")

    def test_missing_layer_blob_fails_cleanly(self):
        tar = layer(lambda b: b.file("present-then-gone", "z" * 1000))
        ref = self.push("missing-blob", [tar])
        blob_digest = shedtest.sha256_digest(shedtest.compress(tar, "gzip"))
        os.unlink(self.registry.blob_data_path(blob_digest))
        self.assert_fails_cleanly(ref)

    def test_device_number_out_of_range_is_refused(self):
        # ext4 stores 12 bits of major: 4096 would silently become another device.
        top = layer(lambda b: b.dir("dev").device("dev/odd", "char", 4096, 1))
        ref = self.push("bad-device", [top])
        self.assert_fails_cleanly(ref, pattern=r"INVALID_IMAGE.*device number 4096:1 out of range")

    def test_image_larger_than_size_names_needed_size(self):
        def build(b):
            for i in range(6):
                b.file("blob%d" % i, os.urandom(20 * MiB))
        ref = self.push("too-big", [(layer(build), "none")])
        line = self.assert_fails_cleanly(ref, "--size", "64M", pattern="NO_SPACE")
        self.assertRegex(line, r"needs at least .*set the size to at least \d+[MG]")
        suggested = re.search(r"set the size to at least (\S+)", line).group(1)
        self.convert_ok(ref, "--size", suggested)

    def test_escaping_dotdot_path_rejected(self):
        top = layer(lambda b: b.dir("etc").file("etc/../../escape", "x"))
        self.assert_fails_cleanly(self.push("escape", [top]), pattern="escapes")

    def test_interrupt_leaves_no_tmp(self):
        big = layer(lambda b: b.file("big", b"\x5a" * (1024 * MiB)))
        ref = self.push("interrupt", [(big, "gzip")])
        out = os.path.join(self.out_dir, "rootfs.ext4")
        proc = subprocess.Popen([SHED_SERVER, "convert", ref, "-o", out, "--data-dir",
                                 self.data_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 300
        while not os.path.exists(out + ".tmp") and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None:
            self.skipTest("conversion finished before it could be interrupted")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"INTERRUPTED", stderr)
        self.assertEqual(os.listdir(self.out_dir), [])

    def test_usage_errors(self):
        result = subprocess.run([SHED_SERVER, "convert", "x"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--output", result.stderr)
        result = subprocess.run([SHED_SERVER, "convert", "--help"], capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 0)
        self.assertIn("--size", result.stdout)
        result = subprocess.run([SHED_SERVER, "convert", "x", "-o", "y", "--size", "lots"],
                                capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)


class RootlessTest(ConvertTestCase):
    def test_conversion_as_unprivileged_user(self):
        if not IS_ROOT:
            self.skipTest("needs root to switch to the nobody user")
        top = layer(lambda b: b.dir("dev").device("dev/null", "char", 1, 3)
                    .file("root-owned", "r", uid=0, gid=0, mode=0o4755)
                    .file("caps", "c", pax_headers={"SCHILY.xattr.security.capability":
                                                    "\x01\x00\x00\x02" + "\x00" * 16,
                                                    "SCHILY.xattr.trusted.t": "1"}))
        ref = self.push("rootless", [top])
        for d in (self.data_dir, self.out_dir):
            os.makedirs(d, exist_ok=True)
            os.chown(d, 65534, 65534)
        out = os.path.join(self.out_dir, "rootfs.ext4")
        result = self.run_convert(ref, out, "--size", "1G", user=65534)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(os.stat(out).st_uid, 65534)
        self.assert_fsck_clean(out)
        self.assert_same_tree(self.reference_tree([top]), out)


class DebianImageTest(ConvertTestCase):
    def test_debian_minbase_three_layers_match_reference(self):
        if not IS_ROOT:
            self.skipTest(NEEDS_ROOT)
        try:
            gz_layers = debian_image.ensure_layers(BUILD_CACHE)
        except debian_image.Unavailable as e:
            self.skipTest("Debian image unavailable: %s" % e)
        blobs = []
        for path in gz_layers:
            with open(path, "rb") as f:
                blobs.append(f.read())
        repo = "test/debian"
        descriptors = [(self.pusher.push_blob(repo, blob), len(blob), "gzip") for blob in blobs]
        image = self.convert_ok(self.push_manifest_of_blobs(repo, descriptors))
        self.assert_same_tree(self.reference_tree_from_files(gz_layers), image, root_mtime=True)


if __name__ == "__main__":
    sys.exit(testrun.main())
