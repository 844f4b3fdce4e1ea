"""Tree comparer: the same listing for a directory tree (os.lstat, os.listxattr) and for an
ext4 image (the ext4_list helper, libext2fs, nothing mounted), and a comparison that names
every difference.

An entry: path (bytes, "" = root), type (f d l c b p s), mode (permission bits incl.
suid/sgid/sticky), uid, gid, size (files and symlinks), sha256 (files), link target
(symlinks), rdev (devices), xattrs, nlink (non-directories), mtime (sec, nsec), and the
hardlink group (paths sharing one inode).

  python3 treecmp.py DIR IMAGE.ext4 [EXT4_LIST]   -> prints differences, exit 1 if any
"""

import hashlib
import os
import stat
import subprocess
import sys

TYPE_OF_MODE = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c",
                stat.S_IFBLK: "b", stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


class Entry:
    __slots__ = ("path", "type", "mode", "uid", "gid", "size", "sha256", "link", "rdev",
                 "xattrs", "nlink", "mtime", "ino", "blocks")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    def fields(self, with_mtime=True):
        out = {"type": self.type, "mode": oct(self.mode), "uid": self.uid, "gid": self.gid,
               "xattrs": self.xattrs}
        if self.type in ("f", "l"):
            out["size"] = self.size
        if self.type == "f":
            out["sha256"] = self.sha256
        if self.type == "l":
            out["link"] = self.link
        if self.type in ("c", "b"):
            out["rdev"] = self.rdev
        if self.type != "d":
            out["nlink"] = self.nlink
        if with_mtime:
            out["mtime"] = self.mtime
        return out


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def _dir_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((os.fsencode(n), os.getxattr(path, n, follow_symlinks=False))
                        for n in names))


def list_directory(root):
    """{path_bytes: Entry} for a real directory tree (needs root for trusted.* xattrs)."""
    entries = {}
    root_b = os.fsencode(root)

    def add(rel, full):
        st = os.lstat(full)
        kind = TYPE_OF_MODE.get(stat.S_IFMT(st.st_mode), "?")
        sec, nsec = divmod(st.st_mtime_ns, 10**9)
        entries[rel] = Entry(
            path=rel, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
            size=st.st_size, sha256=_sha256_file(full) if kind == "f" else None,
            link=os.readlink(full) if kind == "l" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("c", "b") else None,
            xattrs=_dir_xattrs(full), nlink=st.st_nlink, mtime=(sec, nsec), ino=st.st_ino,
            blocks=st.st_blocks)

    add(b"", root_b)
    for dirpath, dirnames, filenames in os.walk(root_b):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            add(os.path.relpath(full, root_b), full)
    return entries


def _unhex(text):
    return b"" if text == "-" else bytes.fromhex(text)


def list_image(image, ext4_list):
    """{path_bytes: Entry} for an ext4 image, read by the ext4_list helper (libext2fs)."""
    out = subprocess.run([ext4_list, image], check=True, capture_output=True).stdout
    entries = {}
    for line in out.decode().splitlines():
        (path, kind, mode, uid, gid, size, sha, link, major, minor, ino, nlink, msec, mnsec,
         blocks, xattrs) = line.split(" ")
        xattr_list = ()
        if xattrs != "-":
            xattr_list = tuple(sorted(tuple(_unhex(part) for part in item.split("="))
                                      for item in xattrs.split(",")))
        rel = _unhex(path)
        entries[rel] = Entry(
            path=rel, type=kind, mode=int(mode, 8), uid=int(uid), gid=int(gid), size=int(size),
            sha256=None if sha == "-" else sha, link=_unhex(link) if kind == "l" else None,
            rdev=(int(major), int(minor)) if kind in ("c", "b") else None, xattrs=xattr_list,
            nlink=int(nlink), mtime=(int(msec), int(mnsec)), ino=int(ino), blocks=int(blocks))
    return entries


def hardlink_groups(entries):
    by_ino = {}
    for e in entries.values():
        if e.type != "d" and e.nlink > 1:
            by_ino.setdefault(e.ino, []).append(e.path)
    return sorted(tuple(sorted(paths)) for paths in by_ino.values() if len(paths) > 1)


def compare(expected, actual, root_mtime=False, limit=30):
    """Differences between two listings as human-readable lines (empty when equal).
    lost+found is ignored when only the image has it; the root's mtime only with
    root_mtime=True (an extraction directory's own mtime is not part of the image)."""
    diffs = []
    if b"lost+found" not in expected:
        actual = {p: e for p, e in actual.items()
                  if p != b"lost+found" and not p.startswith(b"lost+found/")}
    for path in sorted(set(expected) | set(actual)):
        shown = path.decode(errors="backslashreplace") or "/"
        if path not in actual:
            diffs.append("missing in image: %s" % shown)
            continue
        if path not in expected:
            diffs.append("unexpected in image: %s (%s)" % (shown, actual[path].type))
            continue
        with_mtime = root_mtime or path != b""
        want, got = expected[path].fields(with_mtime), actual[path].fields(with_mtime)
        for key in want:
            if want[key] != got[key]:
                diffs.append("%s: %s expected %r, got %r" % (shown, key, want[key], got[key]))
    want_groups, got_groups = hardlink_groups(expected), hardlink_groups(actual)
    if want_groups != got_groups:
        diffs.append("hardlink groups differ: expected %r, got %r" % (want_groups, got_groups))
    if len(diffs) > limit:
        diffs = diffs[:limit] + ["... and %d more" % (len(diffs) - limit)]
    return diffs


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    helper = argv[3] if len(argv) == 4 else "ext4_list"
    diffs = compare(list_directory(argv[1]), list_image(argv[2], helper))
    for line in diffs:
        print(line)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
