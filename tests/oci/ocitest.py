"""Helpers shared by the oci integration tests: the shed-server binary, running `pull`, and
looking into the data dir the way a user (or the converter) would."""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("SHED_FIXTURES", os.path.join(HERE, "..", "fixtures"))
sys.path.insert(0, FIXTURES)

import shedtest  # noqa: E402
import testrun  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER")
# test helper printing oci_resolve's answer (tests/oci/resolve_tool.c); tests skip without it
OCI_RESOLVE = os.environ.get("SHED_OCI_RESOLVE")


def main():
    """testrun.main, after taking --shed-server PATH off the command line."""
    global SHED_SERVER
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--shed-server", default=SHED_SERVER)
    args, rest = parser.parse_known_args()
    if not args.shed_server:
        sys.exit("usage: %s --shed-server PATH [unittest args]" % sys.argv[0])
    SHED_SERVER = os.path.abspath(args.shed_server)
    sys.exit(testrun.main([sys.argv[0]] + rest))


def layer(files):
    """A layer tar from {path: bytes-or-str}; directories are created as needed."""
    builder = shedtest.LayerBuilder()
    dirs = set()
    for path in sorted(files):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                builder.dir(d)
        builder.file(path, files[path])
    return builder.tar_bytes()


def sha256_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PullTestCase(unittest.TestCase):
    """Base: a temp data dir per test and a helper to run `shed-server pull`."""

    def make_data_dir(self):
        path = tempfile.mkdtemp(prefix="shed-oci-test-")
        self.addCleanup(shutil.rmtree, path, ignore_errors=True)
        return path

    def setUp(self):
        self.data_dir = self.make_data_dir()

    def pull(self, ref, *args, data_dir=None, env=None, timeout=300):
        cmd = [SHED_SERVER, "pull", "--data-dir", data_dir or self.data_dir] + list(args) + [ref]
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)

    def pull_ok(self, ref, *args, **kwargs):
        result = self.pull(ref, *args, **kwargs)
        self.assertEqual(result.returncode, 0, "pull %s failed: %s" % (ref, result.stderr))
        return result

    def pull_json(self, ref, *args, **kwargs):
        return json.loads(self.pull_ok(ref, "--json", *args, **kwargs).stdout)

    def assert_one_line_error(self, result, code=None):
        self.assertNotEqual(result.returncode, 0, "pull unexpectedly succeeded")
        # Progress lines of finished layers may come first; the error is the one last line.
        lines = result.stderr.strip().splitlines()
        errors = [l for l in lines if l.startswith("shed-server")]
        self.assertEqual(len(errors), 1, "expected a one-line error, got: %r" % result.stderr)
        self.assertEqual(errors[0], lines[-1], result.stderr)
        self.assertTrue(errors[0].startswith("shed-server: "), errors[0])
        if code is not None:
            self.assertIn("shed-server: %s: " % code, errors[0])
        return errors[0]

    def resolve(self, ref, platform=None):
        if not OCI_RESOLVE:
            self.skipTest("SHED_OCI_RESOLVE (the resolve_tool binary) not given")
        return subprocess.run([OCI_RESOLVE, ref] + ([platform] if platform else []),
                              capture_output=True, text=True, timeout=120)

    def blob_path(self, digest, data_dir=None):
        return os.path.join(data_dir or self.data_dir, "images", "blobs", "sha256",
                            digest.split(":", 1)[1])

    def blob_bytes(self, digest, data_dir=None):
        with open(self.blob_path(digest, data_dir), "rb") as f:
            return f.read()

    def store_files(self, data_dir=None):
        root = os.path.join(data_dir or self.data_dir, "images", "blobs", "sha256")
        return sorted(os.listdir(root)) if os.path.isdir(root) else []

    def ref_entries(self, data_dir=None):
        """{file name: digest} of the ref index."""
        root = os.path.join(data_dir or self.data_dir, "images", "refs")
        out = {}
        for name in os.listdir(root) if os.path.isdir(root) else []:
            with open(os.path.join(root, name)) as f:
                out[name] = f.read().strip()
        return out
