"""Reflink accounting on a loop-mounted XFS (mkfs.xfs -m reflink=1): 10 sheds cloned from a
1 GiB image (FICLONE through `shed-server clone`), each with 10 MiB rewritten. df must say
~1 GiB physical but ~10 MiB exclusive per shed, and prune's reported freed bytes must match
the file system's real free-space change (statvfs) within 5%, both when only clones go (their
shared extents stay with the image) and when the image goes with its last clones.

Needs root, loop devices and xfsprogs: otherwise prints why and skips (exit 77; testrun).
The file system is always unmounted in cleanup."""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

import testrun  # tests/fixtures (PYTHONPATH)
from loop_xfs import LoopXfs  # tests/fixtures (PYTHONPATH)

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
MIB = 1 << 20
GIB = 1 << 30
OLD = 5 * 24 * 3600


def skip_reason():
    if os.geteuid() != 0:
        return "needs root to mount a loop XFS"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control missing)"
    for tool in ("mkfs.xfs", "mount", "umount"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    return None


def run(*argv):
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), proc.returncode,
                                                        proc.stdout, proc.stderr))
    return proc


def set_age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def free_bytes(path):
    os.sync()
    # XFS releases an unlinked inode's extents in the background (inodegc); freezing the file
    # system waits for that work, so statvfs then sees all the space the deletions freed.
    subprocess.run(["fsfreeze", "--freeze", path], check=True)
    subprocess.run(["fsfreeze", "--unfreeze", path], check=True)
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


class XfsReflinkTest(unittest.TestCase):
    def setUp(self):
        self.xfs = LoopXfs(4 * GIB, prefix="shed-system-xfs-")
        self.addCleanup(self.xfs.close)
        self.data_dir = os.path.join(self.xfs.mountpoint, "data")
        self.images_dir = os.path.join(self.data_dir, "images")
        self.instance_dir = os.path.join(self.data_dir, "instances")
        os.makedirs(self.images_dir)
        os.makedirs(self.instance_dir)
        self.config = os.path.join(self.xfs.dir, "server.yaml")
        with open(self.config, "w") as f:
            f.write("name: xfs-test\ndata_dir: %s\nbase_image: null\n" % self.data_dir)
        self.image = os.path.join(self.images_dir, "big-rootfs.ext4")
        chunk = os.urandom(MIB)
        with open(self.image, "wb") as f:
            for _ in range(1024):
                f.write(chunk)
            os.fsync(f.fileno())

    def make_clone(self, index, age):
        name = "clone-%d" % index
        d = os.path.join(self.instance_dir, name)
        os.makedirs(d)
        rootfs = os.path.join(d, "rootfs.ext4")
        result = json.loads(run(SHED_SERVER, "clone", "--json", self.image, rootfs).stdout)
        self.assertEqual(result["strategy"], "reflink")
        with open(rootfs, "r+b") as f:  # rewrite 10 MiB at a different place in each clone
            f.seek((index * 64 + 8) * MIB)
            f.write(os.urandom(10 * MIB))
            os.fsync(f.fileno())
        meta = {"name": name, "status": "stopped", "created_at": "2026-01-20T10:30:00Z",
                "backend": "", "image": "big"}
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(meta, f)
        set_age(os.path.join(d, "metadata.json"), age)
        return name

    def system(self, *args):
        return json.loads(run(SHED_SERVER, "system", *args, "--json", "--config",
                              self.config).stdout)

    def assertClose(self, actual, expected, tolerance, what):
        self.assertLessEqual(abs(actual - expected), expected * tolerance,
                             "%s: %d vs %d" % (what, actual, expected))

    def test_clones_report_exclusive_bytes_and_prune_frees_what_statvfs_sees(self):
        for i in range(10):
            self.make_clone(i, OLD if i < 5 else 3600)
        os.sync()
        df = self.system("df")
        self.assertEqual(len(df["sheds"]), 10)
        for shed in df["sheds"]:
            size = shed["rootfs"]["size"]
            self.assertClose(size["physical_bytes"], GIB, 0.01, shed["name"] + " physical")
            self.assertClose(size["exclusive_bytes"], 10 * MIB, 0.05, shed["name"] + " exclusive")
        self.assertClose(df["totals"]["sheds"]["exclusive_bytes"], 100 * MIB, 0.05,
                         "sheds exclusive total")
        self.assertGreaterEqual(df["totals"]["sheds"]["physical_bytes"], 10 * GIB)
        self.assertTrue(any("exclusive_bytes" in n for n in df["notes"]))
        # On disk, each block once: the image holds the shared blocks, each clone only the
        # ones it rewrote, marked as sharing the image's; no "no reflinks" note here.
        [big] = df["images"]
        self.assertClose(big["disk_bytes"], GIB, 0.01, "image disk")
        for shed in df["sheds"]:
            self.assertEqual(shed["shared_with"], "big")
            self.assertClose(shed["disk_bytes"], 10 * MIB, 0.05, shed["name"] + " disk")
        self.assertClose(df["totals"]["all"]["disk_bytes"], GIB + 100 * MIB, 0.02,
                         "every block once")
        self.assertFalse([n for n in df["notes"] if n.startswith("no reflinks")])

        # the 5 old clones go; the image stays (5 sheds still use it)
        before = free_bytes(self.xfs.mountpoint)
        result = self.system("prune", "--scope", "instances", "--scope", "images")
        freed_real = free_bytes(self.xfs.mountpoint) - before
        self.assertEqual(len([i for i in result["items"] if i["kind"] == "instance"]), 5)
        self.assertFalse([i for i in result["items"] if i["kind"] == "image"])
        reported = result["totals"]["freed"]["exclusive_bytes"]
        self.assertClose(reported, 50 * MIB, 0.05, "reported freed (clones only)")
        self.assertClose(freed_real, reported, 0.05, "statvfs vs reported (clones only)")

        # the last 5 clones and, with them, the image: the shared extents are freed too
        before = free_bytes(self.xfs.mountpoint)
        result = self.system("prune", "--scope", "instances", "--scope", "images", "--until", "0s")
        freed_real = free_bytes(self.xfs.mountpoint) - before
        self.assertEqual(len([i for i in result["items"] if i["kind"] == "instance"]), 5)
        self.assertEqual([i["name"] for i in result["items"] if i["kind"] == "image"], ["big"])
        reported = result["totals"]["freed"]["exclusive_bytes"]
        self.assertClose(reported, GIB + 50 * MIB, 0.05, "reported freed (image + clones)")
        self.assertClose(freed_real, reported, 0.05, "statvfs vs reported (image + clones)")
        self.assertFalse(os.path.exists(self.image))


if __name__ == "__main__":
    reason = skip_reason()
    if reason is not None:
        sys.exit(testrun.skip_all(reason))
    sys.exit(testrun.main())
