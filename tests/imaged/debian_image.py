"""The realistic fixture: a debootstrap --variant=minbase Debian bookworm rootfs packed as three
gzip layers (base; docs, man pages and locales; a small change layer with whiteouts, an opaque
directory, replaced files and a hardlink). Built once and cached outside the build dirs so the
Release and Asan builds (and scripts/bench/convert.sh) share it.

  python3 debian_image.py CACHE_DIR   -> builds if needed, prints the layer paths
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
NAME = "debian-bookworm-minbase-v1"
# Layer 2 takes these trees out of the base layer.
SPLIT_DIRS = ["usr/share/doc", "usr/share/man", "usr/share/locale"]


class Unavailable(Exception):
    """The image cannot be built here (no root, no debootstrap, mirror unreachable)."""


def layer_paths(cache_dir):
    base = os.path.join(cache_dir, NAME)
    return [os.path.join(base, "layer%d.tar.gz" % i) for i in (1, 2, 3)]


def _mirror_reachable():
    try:
        urllib.request.urlopen(MIRROR + "/dists/%s/Release" % SUITE, timeout=15).read(64)
        return True
    except OSError:
        return False


def _tar_dir(rootfs, out_tar, members=None, excludes=()):
    cmd = ["tar", "--format=posix", "--numeric-owner", "--xattrs", "--xattrs-include=*",
           "--sparse", "-C", rootfs, "-cf", out_tar]
    cmd += ["--exclude=./%s" % e for e in excludes]
    cmd += members or ["."]
    subprocess.run(cmd, check=True)


def _change_layer(rootfs, out_tar):
    """Whiteouts of a file and of a directory tree, an opaque directory with new content,
    a replaced file, a file replaced by a directory, a hardlink pair."""
    docs = sorted(os.listdir(os.path.join(rootfs, "usr/share/doc")))
    victim_doc_dir = docs[len(docs) // 2]
    with tarfile.open(out_tar, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind, data=b"", **kw):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = kw.get("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            info.mtime = kw.get("mtime", 1700000000)
            info.linkname = kw.get("linkname", "")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        add("etc/", tarfile.DIRTYPE, mtime=1700000100)
        add("etc/hostname", tarfile.REGTYPE, b"shed-test\n")
        add("etc/.wh.motd", tarfile.REGTYPE)
        add("usr/share/doc/.wh." + victim_doc_dir, tarfile.REGTYPE)
        add("etc/apt/apt.conf.d/", tarfile.DIRTYPE, mtime=1700000200)
        add("etc/apt/apt.conf.d/.wh..wh..opq", tarfile.REGTYPE)
        add("etc/apt/apt.conf.d/99shed", tarfile.REGTYPE, b'APT::Install-Recommends "0";\n')
        add("etc/issue.net", tarfile.DIRTYPE)
        add("etc/issue.net/README", tarfile.REGTYPE, b"a directory now\n")
        add("opt/", tarfile.DIRTYPE)
        add("opt/tool", tarfile.REGTYPE, b"#!/bin/sh\necho tool\n", mode=0o4755)
        add("opt/tool-alias", tarfile.LNKTYPE, linkname="opt/tool")
        add("var/cache/apt/.wh.pkgcache.bin", tarfile.REGTYPE)


def _gzip(path):
    subprocess.run(["gzip", "-n", "-6", "-f", path], check=True)


def check_can_build(what):
    """Raises Unavailable unless `what` can be built here: debootstrap, as root, from a
    reachable mirror."""
    if os.geteuid() != 0:
        raise Unavailable("building %s needs root (debootstrap)" % what)
    if shutil.which("debootstrap") is None:
        raise Unavailable("debootstrap is not installed")
    if not _mirror_reachable():
        raise Unavailable("the Debian mirror %s is unreachable" % MIRROR)


def write_split_layers(rootfs, tars):
    """The rootfs as two tars: everything but SPLIT_DIRS in tars[0], SPLIT_DIRS in tars[1]."""
    _tar_dir(rootfs, tars[0], excludes=SPLIT_DIRS)
    _tar_dir(rootfs, tars[1], members=["./" + d for d in SPLIT_DIRS])


def cli_main(prog, doc, ensure):
    """`PROG CACHE_DIR`: builds the layers if needed and prints their paths; 77 when the
    image cannot be built here."""
    if len(sys.argv) != 2:
        print(doc, file=sys.stderr)
        return 2
    try:
        print("\n".join(ensure(sys.argv[1])))
    except Unavailable as e:
        print("%s: unavailable: %s" % (prog, e), file=sys.stderr)
        return 77
    return 0


def ensure_layers(cache_dir, log=sys.stderr):
    """Returns the three layer paths, building them first if they are not cached."""
    paths = layer_paths(cache_dir)
    base = os.path.dirname(paths[0])
    if os.path.exists(os.path.join(base, "READY")):
        return paths
    check_can_build("the Debian image")
    os.makedirs(base, exist_ok=True)
    rootfs = os.path.join(base, "rootfs")
    if not os.path.exists(os.path.join(base, "rootfs.done")):
        shutil.rmtree(rootfs, ignore_errors=True)
        print("debian_image: debootstrap --variant=minbase %s (about a minute)" % SUITE, file=log)
        result = subprocess.run(["debootstrap", "--variant=minbase", SUITE, rootfs, MIRROR],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise Unavailable("debootstrap failed: %s" % result.stdout[-500:])
        open(os.path.join(base, "rootfs.done"), "w").close()
    tars = [p[:-3] for p in paths]
    write_split_layers(rootfs, tars)
    _change_layer(rootfs, tars[2])
    for t in tars:
        _gzip(t)
    shutil.rmtree(rootfs)
    os.unlink(os.path.join(base, "rootfs.done"))
    open(os.path.join(base, "READY"), "w").close()
    return paths


if __name__ == "__main__":
    sys.exit(cli_main("debian_image", __doc__, ensure_layers))
