"""shed-server's command line as an admin meets it: options before or after the command,
"did you mean", one-line usage errors, help, local admin commands that say where they
looked when a shed or image is not found (the config file used, or the built-in defaults,
and the data dir), no stray library message when the port is taken, no empty prune
listing.

Needs nothing but the programs; the "built-in defaults" case runs as nobody when run as
root, so that it never touches /var/lib/shed.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

import clitest
import testrun
from clitest import SHED_SERVER, write_shed


class ServerCliTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shed-server-cli-")
        os.chmod(self.tmp, 0o755)
        self.user = clitest.UserEnvironment(self.tmp)
        self.data_dir = os.path.join(self.tmp, "data")
        self.config = os.path.join(self.tmp, "server.yaml")
        with open(self.config, "w") as f:
            f.write("name: admin-test\ndata_dir: %s\n" % self.data_dir)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, *args, **kwargs):
        return self.user.run(SHED_SERVER, *args, **kwargs)

    def assertUsageError(self, result, pattern=None):
        self.assertEqual(result.returncode, 2, (result.stdout, result.stderr))
        self.assertEqual(result.stdout, "", result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, repr(result.stderr))
        if pattern is not None:
            self.assertRegex(result.stderr, pattern)


class ConventionsTest(ServerCliTestCase):
    def test_options_before_and_after_the_command_and_format_json(self):
        outputs = []
        for args in (["images", "ls", "--json", "--config", self.config],
                     ["--config", self.config, "images", "ls", "--json"],
                     ["--json", "--config=" + self.config, "images", "ls"],
                     ["images", "--format", "json", "ls", "-c", self.config],
                     ["--data-dir", self.data_dir, "image", "list", "--json"]):
            with self.subTest(args=args):
                result = self.server(*args)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertTrue(result.stdout.endswith("}\n"), repr(result.stdout))
                outputs.append(json.loads(result.stdout))
        self.assertTrue(all(o == outputs[0] for o in outputs), outputs)

    def test_usage_errors_are_one_line_with_suggestions(self):
        cases = [
            (["pul", "x"], r"^shed-server: unknown command 'pul' \(did you mean 'pull'\?\)\n$"),
            (["images", "ls", "--jsn"], r"did you mean '--json'"),
            (["systme", "df"], r"did you mean 'system'"),
            (["pull"], r"^shed-server pull: missing REF "),
            (["convert", "x"], r"missing --output"),
            (["system", "df", "--until", "1h"], r"only applies to 'system prune'"),
            (["clone", "a"], r"missing DST"),
            (["exec"], r"missing NAME"),
            (["exec", "box"], r"missing CMD"),
            (["serve", "extra"], r"unexpected argument 'extra'"),
            (["config"], r"missing subcommand \(check\)"),
            (["clone", "--config", "x", "a", "b"], r"does not apply"),
            (["system", "prune", "--scope", "bogus"], r"unknown scope 'bogus'"),
        ]
        for args, pattern in cases:
            with self.subTest(args=args):
                self.assertUsageError(self.server(*args), pattern)

    def test_help_of_a_command_and_the_backends_of_this_build(self):
        for words in (["exec"], ["system", "prune"], ["images", "rm"]):
            with self.subTest(words=words):
                by_help = self.server("help", *words)
                self.assertEqual(by_help.returncode, 0, by_help.stderr)
                self.assertEqual(by_help.stdout, self.server(*words, "--help").stdout)
        program = self.server("help").stdout
        self.assertIn("Backends in this build: container ", program)
        self.assertIn("Exit status", program)


class WhereTheyLookedTest(ServerCliTestCase):
    """A local admin command reads the config the way serve does; when it does not find a
    shed or image it says which config and data dir it used."""

    def setUp(self):
        super().setUp()
        write_shed(os.path.join(self.data_dir, "instances"), "mybox")

    def test_with_the_servers_config_the_shed_is_found(self):
        result = self.server("exec", "--config", self.config, "mybox", "--", "true")
        self.assertEqual(result.returncode, 125)
        self.assertRegex(result.stderr, r"^shed-server: SHED_NOT_RUNNING: [^\n]*mybox[^\n]*\n$")

    def test_another_directorys_server_yaml_is_named(self):
        elsewhere = os.path.join(self.tmp, "elsewhere")
        os.makedirs(elsewhere)
        with open(os.path.join(elsewhere, "server.yaml"), "w") as f:
            f.write("data_dir: %s/other-data\n" % elsewhere)
        result = self.server("exec", "mybox", "--", "true", cwd=elsewhere)
        self.assertEqual(result.returncode, 125)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertRegex(result.stderr,
                         r"^shed-server: SHED_NOT_FOUND: shed \"mybox\" not found \(looked in "
                         r"%s/other-data/instances; config %s/server.yaml, data dir "
                         r"%s/other-data; the running server may use another: pass its "
                         r"--config or --data-dir\)\n$" % ((re.escape(elsewhere),) * 3))

    def test_the_built_in_defaults_are_named(self):
        if os.path.exists("/etc/shed/server.yaml"):
            self.skipTest("/etc/shed/server.yaml exists on this machine: no built-in defaults")
        xdg = os.path.join(self.tmp, "xdg")
        os.makedirs(xdg)
        env = {"XDG_DATA_HOME": xdg}
        preexec = None
        if os.geteuid() == 0:
            # root's default data dir is /var/lib/shed: run as nobody, whose is XDG's
            for path in (self.user.home, xdg):
                os.chown(path, 65534, 65534)
            preexec = lambda: (os.setgid(65534), os.setuid(65534))  # noqa: E731
        result = subprocess.run([SHED_SERVER, "exec", "mybox", "--", "true"],
                                capture_output=True, text=True, cwd=self.user.home,
                                env=dict(self.user.env, **env), preexec_fn=preexec,
                                timeout=60)
        self.assertEqual(result.returncode, 125, result.stderr)
        self.assertRegex(result.stderr,
                         r"^shed-server: SHED_NOT_FOUND: shed \"mybox\" not found \(looked in "
                         r"%s/shed/instances; built-in defaults \(no ./server.yaml, "
                         r"~/.config/shed/server.yaml or /etc/shed/server.yaml\), data dir "
                         r"%s/shed;[^\n]*\)\n$" % (re.escape(xdg), re.escape(xdg)))

    def test_data_dir_and_a_missing_image(self):
        other = os.path.join(self.tmp, "other")
        result = self.server("images", "rm", "nosuch", "--data-dir", other)
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"^shed-server: IMAGE_NOT_FOUND: [^\n]*\(looked in "
                         r"%s/images; [^\n]*data dir %s \(--data-dir\);" % (re.escape(other),
                                                                             re.escape(other)))
        result = self.server("pull-images", "--config", self.config, "--variant", "nope")
        self.assertRegex(result.stderr, r"^shed-server: UNKNOWN_IMAGE: [^\n]*\(config %s, "
                         r"data dir %s;" % (re.escape(self.config), re.escape(self.data_dir)))


class CompletionTest(ServerCliTestCase):
    def test_shed_names_come_from_the_data_dir_without_creating_it(self):
        write_shed(os.path.join(self.data_dir, "instances"), "mybox")
        write_shed(os.path.join(self.data_dir, "instances"), "other")
        result = self.server("__complete", "exec", "--data-dir", self.data_dir, "my")
        self.assertEqual(result.stdout, "mybox\n")
        result = self.server("__complete", "--config", self.config, "attach", "")
        self.assertEqual(result.stdout.split(), ["mybox", "other"])
        missing = os.path.join(self.tmp, "missing")
        result = self.server("__complete", "exec", "--data-dir", missing, "")
        self.assertEqual((result.returncode, result.stdout), (0, ""))
        self.assertFalse(os.path.exists(missing))
        self.assertEqual(self.server("__complete", "convert", "-o", "").stdout, ":files\n")


class SurfaceTest(ServerCliTestCase):
    def test_a_port_in_use_is_one_error_line_without_library_noise(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = self.server("serve", "--config", self.config, "--port", str(port),
                                 "--ssh-port", "0")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, "shed-server: IO: cannot listen on 127.0.0.1:%d: Address "
                         "already in use\n" % port)

    def test_an_empty_prune_says_so(self):
        for args, expected in ((["system", "prune", "--dry-run"], "Nothing to prune.\n"),
                               (["system", "prune"], "Nothing to prune.\n"),
                               (["images", "prune"], "Nothing to prune.\n")):
            with self.subTest(args=args):
                result = self.server(*args, "--config", self.config)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, expected)


if __name__ == "__main__":
    reason = clitest.programs_missing()
    if reason:
        sys.exit(testrun.skip_all(reason))
    sys.exit(testrun.main())
