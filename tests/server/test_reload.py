"""Config reload of a running `shed-server serve`: SIGHUP and `shed-server reload` re-read
server.yaml; a valid file takes effect for the image list, prune protection and create (keys
that need a restart keep their running values, named); an invalid one is refused with its
error and the old configuration stays; requests that delete images never decide on a stale
file; pull-images tells the running server. One server per data dir.

Run: test_reload.py --shed-server PATH [unittest args]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import shedserver  # noqa: E402
import shedtest  # noqa: E402
import testrun  # noqa: E402

SHED_SERVER = None


def make_cached(images_dir, name, ref, rootfs_size):
    """A cache entry as pull-images leaves it: a (sparse) rootfs and its .source."""
    os.makedirs(images_dir, exist_ok=True)
    path = os.path.join(images_dir, name + "-rootfs.ext4")
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    with open(path + ".source", "w") as f:
        json.dump({"ref": ref, "digest": "sha256:" + "cd" * 32, "rootfs_size": rootfs_size,
                   "created_at": "2026-01-01T00:00:00Z"}, f)
    return path


class ReloadTestCase(unittest.TestCase):
    base_config = "name: before\nrootfs_size: 64M\nbase_image: null\ndefault_cpus: 1\n"

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="shed-reload-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.data_dir = os.path.join(self.work, "data")
        self.images_dir = os.path.join(self.data_dir, "images")
        self.server = shedserver.ServerProcess(SHED_SERVER, self.data_dir, self.base_config,
                                               stop_timeout=120)
        self.server.start()
        self.addCleanup(self.stop_server)

    def stop_server(self):
        code = self.server.stop()
        shedserver.force_cleanup(self.data_dir)
        self.assertEqual(code, 0, "the server did not exit cleanly:\n" + self.server.log())

    def write_config(self, text):
        with open(self.server.config, "w") as f:
            f.write(text)

    def reload(self, *extra):
        return subprocess.run([SHED_SERVER, "reload", "--config", self.server.config,
                               "--data-dir", self.data_dir] + list(extra),
                              capture_output=True, text=True, timeout=120)

    def images(self):
        status, body = self.server.request("GET", "/api/images")
        self.assertEqual(status, 200)
        return {image["name"]: image for image in body["images"]}

    def sources(self):
        return {name: image["source"] for name, image in self.images().items()}


class ReloadTest(ReloadTestCase):
    def test_a_valid_file_takes_effect_for_the_image_list_and_create_checks(self):
        status, body = self.server.request("POST", "/api/sheds", {"name": "x", "image": "later"})
        self.assertEqual((status, body["error"]["code"]), (400, "UNKNOWN_IMAGE"))
        self.write_config(self.base_config.replace("name: before", "name: after") +
                          "images:\n  later: 127.0.0.1:9/none/later:v1\n")
        result = self.reload()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("reloaded: config=%s images=1" % self.server.config, result.stdout)
        self.assertEqual(self.sources(), {"later": "config"})
        self.assertEqual(self.server.request("GET", "/api/info")[1]["name"], "after")
        # No longer refused as unknown: the create now gets as far as pulling.
        status, body = self.server.request("POST", "/api/sheds", {"name": "x", "image": "later"})
        self.assertNotEqual(body.get("error", {}).get("code"), "UNKNOWN_IMAGE", body)
        self.assertIn("reload result=ok", self.server.log())

    def test_an_invalid_file_is_refused_and_the_old_config_stays(self):
        self.write_config(self.base_config + "images:\n  kept: 127.0.0.1:9/none/kept:v1\n")
        self.assertEqual(self.reload().returncode, 0)
        self.write_config(self.base_config + "images:\n  kept: 127.0.0.1:9/none/kept:v1\n"
                          "http_port: nope\n")
        result = self.reload()
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, "")
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("shed-server: reload refused: CONFIG: %s:7: http_port: expected an integer"
                      % self.server.config, lines[0])
        self.assertIn("the running configuration stays", lines[0])
        self.assertIn("reload result=refused", self.server.log())
        self.assertEqual(self.sources(), {"kept": "config"})
        # And by SIGHUP alone: refused, logged, still the old config.
        os.kill(self.server.proc.pid, signal.SIGHUP)
        self.assertTrue(shedserver.wait_for(
            lambda: self.server.log().count("reload result=refused") == 2), self.server.log())
        self.assertEqual(self.sources(), {"kept": "config"})

    def test_keys_that_need_a_restart_keep_their_running_values(self):
        before = self.server.request("GET", "/api/info")[1]
        # ssh_port: 2300 is overridden by the command line's --ssh-port (0: the port it got).
        self.write_config(self.base_config + "ssh_port: 2300\nbind: 127.0.0.2\n"
                          "console_log_max_bytes: 1M\n")
        result = self.reload()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("needs a restart: bind, console_log_max_bytes (running values kept)",
                      result.stdout)
        info = self.server.request("GET", "/api/info")[1]
        self.assertEqual(info["ssh_port"], before["ssh_port"])
        self.assertNotEqual(info["ssh_port"], 2300)

    def test_sighup_reloads(self):
        self.write_config(self.base_config.replace("name: before", "name: by-signal"))
        os.kill(self.server.proc.pid, signal.SIGHUP)
        self.assertTrue(shedserver.wait_for(
            lambda: self.server.request("GET", "/api/info")[1]["name"] == "by-signal"))

    def test_prune_never_decides_on_a_stale_file(self):
        # A variant cached for a config the server has not read yet: listed as discovered...
        make_cached(self.images_dir, "mid", "127.0.0.1:9/none/mid:v1", 64 << 20)
        self.assertEqual(self.sources(), {"mid": "discovered"})
        self.write_config(self.base_config + "images:\n  mid: 127.0.0.1:9/none/mid:v1\n")
        # ...but a prune first reads the changed file: mid is configured, so it is kept.
        status, body = self.server.request("POST", "/api/images/prune?dry_run=true")
        self.assertEqual((status, body["deleted"]), (200, []))
        status, plan = self.server.request("POST", "/api/system/prune?dry_run=true")
        self.assertEqual(status, 200)
        self.assertNotIn("mid", [item.get("name") for item in plan["items"]])
        self.assertEqual(self.sources(), {"mid": "config"})
        self.assertTrue(os.path.exists(os.path.join(self.images_dir, "mid-rootfs.ext4")))
        status, body = self.server.request("DELETE", "/api/images/mid")
        self.assertEqual((status, body["error"]["code"]), (409, "IMAGE_IN_USE"))

    def test_a_variant_added_by_reload_is_protected_from_prune(self):
        make_cached(self.images_dir, "added", "127.0.0.1:9/none/added:v1", 64 << 20)
        self.write_config(self.base_config + "images:\n  added: 127.0.0.1:9/none/added:v1\n")
        self.assertEqual(self.reload().returncode, 0)
        status, body = self.server.request("POST", "/api/images/prune?dry_run=false")
        self.assertEqual((status, body["deleted"]), (200, []))
        self.assertTrue(os.path.exists(os.path.join(self.images_dir, "added-rootfs.ext4")))
        # Taken out of the file again (and reloaded): now it is the discovered leftover.
        self.write_config(self.base_config)
        self.assertEqual(self.reload().returncode, 0)
        status, body = self.server.request("POST", "/api/images/prune?dry_run=false")
        self.assertEqual([image["name"] for image in body["deleted"]], ["added"])

    def test_one_server_per_data_dir(self):
        other = subprocess.run([SHED_SERVER, "serve", "--config", self.server.config,
                                "--data-dir", self.data_dir, "--port", "0"],
                               capture_output=True, text=True, timeout=120)
        self.assertEqual(other.returncode, 1)
        self.assertIn("another shed-server (pid %d) serves data dir %s"
                      % (self.server.proc.pid, self.data_dir), other.stderr)

    def test_reload_without_a_server_says_so(self):
        self.server.stop()
        result = self.reload()
        self.assertEqual(result.returncode, 1)
        self.assertIn("no shed-server is running for data dir %s" % self.data_dir, result.stderr)
        self.server.start()


class PullImagesTellsTheServerTest(ReloadTestCase):
    def test_pull_images_makes_the_running_server_read_the_file(self):
        with shedtest.Registry() as registry:
            pusher = shedtest.Pusher(registry.url)
            layer = shedtest.LayerBuilder().dir("etc").file("etc/hostname", "pulled\n")
            shedtest.push_image(pusher, "reload/mid", "v1", [(layer.tar_bytes(), "gzip")])
            self.write_config(self.base_config + "images:\n  mid: %s/reload/mid:v1\n"
                              % registry.host)
            result = subprocess.run([SHED_SERVER, "pull-images", "--config", self.server.config,
                                     "--data-dir", self.data_dir], capture_output=True,
                                    text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("The running server reloaded its configuration", result.stdout)
        self.assertEqual(self.sources(), {"mid": "config"})
        self.assertEqual(self.images()["mid"]["cached"], True)


class ReloadCreateTest(ReloadTestCase):
    """The variant a reload adds is creatable: a real create with the container backend."""

    def setUp(self):
        reason = shedserver.container_skip_reason()
        if reason is None and not os.path.exists("/bin/busybox"):
            reason = "/bin/busybox (busybox-static) is missing: it is the test image's content"
        if reason is not None:
            self.skipTest(reason)
        super().setUp()

    def test_a_variant_added_by_reload_becomes_creatable(self):
        with open("/bin/busybox", "rb") as f:
            busybox = f.read()
        layer = (shedtest.LayerBuilder().dir("bin").file("bin/busybox", busybox, mode=0o755)
                 .symlink("bin/sh", "busybox").dir("tmp"))
        with shedtest.Registry() as registry:
            shedtest.push_image(shedtest.Pusher(registry.url), "reload/box", "v1",
                                [(layer.tar_bytes(), "gzip")])
            status, body = self.server.request("POST", "/api/sheds",
                                               {"name": "box", "image": "box"})
            self.assertEqual((status, body["error"]["code"]), (400, "UNKNOWN_IMAGE"))
            self.write_config(self.base_config + "default_memory_mb: 256\nimages:\n"
                              "  box: %s/reload/box:v1\n" % registry.host)
            self.assertEqual(self.reload().returncode, 0)
            self.assertEqual(self.sources(), {"box": "config"})
            status, shed = self.server.request("POST", "/api/sheds",
                                               {"name": "box", "image": "box"})
        self.assertEqual(status, 201, shed)
        self.assertEqual((shed["status"], shed["image"]), ("running", "box"))
        self.assertEqual(self.images()["box"]["cached"], True)
        status, _ = self.server.request("DELETE", "/api/sheds/box")
        self.assertEqual(status, 204)


def main():
    global SHED_SERVER
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--shed-server", required=True)
    args, rest = parser.parse_known_args()
    SHED_SERVER = os.path.abspath(args.shed_server)
    return testrun.main([sys.argv[0]] + rest)


if __name__ == "__main__":
    sys.exit(main())
