"""Shared pieces of the container tests: skip checks, the fixture image on a loopback registry,
and (from tests/fixtures/shedserver.py) the leftovers audit (mounts, loop devices, runc
containers) so every test can prove it cleaned up.

Environment (set by tests.cmake): SHED_SERVER, SHED_BACKEND_DRIVER, SHED_FIXTURES,
SHED_BUILD_CACHE, optionally SHED_CLI.
"""

import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(os.path.dirname(__file__), "..",
                                                                "fixtures")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shedtest  # noqa: E402
import fixture_image  # noqa: E402
import shedserver  # noqa: E402
from shedserver import (force_cleanup, loop_devices_backed_by, mounts_under,  # noqa: E402,F401
                        runc_containers)

SKIP = 77


def skip_reason():
    """Why the container tests cannot run here, or None."""
    return shedserver.container_skip_reason()


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


def run_suite(work_prefix, load_suite):
    """main() of a container test: skips (exit 77) where it cannot run, else runs
    load_suite(work, fixture)'s suite with a FixtureRegistry in a temp work dir and cleans
    up after it. A suite whose every test skipped counts as skipped."""
    reason = skip_reason()
    if reason is None and (not os.environ.get("SHED_SERVER") or
                           not os.environ.get("SHED_BACKEND_DRIVER")):
        reason = "SHED_SERVER / SHED_BACKEND_DRIVER not set (run through ctest)"
    if reason:
        print("SKIP: %s" % reason)
        return SKIP
    work = tempfile.mkdtemp(prefix=work_prefix)
    fixture = None
    try:
        try:
            fixture = FixtureRegistry(work)
        except fixture_image.Unavailable as e:
            print("SKIP: fixture image unavailable: %s" % e)
            return SKIP
        result = unittest.TextTestRunner(verbosity=2).run(load_suite(work, fixture))
        if result.wasSuccessful() and result.skipped and result.testsRun <= len(result.skipped):
            print("SKIP: every test skipped: %s" % result.skipped[0][1])
            return SKIP
        return 0 if result.wasSuccessful() else 1
    finally:
        if fixture is not None:
            fixture.stop()
        force_cleanup(work)
        shutil.rmtree(work, ignore_errors=True)
