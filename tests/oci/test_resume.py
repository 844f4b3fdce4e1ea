"""Interrupted and failing transfers, through a fault-injecting proxy in front of a real
registry: Range resume, Retry-After, 5xx retries, servers that ignore Range, partial files
left by an earlier pull, SIGINT, the request count of a re-pull, and registries that never
give up: one byte per connection (minimum progress per attempt), a byte at a time (the
pull's deadline), sizes a manifest declares but cannot back (caps, free space)."""

import json
import os
import signal
import subprocess
import time

import ocitest
from ocitest import layer, sha256_of, shedtest
from fault_proxy import FaultProxy

BIG = 2_000_000


class ProxiedImageTest(ocitest.PullTestCase):
    """A registry with a 2 MB uncompressed layer and a small gzip one, behind a fault proxy."""

    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry().start()
        pusher = shedtest.Pusher(cls.registry.url)
        big = layer({"big/random": os.urandom(BIG)})
        small = layer({"small/file": "small\n"})
        cls.digest, _, descs = shedtest.push_image(pusher, "resume/img", "v1",
                                                   [(big, "none"), (small, "gzip")])
        cls.big_digest, cls.big_size = descs[0]["digest"], descs[0]["size"]
        cls.big_blob = big

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def setUp(self):
        super().setUp()
        self.proxy = FaultProxy(self.registry.host).start()
        self.addCleanup(self.proxy.stop)
        self.ref = "%s/resume/img:v1" % self.proxy.host

    def big_requests(self):
        return self.proxy.requests(self.big_digest)

    def assert_big_blob_stored(self):
        self.assertEqual(self.blob_bytes(self.big_digest), self.big_blob)
        self.assertFalse([f for f in self.store_files() if f.endswith(".tmp")])

    def write_partial_tmp(self, data):
        os.makedirs(os.path.dirname(self.blob_path(self.big_digest)), exist_ok=True)
        with open(self.blob_path(self.big_digest) + ".tmp", "wb") as f:
            f.write(data)


class ResumeTest(ProxiedImageTest):
    def test_cut_connection_resumes_with_range_from_where_it_stopped(self):
        self.proxy.add_fault("cut", self.big_digest, after=700_000)
        result = self.pull_ok(self.ref)
        self.assertEqual(result.stdout.strip(), self.digest)
        requests = self.big_requests()
        self.assertEqual([(r["range"], r["bytes"]) for r in requests],
                         [(None, 700_000), ("bytes=700000-", self.big_size - 700_000)])
        self.assertEqual(requests[1]["status"], 206)
        self.assert_big_blob_stored()

    def test_429_with_retry_after_is_retried(self):
        self.proxy.add_fault("status", "/manifests/", status=429, retry_after=1)
        self.assertEqual(self.pull_ok(self.ref).stdout.strip(), self.digest)
        self.assertEqual([r["status"] for r in self.proxy.requests("/manifests/")], [429, 200])

    def test_429_on_a_blob_is_retried(self):
        self.proxy.add_fault("status", self.big_digest, status=429, retry_after=1)
        self.pull_ok(self.ref)
        self.assertEqual([r["status"] for r in self.big_requests()], [429, 200])
        self.assert_big_blob_stored()

    def test_503_on_a_blob_is_retried_with_backoff(self):
        self.proxy.add_fault("status", self.big_digest, status=503, times=2)
        self.pull_ok(self.ref)
        self.assertEqual([r["status"] for r in self.big_requests()], [503, 503, 200])
        self.assert_big_blob_stored()

    def test_cut_manifest_response_is_retried(self):
        self.proxy.add_fault("cut", "/manifests/", after=10)
        self.assertEqual(self.pull_ok(self.ref).stdout.strip(), self.digest)
        self.assertEqual(len(self.proxy.requests("/manifests/")), 2)

    def test_persistent_server_errors_give_up_with_one_line(self):
        self.proxy.add_fault("status", self.big_digest, status=500, times=None)
        line = self.assert_one_line_error(self.pull(self.ref), "REGISTRY")
        self.assertIn("HTTP 500", line)
        self.assertNotIn(self.big_digest[7:], [f for f in self.store_files()])

    def test_partial_tmp_left_by_an_earlier_pull_is_resumed(self):
        self.write_partial_tmp(self.big_blob[:1_000_000])
        out = self.pull_json(self.ref)
        requests = self.big_requests()
        self.assertEqual([(r["range"], r["status"], r["bytes"]) for r in requests],
                         [("bytes=1000000-", 206, self.big_size - 1_000_000)])
        self.assertEqual(out["bytes_fetched"],
                         self.big_size - 1_000_000 + out["layers"][1]["size"] + out["config_size"])
        self.assert_big_blob_stored()

    def test_server_ignoring_range_restarts_cleanly(self):
        self.write_partial_tmp(self.big_blob[:1_000_000])
        self.proxy.add_fault("ignore_range", self.big_digest)
        self.pull_ok(self.ref)
        self.assertEqual([(r["status"], r["bytes"]) for r in self.big_requests()],
                         [(200, self.big_size)])
        self.assert_big_blob_stored()

    def test_corrupt_partial_tmp_is_discarded_and_downloaded_again(self):
        self.write_partial_tmp(os.urandom(1_000_000))
        self.pull_ok(self.ref)
        requests = self.big_requests()
        self.assertEqual([r["range"] for r in requests], ["bytes=1000000-", None])
        self.assert_big_blob_stored()

    def test_repull_makes_one_manifest_request_and_no_blob_requests(self):
        self.pull_ok(self.ref)
        self.proxy.clear()
        out = self.pull_json(self.ref)
        self.assertEqual(out["bytes_fetched"], 0)
        self.assertEqual([(r["method"], "/manifests/" in r["path"]) for r in self.proxy.requests()],
                         [("GET", True)])

    def test_resolve_makes_one_manifest_request(self):
        result = self.resolve(self.ref)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), self.digest)
        self.assertEqual([r["path"].split("/")[-2] for r in self.proxy.requests()], ["manifests"])

    def test_concurrent_pulls_of_one_image_fetch_each_blob_once(self):
        self.proxy.add_fault("throttle", self.big_digest, chunk=65536, delay=0.01, times=None)
        procs = [subprocess.Popen([ocitest.SHED_SERVER, "pull", "--data-dir", self.data_dir,
                                   self.ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0, stderr)
            self.assertEqual(stdout.strip(), self.digest)
        self.assertEqual(len(self.big_requests()), 1)
        self.assert_big_blob_stored()

    def test_sigint_leaves_the_partial_download_and_the_next_pull_resumes(self):
        self.proxy.add_fault("throttle", self.big_digest, chunk=32768, delay=0.05)
        proc = subprocess.Popen([ocitest.SHED_SERVER, "pull", "--data-dir", self.data_dir,
                                 self.ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        tmp = self.blob_path(self.big_digest) + ".tmp"
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(tmp) and os.path.getsize(tmp) > 100_000):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("INTERRUPTED", stderr)
        partial = os.path.getsize(tmp)
        self.assertGreater(partial, 0)
        self.assertLess(partial, self.big_size)
        self.assertEqual(self.ref_entries(), {})
        # the proxy logs the cut-short request once its writes fail; wait for that
        deadline = time.time() + 60
        while time.time() < deadline and not self.big_requests():
            time.sleep(0.02)
        self.proxy.clear()
        self.assertEqual(self.pull_ok(self.ref).stdout.strip(), self.digest)
        self.assertEqual([(r["range"], r["bytes"]) for r in self.big_requests()],
                         [("bytes=%d-" % partial, self.big_size - partial)])
        self.assert_big_blob_stored()


class HostileRegistryTest(ProxiedImageTest):
    """Registries that would keep a pull going forever, or fill the disk."""

    def config(self, text):
        path = os.path.join(self.data_dir, "server.yaml")
        with open(path, "w") as f:
            f.write(text)
        return ["--config", path]

    def timed_pull(self, *args):
        start = time.monotonic()
        result = self.pull(self.ref, *args)
        return result, time.monotonic() - start

    def test_one_byte_per_connection_runs_out_of_attempts(self):
        self.proxy.add_fault("cut", self.big_digest, after=1, times=None)
        result, seconds = self.timed_pull()
        line = self.assert_one_line_error(result, "REGISTRY")
        self.assertIn("giving up after 6 attempts", line)
        print("failed after %.1f s" % seconds)
        self.assertEqual([r["bytes"] for r in self.big_requests()], [1] * 6)
        self.assertEqual(self.ref_entries(), {})

    def test_a_registry_dripping_one_byte_at_a_time_fails_at_the_pull_deadline(self):
        # The low speed limit would end the attempt after a minute: the deadline comes first.
        args = self.config("pull_timeout_seconds: 5\npull_low_speed_time: 600\n")
        self.proxy.add_fault("drip", self.big_digest, delay=0.05, times=None)
        result, seconds = self.timed_pull(*args)
        line = self.assert_one_line_error(result, "REGISTRY")
        self.assertIn("did not finish within 5 s (pull_timeout_seconds)", line)
        print("failed after %.1f s (deadline 5 s)" % seconds)
        self.assertGreaterEqual(seconds, 4.5)
        self.assertEqual(self.ref_entries(), {})

    def test_attempts_under_the_low_speed_limit_count_against_the_retries(self):
        args = self.config("pull_low_speed_limit: 100000\npull_low_speed_time: 1\n")
        self.proxy.add_fault("drip", self.big_digest, delay=0.05, times=None)
        result, _ = self.timed_pull(*args)
        line = self.assert_one_line_error(result, "REGISTRY")
        self.assertIn("giving up after 6 attempts", line)
        self.assertEqual(len(self.big_requests()), 6)

    def declared(self, size):
        """An image whose manifest declares size bytes for a small layer."""
        repo = "declared/img%d" % size
        pusher = shedtest.Pusher(self.registry.url)
        small = layer({"f": "small\n"})
        blob = shedtest.compress(small, "gzip")
        digest = pusher.push_blob(repo, blob)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256_of(small)]}}).encode()
        config_digest = pusher.push_blob(repo, config)
        manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
                    "config": {"mediaType": shedtest.OCI_CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": digest, "size": size}]}
        pusher.push_manifest(repo, "v1", json.dumps(manifest).encode(), shedtest.OCI_MANIFEST)
        return "%s/%s:v1" % (self.proxy.host, repo), digest, len(blob)

    def test_a_layer_larger_than_max_layer_bytes_is_refused_before_it_is_fetched(self):
        ref, digest, _ = self.declared(1 << 40)
        result = self.pull(ref)
        line = self.assert_one_line_error(result, "UNSUPPORTED")
        self.assertIn("more than max_layer_bytes", line)
        self.assertEqual(self.proxy.requests(digest), [])
        self.assertEqual(self.store_files(), [])

    def test_a_layer_larger_than_the_free_space_is_refused_before_it_is_fetched(self):
        ref, digest, _ = self.declared(1 << 55)
        args = self.config("max_layer_bytes: 65536T\nmax_image_bytes: 65536T\n")
        line = self.assert_one_line_error(self.pull(ref, *args), "NO_SPACE")
        self.assertIn("free", line)
        self.assertEqual(self.proxy.requests(digest), [])

    def test_a_blob_larger_than_declared_is_cut_off_at_the_declared_size(self):
        ref, digest, real = self.declared(10)
        line = self.assert_one_line_error(self.pull(ref), "INTEGRITY")
        self.assertIn("larger than the 10 bytes the manifest says", line)
        self.assertNotIn(digest.split(":")[1], self.store_files())
        self.assertNotIn(digest.split(":")[1] + ".tmp", self.store_files())


if __name__ == "__main__":
    ocitest.main()
