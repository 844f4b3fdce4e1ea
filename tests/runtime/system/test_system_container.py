"""End to end with the real `container` backend (runc): a shed created and started by the
backend (tests/runtime/container/backend_driver.c) is reported running by `system df` and never
pruned, even with an old metadata.json and --until 0s; once stopped it is pruned, and the
backend's delete leaves no mount, loop device or runc container behind.

Needs root, runc, loop devices and the Debian fixture image (tests/fixtures/ctrtest.py):
otherwise prints why and skips (exit 77; testrun)."""

import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import ctrtest  # tests/fixtures (PYTHONPATH)

SHED_SERVER = os.environ.get("SHED_SERVER")
DRIVER = os.environ.get("SHED_BACKEND_DRIVER")
WORK = None
FIXTURE = None
OLD = 5 * 24 * 3600


def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


class ContainerPruneTest(unittest.TestCase):
    def setUp(self):
        self.data_dir = tempfile.mkdtemp(prefix="shed-system-ctr-", dir=WORK)
        self.config = os.path.join(self.data_dir, "..", os.path.basename(self.data_dir) + ".yaml")
        with open(self.config, "w") as f:
            f.write("name: ctr-test\ndata_dir: %s\n" % self.data_dir)
        self.rootfs = os.path.join(WORK, "tmux.ext4")
        if not os.path.exists(self.rootfs):
            subprocess.run([SHED_SERVER, "convert", "--data-dir", os.path.join(WORK, "convert"),
                            "-s", "2G", FIXTURE.ref("shed/tmux"), "-o", self.rootfs],
                           check=True, capture_output=True)
        self.addCleanup(ctrtest.force_cleanup, self.data_dir)

    def driver(self, name, *args):
        result = subprocess.run([DRIVER, self.data_dir, name] + list(args), capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def system(self, *args):
        out = subprocess.run([SHED_SERVER, "system"] + list(args) + ["--json", "--config",
                                                                     self.config],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    def test_running_container_shed_is_never_pruned_and_a_stopped_one_leaves_nothing(self):
        self.driver("box", "create", self.rootfs)
        self.addCleanup(subprocess.run, [DRIVER, self.data_dir, "box", "delete"],
                        capture_output=True)
        inst = os.path.join(self.data_dir, "instances", "box")
        metadata = os.path.join(inst, "metadata.json")
        self.assertEqual(self.driver("box", "status").strip(), "running")
        age(metadata, OLD)
        df = self.system("df")
        self.assertEqual([(s["name"], s["status"]) for s in df["sheds"]], [("box", "running")])
        result = self.system("prune", "--scope", "instances", "--until", "0s")
        self.assertEqual(result["skipped"], [{"kind": "instance", "name": "box", "path": inst,
                                              "reason": "cannot prune running shed"}])
        self.assertEqual(self.driver("box", "status").strip(), "running")

        self.driver("box", "stop")
        age(metadata, OLD)
        result = self.system("prune", "--scope", "instances")
        self.assertEqual([(i["kind"], i["name"]) for i in result["items"]], [("instance", "box")])
        self.assertFalse(os.path.exists(inst))
        self.assertEqual(ctrtest.mounts_under(inst), [])
        self.assertNotIn("shed-box", ctrtest.runc_containers(os.path.join(self.data_dir, "runc")))


def main():
    def load_suite(work, fixture):
        global FIXTURE, WORK
        WORK, FIXTURE = work, fixture
        return unittest.defaultTestLoader.loadTestsFromTestCase(ContainerPruneTest)

    return ctrtest.run_suite("shed-system-ctr-", load_suite)


if __name__ == "__main__":
    sys.exit(main())
