"""Reference extraction for the convert tests: `tar -x` (GNU tar, as root) of each layer in
order onto an empty directory, with the OCI whiteout rules applied by this module:

- `.wh.<name>` removes <name> (and its subtree) left by lower layers; `.wh..wh..opq` removes
  all lower-layer content of its directory; neither is extracted (--exclude=.wh.*);
- a member replaces whatever lower layers left at its path (a directory member over a
  directory keeps the children);
- a directory that a layer does not list keeps its mtime even though the layer creates or
  removes entries in it (tar -x would stamp it with the current time; an image has no such
  time);
- a member naming the root ("/", "./") sets the root directory's attributes.
"""

from decimal import ROUND_FLOOR, Decimal
import os
import shutil
import subprocess
import tarfile


def normalize(name):
    parts = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not parts:
                raise ValueError("member %r escapes the root" % name)
            parts.pop()
            continue
        parts.append(component)
    return "/".join(parts)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _dir_times(dest):
    times = {}
    for dirpath, dirnames, _ in os.walk(dest):
        for d in dirnames + [""]:
            full = os.path.join(dirpath, d) if d else dirpath
            st = os.lstat(full)
            times[os.path.relpath(full, dest)] = (st.st_atime_ns, st.st_mtime_ns)
    return times


def _apply_root_member(dest, member):
    os.chown(dest, member.uid, member.gid)
    os.chmod(dest, member.mode & 0o7777)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            os.setxattr(dest, key[len("SCHILY.xattr."):],
                        value.encode("utf-8", "surrogateescape"))
    # tarfile turns a PAX mtime into a float: take the exact decimal from the header.
    text = member.pax_headers.get("mtime")
    mtime_ns = int(Decimal(text).scaleb(9).to_integral_value(rounding=ROUND_FLOOR)) \
        if text else int(member.mtime) * 10**9
    os.utime(dest, ns=(mtime_ns, mtime_ns))


def _prepare(dest, members):
    """Applies the layer's whiteouts and removes what its members replace. Returns the
    directories the layer lists and its root member, if any."""
    listed_dirs, root_member = set(), None
    for m in members:
        path = normalize(m.name)
        parent, _, base = path.rpartition("/")
        full = os.path.join(dest, path)
        if base == ".wh..wh..opq":
            target = os.path.join(dest, parent)
            if os.path.isdir(target) and not os.path.islink(target):
                for child in os.listdir(target):
                    _remove(os.path.join(target, child))
        elif base.startswith(".wh."):
            _remove(os.path.join(dest, parent, base[4:]))
        elif path == "":
            root_member = m
        elif m.isdir():
            listed_dirs.add(path)
            if os.path.lexists(full) and not (os.path.isdir(full) and not os.path.islink(full)):
                _remove(full)
        else:
            _remove(full)
    return listed_dirs, root_member


def extract_layers(tar_paths, dest):
    """tar_paths: uncompressed (or gzip) layer tarballs, bottom first."""
    os.makedirs(dest)
    os.chmod(dest, 0o755)
    for tar_path in tar_paths:
        with tarfile.open(tar_path) as tf:
            members = tf.getmembers()
        before = _dir_times(dest)
        listed_dirs, root_member = _prepare(dest, members)
        subprocess.run(["tar", "-x", "-f", tar_path, "-C", dest, "--numeric-owner",
                        "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*",
                        "--exclude=.wh.*", "--delay-directory-restore"], check=True, capture_output=True)
        for rel, (atime, mtime) in before.items():
            full = os.path.join(dest, rel)
            if rel != "." and rel not in listed_dirs and os.path.isdir(full) \
                    and not os.path.islink(full):
                os.utime(full, ns=(atime, mtime), follow_symlinks=False)
        if root_member is not None:
            _apply_root_member(dest, root_member)
