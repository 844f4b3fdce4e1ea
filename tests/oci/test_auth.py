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
