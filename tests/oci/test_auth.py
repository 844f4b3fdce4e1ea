"""Registry authentication: Basic (htpasswd, bcrypt), bearer tokens from a token server on
loopback (distribution's auth.token), credentials from --creds or ~/.docker/config.json, no
Authorization for a redirect target on another host, and no credentials for a token realm
on another origin over plain HTTP unless the registry is listed in insecure_registries (the
token server of these tests is such a realm: another port, plain HTTP)."""

import base64
import json
import os
import subprocess

import ocitest
from ocitest import layer, shedtest
from fault_proxy import FaultProxy
from token_server import TokenServer

USER, PASSWORD = "alice", "s3cret-pass"


def push_small_image(pusher, repo, tag="v1", layers=2):
    return shedtest.push_image(pusher, repo, tag,
                               [(layer({"f%d" % i: os.urandom(4000)}), "gzip")
                                for i in range(layers)])


class BasicAuthTest(ocitest.PullTestCase):
    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry(auth=("basic", USER, PASSWORD)).start()
        cls.pusher = shedtest.Pusher(cls.registry.url, shedtest.Pusher.basic(USER, PASSWORD))
        cls.digest, _, _ = push_small_image(cls.pusher, "private/img")
        cls.ref = "%s/private/img:v1" % cls.registry.host

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def test_basic_auth_with_right_creds_pulls(self):
        result = self.pull_ok(self.ref, "--creds", "%s:%s" % (USER, PASSWORD))
        self.assertEqual(result.stdout.strip(), self.digest)

    def test_basic_auth_with_wrong_creds_is_refused(self):
        line = self.assert_one_line_error(self.pull(self.ref, "--creds", USER + ":wrong"), "AUTH")
        self.assertIn(USER, line)
        self.assertNotIn("wrong", line, "the password must not be echoed")
        self.assertEqual(self.store_files(), [])

    def test_basic_auth_without_creds_says_how_to_give_them(self):
        home = self.make_data_dir()
        line = self.assert_one_line_error(self.pull(self.ref, env={"HOME": home}), "AUTH")
        self.assertIn("--creds", line)

    def test_convert_from_a_private_registry_takes_creds(self):
        out = os.path.join(self.data_dir, "img.ext4")
        base = [ocitest.SHED_SERVER, "convert", "--data-dir", self.data_dir, "--size", "64M",
                "-o", out, self.ref]
        refused = subprocess.run(base + ["--creds", USER + ":wrong"], capture_output=True,
                                 text=True, timeout=300)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("AUTH", refused.stderr)
        self.assertFalse(os.path.exists(out))
        done = subprocess.run(base + ["--creds", "%s:%s" % (USER, PASSWORD)],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr)
        fsck = subprocess.run(["e2fsck", "-fn", out], capture_output=True, text=True)
        self.assertEqual(fsck.returncode, 0, fsck.stdout)

    def test_docker_config_auths_entry_is_used(self):
        home = self.make_data_dir()
        os.makedirs(os.path.join(home, ".docker"))
        token = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode()).decode()
        with open(os.path.join(home, ".docker", "config.json"), "w") as f:
            json.dump({"auths": {"http://" + self.registry.host: {"auth": token},
                                 "other.example": {"auth": "bm9wZTpub3Bl"}}}, f)
        result = self.pull_ok(self.ref, env={"HOME": home})
        self.assertEqual(result.stdout.strip(), self.digest)

    def test_authorization_is_not_sent_to_a_redirect_target_on_another_host(self):
        with FaultProxy(self.registry.host) as proxy:
            proxy.add_fault("redirect", "/blobs/", times=None)
            ref = "%s/private/img:v1" % proxy.host
            result = self.pull_ok(ref, "--creds", "%s:%s" % (USER, PASSWORD))
            self.assertEqual(result.stdout.strip(), self.digest)
            redirected = [e for e in proxy.requests("/_redirected/")]
            self.assertEqual(len(redirected), 3)  # config + 2 layers, served by "storage"
            self.assertTrue(all(e["host"].startswith("localhost:") for e in redirected))
            self.assertFalse([e for e in redirected if e["authorization"]],
                             "Authorization leaked to the redirect target")
            originals = [e for e in proxy.requests("/blobs/") if not e["redirected"]]
            self.assertTrue(originals and all(e["authorization"] for e in originals
                                              if e["status"] == 307))


HELPER_SCRIPT = """#!/bin/sh
# A docker credential helper for the tests: logs how it was called, answers from its table.
read -r server || true
echo "$*|$server" >> "%(log)s"
case "$server" in
%(cases)s
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


class CredentialHelperTest(ocitest.PullTestCase):
    """credsStore / credHelpers of ~/.docker/config.json: docker-credential-<name> get, with
    the registry on stdin, found on PATH, against a Basic-auth registry."""

    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry(auth=("basic", USER, PASSWORD)).start()
        cls.pusher = shedtest.Pusher(cls.registry.url, shedtest.Pusher.basic(USER, PASSWORD))
        cls.digest, _, _ = push_small_image(cls.pusher, "helped/img")
        cls.ref = "%s/helped/img:v1" % cls.registry.host

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def setUp(self):
        super().setUp()
        self.home = self.make_data_dir()
        self.bin = os.path.join(self.home, "bin")
        os.makedirs(os.path.join(self.home, ".docker"))
        os.makedirs(self.bin)
        self.log = os.path.join(self.home, "helper.log")

    def add_helper(self, name, answers, exit_code=0):
        """docker-credential-<name> answering {server: (user, secret)}; others: not found."""
        cases = "".join(
            '  "%s") printf \'{"ServerURL":"%s","Username":"%s","Secret":"%s"}\'; exit %d ;;\n'
            % (server, server, user, secret, exit_code)
            for server, (user, secret) in answers.items())
        path = os.path.join(self.bin, "docker-credential-" + name)
        with open(path, "w") as f:
            f.write(HELPER_SCRIPT % {"log": self.log, "cases": cases})
        os.chmod(path, 0o755)

    def write_docker_config(self, config):
        with open(os.path.join(self.home, ".docker", "config.json"), "w") as f:
            json.dump(config, f)

    def pull_as_user(self):
        env = {"HOME": self.home, "PATH": self.bin + os.pathsep + os.environ["PATH"]}
        return self.pull(self.ref, env=env)

    def helper_calls(self):
        with open(self.log) as f:
            return f.read().splitlines()

    def test_creds_store_answers_for_the_registry(self):
        self.add_helper("shedstore", {self.registry.host: (USER, PASSWORD)})
        self.write_docker_config({"auths": {self.registry.host: {}}, "credsStore": "shedstore"})
        result = self.pull_as_user()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), self.digest)
        self.assertEqual(self.helper_calls(), ["get|" + self.registry.host])

    def test_cred_helpers_entry_of_the_registry_wins_over_creds_store(self):
        self.add_helper("right", {self.registry.host: (USER, PASSWORD)})
        self.add_helper("wrong", {self.registry.host: (USER, "not-it")})
        self.write_docker_config({"credsStore": "wrong",
                                  "credHelpers": {self.registry.host: "right",
                                                  "other.example": "wrong"}})
        result = self.pull_as_user()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.helper_calls(), ["get|" + self.registry.host])

    def test_a_helper_without_credentials_means_anonymous(self):
        self.add_helper("empty", {})
        self.write_docker_config({"credsStore": "empty"})
        line = self.assert_one_line_error(self.pull_as_user(), "AUTH")
        self.assertIn("requires authentication", line)
        self.assertEqual(self.helper_calls(), ["get|" + self.registry.host])

    def test_a_failing_helper_is_one_line_naming_it(self):
        self.add_helper("broken", {self.registry.host: (USER, PASSWORD)}, exit_code=3)
        self.write_docker_config({"credsStore": "broken"})
        line = self.assert_one_line_error(self.pull_as_user(), "AUTH")
        self.assertIn("credential helper docker-credential-broken failed (exit 3)", line)

    def test_a_helper_not_on_path_is_named(self):
        self.write_docker_config({"credsStore": "nowhere"})
        line = self.assert_one_line_error(self.pull_as_user(), "AUTH")
        self.assertIn("docker-credential-nowhere", line)
        self.assertIn("not on PATH", line)

    def test_a_helper_that_says_too_much_is_cut_off(self):
        path = os.path.join(self.bin, "docker-credential-chatty")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nhead -c 200000 /dev/zero\n")
        os.chmod(path, 0o755)
        self.write_docker_config({"credsStore": "chatty"})
        line = self.assert_one_line_error(self.pull_as_user(), "AUTH")
        self.assertIn("docker-credential-chatty wrote more than 65536 bytes", line)

    def test_a_helper_name_cannot_be_a_path(self):
        self.write_docker_config({"credsStore": "../../bin/sh"})
        line = self.assert_one_line_error(self.pull_as_user(), "AUTH")
        self.assertIn("invalid credential helper name", line)


class TokenRealmTestCase(ocitest.PullTestCase):
    """Pulls whose credentials may go to the test's plain-HTTP token server: the registry is
    listed in insecure_registries of the config given with --config."""

    def trusting_config(self):
        path = os.path.join(self.make_data_dir(), "server.yaml")
        with open(path, "w") as f:
            f.write("insecure_registries: [\"%s\"]\n" % self.registry.host)
        return ["--config", path]

    def pull_with_creds(self, creds, **kwargs):
        return self.pull(self.ref, "--creds", creds, *self.trusting_config(), **kwargs)


class TokenAuthTest(TokenRealmTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens = TokenServer(users={USER: PASSWORD}, allow_anonymous=True).start()
        cls.registry = shedtest.Registry(auth=("token", cls.tokens.registry_auth())).start()
        push_auth = cls.tokens.bearer_for("repository:tok/img:pull,push", USER)
        cls.pusher = shedtest.Pusher(cls.registry.url, push_auth)
        cls.digest, _, cls.descs = push_small_image(cls.pusher, "tok/img", layers=3)
        cls.ref = "%s/tok/img:v1" % cls.registry.host

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        cls.tokens.stop()

    def setUp(self):
        super().setUp()
        with self.tokens.lock:
            self.tokens.requests.clear()

    def test_anonymous_bearer_token_pull(self):
        result = self.pull_ok(self.ref, env={"HOME": self.make_data_dir()})
        self.assertEqual(result.stdout.strip(), self.digest)
        self.assertEqual(self.tokens.requests, [(None, "repository:tok/img:pull", True)])

    def test_token_is_reused_for_every_blob_of_a_pull(self):
        out = self.pull_json(self.ref, "--creds", "%s:%s" % (USER, PASSWORD),
                             *self.trusting_config())
        self.assertEqual(len(out["layers"]), 3)
        self.assertEqual(len(self.tokens.requests), 1, self.tokens.requests)

    def test_bearer_token_with_right_creds(self):
        result = self.pull_with_creds("%s:%s" % (USER, PASSWORD))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.tokens.requests, [(USER, "repository:tok/img:pull", True)])

    def test_bearer_token_with_wrong_creds_is_refused(self):
        line = self.assert_one_line_error(self.pull_with_creds(USER + ":nope"), "AUTH")
        self.assertIn("token server", line)
        self.assertEqual(self.store_files(), [])

    def test_credentials_never_go_to_a_plain_http_realm_on_another_origin(self):
        line = self.assert_one_line_error(
            self.pull(self.ref, "--creds", "%s:%s" % (USER, PASSWORD)), "AUTH")
        self.assertIn("over plain HTTP on another origin: refused", line)
        self.assertIn("insecure_registries", line)
        self.assertNotIn(PASSWORD, line)
        self.assertEqual(self.tokens.requests, [], "the token server was asked")
        self.assertEqual(self.store_files(), [])


class TokenAuthPrivateTest(TokenRealmTestCase):
    """A token server that refuses anonymous access."""

    @classmethod
    def setUpClass(cls):
        cls.tokens = TokenServer(users={USER: PASSWORD}, allow_anonymous=False).start()
        cls.registry = shedtest.Registry(auth=("token", cls.tokens.registry_auth())).start()
        push_auth = cls.tokens.bearer_for("repository:priv/img:pull,push", USER)
        cls.digest, _, _ = push_small_image(shedtest.Pusher(cls.registry.url, push_auth),
                                            "priv/img")
        cls.ref = "%s/priv/img:v1" % cls.registry.host

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        cls.tokens.stop()

    def test_private_repository_needs_credentials(self):
        self.assert_one_line_error(self.pull(self.ref, env={"HOME": self.make_data_dir()}), "AUTH")
        result = self.pull_with_creds("%s:%s" % (USER, PASSWORD))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), self.digest)


if __name__ == "__main__":
    ocitest.main()
