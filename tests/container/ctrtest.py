"""Shared pieces of the container tests: skip checks, the fixture image on a loopback registry,
and a leftovers audit (mounts, loop devices, runc containers) so every test can prove it
cleaned up.

Environment (set by tests.cmake): SHED_SERVER, SHED_BACKEND_DRIVER, SHED_FIXTURES,
SHED_BUILD_CACHE, optionally SHED_CLI.
"""

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(os.path.dirname(__file__), "..",
                                                                "fixtures")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shedtest  # noqa: E402
import fixture_image  # noqa: E402

SKIP = 77


def skip_reason():
    """Why the container tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (runc, loop devices, mounts)"
    if shutil.which("runc") is None:
        return "runc is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control missing)"
    if shutil.which("docker-registry") is None:
        return "docker-registry is not installed (loopback registry fixture)"
    return None


def _gz_diff_id(path):
    """sha256 of the uncompressed layer (the image config's diff_id), cached beside it."""
    cache = path + ".diffid"
    if os.path.exists(cache):
        with open(cache) as f:
            return f.read().strip()
    h = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    with open(cache + ".tmp", "w") as f:
        f.write(digest)
    os.rename(cache + ".tmp", cache)
    return digest


def push_gz_layers(pusher, repo, tag, layer_paths):
    """Pushes already-gzipped layer files as an OCI image; returns the manifest digest."""
    descriptors, diff_ids = [], []
    for path in layer_paths:
        with open(path, "rb") as f:
            blob = f.read()
        digest = pusher.push_blob(repo, blob)
        descriptors.append({"mediaType": shedtest.LAYER_TYPES[("oci", "gzip")],
                            "digest": digest, "size": len(blob)})
        diff_ids.append(_gz_diff_id(path))
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = pusher.push_blob(repo, config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
                "config": {"mediaType": shedtest.OCI_CONFIG, "digest": config_digest,
                           "size": len(config_bytes)},
                "layers": descriptors}
    body = json.dumps(manifest, indent=2).encode()
    return pusher.push_manifest(repo, tag, body, shedtest.OCI_MANIFEST)


def notmux_layer():
    """A tiny image without tmux: busybox (static) as /bin/sh and friends."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    layer = shedtest.LayerBuilder()
    for d in ("bin", "etc", "tmp", "root", "usr", "usr/bin"):
        layer.dir(d)
    layer.file("bin/busybox", busybox, mode=0o755)
    for tool in ("sh", "cat", "sleep", "nc", "ls", "echo"):
        layer.symlink("bin/" + tool, "busybox")
    return layer.tar_bytes()


class FixtureRegistry:
    """A loopback registry holding shed/tmux:v1 (Debian minbase + tmux procps socat) and
    shed/notmux:v1 (busybox only). Raises fixture_image.Unavailable when the Debian image
    cannot be built here."""

    def __init__(self, workdir):
        cache = os.environ.get("SHED_BUILD_CACHE") or os.path.join(workdir, "cache")
        self.layers = fixture_image.ensure_layers(cache)
        self.registry = shedtest.Registry(workdir=os.path.join(workdir, "registry")).start()
        pusher = shedtest.Pusher(self.registry.url)
        push_gz_layers(pusher, "shed/tmux", "v1", self.layers)
        shedtest.push_image(pusher, "shed/notmux", "v1", [(notmux_layer(), "gzip")])

    def ref(self, repo, tag="v1"):
        return "%s/%s:%s" % (self.registry.host, repo, tag)

    def stop(self):
        self.registry.stop()


# ---- leftovers ----------------------------------------------------------------------------

def mounts_under(path):
    """Mount points at or below path (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].encode().decode("unicode_escape")
            if target == path or target.startswith(path + "/"):
                found.append(target)
    return found


def loop_devices_backed_by(path):
    """Loop devices whose backing file is below path (from /sys/block/loop*/loop/backing_file)."""
    path = os.path.realpath(path)
    found = []
    for dev in os.listdir("/sys/block"):
        backing = os.path.join("/sys/block", dev, "loop", "backing_file")
        try:
            with open(backing) as f:
                target = f.read().strip()
        except OSError:
            continue
        if target.startswith(path + "/"):
            found.append((dev, target))
    return found


def runc_containers(runc_root):
    if not os.path.isdir(runc_root):
        return []
    result = subprocess.run(["runc", "--root", runc_root, "list", "-q"], capture_output=True,
                            text=True)
    return [line for line in result.stdout.split() if line]


def force_cleanup(data_dir):
    """Best effort: kill and delete every runc container of this data dir, unmount everything
    below it. Used in tearDown so a failed test never leaves a shed running."""
    runc_root = os.path.join(data_dir, "runc")
    for cid in runc_containers(runc_root):
        subprocess.run(["runc", "--root", runc_root, "delete", "--force", cid],
                       capture_output=True)
    for target in sorted(mounts_under(data_dir), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
