"""shed-server pull against a real docker-registry on loopback: image formats, layer
compressions, platforms, digest pinning, integrity, the store and ref index, CLI behaviour."""

import json
import os
import subprocess

import ocitest
import terminal
from ocitest import layer, sha256_of, shedtest


FOREIGN_URLS_ALLOWED = ("validation:\n  manifests:\n    urls:\n      allow:\n"
                        "        - ^https://example\\.invalid/\n")


class PullTest(ocitest.PullTestCase):
    @classmethod
    def setUpClass(cls):
        # foreign layers are only accepted with URLs the registry is told to allow
        cls.registry = shedtest.Registry(extra_config=FOREIGN_URLS_ALLOWED).start()
        cls.pusher = shedtest.Pusher(cls.registry.url)

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def ref(self, repo, tag):
        return "%s/%s:%s" % (self.registry.host, repo, tag)

    # ---- images and layers ------------------------------------------------------------
    def test_single_layer_image_lands_in_the_store(self):
        tar = layer({"etc/hostname": "single\n"})
        digest, manifest, descs = shedtest.push_image(self.pusher, "single/img", "v1",
                                                      [(tar, "gzip")])
        result = self.pull_ok(self.ref("single/img", "v1"))
        self.assertEqual(result.stdout.strip(), digest)
        self.assertEqual(self.blob_bytes(digest), manifest)
        self.assertEqual(sha256_of(self.blob_bytes(descs[0]["digest"])), descs[0]["digest"])
        config_digest = json.loads(manifest)["config"]["digest"]
        self.assertIn(config_digest.split(":")[1], self.store_files())
        self.assertFalse([f for f in self.store_files() if ".tmp" in f])

    def test_images_dir_of_the_config_is_where_the_blobs_land_and_the_server_reads(self):
        tar = layer({"etc/hostname": "elsewhere\n"})
        digest, _, descs = shedtest.push_image(self.pusher, "where/img", "v1", [(tar, "gzip")])
        images_dir = os.path.join(self.data_dir, "elsewhere")
        config = os.path.join(self.data_dir, "server.yaml")
        with open(config, "w") as f:
            f.write("data_dir: %s\nimages_dir: %s\n" % (os.path.join(self.data_dir, "data"),
                                                        images_dir))
        result = subprocess.run([ocitest.SHED_SERVER, "pull", "--config", config,
                                 self.ref("where/img", "v1")],
                                capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), digest)
        layer_path = os.path.join(images_dir, "blobs", "sha256", descs[0]["digest"][7:])
        self.assertTrue(os.path.isfile(layer_path))
        self.assertEqual(len(os.listdir(os.path.join(images_dir, "refs"))), 1)
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "data", "images")))
        # the server's own accounting finds the pull there, referenced by its ref
        df = subprocess.run([ocitest.SHED_SERVER, "system", "df", "--json", "--config", config],
                            capture_output=True, text=True, timeout=300)
        self.assertEqual(df.returncode, 0, df.stderr)
        report = json.loads(df.stdout)
        self.assertIn(layer_path, [b["path"] for b in report["blobs"]])
        self.assertEqual([o for o in report["orphans"] if o["kind"] == "blob"], [])

    def test_ref_index_records_canonical_ref_to_manifest_digest(self):
        tar = layer({"a": "ref index\n"})
        digest, _, _ = shedtest.push_image(self.pusher, "refidx/img", "1.0", [(tar, "gzip")])
        self.pull_ok(self.ref("refidx/img", "1.0"))
        canonical = "%s/refidx/img:1.0" % self.registry.host
        escaped = "".join(c if c.isalnum() or c in "._-" else "%%%02X" % ord(c) for c in canonical)
        self.assertEqual(self.ref_entries(), {escaped: digest})

    def test_multi_layer_image_pulls_every_layer_in_order(self):
        layers = [(layer({"l%d/file" % i: os.urandom(50000 + i)}), "gzip") for i in range(4)]
        digest, _, descs = shedtest.push_image(self.pusher, "multi/img", "v1", layers)
        out = self.pull_json(self.ref("multi/img", "v1"))
        self.assertEqual(out["digest"], digest)
        self.assertEqual([l["digest"] for l in out["layers"]], [d["digest"] for d in descs])
        for d in descs:
            self.assertEqual(len(self.blob_bytes(d["digest"])), d["size"])
        self.assertEqual(out["bytes_fetched"],
                         sum(d["size"] for d in descs) + out["config_size"])

    def test_uncompressed_gzip_and_zstd_layers_are_pulled(self):
        for compression in ("none", "gzip", "zstd"):
            with self.subTest(compression=compression):
                tar = layer({"data/%s" % compression: os.urandom(20000)})
                _, _, descs = shedtest.push_image(self.pusher, "comp/" + compression, "v1",
                                                  [(tar, compression)])
                out = self.pull_json(self.ref("comp/" + compression, "v1"))
                self.assertEqual(out["layers"][0]["media_type"],
                                 shedtest.LAYER_TYPES[("oci", compression)])
                blob = self.blob_bytes(descs[0]["digest"])
                self.assertEqual(blob, shedtest.compress(tar, compression)
                                 if compression != "gzip" else blob)
                self.assertEqual(sha256_of(blob), descs[0]["digest"])

    def test_docker_schema2_manifest_is_pulled(self):
        layers = [(layer({"x": "docker\n"}), "gzip"), (layer({"y": "plain\n"}), "none")]
        digest, _, descs = shedtest.push_image(self.pusher, "docker/img", "v2", layers,
                                               fmt="docker")
        out = self.pull_json(self.ref("docker/img", "v2"))
        self.assertEqual(out["digest"], digest)
        self.assertEqual(out["media_type"], shedtest.DOCKER_MANIFEST)
        self.assertEqual([l["media_type"] for l in out["layers"]],
                         [shedtest.LAYER_TYPES[("docker", "gzip")],
                          shedtest.LAYER_TYPES[("docker", "none")]])
        self.assertTrue(os.path.exists(self.blob_path(descs[1]["digest"])))

    # ---- indexes and platforms ----------------------------------------------------------
    def push_two_platform_index(self, repo, fmt="oci", attestation=False):
        amd = shedtest.push_image(self.pusher, repo, "amd64-only",
                                  [(layer({"arch": "amd64\n"}), "gzip")], fmt=fmt,
                                  platform=("linux", "amd64", None))
        arm = shedtest.push_image(self.pusher, repo, "arm64-only",
                                  [(layer({"arch": "arm64\n"}), "gzip")], fmt=fmt,
                                  platform=("linux", "arm64", "v8"))
        entries = []
        if attestation:
            att = shedtest.push_image(self.pusher, repo, "att",
                                      [(layer({"att": "x"}), "gzip")], fmt=fmt,
                                      platform=("unknown", "unknown", None))
            entries.append((att[0], att[1], {"os": "unknown", "architecture": "unknown"}))
        entries += [(amd[0], amd[1], {"os": "linux", "architecture": "amd64"}),
                    (arm[0], arm[1], {"os": "linux", "architecture": "arm64", "variant": "v8"})]
        index = shedtest.push_index(self.pusher, repo, "multi", entries, fmt=fmt)
        return index, amd, arm

    def test_index_pulls_the_requested_platform(self):
        index, amd, arm = self.push_two_platform_index("idx/img")
        for platform, expected in (("linux/amd64", amd), ("linux/arm64", arm),
                                   ("linux/arm64/v8", arm)):
            with self.subTest(platform=platform):
                data_dir = self.make_data_dir()
                out = self.pull_json(self.ref("idx/img", "multi"), "--platform", platform,
                                     data_dir=data_dir)
                self.assertEqual(out["digest"], expected[0])
                self.assertEqual(out["layers"][0]["digest"], expected[2][0]["digest"])
                # the index itself is kept next to the manifest it resolved to
                self.assertIn(index.split(":")[1], self.store_files(data_dir))
                self.assertEqual(list(self.ref_entries(data_dir).values()), [expected[0]])

    def test_index_default_platform_is_the_host(self):
        _, amd, arm = self.push_two_platform_index("idx/host")
        machine = os.uname().machine
        expected = {"x86_64": amd, "aarch64": arm}.get(machine)
        if expected is None:
            self.skipTest("host architecture %s not in the test index" % machine)
        out = self.pull_json(self.ref("idx/host", "multi"))
        self.assertEqual(out["digest"], expected[0])

    def test_resolve_gives_the_platform_manifest_digest_of_an_index(self):
        _, amd, arm = self.push_two_platform_index("idx/resolve", attestation=True)
        for platform, expected in (("linux/amd64", amd), ("linux/arm64", arm)):
            result = self.resolve(self.ref("idx/resolve", "multi"), platform)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stdout.strip(), expected[0])
        self.assertEqual(self.store_files(), [])

    def test_docker_manifest_list_is_resolved(self):
        _, amd, arm = self.push_two_platform_index("list/img", fmt="docker")
        out = self.pull_json(self.ref("list/img", "multi"), "--platform", "linux/arm64")
        self.assertEqual(out["digest"], arm[0])

    def test_index_skips_unknown_attestation_entries(self):
        _, amd, _ = self.push_two_platform_index("idx/att", attestation=True)
        out = self.pull_json(self.ref("idx/att", "multi"), "--platform", "linux/amd64")
        self.assertEqual(out["digest"], amd[0])
        result = self.pull(self.ref("idx/att", "multi"), "--platform", "unknown/unknown")
        self.assert_one_line_error(result, "UNSUPPORTED")

    def test_missing_platform_error_lists_available_platforms(self):
        self.push_two_platform_index("idx/missing", attestation=True)
        result = self.pull(self.ref("idx/missing", "multi"), "--platform", "linux/s390x")
        line = self.assert_one_line_error(result, "UNSUPPORTED")
        self.assertIn("linux/s390x", line)
        self.assertIn("linux/amd64", line)
        self.assertIn("linux/arm64/v8", line)
        self.assertNotIn("unknown/unknown", line)
        self.assertEqual(self.store_files(), [])

    # ---- digests and integrity ----------------------------------------------------------
    def test_pull_by_pinned_digest(self):
        digest, _, _ = shedtest.push_image(self.pusher, "pin/img", "v1",
                                           [(layer({"p": "pinned\n"}), "gzip")])
        ref = "%s/pin/img@%s" % (self.registry.host, digest)
        self.assertEqual(self.pull_ok(ref).stdout.strip(), digest)
        # tag and digest together: the digest decides
        ref = "%s/pin/img:v1@%s" % (self.registry.host, digest)
        self.assertEqual(self.pull_ok(ref).stdout.strip(), digest)

    def test_pinned_digest_mismatch_is_refused(self):
        digest, manifest, _ = shedtest.push_image(self.pusher, "pin/bad", "v1",
                                                  [(layer({"p": "tamper me\n"}), "gzip")])
        # The registry stores manifests as blobs: change the bytes it will serve.
        path = self.registry.blob_data_path(digest)
        with open(path, "wb") as f:
            f.write(manifest.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
        result = self.pull("%s/pin/bad@%s" % (self.registry.host, digest))
        line = self.assert_one_line_error(result, "INTEGRITY")
        self.assertIn(digest, line)
        self.assertEqual(self.store_files(), [])
        self.assertEqual(self.ref_entries(), {})

    def test_tampered_blob_fails_and_nothing_lands_in_the_store(self):
        base = layer({"base/file": os.urandom(30000)})
        good_digest, _, good_descs = shedtest.push_image(self.pusher, "tamper/img", "base",
                                                         [(base, "gzip")])
        self.pull_ok(self.ref("tamper/img", "base"))
        earlier = {f: self.blob_bytes("sha256:" + f) for f in self.store_files()}
        top = layer({"top/file": os.urandom(40000)})
        digest, _, descs = shedtest.push_image(self.pusher, "tamper/img", "top",
                                               [(base, "gzip"), (top, "none")])
        # flip bytes inside the stored blob, keeping its size
        path = self.registry.blob_data_path(descs[1]["digest"])
        with open(path, "r+b") as f:
            f.seek(20000)
            chunk = f.read(16)
            f.seek(20000)
            f.write(bytes(b ^ 0xFF for b in chunk))
        result = self.pull(self.ref("tamper/img", "top"))
        line = self.assert_one_line_error(result, "INTEGRITY")
        self.assertIn(descs[1]["digest"], line)
        files = self.store_files()
        tampered = descs[1]["digest"].split(":")[1]
        self.assertNotIn(tampered, files)
        self.assertNotIn(tampered + ".tmp", files)
        self.assertNotIn(digest.split(":")[1], files, "manifest of a failed pull was stored")
        self.assertEqual(len(self.ref_entries()), 1, "failed pull recorded a ref")
        for name, data in earlier.items():
            self.assertEqual(self.blob_bytes("sha256:" + name), data)

    def test_foreign_layer_is_refused_with_a_clear_error(self):
        tar = layer({"f": "foreign\n"})
        blob = shedtest.compress(tar, "gzip")
        layer_digest = self.pusher.push_blob("foreign/img", blob)
        config = json.dumps({"architecture": "amd64", "os": "windows",
                             "rootfs": {"type": "layers", "diff_ids": [sha256_of(tar)]}}).encode()
        config_digest = self.pusher.push_blob("foreign/img", config)
        manifest = {"schemaVersion": 2, "mediaType": shedtest.DOCKER_MANIFEST,
                    "config": {"mediaType": shedtest.DOCKER_CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": [{"mediaType":
                                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                                "digest": layer_digest, "size": len(blob),
                                "urls": ["https://example.invalid/layer"]}]}
        self.pusher.push_manifest("foreign/img", "v1", json.dumps(manifest).encode(),
                                  shedtest.DOCKER_MANIFEST)
        line = self.assert_one_line_error(self.pull(self.ref("foreign/img", "v1")), "UNSUPPORTED")
        self.assertIn("foreign", line)
        self.assertEqual(self.store_files(), [])

    def test_unknown_layer_media_type_is_refused(self):
        blob = b"not a tar"
        layer_digest = self.pusher.push_blob("odd/img", blob)
        config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        config_digest = self.pusher.push_blob("odd/img", config)
        manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
                    "config": {"mediaType": shedtest.OCI_CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.example.layer.v1.squashfs",
                                "digest": layer_digest, "size": len(blob),
                                "urls": ["https://example.invalid/layer"]}]}
        self.pusher.push_manifest("odd/img", "v1", json.dumps(manifest).encode(),
                                  shedtest.OCI_MANIFEST)
        line = self.assert_one_line_error(self.pull(self.ref("odd/img", "v1")), "UNSUPPORTED")
        self.assertIn("application/vnd.example.layer.v1.squashfs", line)

    def test_repull_fetches_no_blob_bytes(self):
        layers = [(layer({"r%d" % i: os.urandom(10000)}), "gzip") for i in range(3)]
        digest, _, _ = shedtest.push_image(self.pusher, "repull/img", "v1", layers)
        first = self.pull_json(self.ref("repull/img", "v1"))
        self.assertGreater(first["bytes_fetched"], 0)
        second = self.pull_json(self.ref("repull/img", "v1"))
        self.assertEqual(second["bytes_fetched"], 0)
        self.assertEqual(second["digest"], digest)

    def test_shared_layer_is_stored_once_and_not_fetched_again(self):
        shared = layer({"shared": os.urandom(30000)})
        shedtest.push_image(self.pusher, "share/a", "v1", [(shared, "gzip")])
        _, _, descs = shedtest.push_image(self.pusher, "share/b", "v1",
                                          [(shared, "gzip"), (layer({"b": "b\n"}), "gzip")])
        self.pull_ok(self.ref("share/a", "v1"))
        out = self.pull_json(self.ref("share/b", "v1"))
        self.assertEqual(out["bytes_fetched"], descs[1]["size"] + out["config_size"])

    # ---- errors a user sees ---------------------------------------------------------------
    def test_unknown_tag_is_a_one_line_not_found_error(self):
        shedtest.push_image(self.pusher, "exists/img", "v1", [(layer({"e": "e"}), "gzip")])
        line = self.assert_one_line_error(self.pull(self.ref("exists/img", "nope")),
                                          "IMAGE_NOT_FOUND")
        self.assertIn("exists/img:nope", line)

    def test_bad_references_are_one_line_errors(self):
        for bad in ("UPPER/case", "img:", "a//b", "img@sha256:123", "x y", "img@md5:00"):
            with self.subTest(ref=bad):
                self.assert_one_line_error(self.pull(bad), "INVALID_REF")

    def test_unknown_host_is_a_one_line_error(self):
        line = self.assert_one_line_error(self.pull("registry.invalid/some/img:1"), "REGISTRY")
        self.assertIn("registry.invalid", line)

    def test_unreachable_port_is_a_one_line_error(self):
        port = shedtest.free_port()
        line = self.assert_one_line_error(self.pull("127.0.0.1:%d/some/img:1" % port), "REGISTRY")
        self.assertIn(str(port), line)

    # ---- the command line -------------------------------------------------------------------
    def test_help_lists_the_options(self):
        result = subprocess.run([ocitest.SHED_SERVER, "pull", "--help"], capture_output=True,
                                text=True)
        self.assertEqual(result.returncode, 0)
        for option in ("--platform", "--data-dir", "--creds", "--json"):
            self.assertIn(option, result.stdout)

    def test_usage_errors_exit_2(self):
        for args in ([], ["--bogus", "x"], ["a", "b"], ["--platform"]):
            with self.subTest(args=args):
                result = subprocess.run([ocitest.SHED_SERVER, "pull"] + args,
                                        capture_output=True, text=True)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("shed-server pull", result.stderr)

    def test_options_after_the_reference_and_double_dash(self):
        digest, _, _ = shedtest.push_image(self.pusher, "cli/img", "v1",
                                           [(layer({"c": "cli\n"}), "gzip")])
        result = subprocess.run([ocitest.SHED_SERVER, "pull", self.ref("cli/img", "v1"),
                                 "--data-dir", self.data_dir], capture_output=True, text=True)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), digest)
        result = subprocess.run([ocitest.SHED_SERVER, "pull", "--data-dir", self.data_dir, "--",
                                 self.ref("cli/img", "v1")], capture_output=True, text=True)
        self.assertEqual(result.stdout.strip(), digest)

    def test_non_tty_progress_prints_one_line_per_finished_layer(self):
        layers = [(layer({"p%d" % i: os.urandom(5000)}), "gzip") for i in range(3)]
        _, _, descs = shedtest.push_image(self.pusher, "progress/img", "v1", layers)
        result = self.pull_ok(self.ref("progress/img", "v1"))
        lines = result.stderr.strip().splitlines()
        # a line per finished layer, then the download's summary line
        self.assertEqual(len(lines), 4, result.stderr)
        for d in descs:
            self.assertEqual(len([l for l in lines if d["digest"] in l]), 1)
        self.assertRegex(lines[-1], r"^downloading 3 layer\(s\): .* in [0-9.]+ s")
        self.assertNotIn("\r", result.stderr)
        self.assertNotIn("\x1b", result.stderr)

    def test_tty_progress_is_one_line_below_the_finished_layers(self):
        # (Until issue 12 this drew a bar per layer; now every command draws progress the
        # same way: one line per phase, here the download, with the layers above it.)
        layers = [(layer({"t%d" % i: os.urandom(5000)}), "gzip") for i in range(2)]
        digest, _, descs = shedtest.push_image(self.pusher, "progress/tty", "v1", layers)
        code, output, stdout = terminal.run_on_pty(
            [ocitest.SHED_SERVER, "pull", "--data-dir", self.data_dir,
             self.ref("progress/tty", "v1")], columns=100, stdout_on_pty=False)
        self.assertEqual(code, 0, output)
        self.assertEqual(stdout.strip(), digest)
        shown = terminal.screen(output, columns=100)
        self.assertEqual(len(shown), 3, shown)
        for d in descs:
            self.assertEqual(len([l for l in shown if d["digest"] in l]), 1, shown)
        self.assertRegex(shown[-1], r"^downloading 2 layer\(s\): .* in [0-9.]+ s")
        self.assertIn("[####################] 100%", output)  # the bar was drawn, full
        self.assertTrue(terminal.ends_complete(output), repr(output[-80:]))


if __name__ == "__main__":
    ocitest.main()
