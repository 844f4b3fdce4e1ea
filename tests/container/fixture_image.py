"""The container tests' fixture image: a debootstrap --variant=minbase Debian bookworm plus
tmux, procps and socat (a TCP echo listener for the connect tests), packed as two gzip layers
(the base; docs, man pages and locales). Built once with the Debian image builder of
tests/imaged (same mirror, suite and layer split) and cached beside it outside the build dirs,
so the Release and Asan builds share it.

  python3 fixture_image.py CACHE_DIR   -> builds if needed, prints the layer paths
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "imaged"))
import debian_image  # noqa: E402  (the shared Debian builder)
from debian_image import Unavailable  # noqa: E402,F401  (re-exported for the tests)

NAME = "debian-bookworm-minbase-tmux-v1"
PACKAGES = ["tmux", "procps", "socat"]


def layer_paths(cache_dir):
    base = os.path.join(cache_dir, NAME)
    return [os.path.join(base, "layer%d.tar.gz" % i) for i in (1, 2)]


def _debootstrap(rootfs, log):
    print("fixture_image: debootstrap --variant=minbase --include=%s %s (about a minute)"
          % (",".join(PACKAGES), debian_image.SUITE), file=log)
    result = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
                             debian_image.SUITE, rootfs, debian_image.MIRROR],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable("debootstrap failed: %s" % result.stdout[-500:])


def ensure_layers(cache_dir, log=sys.stderr):
    """Returns the layer paths, building them first if they are not cached. Concurrent
    builders are serialised by a lock file next to the cache."""
    import fcntl
    paths = layer_paths(cache_dir)
    base = os.path.dirname(paths[0])
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, NAME + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(base, "READY")):
            return paths
        debian_image.check_can_build("the fixture image")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        rootfs = os.path.join(base, "rootfs")
        _debootstrap(rootfs, log)
        tars = [p[:-3] for p in paths]
        debian_image.write_split_layers(rootfs, tars)
        for t in tars:
            debian_image._gzip(t)
        shutil.rmtree(rootfs)
        open(os.path.join(base, "READY"), "w").close()
        return paths


if __name__ == "__main__":
    sys.exit(debian_image.cli_main("fixture_image", __doc__, ensure_layers))
