"""The API server against hostile clients: a real `shed-server serve` on loopback, with clients
the test itself makes slow (header bytes trickled by the test), too many, or in the wrong
place.

- Slow clients never lock out a normal one: 1,200 connections from one address that trickle
  their headers, while a client from another loopback address is answered (< 1 s, the
  issue's budget for a normal request; measured and printed).
- A request's headers and body must arrive within http_request_timeout_seconds: a header line
  every second (which an idle timeout never trips) is cut off with 408 at the deadline.
- Over http_max_connections a connection is answered 503 SERVER_BUSY at once.
- A non-loopback bind needs api_token unless allow_unauthenticated: true.
- The unix socket listener has the configured mode and group and needs no token.
- A path whose decoding would change a name (%00, %2F) is 400 and acts on nothing.

Run: test_limits.py --shed-server PATH
"""

import argparse
import grp
import json
import os
import resource
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

import shedserver
import testrun

SHED_SERVER = None
SLOW_ADDRESS = "127.0.0.2"  # the slow clients; the normal one comes from 127.0.0.1
WAIT = shedserver.WAIT_SECONDS


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connect_from(address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((address, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_response(sock, timeout=WAIT):
    """Everything the server sends until it closes (or timeout): (bytes, seconds taken)."""
    sock.settimeout(timeout)
    start = time.monotonic()
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data, time.monotonic() - start


def status_and_body(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.") else None
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None


class LimitsTestCase(unittest.TestCase):
    config = ""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shed-limits-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data_dir = os.path.join(self.tmp, "data")
        self.server = shedserver.ServerProcess(SHED_SERVER, self.data_dir, self.config,
                                               stop_timeout=60)
        self.server.start()
        self.addCleanup(self.server.stop)
        self.port = self.server.port

    def timed_get(self, path="/api/info", address="127.0.0.1", timeout=5):
        """(status, seconds) of one GET on a fresh connection from address."""
        start = time.monotonic()
        s = connect_from(address, self.port)
        try:
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, _ = read_response(s, timeout)
        finally:
            s.close()
        return status_and_body(data)[0], time.monotonic() - start


class SlowClientsTest(LimitsTestCase):
    SLOW = 1200

    def test_1200_slow_connections_from_one_address_do_not_lock_out_a_normal_client(self):
        if raise_fd_limit(self.SLOW + 256) < self.SLOW + 256:
            self.skipTest("cannot open %d sockets (RLIMIT_NOFILE)" % self.SLOW)
        slow = []
        self.addCleanup(lambda: [s.close() for s in slow])
        for _ in range(self.SLOW):
            s = connect_from(SLOW_ADDRESS, self.port)
            s.sendall(b"GET /api/info HTTP/1.1\r\n")
            slow.append(s)
        # Trickle a header byte on every slow connection while the normal client asks.
        times = []
        for _ in range(5):
            for s in slow:
                try:
                    s.send(b"X", socket.MSG_DONTWAIT)
                except OSError:
                    pass  # refused with 503 and closed, or the buffer is full: either is fine
            status, seconds = self.timed_get()
            self.assertEqual(status, 200, "the normal client was not answered")
            times.append(seconds)
        print("normal client answered in %s s while %d slow connections were open"
              % (", ".join("%.3f" % t for t in times), self.SLOW))
        self.assertLess(max(times), 1.0, "a normal request took longer than 1 s")
        # The slow address got its share (http_max_connections_per_client: 64), no more;
        # every other slow connection was answered 503 or closed, none was served.
        held = refused = closed = 0
        for s in slow:
            s.setblocking(False)
            try:
                data = s.recv(4096)
            except BlockingIOError:
                held += 1
                continue
            except ConnectionResetError:
                closed += 1
                continue
            status, body = status_and_body(data)
            self.assertIn(status, (503, None), "a slow client was served: %r" % data)
            if status == 503:
                self.assertEqual(body["error"]["code"], "SERVER_BUSY")
                refused += 1
            else:
                closed += 1
        print("slow connections: %d held by the server, %d answered 503, %d closed"
              % (held, refused, closed))
        self.assertLessEqual(held, 64)
        self.assertGreater(held, 0)
        self.assertGreater(refused, 0)


class RequestDeadlineTest(LimitsTestCase):
    config = "http_request_timeout_seconds: 3\nhttp_idle_timeout_seconds: 60\n"

    def test_a_header_line_every_second_is_cut_off_at_the_request_deadline(self):
        s = connect_from("127.0.0.1", self.port)
        self.addCleanup(s.close)
        start = time.monotonic()
        s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n")
        cut = None
        # One header line a second: always under the 60 s idle timeout, never a whole request.
        while time.monotonic() - start < WAIT:
            try:
                s.sendall(b"X-Slow: %d\r\n" % int(time.monotonic() - start))
            except OSError:
                cut = time.monotonic() - start
                break
            s.settimeout(1)
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            cut = time.monotonic() - start
            status, body = status_and_body(data)
            self.assertEqual(status, 408, data)
            self.assertEqual(body["error"]["code"], "REQUEST_TIMEOUT")
            break
        print("cut off after %.2f s (deadline 3 s)" % cut)
        self.assertIsNotNone(cut, "the trickling client was never cut off")
        self.assertGreaterEqual(cut, 2.5, "cut off before its deadline")
        self.assertEqual(self.timed_get()[0], 200)

    def test_a_slow_body_is_cut_off_at_the_request_deadline(self):
        s = connect_from("127.0.0.1", self.port)
        self.addCleanup(s.close)
        start = time.monotonic()
        s.sendall(b"POST /api/sheds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")
        data = b""
        while time.monotonic() - start < WAIT and not data:
            try:
                s.sendall(b" ")
            except OSError:
                break
            s.settimeout(0.5)
            try:
                data = s.recv(4096)
            except socket.timeout:
                pass
        cut = time.monotonic() - start
        print("slow body cut off after %.2f s (deadline 3 s)" % cut)
        self.assertLess(cut, WAIT)
        self.assertGreaterEqual(cut, 2.5)
        if data:
            self.assertEqual(status_and_body(data)[0], 408, data)

    def test_a_kept_alive_connection_gets_a_new_deadline_per_request(self):
        s = connect_from("127.0.0.1", self.port)
        self.addCleanup(s.close)
        start, answered = time.monotonic(), 0
        # Requests one after the other on one connection for longer than one deadline: each
        # arrives at once, so none is cut off.
        while time.monotonic() - start < 4:
            s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(10)
            head = s.recv(4096)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            answered += 1
        self.assertGreater(answered, 1)


class TotalCapTest(LimitsTestCase):
    # The held connections must outlive the test however slow the machine is: a request
    # deadline cutting them off would free a slot and let the next probe in.
    config = ("http_max_connections: 8\nhttp_max_connections_per_client: 8\n"
              "tunnel_max_per_client: 8\nhttp_request_timeout_seconds: 3600\n"
              "http_idle_timeout_seconds: 3600\n")

    def hold(self, i):
        """A connection from 127.0.0.(10+i) that sends half a request and waits."""
        s = connect_from("127.0.0.%d" % (10 + i), self.port)
        s.sendall(b"GET /api/info HTTP/1.1\r\n")  # slow: never finished
        return s

    @staticmethod
    def refused(s):
        """Whether the server answered (503) and closed a held connection: it holds none."""
        return bool(select.select([s], [], [], 0)[0])

    def test_connections_over_the_total_cap_are_answered_503_at_once(self):
        held = [self.hold(i) for i in range(8)]
        self.addCleanup(lambda: [s.close() for s in held])
        # The server has all 8 once a ninth is refused while none of them was: a connection
        # that was still closing (the start-up probe's) can take a slot for a moment, and a
        # held one refused then is made again.
        status, seconds = None, None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            status, seconds = self.timed_get(address="127.0.0.50", timeout=WAIT)
            again = [i for i, s in enumerate(held) if self.refused(s)]
            for i in again:
                held[i].close()
                held[i] = self.hold(i)
            if status == 503 and not again:
                break
        self.assertEqual(status, 503)
        print("refused in %.3f s" % seconds)
        s = connect_from("127.0.0.51", self.port)
        s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = read_response(s)
        s.close()
        status, body = status_and_body(data)
        self.assertEqual(status, 503, "%s\nserver log:\n%s" % (body, self.server.log()[-4000:]))
        self.assertEqual(body["error"]["code"], "SERVER_BUSY")
        self.assertIn("http_max_connections", body["error"]["message"])
        self.assertFalse([s for s in held if self.refused(s)])  # still all held
        for s in held:
            s.close()
        held.clear()
        self.assertEqual(shedserver.wait_for(lambda: self.timed_get()[0] == 200), True)


class PathTest(LimitsTestCase):
    def test_a_nul_in_a_name_is_400_and_acts_on_nothing(self):
        d = os.path.join(self.data_dir, "instances", "a")
        os.makedirs(d)
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump({"name": "a", "status": "stopped", "created_at": "2026-01-20T10:30:00Z",
                       "repo": "", "backend": "none", "image": "base"}, f)
        for method, path in [("DELETE", "/api/sheds/a%00x"), ("DELETE", "/api/sheds/a%00"),
                             ("POST", "/api/sheds/a%00x/start"), ("GET", "/api/sheds/a%2Fx"),
                             ("DELETE", "/api/sheds/a%2f..")]:
            status, body = self.server.request(method, path)
            self.assertEqual((status, body["error"]["code"]), (400, "INVALID_REQUEST"),
                             (method, path, body))
        status, body = self.server.request("GET", "/api/sheds/a")
        self.assertEqual((status, body["name"]), (200, "a"))
        self.assertTrue(os.path.isdir(d))


class ExposureTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shed-exposure-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def serve(self, config, *args):
        path = os.path.join(self.tmp, "server.yaml")
        with open(path, "w") as f:
            f.write(config)
        cmd = [SHED_SERVER, "serve", "--config", path, "--data-dir",
               os.path.join(self.tmp, "data"), "--port", str(shedserver.free_port())] + list(args)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def test_a_non_loopback_bind_without_a_token_refuses_to_start(self):
        proc = self.serve("bind: 0.0.0.0\n")
        out, _ = proc.communicate(timeout=WAIT)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("not a loopback address and no api_token", out)
        self.assertIn("allow_unauthenticated: true", out)
        self.assertIn("api_token", out)
        proc = self.serve("name: x\n", "--bind", "0.0.0.0")  # the override counts too
        out, _ = proc.communicate(timeout=WAIT)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("no api_token", out)

    def served_in_own_netns(self, config):
        """Whether the server starts on 10.123.0.1, which exists only in a network namespace
        made for it (so nothing outside can reach it)."""
        if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
            self.skipTest("needs root, unshare and ip for a private network namespace")
        path = os.path.join(self.tmp, "server.yaml")
        with open(path, "w") as f:
            f.write(config + "bind: 10.123.0.1\n")
        script = ("ip link set lo up && ip addr add 10.123.0.1/32 dev lo && "
                  "exec %s serve --config %s --data-dir %s --port 18099"
                  % (SHED_SERVER, path, os.path.join(self.tmp, "data")))
        proc = subprocess.Popen(["unshare", "--net", "sh", "-c", script],
                                stderr=subprocess.PIPE, text=True)
        log = []
        try:
            for line in proc.stderr:  # until it serves, or exits
                log.append(line)
                if "serving http://10.123.0.1" in line:
                    return True, "".join(log)
            return False, "".join(log)
        finally:
            proc.terminate()
            proc.wait(timeout=WAIT)

    def test_allow_unauthenticated_or_a_token_lets_a_non_loopback_bind_start(self):
        started, log = self.served_in_own_netns("allow_unauthenticated: true\n")
        self.assertTrue(started, log)
        started, log = self.served_in_own_netns("api_token: s3cret\n")
        self.assertTrue(started, log)
        started, log = self.served_in_own_netns("")
        self.assertFalse(started, log)


class UnixSocketTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shed-unix-test-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock_path = os.path.join(self.tmp, "api.sock")
        self.group = grp.getgrgid(os.getgid()).gr_name if os.geteuid() != 0 else "nogroup"

    def start(self, extra=""):
        config = ("unix_socket: %s\nunix_socket_mode: \"0660\"\nunix_socket_group: %s\n"
                  "api_token: s3cret\n%s" % (self.sock_path, self.group, extra))
        server = shedserver.ServerProcess(SHED_SERVER, os.path.join(self.tmp, "data"), config,
                                          stop_timeout=60)
        # ServerProcess.start probes /api/info over TCP, which needs the token: probe the
        # socket instead.
        server.port = shedserver.free_port()
        log = open(server.log_path, "ab")
        server.proc = subprocess.Popen(
            [SHED_SERVER, "serve", "--config", server.config, "--port", str(server.port),
             "--data-dir", server.data_dir], stdout=log, stderr=log)
        log.close()
        self.addCleanup(server.stop)
        self.assertTrue(shedserver.wait_for(lambda: self.unix_get("/api/info")[0] == 200
                                            if os.path.exists(self.sock_path) else
                                            server.proc.poll() is not None),
                        server.log())
        return server

    def unix_get(self, path):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock_path)
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return status_and_body(read_response(s)[0])
        except OSError:
            return None, None
        finally:
            s.close()

    def test_the_socket_has_its_mode_and_group_and_needs_no_token(self):
        server = self.start()
        st = os.lstat(self.sock_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual(st.st_gid, grp.getgrnam(self.group).gr_gid)
        status, body = self.unix_get("/api/sheds")
        self.assertEqual((status, body), (200, {"sheds": []}))
        # Over TCP the token is still needed.
        status, body = server.request("GET", "/api/sheds")
        self.assertEqual((status, body["error"]["code"]), (401, "UNAUTHORIZED"))
        self.assertEqual(server.stop(), 0)
        self.assertFalse(os.path.exists(self.sock_path), "the socket outlived the server")

    def test_a_user_outside_the_mode_cannot_connect(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a client as another user")
        self.start()
        client = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                  "try:\n s.connect(sys.argv[1]); print('connected')\n"
                  "except PermissionError: print('denied')\n")
        # uid 65533, in no group of the socket: "other", which mode 0660 leaves out.
        result = subprocess.run(["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups",
                                 sys.executable, "-c", client, self.sock_path],
                                capture_output=True, text=True, timeout=WAIT)
        self.assertEqual(result.stdout.strip(), "denied", result.stderr)

    def test_a_stale_socket_is_replaced_and_anything_else_is_left_alone(self):
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(self.sock_path)
        stale.close()  # a socket file nobody listens on, as a killed server leaves it
        self.start()
        self.assertEqual(self.unix_get("/api/info")[0], 200)

    def test_a_file_in_the_way_is_not_touched(self):
        with open(self.sock_path, "w") as f:
            f.write("precious")
        config_path = os.path.join(self.tmp, "s.yaml")
        with open(config_path, "w") as f:
            f.write("unix_socket: %s\n" % self.sock_path)
        result = subprocess.run([SHED_SERVER, "serve", "--config", config_path, "--data-dir",
                                 os.path.join(self.tmp, "data"), "--port", "0"],
                                capture_output=True, text=True, timeout=WAIT)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("is not a socket", result.stderr)
        with open(self.sock_path) as f:
            self.assertEqual(f.read(), "precious")


def main():
    global SHED_SERVER
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--shed-server", default=os.environ.get("SHED_SERVER"))
    args, rest = parser.parse_known_args()
    if not args.shed_server:
        sys.exit("usage: %s --shed-server PATH [unittest args]" % sys.argv[0])
    SHED_SERVER = os.path.abspath(args.shed_server)
    return testrun.main([sys.argv[0]] + rest)


if __name__ == "__main__":
    sys.exit(main())
