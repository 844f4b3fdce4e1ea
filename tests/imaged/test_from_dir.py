"""ext4_write_from_dir (imaged/ext4_from_dir.c), the writer behind `shed-server export`: a
real directory tree with every kind of entry is written as an ext4 image, which must pass
`e2fsck -fn` and equal the tree entry for entry (tests/imaged/treecmp.py: types, modes incl.
suid/sgid/sticky, owners, sizes, contents, link targets, device numbers, xattrs, nlink,
mtimes, hardlink groups), keep holes, and fail cleanly when it does not fit.

Environment: SHED_FROM_DIR_TOOL (tests/imaged/ext4/from_dir_tool.c), SHED_EXT4_LIST.
Needs root (devices, owners, trusted.* xattrs): otherwise skips (exit 77; testrun).
"""

import os
import socket
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(HERE, "..", "fixtures")))
sys.path.insert(0, HERE)

import testrun  # noqa: E402
import treecmp  # noqa: E402

TOOL = os.environ.get("SHED_FROM_DIR_TOOL", "from_dir_tool")
EXT4_LIST = os.environ.get("SHED_EXT4_LIST", "ext4_list")
MiB = 1 << 20


def write(path, data, mode=0o644, mtime=None):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def build_tree(root):
    """Every kind of entry an image holds, with the attributes that are easy to lose."""
    os.makedirs(os.path.join(root, "etc/deep/er"))
    write(os.path.join(root, "etc/hostname"), b"shed\n", mtime=1700000000)
    write(os.path.join(root, "etc/deep/er/file"), b"x" * 5000, 0o600)
    os.chown(os.path.join(root, "etc/deep/er/file"), 1234, 5678)
    write(os.path.join(root, "suid"), b"#!/bin/sh\n", 0o4755)
    write(os.path.join(root, "sgid"), b"", 0o2711)
    os.makedirs(os.path.join(root, "tmp"))
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    # hardlinks: three names, one inode
    write(os.path.join(root, "a-link"), b"shared content\n")
    os.link(os.path.join(root, "a-link"), os.path.join(root, "etc/b-link"))
    os.link(os.path.join(root, "a-link"), os.path.join(root, "etc/deep/c-link"))
    # symlinks: fast, slow (longer than 60 bytes), dangling, absolute
    os.symlink("hostname", os.path.join(root, "etc/fast"))
    os.symlink("x" * 200, os.path.join(root, "etc/slow"))
    os.symlink("/nowhere/at/all", os.path.join(root, "dangling"))
    # special files
    os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "disk"), 0o660 | stat.S_IFBLK, os.makedev(259, 70000))
    os.mkfifo(os.path.join(root, "fifo"), 0o640)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "sock"))
    sock.close()
    # sparse: data, a 64 MiB hole, data, a hole to the end
    with open(os.path.join(root, "sparse"), "wb") as f:
        f.write(b"head" * 1024)
        f.seek(64 * MiB)
        f.write(b"tail" * 1024)
        f.truncate(80 * MiB)
    # xattrs of every namespace a shed's root has
    os.setxattr(os.path.join(root, "etc/hostname"), "user.note", b"hello")
    os.setxattr(os.path.join(root, "etc/hostname"), "trusted.mark", b"\x00\x01\x02")
    os.setxattr(os.path.join(root, "suid"), "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))
    os.setxattr(os.path.join(root, "etc"), "user.dir", b"on a directory")
    os.setxattr(os.path.join(root, "etc/deep/er/file"), "user.big", b"v" * 3000)
    # names with any byte but '/' and NUL, and times outside 1970..2038
    odd = os.path.join(os.fsencode(root), b"odd \xff\x01 name")
    with open(odd, "wb") as f:
        f.write(b"odd")
    os.utime(odd, ns=(0, -86400 * 10**9 * 365))
    write(os.path.join(root, "future"), b"f", mtime=4102444800 + 0.5)  # 2100, half a second
    # a deep chain of directories (the walk keeps a descriptor per level)
    deep = root
    for i in range(60):
        deep = os.path.join(deep, "d%d" % i)
    os.makedirs(deep)
    write(os.path.join(deep, "leaf"), b"leaf")
    # directory mtimes last: making entries in them changed them
    for d in ("etc/deep/er", "etc/deep", "etc", "tmp"):
        os.utime(os.path.join(root, d), (1600000000, 1600000000))
    os.chmod(root, 0o755)
    os.utime(root, (1650000000, 1650000000))


class FromDirTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="shed-from-dir-", dir="/var/tmp")
        cls.tree = os.path.join(cls.work, "tree")
        os.mkdir(cls.tree)
        build_tree(cls.tree)

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.work])

    def write_image(self, name, size):
        out = os.path.join(self.work, name)
        proc = subprocess.run([TOOL, self.tree, out, str(size)], capture_output=True, text=True)
        return proc, out

    def test_tree_is_written_entry_for_entry_and_fsck_clean(self):
        proc, out = self.write_image("full.ext4", 512 * MiB)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        fsck = subprocess.run(["e2fsck", "-fn", out], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
        diffs = treecmp.compare(treecmp.list_directory(self.tree),
                                treecmp.list_image(out, EXT4_LIST), root_mtime=True)
        self.assertEqual(diffs, [])

    def test_holes_stay_holes(self):
        proc, out = self.write_image("sparse.ext4", 512 * MiB)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        image = treecmp.list_image(out, EXT4_LIST)
        # 8 KiB of data in an 80 MiB file: a handful of blocks, not 80 MiB of them
        self.assertEqual(image[b"sparse"].size, 80 * MiB)
        self.assertLess(image[b"sparse"].blocks * 512, 1 * MiB)
        self.assertLess(os.stat(out).st_blocks * 512, 16 * MiB)

    def test_too_small_fails_saying_it_is_full_and_leaves_nothing(self):
        big_tree = os.path.join(self.work, "big")
        os.mkdir(big_tree)
        write(os.path.join(big_tree, "big"), os.urandom(32 * MiB))
        out = os.path.join(self.work, "too-small.ext4")
        proc = subprocess.run([TOOL, big_tree, out, str(16 * MiB)], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("is full", proc.stderr)
        self.assertFalse(os.path.exists(out))

    def test_mount_points_inside_are_skipped_with_a_warning(self):
        tree = os.path.join(self.work, "mounted")
        os.makedirs(os.path.join(tree, "mnt"))
        write(os.path.join(tree, "kept"), b"kept")
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", os.path.join(tree, "mnt")], check=True)
        try:
            write(os.path.join(tree, "mnt", "hidden"), b"on the tmpfs")
            out = os.path.join(self.work, "mounted.ext4")
            proc = subprocess.run([TOOL, tree, out, str(64 * MiB)], capture_output=True,
                                  text=True)
        finally:
            subprocess.run(["umount", os.path.join(tree, "mnt")], check=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("skipping mnt: another file system is mounted there", proc.stderr)
        image = treecmp.list_image(out, EXT4_LIST)
        self.assertIn(b"kept", image)
        self.assertNotIn(b"mnt", image)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit(testrun.skip_all("needs root: devices, owners and trusted.* xattrs"))
    sys.exit(testrun.main())
