"""Integration tests of `shed-server serve` and the `shed` CLI: a real server on a random free
127.0.0.1 port with a temp data dir, driven over HTTP and through the CLI.

No backend is built into shed-server yet, so these tests pin down what must hold without one:
every route, status code and error body of api.md that needs no running shed, the instance
store on disk (hand-made metadata.json, re-discovery, reconciliation of dead "running" sheds
via their pid), and honest 501 NOT_SUPPORTED where a backend would be needed.

Run: test_api.py --shed-server PATH --shed PATH
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import testrun  # tests/fixtures (PYTHONPATH)

SHED_SERVER = None
SHED = None

SHED_FIELDS = {"name", "status", "created_at", "repo", "backend", "image"}
OPTIONAL_SHED_FIELDS = {"ip_address", "cpus", "memory_mb", "pid", "rootfs_path", "disk",
                        "local_dir"}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One shed-server serve process over a data dir that outlives restarts."""

    def __init__(self, data_dir, extra_config=""):
        self.data_dir = data_dir
        self.config = os.path.join(data_dir, "..", "server.yaml")
        with open(self.config, "w") as f:
            f.write("name: test-server\nssh_port: 2299\n" + extra_config)
            if "base_image:" not in extra_config:
                f.write("base_image: null\n")  # the built-in default is Docker Hub's
        self.proc = None
        self.port = None
        self.log_path = os.path.join(data_dir, "..", "server.log")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def instance_dir(self):
        return os.path.join(self.data_dir, "instances")

    def start(self):
        for _ in range(10):
            self.port = free_port()
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [SHED_SERVER, "serve", "--config", self.config, "--port", str(self.port),
                 "--bind", "127.0.0.1", "--data-dir", self.data_dir, "--ssh-port", "0"],
                stdout=log, stderr=log)
            log.close()
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError("shed-server did not start; see " + self.log_path)

    def _wait_ready(self):
        deadline = time.monotonic() + 120  # generous: the CI machine is loaded
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/api/info")
                conn.getresponse().read()
                conn.close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self):
        """SIGTERM; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, headers dict, parsed JSON or None, raw bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=data, headers=headers or {})
        resp = conn.getresponse()
        payload = resp.read()
        conn.close()
        parsed = None
        if payload and resp.getheader("Content-Type", "").startswith("application/json"):
            parsed = json.loads(payload)
        return resp.status, dict(resp.getheaders()), parsed, payload


def write_shed(instance_dir, name, **fields):
    """A shed made by hand, the way an older server or an admin would leave it."""
    d = os.path.join(instance_dir, name)
    os.makedirs(d, exist_ok=True)
    meta = {"name": name, "status": "stopped", "created_at": "2026-01-20T10:30:00Z",
            "repo": "", "backend": "container", "image": "base"}
    meta.update(fields)
    with open(os.path.join(d, "metadata.json"), "w") as f:
        json.dump(meta, f)
    return d


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class ServerTestCase(unittest.TestCase):
    extra_config = ""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shed-api-test-")
        self.data_dir = os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir)
        self.server = Server(self.data_dir, self.extra_config).start()

    def tearDown(self):
        self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def assertError(self, result, status, code):
        got_status, headers, body, raw = result
        self.assertEqual(got_status, status, raw)
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"))
        self.assertEqual(set(body.keys()), {"error"}, body)
        self.assertEqual(set(body["error"].keys()), {"code", "message"}, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertIsInstance(body["error"]["message"], str)
        self.assertTrue(body["error"]["message"])

    def assertServerUp(self):
        status, _, body, _ = self.server.request("GET", "/api/info")
        self.assertEqual(status, 200)
        self.assertEqual(body["name"], "test-server")


class InfoTests(ServerTestCase):
    def test_info_has_the_spec_fields(self):
        status, headers, body, _ = self.server.request("GET", "/api/info")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(set(body), {"name", "version", "ssh_port", "http_port", "backend",
                                     "backends"})
        self.assertEqual(body["name"], "test-server")
        # ssh_port: the SSH front door's real port (--ssh-port 0 here), where it answers.
        with socket.create_connection(("127.0.0.1", body["ssh_port"]), timeout=30) as ssh:
            self.assertTrue(ssh.recv(64).startswith(b"SSH-2.0-"))
        self.assertEqual(body["http_port"], self.server.port)
        self.assertRegex(body["version"], r"^\d+\.\d+\.\d+$")
        # default_backend is detect: the first usable backend, or honestly "none"
        self.assertIn(body["backend"], {"none", "container", "qemu", "firecracker"})
        # the backends this build runs (only the container backend is built in)
        self.assertEqual(body["backends"], ["container"])

    def test_info_reports_the_port_actually_bound_with_port_0(self):
        proc = subprocess.Popen([SHED_SERVER, "serve", "--config", self.server.config, "--port",
                                 "0", "--data-dir", self.data_dir + "-port0", "--ssh-port", "0"],
                                stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stderr.readline()  # "shed-server: serving http://127.0.0.1:PORT (...)"
            match = re.search(r"serving http://127\.0\.0\.1:(\d+) ", line)
            self.assertIsNotNone(match, line)
            port = int(match.group(1))
            self.assertNotEqual(port, 0)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/info")
            body = json.loads(conn.getresponse().read())
            conn.close()
            self.assertEqual(body["http_port"], port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            proc.stderr.close()
            shutil.rmtree(self.data_dir + "-port0", ignore_errors=True)

    def test_ssh_host_key_is_an_openssh_ed25519_public_key(self):
        status, _, body, _ = self.server.request("GET", "/api/ssh-host-key")
        self.assertEqual(status, 200)
        self.assertEqual(set(body), {"host_key"})
        key = body["host_key"]
        self.assertRegex(key, r"^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/=]+ \S+$")
        pub = os.path.join(self.tmp, "key.pub")
        with open(pub, "w") as f:
            f.write(key + "\n")
        out = subprocess.run(["ssh-keygen", "-l", "-f", pub], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("(ED25519)", out.stdout)
        self.assertIn("256 SHA256:", out.stdout)
        private = os.path.join(self.data_dir, "ssh_host_ed25519_key")
        self.assertEqual(stat.S_IMODE(os.stat(private).st_mode), 0o600)

    def test_ssh_host_key_survives_a_restart(self):
        _, _, before, _ = self.server.request("GET", "/api/ssh-host-key")
        self.assertEqual(self.server.stop(), 0)
        self.server.start()
        _, _, after, _ = self.server.request("GET", "/api/ssh-host-key")
        self.assertEqual(before["host_key"], after["host_key"])


class RoutingTests(ServerTestCase):
    ROUTES = [
        ("GET", "/api/info"), ("GET", "/api/ssh-host-key"), ("GET", "/api/sheds"),
        ("POST", "/api/sheds"), ("GET", "/api/sheds/x"), ("DELETE", "/api/sheds/x"),
        ("POST", "/api/sheds/x/start"), ("POST", "/api/sheds/x/stop"),
        ("GET", "/api/sheds/x/sessions"), ("DELETE", "/api/sheds/x/sessions/s"),
        ("GET", "/api/sessions"), ("GET", "/api/images"), ("DELETE", "/api/images/x"),
        ("POST", "/api/images/prune"), ("GET", "/api/sheds/x/connect/80"),
    ]

    def test_unknown_routes_are_404_not_found_json(self):
        for path in ["/", "/api", "/api/", "/api/nope", "/api/sheds/x/nope", "/api/sheds/",
                     "/api/sheds/x/sessions/s/extra", "/api/infox", "/API/info"]:
            with self.subTest(path=path):
                self.assertError(self.server.request("GET", path), 404, "NOT_FOUND")

    def test_wrong_methods_are_405_method_not_allowed_json(self):
        known = set(self.ROUTES)
        for method, path in self.ROUTES:
            for other in ["GET", "POST", "PUT", "DELETE", "PATCH"]:
                if (other, path) in known or (other, path) == ("DELETE", "/api/images/prune"):
                    continue  # (DELETE /api/images/prune deletes the image named "prune")
                with self.subTest(method=other, path=path):
                    self.assertError(self.server.request(other, path), 405, "METHOD_NOT_ALLOWED")
        self.assertServerUp()

    def test_oversized_bodies_are_413_on_every_route(self):
        big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
        for method, path in self.ROUTES:
            with self.subTest(method=method, path=path):
                self.assertError(self.server.request(method, path, raw=big,
                                                     headers={"Content-Type": "application/json"}),
                                 413, "PAYLOAD_TOO_LARGE")
        self.assertServerUp()

    def test_a_huge_announced_body_is_refused_before_it_is_sent(self):
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=30) as sock:
            sock.sendall(b"POST /api/sheds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1073741824\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)
        self.assertIn(b'"code":"PAYLOAD_TOO_LARGE"', reply)
        self.assertServerUp()

    def test_oversized_chunked_body_is_413(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        conn.putrequest("POST", "/api/sheds")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        chunk = b" " * 65536
        try:
            for _ in range(20):
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before the whole body was sent
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        self.assertEqual(resp.status, 413)
        self.assertEqual(body["error"]["code"], "PAYLOAD_TOO_LARGE")
        self.assertServerUp()

    def test_exactly_one_mebibyte_is_accepted(self):
        prefix, suffix = b'{"name":"Bad', b'"}'
        body = prefix + b"x" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
        self.assertEqual(len(body), 1024 * 1024)
        # reaches validation (the name is invalid), i.e. it was not rejected for its size
        self.assertError(self.server.request("POST", "/api/sheds", raw=body),
                         400, "INVALID_SHED_NAME")

    def test_bodies_on_routes_without_one_must_be_empty(self):
        for method, path in self.ROUTES:
            if (method, path) == ("POST", "/api/sheds"):
                continue
            for raw in [b"{bad", b'{"force":true}', b"[]", b"42"]:
                with self.subTest(method=method, path=path, raw=raw):
                    self.assertError(self.server.request(method, path, raw=raw), 400,
                                     "INVALID_REQUEST")
        self.assertServerUp()


class ShedTests(ServerTestCase):
    def test_list_is_empty_at_first(self):
        status, _, body, _ = self.server.request("GET", "/api/sheds")
        self.assertEqual((status, body), (200, {"sheds": []}))

    def test_list_is_sorted_by_name_and_leaves_out_empty_fields(self):
        for name in ["zeta", "alpha", "mid-1", "beta"]:
            write_shed(self.server.instance_dir, name)
        write_shed(self.server.instance_dir, "full", cpus=4, memory_mb=2048,
                   rootfs_path="/x/rootfs.ext4", local_dir="/src", repo="o/r", ip_address="10.0.0.2")
        status, _, body, _ = self.server.request("GET", "/api/sheds")
        self.assertEqual(status, 200)
        names = [s["name"] for s in body["sheds"]]
        self.assertEqual(names, ["alpha", "beta", "full", "mid-1", "zeta"])
        alpha = body["sheds"][0]
        # rootfs_path is derived from the instance dir, never taken from metadata.json: every
        # shed has one, and an edited one is not believed.
        self.assertEqual(set(alpha), SHED_FIELDS | {"rootfs_path", "disk"})
        full = body["sheds"][2]
        self.assertEqual(set(full), SHED_FIELDS | {"cpus", "memory_mb", "rootfs_path", "disk",
                                                   "local_dir", "ip_address"})
        self.assertEqual(full["cpus"], 4)
        self.assertEqual(full["memory_mb"], 2048)
        self.assertEqual(full["rootfs_path"],
                         os.path.join(self.server.instance_dir, "full", "rootfs.ext4"))

    def test_disk_kind_and_the_shed_s_own_disk_are_shown(self):
        # no "disk" recorded (an older server's shed): a full rootfs.ext4
        write_shed(self.server.instance_dir, "older")
        write_shed(self.server.instance_dir, "layered", disk={
            "kind": "overlay", "lower_size": 1 << 31,
            "lower_digest": "sha256:" + "ab" * 32})
        write_shed(self.server.instance_dir, "weird", disk={"kind": "thin"})
        sheds = {s["name"]: s for s in self.server.request("GET", "/api/sheds")[2]["sheds"]}
        self.assertEqual((sheds["older"]["disk"], sheds["older"]["rootfs_path"]),
                         ("copy", os.path.join(self.server.instance_dir, "older", "rootfs.ext4")))
        self.assertEqual((sheds["layered"]["disk"], sheds["layered"]["rootfs_path"]),
                         ("overlay",
                          os.path.join(self.server.instance_dir, "layered", "upper.ext4")))
        # an unknown kind is never guessed: the metadata counts as unreadable
        self.assertEqual(sheds["weird"]["status"], "error")
        self.assertNotIn("disk", sheds["weird"])

    def test_get_one_shed_and_404(self):
        write_shed(self.server.instance_dir, "box", image="dev")
        status, _, body, _ = self.server.request("GET", "/api/sheds/box")
        self.assertEqual(status, 200)
        self.assertEqual(body["name"], "box")
        self.assertEqual(body["image"], "dev")
        self.assertEqual(body["status"], "stopped")
        self.assertError(self.server.request("GET", "/api/sheds/nobox"), 404, "SHED_NOT_FOUND")

    def test_bad_shed_names_are_400_on_every_shed_endpoint(self):
        for bad in ["Bad", "1abc", "a_b", "a-", "x" * 64, "a.b"]:
            for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/start"),
                                   ("POST", "/stop"), ("GET", "/sessions"),
                                   ("DELETE", "/sessions/s"), ("GET", "/connect/80")]:
                with self.subTest(name=bad, method=method, suffix=suffix):
                    self.assertError(self.server.request(method, "/api/sheds/" + bad + suffix),
                                     400, "INVALID_SHED_NAME")
        self.assertServerUp()

    def test_delete_removes_a_stopped_shed_and_its_data(self):
        d = write_shed(self.server.instance_dir, "gone")
        with open(os.path.join(d, "rootfs.ext4"), "wb") as f:
            f.truncate(1 << 20)
        status, _, _, raw = self.server.request("DELETE", "/api/sheds/gone")
        self.assertEqual((status, raw), (204, b""))
        self.assertFalse(os.path.exists(d))
        self.assertError(self.server.request("DELETE", "/api/sheds/gone"), 404, "SHED_NOT_FOUND")
        self.assertError(self.server.request("GET", "/api/sheds/gone"), 404, "SHED_NOT_FOUND")

    def test_start_and_stop_status_codes(self):
        write_shed(self.server.instance_dir, "idle")
        self.assertError(self.server.request("POST", "/api/sheds/idle/stop"), 409,
                         "SHED_ALREADY_STOPPED")
        # a hand-made shed has no rootfs: starting it fails, and it must not pretend
        status, _, body, _ = self.server.request("POST", "/api/sheds/idle/start")
        self.assertIn((status, body["error"]["code"]), {(500, "BACKEND_ERROR"), (501, "NOT_SUPPORTED")})
        self.assertEqual(self.server.request("GET", "/api/sheds/idle")[2]["status"], "stopped")
        self.assertError(self.server.request("POST", "/api/sheds/none/start"), 404,
                         "SHED_NOT_FOUND")
        self.assertError(self.server.request("POST", "/api/sheds/none/stop"), 404,
                         "SHED_NOT_FOUND")
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            # A backend this build lacks: the recorded pid is all there is to go by (the
            # container backend only believes a pid in the shed's own cgroup).
            write_shed(self.server.instance_dir, "busy", status="running", pid=sleeper.pid,
                       backend="firecracker")
            self.assertError(self.server.request("POST", "/api/sheds/busy/start"), 409,
                             "SHED_ALREADY_RUNNING")
        finally:
            sleeper.kill()
            sleeper.wait()

    def test_a_running_shed_whose_process_died_reads_and_is_saved_stopped(self):
        d = write_shed(self.server.instance_dir, "ghost", status="running", pid=dead_pid())
        _, _, body, _ = self.server.request("GET", "/api/sheds")
        self.assertEqual(body["sheds"][0]["status"], "stopped")
        self.assertNotIn("pid", body["sheds"][0])
        with open(os.path.join(d, "metadata.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["status"], "stopped")
        self.assertEqual(saved["pid"], 0)
        self.assertEqual(saved["image"], "base")  # the rest of the record is kept
        self.assertEqual([n for n in os.listdir(d) if ".tmp" in n], [])

    def test_a_shed_left_starting_by_a_killed_server_reads_error_and_can_be_deleted(self):
        d = write_shed(self.server.instance_dir, "halfway", status="starting")
        _, _, body, _ = self.server.request("GET", "/api/sheds/halfway")
        self.assertEqual(body["status"], "error")
        with open(os.path.join(d, "metadata.json")) as f:
            self.assertEqual(json.load(f)["status"], "error")
        status, _, _, _ = self.server.request("DELETE", "/api/sheds/halfway")
        self.assertEqual(status, 204)
        self.assertFalse(os.path.exists(d))

    def test_repeated_listings_see_every_change(self):
        names = lambda: [(s["name"], s["status"]) for s in
                         self.server.request("GET", "/api/sheds")[2]["sheds"]]
        write_shed(self.server.instance_dir, "one")
        self.assertEqual(names(), [("one", "stopped")])
        self.assertEqual(names(), [("one", "stopped")])
        write_shed(self.server.instance_dir, "two")  # created by hand
        self.assertEqual(names(), [("one", "stopped"), ("two", "stopped")])
        write_shed(self.server.instance_dir, "two", image="edited")  # rewritten by hand
        self.assertEqual(self.server.request("GET", "/api/sheds")[2]["sheds"][1]["image"], "edited")
        shutil.rmtree(os.path.join(self.server.instance_dir, "one"))  # removed by hand
        self.assertEqual(names(), [("two", "stopped")])
        sleeper = subprocess.Popen(["sleep", "60"])
        write_shed(self.server.instance_dir, "live", status="running", pid=sleeper.pid,
                   backend="firecracker")  # not built in: the pid is what tells
        self.assertEqual(names(), [("live", "running"), ("two", "stopped")])
        self.assertEqual(names(), [("live", "running"), ("two", "stopped")])
        sleeper.kill()
        sleeper.wait()
        self.assertEqual(names(), [("live", "stopped"), ("two", "stopped")])

    def test_sheds_are_rediscovered_after_a_restart(self):
        write_shed(self.server.instance_dir, "kept-a")
        write_shed(self.server.instance_dir, "kept-b", image="dev")
        self.assertEqual(self.server.stop(), 0)
        write_shed(self.server.instance_dir, "offline-made")
        self.server.start()
        self.assertIn("3 sheds found", self.server.log())
        _, _, body, _ = self.server.request("GET", "/api/sheds")
        self.assertEqual([s["name"] for s in body["sheds"]], ["kept-a", "kept-b", "offline-made"])

    def test_a_corrupt_metadata_file_is_listed_as_error_not_fatal(self):
        write_shed(self.server.instance_dir, "good")
        d = os.path.join(self.server.instance_dir, "broken")
        os.makedirs(d)
        with open(os.path.join(d, "metadata.json"), "w") as f:
            f.write("{truncated")
        _, _, body, _ = self.server.request("GET", "/api/sheds")
        self.assertEqual([(s["name"], s["status"]) for s in body["sheds"]],
                         [("broken", "error"), ("good", "stopped")])

    def test_hand_edits_of_metadata_are_seen(self):
        d = write_shed(self.server.instance_dir, "edit")
        self.server.request("GET", "/api/sheds/edit")
        metadata = os.path.join(d, "metadata.json")
        cached_mtime = os.stat(metadata).st_mtime_ns
        write_shed(self.server.instance_dir, "edit", image="changed")
        # An edit within one tick of the file system's clock keeps the mtime: date it later
        # instead of sleeping past the tick.
        later = cached_mtime + 1_000_000_000
        os.utime(metadata, ns=(later, later))
        _, _, body, _ = self.server.request("GET", "/api/sheds/edit")
        self.assertEqual(body["image"], "changed")
        self.assertTrue(os.path.isdir(d))

    def test_sessions_and_connect(self):
        write_shed(self.server.instance_dir, "off")
        self.assertError(self.server.request("GET", "/api/sheds/off/sessions"), 409,
                         "SHED_NOT_RUNNING")
        self.assertError(self.server.request("DELETE", "/api/sheds/off/sessions/main"), 409,
                         "SHED_NOT_RUNNING")
        self.assertError(self.server.request("GET", "/api/sheds/off/connect/80"), 503,
                         "SHED_NOT_RUNNING")
        self.assertError(self.server.request("GET", "/api/sheds/nope/sessions"), 404,
                         "SHED_NOT_FOUND")
        self.assertError(self.server.request("GET", "/api/sheds/nope/connect/80"), 404,
                         "SHED_NOT_FOUND")
        for port in ["0", "65536", "-1", "abc", "80x", "+80"]:
            with self.subTest(port=port):
                self.assertError(self.server.request("GET", "/api/sheds/off/connect/" + port),
                                 400, "INVALID_PORT")
        for session in ["-x", "a.b", "_x"]:
            with self.subTest(session=session):
                self.assertError(
                    self.server.request("DELETE", "/api/sheds/off/sessions/" + session),
                    400, "INVALID_SESSION_NAME")
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            write_shed(self.server.instance_dir, "on", status="running", pid=sleeper.pid)
            # a hand-made "running" shed has no container behind it: an error, never a
            # pretended success (501 without a backend, 500/502 from a backend that tried,
            # 409/503 not running from the container backend, which does not take a pid
            # outside the shed's cgroup for the shed)
            for path, headers in [("/api/sheds/on/sessions", {}),
                                  ("/api/sheds/on/connect/80",
                                   {"Connection": "Upgrade", "Upgrade": "shed-tcp"})]:
                status, _, body, _ = self.server.request("GET", path, headers=headers)
                self.assertIn(status, {409, 500, 501, 502, 503}, body)
                self.assertIn("error", body)
        finally:
            sleeper.kill()
            sleeper.wait()
        status, _, body, _ = self.server.request("GET", "/api/sessions")
        self.assertEqual((status, body), (200, {"sessions": []}))


class CreateTests(ServerTestCase):
    # The default backend is one this build does not have, so a valid create has no backend to
    # run on even as root with runc (real creates: tests/server/test_create.py).
    extra_config = ("default_backend: firecracker\n"
                    "base_image: 127.0.0.1:5000/base:latest\nimages:\n  dev: 127.0.0.1:5000/dev:1\n"
                    "local_dir_roots: [%s]\n" % os.path.realpath(tempfile.gettempdir()) +
                    "container:\n  max_cpus: 4\n  max_memory_mb: 2048\n")

    def setUp(self):
        super().setUp()
        self.share = os.path.join(os.path.realpath(self.tmp), "share")
        os.makedirs(self.share)

    def create(self, body, headers=None):
        return self.server.request("POST", "/api/sheds", body=body, headers=headers)

    def test_create_validation(self):
        a_file = os.path.join(self.tmp, "file")
        open(a_file, "w").close()
        cases = [
            ({}, "INVALID_SHED_NAME"),
            ({"name": "Bad"}, "INVALID_SHED_NAME"),
            ({"name": ""}, "INVALID_SHED_NAME"),
            ({"name": 5}, "INVALID_REQUEST"),
            ({"name": "ok", "extra": 1}, "INVALID_REQUEST"),
            ({"name": "ok", "cpus": "2"}, "INVALID_REQUEST"),
            ({"name": "ok", "cpus": 0}, "INVALID_REQUEST"),
            ({"name": "ok", "memory_mb": 1.5}, "INVALID_REQUEST"),
            ({"name": "ok", "repo": 1}, "INVALID_REQUEST"),
            ({"name": "ok", "repo": "not a repo"}, "INVALID_REPO_URL"),
            ({"name": "ok", "repo": "--upload-pack=x"}, "INVALID_REPO_URL"),
            ({"name": "ok", "repo": "a/b/c"}, "INVALID_REPO_URL"),
            ({"name": "ok", "local_dir": "relative"}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "local_dir": "/does/not/exist"}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "local_dir": a_file}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "local_dir": self.tmp}, "INVALID_LOCAL_DIR"),  # holds the data dir
            ({"name": "ok", "local_dir": self.data_dir}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "local_dir": "/"}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "local_dir": "/etc"}, "INVALID_LOCAL_DIR"),
            ({"name": "ok", "repo": "o/r", "local_dir": self.share}, "INVALID_REQUEST"),
            ({"name": "ok", "image": "nope"}, "UNKNOWN_IMAGE"),
            ({"name": "ok", "image": "../x"}, "UNKNOWN_IMAGE"),
            ({"name": "ok", "backend": "docker"}, "INVALID_REQUEST"),
        ]
        for body, code in cases:
            with self.subTest(body=body):
                self.assertError(self.create(body), 400, code)
        for raw in [b"", b"{", b"[]", b'"x"', b'{"name":"a","name":"b"}', b"\xff"]:
            with self.subTest(raw=raw):
                self.assertError(self.server.request("POST", "/api/sheds", raw=raw), 400,
                                 "INVALID_REQUEST")
        self.assertEqual(os.listdir(self.server.instance_dir), [".locks"])
        self.assertServerUp()

    def test_create_of_an_existing_name_is_409(self):
        write_shed(self.server.instance_dir, "taken")
        self.assertError(self.create({"name": "taken"}), 409, "SHED_ALREADY_EXISTS")

    def test_resources_above_the_server_maximum_are_400_naming_it(self):
        for body, maximum in [({"name": "big", "cpus": 5}, "cpus 5 is more than this server "
                               "allows (at most 4)"),
                              ({"name": "big", "memory_mb": 16777216}, "memory_mb 16777216 is "
                               "more than this server allows (at most 2048)")]:
            for headers in (None, {"Accept": "text/event-stream"}):
                with self.subTest(body=body, headers=headers):
                    result = self.create(body, headers=headers)
                    self.assertError(result, 400, "INVALID_REQUEST")
                    self.assertEqual(result[2]["error"]["message"], maximum)
        # at the maximum: past validation (no backend here: 501)
        self.assertError(self.create({"name": "big", "cpus": 4, "memory_mb": 2048}), 501,
                         "NOT_SUPPORTED")
        self.assertEqual(os.listdir(self.server.instance_dir), [".locks"])

    def test_valid_create_without_a_backend_is_501_and_leaves_nothing(self):
        for body in [{"name": "fresh"}, {"name": "fresh", "image": "dev", "repo": "o/r"},
                     {"name": "fresh", "local_dir": self.share, "cpus": 2, "memory_mb": 1024},
                     {"name": "fresh", "backend": "qemu"},
                     {"name": "fresh", "repo": "https://example.com/x.git"},
                     {"name": "fresh", "repo": "git@github.com:o/r.git"}]:
            with self.subTest(body=body):
                self.assertError(self.create(body), 501, "NOT_SUPPORTED")
        self.assertEqual(os.listdir(self.server.instance_dir), [".locks"])
        self.assertError(self.server.request("GET", "/api/sheds/fresh"), 404, "SHED_NOT_FOUND")

    def test_sse_create_validation_errors_are_plain_json(self):
        sse = {"Accept": "text/event-stream"}
        self.assertError(self.create({"name": "Bad"}, headers=sse), 400, "INVALID_SHED_NAME")
        self.assertError(self.create({"name": "ok"}, headers=sse), 501, "NOT_SUPPORTED")


class AuthTests(ServerTestCase):
    extra_config = "api_token: s3cret-token\n"

    def test_requests_without_the_bearer_token_are_401(self):
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"},
                        {"Authorization": "Bearer s3cret-token2"}, {"Authorization": "Basic eDp5"}]:
            for method, path in [("GET", "/api/info"), ("GET", "/api/sheds"),
                                 ("GET", "/api/nope"), ("POST", "/api/sheds")]:
                with self.subTest(headers=headers, path=path):
                    self.assertError(self.server.request(method, path, headers=headers), 401,
                                     "UNAUTHORIZED")
        status, _, body, _ = self.server.request(
            "GET", "/api/info", headers={"Authorization": "Bearer s3cret-token"})
        self.assertEqual(status, 200)

    def test_cli_sends_the_token(self):
        out = run_cli(["-s", self.server.url, "info"])
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, r"^shed: UNAUTHORIZED: .+\n$")
        out = run_cli(["-s", self.server.url, "--token", "s3cret-token", "info"])
        self.assertEqual(out.returncode, 0, out.stderr)
        out = run_cli(["-s", self.server.url, "info"], env={"SHED_API_TOKEN": "s3cret-token"})
        self.assertEqual(out.returncode, 0, out.stderr)


class ShutdownTests(ServerTestCase):
    def test_sigterm_exits_0(self):
        self.server.request("GET", "/api/sheds")
        self.assertEqual(self.server.stop(), 0)
        self.assertIn("stopped", self.server.log())

    def test_sigint_exits_0_with_an_idle_keepalive_connection_open(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        conn.request("GET", "/api/info")
        conn.getresponse().read()  # keep-alive: the connection stays open
        self.server.proc.send_signal(signal.SIGINT)
        self.assertEqual(self.server.proc.wait(timeout=30), 0)
        conn.close()
        self.server.proc = None

    def test_a_second_server_on_the_same_port_fails_cleanly(self):
        other_data = tempfile.mkdtemp(prefix="shed-api-other-")
        self.addCleanup(shutil.rmtree, other_data, True)
        other = subprocess.run([SHED_SERVER, "serve", "--config", self.server.config, "--port",
                                str(self.server.port), "--data-dir", other_data,
                                "--ssh-port", "0"],
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(other.returncode, 1)
        self.assertIn("cannot listen", other.stderr)
        self.assertServerUp()


def run_cli(args, env=None):
    full_env = dict(os.environ)
    full_env.pop("SHED_API_TOKEN", None)
    full_env["SHED_CLIENT_CONFIG"] = "/nonexistent/client.yaml"
    full_env.update(env or {})
    return subprocess.run([SHED] + args, capture_output=True, text=True, env=full_env, timeout=60)


class CliTests(ServerTestCase):
    def cli(self, *args, env=None):
        return run_cli(["-s", self.server.url] + list(args), env=env)

    def test_info_and_json(self):
        out = self.cli("info")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"name:\s+test-server")
        out = self.cli("--json", "info")
        self.assertEqual(out.returncode, 0)
        self.assertEqual(json.loads(out.stdout)["name"], "test-server")

    def test_list_table_and_json(self):
        write_shed(self.server.instance_dir, "zed")
        write_shed(self.server.instance_dir, "abe", image="dev")
        out = self.cli("list")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "STATUS", "BACKEND", "IMAGE", "IP", "CREATED"])
        self.assertEqual([l.split()[0] for l in lines[1:]], ["abe", "zed"])
        out = self.cli("--json", "list")
        self.assertEqual([s["name"] for s in json.loads(out.stdout)["sheds"]], ["abe", "zed"])
        out = self.cli("--json", "get", "abe")
        self.assertEqual(json.loads(out.stdout)["image"], "dev")

    def test_errors_are_one_line_with_the_server_code_and_exit_1(self):
        write_shed(self.server.instance_dir, "idle")
        cases = [
            (["get", "missing"], "SHED_NOT_FOUND"),
            (["delete", "missing"], "SHED_NOT_FOUND"),
            (["create", "Bad"], "INVALID_SHED_NAME"),
            (["create", "ok", "--image", "nope"], "UNKNOWN_IMAGE"),
            (["stop", "idle"], "SHED_ALREADY_STOPPED"),
            (["start", "idle"], "(BACKEND_ERROR|NOT_SUPPORTED)"),
            (["sessions", "idle"], "SHED_NOT_RUNNING"),
            (["kill-session", "idle", "main"], "SHED_NOT_RUNNING"),
            (["tunnel", "idle", "18999:80"], "SHED_NOT_RUNNING"),
            (["tunnel", "missing", "18999:80"], "SHED_NOT_FOUND"),
        ]
        for args, code in cases:
            with self.subTest(args=args):
                out = self.cli(*args)
                self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
                self.assertRegex(out.stderr, r"^shed: %s: [^\n]+\n$" % code)

    def test_delete_prints_and_removes(self):
        write_shed(self.server.instance_dir, "tmpbox")
        out = self.cli("delete", "tmpbox")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, "deleted tmpbox\n")
        self.assertFalse(os.path.exists(os.path.join(self.server.instance_dir, "tmpbox")))

    def test_unreachable_server_is_a_connection_error(self):
        out = run_cli(["-s", "http://127.0.0.1:%d" % free_port(), "list"])
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, r"^shed: CONNECTION: [^\n]+\n$")

    def test_usage_errors_exit_2_and_help_exits_0(self):
        for args in [[], ["bogus"], ["get"], ["get", "a", "b"], ["create"],
                     ["create", "x", "--cpus", "many"], ["tunnel", "x", "80"], ["--nope", "list"],
                     ["images", "what"]]:
            with self.subTest(args=args):
                out = self.cli(*args)
                self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        for args in [["--help"], ["list", "--help"], ["create", "--help"], ["images", "prune", "--help"],
                     ["tunnel", "--help"], ["--version"]]:
            with self.subTest(args=args):
                out = self.cli(*args)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertTrue(out.stdout)

    def test_servers_from_client_yaml(self):
        config = os.path.join(self.tmp, "client.yaml")
        with open(config, "w") as f:
            f.write("default: here\nservers:\n  here: %s\n  there:\n    url: %s\n"
                    % (self.server.url, self.server.url))
        env = {"SHED_CLIENT_CONFIG": config}
        for args in [["info"], ["-s", "here", "info"], ["-s", "there", "info"]]:
            with self.subTest(args=args):
                out = run_cli(args, env=env)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertIn("test-server", out.stdout)
        out = run_cli(["-s", "elsewhere", "info"], env=env)
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, r"^shed: CONFIG: no server \"elsewhere\"")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--shed-server", required=True)
    parser.add_argument("--shed", required=True)
    args, rest = parser.parse_known_args()
    SHED_SERVER = os.path.abspath(args.shed_server)
    SHED = os.path.abspath(args.shed)
    sys.exit(testrun.main([sys.argv[0]] + rest))
