"""Registries over HTTPS as users meet them: a loopback docker-registry serving a certificate
signed by a test CA (tls_registry.py), server.yaml's registry_ca, and the one-line errors for a
certificate the client does not trust (unknown CA, expired)."""

import os
import subprocess
import tempfile
import shutil

import ocitest
from ocitest import layer, shedtest
import tls_registry


def push_small_image(pusher, repo):
    return shedtest.push_image(pusher, repo, "v1",
                               [(layer({"etc/motd": "over https\n", "f": os.urandom(3000)}),
                                 "gzip")])


class TlsTestCase(ocitest.PullTestCase):
    def write_config(self, registry_ca=None):
        """server.yaml for this test's data dir; registry_ca: {host: CA file}."""
        path = os.path.join(self.make_data_dir(), "server.yaml")
        with open(path, "w") as f:
            f.write("data_dir: %s\nbase_image: null\n" % self.data_dir)
            if registry_ca:
                f.write("registry_ca:\n")
                for host, ca_file in registry_ca.items():
                    f.write('  "%s": %s\n' % (host, ca_file))
        return path

    def pull_with(self, config, ref, wrap=None):
        cmd = [ocitest.SHED_SERVER, "pull", "--config", config, ref]
        if wrap is not None:
            cmd = wrap(cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


class TrustedRegistryTest(TlsTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="shed-tls-test-")
        cls.ca = tls_registry.TestCA(os.path.join(cls.workdir, "ca"))
        cls.other_ca = tls_registry.TestCA(os.path.join(cls.workdir, "other-ca"),
                                           name="someone else's CA")
        cls.registry = tls_registry.tls_registry(cls.ca).start()
        pusher = shedtest.Pusher(cls.registry.url, cafile=cls.ca.ca_pem)
        cls.digest, _, cls.descs = push_small_image(pusher, "tls/img")
        cls.ref = "%s/tls/img:v1" % cls.registry.host
        cls.named_ref = "%s:%d/tls/img:v1" % (tls_registry.TEST_HOST_NAME, cls.registry.port)

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def by_name(self, cmd):
        if os.geteuid() != 0:
            self.skipTest("needs root: the registry is reached by name in a mount namespace")
        if shutil.which("unshare") is None:
            self.skipTest("unshare is not installed")
        return tls_registry.hosts_namespace_command(self.make_data_dir(), cmd)

    def test_pull_over_https_with_the_configured_ca(self):
        config = self.write_config({self.registry.host: self.ca.ca_pem})
        result = self.pull_with(config, self.ref)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), self.digest)
        layer_digest = self.descs[0]["digest"]
        self.assertEqual(ocitest.sha256_of(self.blob_bytes(layer_digest)), layer_digest)

    def test_a_registry_named_in_registry_ca_is_spoken_to_over_https_even_on_loopback(self):
        # The registry speaks HTTPS only: plain HTTP (the loopback default) gets HTTP 400.
        plain = self.pull_with(self.write_config(), self.ref)
        self.assertNotEqual(plain.returncode, 0)
        self.assertNotIn("certificate", plain.stderr)
        config = self.write_config({self.registry.host: self.ca.ca_pem})
        self.assertEqual(self.pull_with(config, self.ref).returncode, 0)

    def test_without_the_ca_the_pull_fails_with_one_certificate_line(self):
        result = self.pull_with(self.write_config(), self.named_ref, wrap=self.by_name)
        line = self.assert_one_line_error(result, "REGISTRY")
        authority = "%s:%d" % (tls_registry.TEST_HOST_NAME, self.registry.port)
        self.assertIn("registry %s: its TLS certificate is not trusted" % authority, line)
        self.assertIn('registry_ca: {"%s": /path/to/ca.pem}' % authority, line)
        self.assertEqual(self.store_files(), [])

    def test_by_name_with_its_ca_the_pull_works(self):
        authority = "%s:%d" % (tls_registry.TEST_HOST_NAME, self.registry.port)
        config = self.write_config({authority: self.ca.ca_pem})
        result = self.pull_with(config, self.named_ref, wrap=self.by_name)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), self.digest)

    def test_a_ca_that_did_not_sign_the_certificate_is_named(self):
        config = self.write_config({self.registry.host: self.other_ca.ca_pem})
        line = self.assert_one_line_error(self.pull_with(config, self.ref), "REGISTRY")
        self.assertIn("registry %s: its TLS certificate is not trusted by the CA in %s"
                      % (self.registry.host, self.other_ca.ca_pem), line)

    def test_convert_and_pull_images_use_registry_ca_too(self):
        config = self.write_config({self.registry.host: self.ca.ca_pem})
        with open(config, "a") as f:
            f.write("rootfs_size: 64M\nimages:\n  secure: %s\n" % self.ref)
        done = subprocess.run([ocitest.SHED_SERVER, "pull-images", "--config", config],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(os.path.isfile(os.path.join(self.data_dir, "images",
                                                    "secure-rootfs.ext4")))
        out = os.path.join(self.data_dir, "one.ext4")
        done = subprocess.run([ocitest.SHED_SERVER, "convert", "--config", config, "--size",
                               "64M", "-o", out, self.ref], capture_output=True, text=True,
                              timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr)


class ExpiredCertificateTest(TlsTestCase):
    @classmethod
    def setUpClass(cls):
        cls.workdir = tempfile.mkdtemp(prefix="shed-tls-expired-")
        cls.ca = tls_registry.TestCA(cls.workdir)
        cls.registry = tls_registry.tls_registry(cls.ca, expired=True).start()
        pusher = shedtest.Pusher(cls.registry.url, verify=False)
        push_small_image(pusher, "tls/old")
        cls.ref = "%s/tls/old:v1" % cls.registry.host

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()
        shutil.rmtree(cls.workdir, ignore_errors=True)

    def test_an_expired_certificate_is_one_line_that_says_so(self):
        config = self.write_config({self.registry.host: self.ca.ca_pem})
        line = self.assert_one_line_error(self.pull_with(config, self.ref), "REGISTRY")
        self.assertIn("registry %s: its TLS certificate is not trusted because it has expired"
                      % self.registry.host, line)
        self.assertEqual(self.store_files(), [])


if __name__ == "__main__":
    ocitest.main()
