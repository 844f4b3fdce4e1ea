"""The `shed` client's command line, driven as a user drives it against a real shed-server:
options before or after the command and its operands, aliases, "did you mean", -s
HOST:PORT, one-line usage errors, --json with a trailing newline, several names at once,
help, client.yaml written by `shed server add`, the hint of an unreachable server, and no
prompt for an empty prune.

Needs nothing but the two programs (no backend: the sheds are written by hand, stopped).
"""

import json
import os
import stat
import sys

import clitest
import shedserver
import testrun
from clitest import write_shed


class OptionPlacementTest(clitest.ServerTestCase):
    def test_global_and_command_options_go_before_or_after_the_command(self):
        write_shed(self.instance_dir, "abe", image="dev")
        variants = [
            ["-s", self.hostport, "--json", "list"],
            ["--json", "-s", self.hostport, "list"],
            ["list", "--json", "-s", self.hostport],
            ["list", "-s", self.hostport, "--json"],
            ["-s", self.hostport, "list", "--format", "json"],
            ["list", "--format=json", "--server=" + self.hostport],
        ]
        outputs = []
        for args in variants:
            with self.subTest(args=args):
                body = self.assertJsonOutput(self.shed(*args))
                self.assertEqual([s["name"] for s in body["sheds"]], ["abe"])
                outputs.append(body)
        self.assertTrue(all(o == outputs[0] for o in outputs))

    def test_options_after_the_operands_and_double_dash(self):
        write_shed(self.instance_dir, "abe", image="dev")
        for args in (["get", "abe", "--json"], ["get", "--json", "abe"],
                     ["--json", "get", "--", "abe"]):
            with self.subTest(args=args):
                self.assertEqual(self.assertJsonOutput(self.shed_here(*args))["image"], "dev")

    def test_bundled_short_options(self):
        # a bundle is one option per letter, any number of them (was a heap overflow once)
        body = self.assertJsonOutput(self.shed("-" + "j" * 64, "-s" + self.hostport, "info"))
        self.assertEqual(body["name"], "cli-test")

    def test_host_port_without_a_scheme_is_http(self):
        result = self.shed("-s", self.hostport, "info")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?m)^name:\s+cli-test$")
        result = self.shed("-s", self.url, "info")
        self.assertEqual(result.returncode, 0, result.stderr)


class AliasTest(clitest.ServerTestCase):
    def test_ls_and_ps_are_list_rm_is_delete(self):
        write_shed(self.instance_dir, "one")
        listing = self.shed_here("list").stdout
        self.assertIn("one", listing)
        for alias in ("ls", "ps"):
            with self.subTest(alias=alias):
                result = self.shed_here(alias)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, listing)
        result = self.shed_here("rm", "one")
        self.assertEqual((result.returncode, result.stdout), (0, "deleted one\n"), result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "one")))

    def test_images_alone_and_images_ls_list_the_same(self):
        plain = self.shed_here("images", "--json")
        for args in (["images", "ls", "--json"], ["image", "list", "--json"]):
            with self.subTest(args=args):
                self.assertEqual(self.assertJsonOutput(self.shed_here(*args)),
                                 json.loads(plain.stdout))


class DidYouMeanTest(clitest.ServerTestCase):
    def test_a_mistyped_command_gets_a_suggestion(self):
        for typed, meant in (("lst", "list"), ("stpo", "stop"), ("imgaes", "images"),
                             ("sytem", "system")):
            with self.subTest(typed=typed):
                self.assertUsageError(self.shed_here(typed),
                                      r"^shed: unknown command '%s' \(did you mean '%s'\?\)\n$"
                                      % (typed, meant))

    def test_a_mistyped_option_or_subcommand_gets_a_suggestion(self):
        self.assertUsageError(self.shed_here("list", "--jsno"),
                              r"^shed list: unknown option '--jsno' \(did you mean '--json'\?\)")
        self.assertUsageError(self.shed_here("create", "x", "--imgae", "y"),
                              r"did you mean '--image'\?")
        self.assertUsageError(self.shed_here("images", "prnue"),
                              r"^shed images: unknown subcommand 'prnue' \(did you mean "
                              r"'prune'\?\)")

    def test_nothing_close_gets_the_help_hint_instead(self):
        self.assertUsageError(self.shed_here("frobnicate"),
                              r"^shed: unknown command 'frobnicate' \(see 'shed --help'\)\n$")


class UsageErrorTest(clitest.ServerTestCase):
    def test_every_usage_error_is_one_line_on_stderr_and_exit_2(self):
        cases = [
            (["get"], r"missing NAME"),
            (["get", "a", "b"], r"unexpected argument 'b'"),
            (["stop"], r"missing NAME"),
            (["create", "x", "--cpus", "many"], r"invalid --cpus 'many'"),
            (["create", "x", "--image"], r"option '--image' needs a value"),
            (["list", "--json=yes"], r"takes no value"),
            (["tunnel", "x", "80"], r"LOCAL:REMOTE"),
            (["--nope", "list"], r"unknown option '--nope'"),
            (["list", "-x"], r"unknown option '-x'"),
            (["system"], r"missing subcommand \(df, prune\)"),
            (["system", "df", "--until", "1h"], r"only applies to 'system prune'"),
            (["tunnel", "--json", "x", "1:2"], r"does not apply"),
            (["list", "--format", "yaml"], r"unknown format 'yaml'"),
            (["server", "ls"], r"option '--server' does not apply here"),
        ]
        for args, pattern in cases:
            with self.subTest(args=args):
                self.assertUsageError(self.shed_here(*args), pattern)
        self.assertUsageError(self.shed("server", "add", "x"), r"missing URL")


class JsonTest(clitest.ServerTestCase):
    def test_json_output_is_one_document_with_a_trailing_newline(self):
        write_shed(self.instance_dir, "abe")
        write_shed(self.instance_dir, "bob")
        for args in (["info"], ["list"], ["get", "abe"], ["images"], ["system", "df"],
                     ["sessions"], ["images", "prune", "--dry-run"]):
            with self.subTest(args=args):
                self.assertJsonOutput(self.shed_here("--json", *args))
        deleted = self.assertJsonOutput(self.shed_here("rm", "abe", "--json"))
        self.assertEqual(deleted, {"name": "abe", "deleted": True})
        self.assertEqual(self.assertJsonOutput(self.shed_here("rm", "bob", "--json")),
                         {"name": "bob", "deleted": True})


class SeveralNamesTest(clitest.ServerTestCase):
    def test_rm_reports_each_name_and_fails_when_one_failed(self):
        for name in ("one", "two"):
            write_shed(self.instance_dir, name)
        result = self.shed_here("rm", "one", "missing", "two")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "deleted one\ndeleted two\n")
        self.assertRegex(result.stderr, r"^shed: SHED_NOT_FOUND: [^\n]*missing[^\n]*\n$")
        for name in ("one", "two"):
            self.assertFalse(os.path.exists(os.path.join(self.instance_dir, name)))

    def test_stop_of_several_names_tries_every_one(self):
        for name in ("a", "b"):
            write_shed(self.instance_dir, name)
        result = self.shed_here("stop", "a", "b")
        self.assertEqual(result.returncode, 1)
        errors = result.stderr.splitlines()
        self.assertEqual(len(errors), 2, result.stderr)
        for error in errors:
            self.assertRegex(error, r"^shed: SHED_ALREADY_STOPPED: ")
        result = self.shed_here("start", "a", "nope")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 2, result.stderr)


class HelpTest(clitest.ServerTestCase):
    def test_help_command_is_the_commands_help(self):
        for words in (["stop"], ["images", "prune"], ["server", "add"]):
            with self.subTest(words=words):
                by_command = self.shed(*words, "--help")
                by_help = self.shed("help", *words)
                self.assertEqual(by_help.returncode, 0, by_help.stderr)
                self.assertEqual(by_help.stdout, by_command.stdout)
                self.assertTrue(by_help.stdout.startswith("Usage: shed %s" % " ".join(words)))
        program = self.shed("help")
        self.assertEqual(program.returncode, 0)
        self.assertEqual(program.stdout, self.shed("--help").stdout)
        for word in ("list, ls, ps", "delete, rm", "Exit status"):
            self.assertIn(word, program.stdout)
        self.assertUsageError(self.shed("help", "stpo"), r"did you mean 'stop'")

    def test_help_lists_only_backends_the_server_runs(self):
        create_help = self.shed("create", "--help").stdout
        for backend in ("qemu", "firecracker", "vz"):
            self.assertNotIn(backend, create_help)
        info = self.assertJsonOutput(self.shed_here("info", "--json"))
        self.assertEqual(info["backends"], ["container"])
        self.assertRegex(self.shed_here("info").stdout, r"(?m)^backends:\s+container$")


class ClientYamlTest(clitest.ServerTestCase):
    def test_server_add_writes_a_private_client_yaml_the_next_command_uses(self):
        result = self.shed("server", "add", "here", self.hostport)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("the default", result.stdout)
        mode = stat.S_IMODE(os.stat(self.user.client_yaml).st_mode)
        self.assertEqual(mode, 0o600)
        # no -s: the default written by server add
        result = self.shed("info")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("cli-test", result.stdout)
        result = self.shed("server", "add", "lab", "http://127.0.0.1:%d" % shedserver.free_port(),
                           "--token", "s3cret")
        self.assertEqual(result.returncode, 0, result.stderr)
        listing = self.assertJsonOutput(self.shed("server", "ls", "--json"))
        self.assertEqual(listing["default"], "here")
        self.assertEqual([(s["name"], s["token"]) for s in listing["servers"]],
                         [("here", False), ("lab", True)])
        self.assertNotIn("s3cret", self.shed("server", "ls").stdout)
        with open(self.user.client_yaml) as f:
            self.assertIn("s3cret", f.read())
        # -s NAME, and the token goes with it; lab is down: the hint names it
        result = self.shed("-s", "lab", "info")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"^shed: CONNECTION: cannot connect to http://127\.0\.0\.1"
                         r":\d+ \(server \"lab\" of %s\): [^\n]+; is shed-server running "
                         r"there\?[^\n]*\n$" % self.user.client_yaml)
        result = self.shed("server", "add", "lab", "http://other:1", "--default")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("updated", result.stdout)
        self.assertEqual(self.assertJsonOutput(self.shed("server", "--json"))["default"], "lab")
        result = self.shed("server", "rm", "lab", "nosuch")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "removed server lab\n")
        self.assertRegex(result.stderr, r"^shed: CONFIG: no server \"nosuch\"")
        listing = self.assertJsonOutput(self.shed("server", "ls", "--json"))
        self.assertEqual([s["name"] for s in listing["servers"]], ["here"])
        self.assertIsNone(listing["default"])

    def test_a_name_that_is_neither_configured_nor_host_port(self):
        result = self.shed("-s", "box", "info")
        self.assertEqual(result.returncode, 1)
        self.assertRegex(result.stderr, r"^shed: CONFIG: server \"box\": cannot read [^\n]*"
                         r"HOST:PORT[^\n]*\n$")
        self.assertUsageError(self.shed("server", "add", "bad:name", "http://x:1"),
                              r"invalid server name")
        self.assertUsageError(self.shed("server", "add", "ok", "ftp://x"), r"only http")

    def test_the_default_server_down_is_explained(self):
        os.makedirs(os.path.dirname(self.user.client_yaml))
        with open(self.user.client_yaml, "w") as f:
            f.write("default: dead\nservers:\n  dead: http://127.0.0.1:%d\n"
                    % shedserver.free_port())
        result = self.shed("list")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertRegex(result.stderr, r"cannot connect to http://127\.0\.0\.1:\d+ \(server "
                         r"\"dead\" of [^)]+\): .*is shed-server running there\? Pick a server "
                         r"with -s HOST:PORT or 'shed server add NAME URL'\.\n$")


class BaseImageTest(clitest.ServerTestCase):
    """_base, the cache of base_image, is shown as the base image wherever it appears."""

    extra_config = "base_image: /nonexistent/base.ext4\nimages:\n  dev: /nonexistent/dev.ext4\n"

    def test_images_and_get_mark_the_base_image(self):
        images = self.assertJsonOutput(self.shed_here("images", "--json"))["images"]
        self.assertEqual([(i["name"], i.get("is_base", False)) for i in images],
                         [("dev", False), ("_base", True)])
        table = self.shed_here("images").stdout.splitlines()
        self.assertRegex(table[2], r"^_base +no +- +base_image ")
        write_shed(self.instance_dir, "plain", image="_base")
        self.assertRegex(self.shed_here("get", "plain").stdout,
                         r"(?m)^image +_base \(the server's base_image\)$")


class PruneTest(clitest.ServerTestCase):
    def test_an_empty_prune_asks_nothing(self):
        result = self.shed_here("system", "prune", input_text="y\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("Proceed", result.stdout)
        self.assertEqual(result.stdout.splitlines()[-1], "Nothing to prune.")
        result = self.shed_here("images", "prune")
        self.assertEqual((result.returncode, result.stdout), (0, "Nothing to prune.\n"))


if __name__ == "__main__":
    reason = clitest.programs_missing()
    if reason:
        sys.exit(testrun.skip_all(reason))
    sys.exit(testrun.main())
