"""Installing shed: `cmake --install BUILD --prefix TMP` puts the three programs in one
bindir, the systemd units (with the prefix's paths), the man pages and the bash/zsh
completion where they belong; the man pages render with `man -l` and name every command
the programs have; the bash completion loads and completes commands and shed names; and
the installed binaries run a real shed (shed-server finds its shed-init beside itself).

Run: test_install.py --build-dir BUILD --source-dir SRC. The real shed needs root, runc,
loop devices, docker-registry and busybox-static.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import shedserver
import shedtest
import testrun

BUILD_DIR = None
SOURCE_DIR = None
PREFIX = None
WORK = None


def installed(*parts):
    return os.path.join(PREFIX, *parts)


def run(argv, **kwargs):
    kwargs.setdefault("timeout", 300)
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)


def setUpModule():
    global PREFIX, WORK
    WORK = tempfile.mkdtemp(prefix="shed-install-")
    PREFIX = os.path.join(WORK, "prefix")
    result = run(["cmake", "--install", BUILD_DIR, "--prefix", PREFIX])
    if result.returncode != 0:
        raise AssertionError("cmake --install failed:\n" + result.stdout + result.stderr)


def tearDownModule():
    shutil.rmtree(WORK, ignore_errors=True)


def commands_in_help(program):
    """The command names of `PROGRAM help` (the Commands: section)."""
    text = run([program, "help"]).stdout
    section = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0].rstrip(",") for line in section.splitlines()]


class LayoutTest(unittest.TestCase):
    def test_the_files_land_where_they_find_each_other(self):
        for program in ("shed-server", "shed", "shed-init", "shed-logger"):
            path = installed("bin", program)
            self.assertTrue(os.access(path, os.X_OK), path)
        for page in ("man1/shed.1", "man5/server.yaml.5", "man8/shed-server.8"):
            self.assertTrue(os.path.isfile(installed("share", "man", page)), page)
        for name in ("shed", "shed-server"):
            self.assertTrue(os.path.isfile(installed("share", "bash-completion", "completions",
                                                     name)))
        self.assertTrue(os.path.isfile(installed("share", "zsh", "site-functions", "_shed")))
        self.assertEqual(run([installed("bin", "shed"), "--version"]).stdout.split()[0], "shed")

    def test_the_systemd_units_name_the_installed_programs(self):
        units = installed("lib", "systemd", "system")
        with open(os.path.join(units, "shed-server.service")) as f:
            service = f.read()
        self.assertIn("\nExecStart=%s serve\n" % installed("bin", "shed-server"), service)
        self.assertIn("\nExecReload=%s reload\n" % installed("bin", "shed-server"), service)
        self.assertIn("\nKillMode=process\n", service)  # sheds outlive the server
        with open(os.path.join(units, "shed-prune.service")) as f:
            prune = f.read()
        self.assertIn("ExecStart=%s system prune" % installed("bin", "shed-server"), prune)
        self.assertNotIn("/usr/local/bin", service + prune)
        self.assertTrue(os.path.isfile(os.path.join(units, "shed-prune.timer")))
        if shutil.which("systemd-analyze"):
            result = run(["systemd-analyze", "verify", "--man=no",
                          os.path.join(units, "shed-server.service")])
            self.assertEqual(result.returncode, 0, result.stderr)

    def test_destdir_is_honoured(self):
        staging = os.path.join(WORK, "staging")
        result = run(["cmake", "--install", BUILD_DIR, "--prefix", "/opt/shed"],
                     env=dict(os.environ, DESTDIR=staging))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(os.access(os.path.join(staging, "opt/shed/bin/shed-server"), os.X_OK))
        with open(os.path.join(staging, "opt/shed/lib/systemd/system/shed-server.service")) as f:
            self.assertIn("ExecStart=/opt/shed/bin/shed-server serve", f.read())


class ManPageTest(unittest.TestCase):
    def render(self, page):
        result = run(["man", "-l", installed("share", "man", page)],
                     env=dict(os.environ, MANWIDTH="100", MANPAGER="cat", PAGER="cat",
                              LC_ALL="C.UTF-8"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "")
        self.assertRegex(result.stdout, r"(?m)^NAME\n")
        return result.stdout

    def test_the_pages_render_and_name_every_command(self):
        if shutil.which("man") is None:
            self.fail("man is not installed (man-db)")
        shed = self.render("man1/shed.1")
        self.assertIn("shed - create, list and manage sheds", shed)
        server = self.render("man8/shed-server.8")
        self.assertIn("shed-server - the shed REST API server", server)
        config = self.render("man5/server.yaml.5")
        for key in ("data_dir", "base_image", "images", "rootfs_size", "api_token"):
            self.assertRegex(config, r"(?m)^\s+%s\b" % key)
        for program, text in (("shed", shed), ("shed-server", server)):
            for command in commands_in_help(installed("bin", program)):
                with self.subTest(program=program, command=command):
                    self.assertRegex(text, r"(?m)^\s+%s\b" % re.escape(command))


class CompletionTest(unittest.TestCase):
    def complete(self, *words):
        """COMPREPLY for the line of words (the last one being completed)."""
        script = installed("share", "bash-completion", "completions", "shed")
        words = [installed("bin", words[0])] + list(words[1:])
        array = " ".join("'%s'" % w for w in words)
        result = run(["bash", "-c", "source '%s' && COMP_WORDS=(%s) && COMP_CWORD=%d && "
                      "_shed_complete && printf '%%s\\n' \"${COMPREPLY[@]}\""
                      % (script, array, len(words) - 1)])
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout.split()

    def test_the_bash_completion_loads_and_completes(self):
        script = installed("share", "bash-completion", "completions", "shed")
        result = run(["bash", "-c", "source '%s'; complete -p shed; complete -p shed-server"
                      % script])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("complete -F _shed_complete shed", result.stdout)
        self.assertEqual(self.complete("shed", "li"), ["list"])
        self.assertEqual(self.complete("shed", "images", "pr"), ["prune"])
        self.assertEqual(self.complete("shed", "list", "--js"), ["--json"])
        self.assertEqual(self.complete("shed-server", "system", "prune", "--dr"), ["--dry-run"])
        self.assertIn("exec", self.complete("shed-server", "e"))

    def test_the_zsh_completion_parses(self):
        if shutil.which("zsh") is None:
            self.fail("zsh is not installed")
        script = installed("share", "zsh", "site-functions", "_shed")
        result = run(["zsh", "-n", script])
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(script) as f:
            self.assertTrue(f.readline().startswith("#compdef shed shed-server"))


class InstalledShedTest(unittest.TestCase):
    """The installed programs alone: serve, create a shed through the installed client,
    exec in it with the installed shed-server, complete its name, delete it."""

    @classmethod
    def setUpClass(cls):
        reason = shedserver.container_skip_reason()
        if reason is None and not os.path.exists("/bin/busybox"):
            reason = "/bin/busybox (busybox-static) is missing"
        if reason:
            raise unittest.SkipTest(reason)
        cls.dir = tempfile.mkdtemp(prefix="shed-installed-", dir=WORK)
        cls.registry = shedtest.Registry(workdir=os.path.join(cls.dir, "registry")).start()
        shedtest.push_image(shedtest.Pusher(cls.registry.url), "shed/base", "v1",
                            [(shedtest.busybox_layer("installed\n"), "gzip")])
        cls.data_dir = os.path.join(cls.dir, "data")
        cls.server = shedserver.ServerProcess(
            installed("bin", "shed-server"), cls.data_dir,
            "name: installed\nbase_image: %s/shed/base:v1\nrootfs_size: 128M\n"
            "default_cpus: 1\ndefault_memory_mb: 256\n" % cls.registry.host,
            stop_timeout=300).start()
        cls.hostport = "127.0.0.1:%d" % cls.server.port
        cls.env = dict(os.environ, HOME=cls.dir)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shedserver.force_cleanup(cls.data_dir)
        cls.registry.stop()
        if code != 0:
            raise AssertionError("shed-server exited with %s:\n%s" % (code, cls.server.log()))

    def shed(self, *args):
        return run([installed("bin", "shed"), "-s", self.hostport] + list(args), env=self.env)

    def test_a_real_shed_from_the_installed_binaries(self):
        result = self.shed("create", "first")
        self.assertEqual(result.returncode, 0, result.stderr + self.server.log()[-2000:])
        self.assertEqual(result.stdout, "created first (running, container)\n")
        try:
            result = run([installed("bin", "shed-server"), "exec", "--config", self.server.config,
                          "--data-dir", self.data_dir, "first", "--", "cat", "/etc/image-marker"])
            self.assertEqual((result.returncode, result.stdout), (0, "installed\n"), result.stderr)
            script = installed("share", "bash-completion", "completions", "shed")
            completed = run(["bash", "-c", "source '%s' && COMP_WORDS=('%s' -s %s stop '') && "
                             "COMP_CWORD=4 && _shed_complete && echo \"${COMPREPLY[@]}\""
                             % (script, installed("bin", "shed"), self.hostport)])
            self.assertEqual(completed.stdout.split(), ["first"], completed.stderr)
        finally:
            result = self.shed("rm", "first")
        self.assertEqual((result.returncode, result.stdout), (0, "deleted first\n"), result.stderr)
        instance = os.path.join(self.data_dir, "instances", "first")
        self.assertFalse(os.path.exists(instance))
        self.assertEqual(shedserver.mounts_under(self.data_dir), [])
        self.assertEqual(shedserver.loop_devices_backed_by(self.data_dir), [])
        self.assertEqual(shedserver.runc_containers(os.path.join(self.data_dir, "runc")), [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--source-dir", required=True)
    args, rest = parser.parse_known_args()
    BUILD_DIR = os.path.abspath(args.build_dir)
    SOURCE_DIR = os.path.abspath(args.source_dir)
    if shutil.which("cmake") is None:
        sys.exit(testrun.skip_all("cmake is not installed"))
    sys.exit(testrun.main([sys.argv[0]] + rest))
