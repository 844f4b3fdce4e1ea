"""What the tests of the two programs' command lines share: the programs under test, a real
`shed-server serve` on a free loopback port, the `shed` client run the way a user runs it
(its own HOME and client.yaml, no token in the environment), and sheds written by hand.

Environment (tests/CMakeLists.txt): SHED_SERVER, SHED_CLI, SHED_FIXTURES on PYTHONPATH.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

import shedserver

SHED_SERVER = os.environ.get("SHED_SERVER", "")
SHED = os.environ.get("SHED_CLI", "")


def programs_missing():
    """Why these tests cannot run (the programs are not given), or None."""
    for name, path in (("SHED_SERVER", SHED_SERVER), ("SHED_CLI", SHED)):
        if not path or not os.access(path, os.X_OK):
            return "%s not set to a program (run through ctest)" % name
    return None


def write_shed(instance_dir, name, **fields):
    """A stopped shed made by hand, the way an older server or an admin would leave it."""
    d = os.path.join(instance_dir, name)
    os.makedirs(d, exist_ok=True)
    meta = {"name": name, "status": "stopped", "created_at": "2026-01-20T10:30:00Z",
            "repo": "", "backend": "container", "image": "base"}
    meta.update(fields)
    with open(os.path.join(d, "metadata.json"), "w") as f:
        json.dump(meta, f)
    return d


class UserEnvironment:
    """A home of its own: client.yaml under it, no SHED_API_TOKEN, cwd in it."""

    def __init__(self, root):
        self.home = os.path.join(root, "home")
        os.makedirs(self.home, exist_ok=True)
        self.client_yaml = os.path.join(self.home, ".config", "shed", "client.yaml")
        self.env = dict(os.environ, HOME=self.home)
        for variable in ("SHED_API_TOKEN", "SHED_CLIENT_CONFIG", "XDG_CONFIG_HOME"):
            self.env.pop(variable, None)

    def run(self, program, *args, input_text=None, env=None, cwd=None, timeout=120):
        full_env = dict(self.env)
        full_env.update(env or {})
        return subprocess.run([program] + list(args), capture_output=True, text=True,
                              env=full_env, cwd=cwd or self.home, timeout=timeout,
                              input=input_text,
                              stdin=None if input_text is not None else subprocess.DEVNULL)


class ServerTestCase(unittest.TestCase):
    """A real server (no registry image configured, so no registry is needed) per test
    class, its server.yaml extended by extra_config; the user's environment per test."""

    extra_config = ""

    @classmethod
    def setUpClass(cls):
        reason = programs_missing()
        if reason:
            raise unittest.SkipTest(reason)
        cls.work = tempfile.mkdtemp(prefix="shed-cmd-test-")
        cls.data_dir = os.path.join(cls.work, "data")
        os.makedirs(cls.data_dir)
        cls.instance_dir = os.path.join(cls.data_dir, "instances")
        cls.server = shedserver.ServerProcess(SHED_SERVER, cls.data_dir,
                                              "name: cli-test\n" + cls.extra_config,
                                              stop_timeout=60).start()
        cls.url = "http://127.0.0.1:%d" % cls.server.port
        cls.hostport = "127.0.0.1:%d" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)
        if code != 0:
            raise AssertionError("shed-server exited with %s:\n%s" % (code, cls.server.log()))

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="user-", dir=self.work)
        self.user = UserEnvironment(self.tmp)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        for name in os.listdir(self.instance_dir) if os.path.isdir(self.instance_dir) else []:
            if not name.startswith("."):
                shutil.rmtree(os.path.join(self.instance_dir, name), ignore_errors=True)

    def shed(self, *args, **kwargs):
        return self.user.run(SHED, *args, **kwargs)

    def shed_here(self, *args, **kwargs):
        """shed against this class's server (-s HOST:PORT first)."""
        return self.shed("-s", self.hostport, *args, **kwargs)

    def assertUsageError(self, result, pattern=None):
        """Exit 2, nothing on stdout, exactly one line on stderr."""
        self.assertEqual(result.returncode, 2, (result.stdout, result.stderr))
        self.assertEqual(result.stdout, "", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, repr(result.stderr))
        self.assertTrue(result.stderr.endswith("\n"), repr(result.stderr))
        if pattern is not None:
            self.assertRegex(result.stderr, pattern)

    def assertJsonOutput(self, result):
        """Exit 0 and one JSON document on stdout ending with a newline; returns it."""
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.endswith("}\n") or result.stdout.endswith("]\n"),
                        repr(result.stdout[-40:]))
        return json.loads(result.stdout)
