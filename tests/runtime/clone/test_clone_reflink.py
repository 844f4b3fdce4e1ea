"""`shed-server clone` on a loop-mounted XFS with reflink=1 (FICLONE shares every extent) and
on the ext4 of the test machine (the sparse fallback). Needs root and loop devices: without
them it prints why and skips (exit 77; testrun)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import testrun  # tests/fixtures (PYTHONPATH)
from loop_xfs import LoopXfs  # tests/fixtures (PYTHONPATH)

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
FIEMAP_EXTENT_SHARED = "shared"


def skip_reason():
    if os.geteuid() != 0:
        return "needs root to mount a loop XFS"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control missing)"
    for tool in ("mkfs.xfs", "filefrag", "mke2fs", "e2fsck", "debugfs", "losetup"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    return None


def run(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def allocated_bytes(path):
    return os.stat(path).st_blocks * 512


def make_ext4_image(path, size="256M"):
    """A small sparse ext4 image holding a few files, made with mke2fs -d."""
    src = tempfile.mkdtemp(prefix="shed-clone-tree-")
    try:
        os.makedirs(os.path.join(src, "etc"))
        with open(os.path.join(src, "etc/hostname"), "w") as f:
            f.write("shed\n")
        with open(os.path.join(src, "data.bin"), "wb") as f:
            f.write(os.urandom(3 << 20))
        run("mke2fs", "-q", "-F", "-t", "ext4", "-d", src, path, size)
    finally:
        shutil.rmtree(src)


def extent_flags(path):
    """The flags column of every extent `filefrag -v` lists."""
    out = run("filefrag", "-v", path).stdout
    flags = []
    for line in out.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0].strip().isdigit():
            flags.append(fields[-1].strip())
    return flags


def clone(src, dst):
    out = run(SHED_SERVER, "clone", "--json", src, dst).stdout
    return json.loads(out)


class CloneOnXfs(unittest.TestCase):
    def setUp(self):
        self.xfs = LoopXfs(1 << 30)  # 1 GiB
        self.addCleanup(self.xfs.close)
        self.src = os.path.join(self.xfs.mountpoint, "image-rootfs.ext4")
        self.dst = os.path.join(self.xfs.mountpoint, "shed-rootfs.ext4")
        make_ext4_image(self.src)

    def test_clone_reports_reflink_and_shares_every_extent(self):
        result = clone(self.src, self.dst)
        self.assertEqual(result["strategy"], "reflink")
        flags = extent_flags(self.dst)
        self.assertTrue(flags, "the clone has no extents")
        for f in flags:
            self.assertIn(FIEMAP_EXTENT_SHARED, f)
        self.assertEqual(sha256_file(self.src), sha256_file(self.dst))

    def test_writing_the_clone_leaves_the_source_byte_identical(self):
        before = sha256_file(self.src)
        clone(self.src, self.dst)
        run("debugfs", "-w", "-R", "write /etc/hostname /new-file", self.dst)
        run("debugfs", "-w", "-R", "rm /data.bin", self.dst)
        self.assertEqual(sha256_file(self.src), before)
        self.assertNotEqual(sha256_file(self.dst), before)
        listing = run("debugfs", "-R", "ls -l /", self.src).stdout
        self.assertIn("data.bin", listing)
        self.assertNotIn("new-file", listing)

    def test_source_and_written_clone_both_pass_e2fsck(self):
        clone(self.src, self.dst)
        run("debugfs", "-w", "-R", "write /etc/hostname /new-file", self.dst)
        run("e2fsck", "-fn", self.src)
        run("e2fsck", "-fn", self.dst)

    def test_clone_to_another_file_system_falls_back_to_a_copy(self):
        other = tempfile.mkdtemp(prefix="shed-clone-ext4-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, other, True)
        dst = os.path.join(other, "copy.ext4")
        result = clone(self.src, dst)
        self.assertIn(result["strategy"], ("copy_file_range", "sparse_copy"))
        self.assertEqual(sha256_file(self.src), sha256_file(dst))
        self.assertLessEqual(allocated_bytes(dst), allocated_bytes(self.src))
        run("e2fsck", "-fn", dst)

    def test_existing_destination_is_refused_untouched(self):
        with open(self.dst, "w") as f:
            f.write("mine")
        proc = subprocess.run([SHED_SERVER, "clone", self.src, self.dst], capture_output=True,
                              text=True)
        self.assertNotEqual(proc.returncode, 0)
        self.assertRegex(proc.stderr, r"^shed-server: IO: cannot create .*File exists\n$")
        with open(self.dst) as f:
            self.assertEqual(f.read(), "mine")


class CloneOnExt4(unittest.TestCase):
    """The machine's own file system (ext4 on CI): no reflinks, so the fallback runs."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shed-clone-ext4-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.src = os.path.join(self.dir, "image-rootfs.ext4")
        self.dst = os.path.join(self.dir, "shed-rootfs.ext4")
        make_ext4_image(self.src, "2G")

    def test_fallback_allocates_only_the_source_allocated_bytes(self):
        result = clone(self.src, self.dst)
        self.assertNotEqual(result["strategy"], "reflink")
        self.assertEqual(os.path.getsize(self.dst), 2 << 30)
        self.assertLessEqual(allocated_bytes(self.dst), allocated_bytes(self.src))
        self.assertEqual(sha256_file(self.src), sha256_file(self.dst))
        run("e2fsck", "-fn", self.dst)

    def test_human_output_names_the_strategy(self):
        out = run(SHED_SERVER, "clone", self.src, self.dst).stdout
        self.assertRegex(out, r" -> .*shed-rootfs\.ext4: (copy_file_range|sparse_copy) in [0-9.]+ ms\n$")


if __name__ == "__main__":
    reason = skip_reason()
    if reason is not None:
        sys.exit(testrun.skip_all(reason))
    sys.exit(testrun.main())
