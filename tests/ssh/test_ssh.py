"""The SSH front door end to end: the real OpenSSH client (ssh, scp, sftp, rsync, ssh-keyscan,
ssh-agent) against a real `shed-server serve` on loopback random ports and real sheds under
the container backend (the Debian fixture image, with sftp-server and rsync, and the busybox
one without).

Suites (one ctest each):
  SessionTest  keys, probes, unknown and stopped sheds, exit statuses and signals, 100 MiB
               through cat, pty and resize, -L both ways and refusals, scp/sftp/rsync, the
               missing sftp-server, agent forwarding, 50 sessions at once, a client killed
               mid-transfer, the host key, the log line
  LimitsTest   max_auth_tries, login_grace_seconds, max_connections
  OpenTest     ssh.auth: none and ssh.shell: tmux
  ClientTest   the `shed` client: ssh-config (printed and installed, used as is with
               StrictHostKeyChecking yes), ssh, exec, attach

Every wait is for a condition (bounded by shedserver.WAIT_SECONDS), never a fixed sleep.

  test_ssh.py SUITE
"""

import hashlib
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import fcntl
import threading
import time
import unittest

sys.path.insert(0, os.environ.get("SHED_FIXTURES", os.path.join(os.path.dirname(__file__), "..",
                                                                "fixtures")))
import ctrtest  # noqa: E402
import shedserver  # noqa: E402
import testrun  # noqa: E402
from shedserver import wait_for  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER")
SHED_CLI = os.environ.get("SHED_CLI")
FIXTURE = None  # ctrtest.FixtureRegistry, one per process
WORK = None     # temp dir of this process
KEYS = {}       # name -> private key path ("allowed", "from_file", "wrong", "wrong2")
MIB = 1 << 20


def make_keys(directory):
    for name in ("allowed", "from_file", "wrong", "wrong2"):
        path = os.path.join(directory, name)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name + "@test",
                        "-f", path], check=True)
        KEYS[name] = path


def public_key(name):
    with open(KEYS[name] + ".pub") as f:
        return f.read().strip()


class SshServer(shedserver.ServerProcess):
    """A shed-server whose config has the given ssh: section; ssh_port as it answers."""

    def __init__(self, data_dir, ssh_section):
        config = ("name: ssh-test\nbase_image: %s\nrootfs_size: 2G\ndefault_cpus: 1\n"
                  "default_memory_mb: 512\nimages:\n  tmux: %s\n  notmux: %s\n%s"
                  % (FIXTURE.ref("shed/tmux"), FIXTURE.ref("shed/tmux"),
                     FIXTURE.ref("shed/notmux"), ssh_section))
        super().__init__(SHED_SERVER, data_dir, config, stop_timeout=120, log_tail=None)

    def start(self):
        super().start()
        status, info = self.request("GET", "/api/info")
        self.ssh_port = info["ssh_port"]
        status, key = self.request("GET", "/api/ssh-host-key")
        self.host_key = " ".join(key["host_key"].split()[:2])
        return self


class SshTestCase(unittest.TestCase):
    ssh_section = None  # the ssh: section of the server's config
    sheds = ()          # (name, image) created for the whole class

    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="shed-ssh-", dir=WORK)
        cls.server = SshServer(cls.data_dir, cls.ssh_section).start()
        cls.known_hosts = os.path.join(cls.data_dir + "-known_hosts")
        with open(cls.known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (cls.server.ssh_port, cls.server.host_key))
        for name, image in cls.sheds:
            status, body = cls.server.request("POST", "/api/sheds", {"name": name, "image": image})
            assert status == 201, body

    @classmethod
    def tearDownClass(cls):
        for name, _ in cls.sheds:
            cls.server.request("DELETE", "/api/sheds/" + name)
        code = cls.server.stop()
        ctrtest.force_cleanup(cls.data_dir)
        # SIGTERM ends every connection and joins every thread: a clean exit 0 (under ASan,
        # also: no leak, no memory error anywhere in the run).
        if code != 0:
            raise AssertionError("shed-server exited %s:\n%s" % (code, cls.server.log()[-6000:]))

    def ssh_argv(self, user="box", key="allowed", options=()):
        argv = ["ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile=" + self.known_hosts,
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=60",
                "-p", str(self.server.ssh_port)]
        if key is not None:
            argv += ["-o", "IdentityAgent=none", "-i", KEYS[key]]
        return argv + list(options) + [user + "@127.0.0.1"]

    def ssh(self, *command, user="box", key="allowed", options=(), input=None, timeout=600):
        return subprocess.run(self.ssh_argv(user, key, options) + ["--"] + list(command),
                              input=input, capture_output=True, timeout=timeout)

    def ssh_text(self, *command, **kw):
        result = self.ssh(*command, **kw)
        return result.returncode, result.stdout.decode(errors="replace"), \
            result.stderr.decode(errors="replace")

    def log(self):
        return self.server.log()


def run_on_pty(argv, rows, cols, on_output=None, timeout=300):
    """Runs argv on a new pseudo-terminal of rows x cols; on_output(master_fd, output so far)
    is called after each chunk and may write to the terminal or resize it. Returns (exit
    status, output). A child still running after timeout seconds is killed."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        os.execvp(argv[0], argv)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            readable, _, _ = select.select([fd], [], [], 1)
            chunk = os.read(fd, 65536) if readable else None
        except OSError:
            chunk = b""
        if chunk == b"":
            break
        if chunk:
            output += chunk
            if on_output is not None:
                on_output(fd, output)
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def resize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def sha256_through(argv, size):
    """Writes size random bytes to argv's stdin and returns (sha256 sent, sha256 received,
    exit status)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    sent = hashlib.sha256()

    def feed():
        left = size
        chunk = os.urandom(MIB)
        while left > 0:
            piece = chunk[:min(left, len(chunk))]
            sent.update(piece)
            proc.stdin.write(piece)
            left -= len(piece)
        proc.stdin.close()
    writer = threading.Thread(target=feed)
    writer.start()
    received = hashlib.sha256()
    for block in iter(lambda: proc.stdout.read(MIB), b""):
        received.update(block)
    writer.join()
    return sent.hexdigest(), received.hexdigest(), proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_or_none(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=60)
    except OSError:
        return None


class Forward:
    """`ssh -N -L LOCAL:DEST:PORT` running until close()."""

    def __init__(self, case, destination, port):
        self.local = free_port()
        argv = case.ssh_argv(options=["-N", "-o", "ExitOnForwardFailure=yes", "-L",
                                      "%d:%s:%d" % (self.local, destination, port)])
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE)

    def connect(self):
        conn = wait_for(lambda: connect_or_none(self.local))
        if conn is None:
            raise AssertionError("ssh -L did not listen on %d" % self.local)
        return conn

    def close(self):
        # SIGKILL: OpenSSH's client can miss a SIGTERM that arrives right after a channel
        # open failed (it then stays in poll); what it printed is in the pipe either way.
        self.proc.kill()
        return self.proc.communicate(timeout=60)[1].decode(errors="replace")


# ---- sessions ----------------------------------------------------------------------------------

class SessionTest(SshTestCase):
    sheds = (("box", "tmux"), ("bare", "notmux"))

    @classmethod
    def setUpClass(cls):
        cls.ssh_section = ("ssh:\n  keys:\n    - \"%s\"\n  authorized_keys: %s\n"
                           % (public_key("allowed"), os.path.join(WORK, "authorized_keys")))
        with open(os.path.join(WORK, "authorized_keys"), "w") as f:
            f.write("# the second key comes from the file\n%s\n" % public_key("from_file"))
        super().setUpClass()

    def test_allowed_keys_log_in_and_a_wrong_key_is_refused(self):
        self.assertEqual(self.ssh_text("hostname"), (0, "box\n", ""))
        self.assertEqual(self.ssh_text("hostname", key="from_file")[:2], (0, "box\n"))
        code, out, err = self.ssh_text("hostname", key="wrong")
        self.assertEqual((code, out), (255, ""))
        self.assertIn("Permission denied (publickey)", err)

    def test_probe_of_a_wrong_key_is_refused(self):
        # OpenSSH first asks whether a key would do (no signature yet); "Server accepts key"
        # is its report of the server saying yes. Said for the allowed key only.
        code, _, err = self.ssh_text("true", options=["-v"])
        self.assertEqual(code, 0)
        self.assertRegex(err, r"Server accepts key: \S+/allowed ED25519")
        code, _, err = self.ssh_text("true", key="wrong", options=["-v"])
        self.assertEqual(code, 255)
        self.assertIn("Offering public key: %s" % KEYS["wrong"], err)
        self.assertNotIn("Server accepts key", err)

    def test_unknown_shed_gets_one_line_and_exit_1(self):
        for user in ("ghost", "Not_A_Name"):
            code, out, err = self.ssh_text("true", user=user)
            self.assertEqual((code, out), (1, ""))
            self.assertEqual(err, 'shed: no shed named "%s" on ssh-test\n' % user)
        code, _, err = self.ssh_text(user="ghost", options=["-T"])  # a shell, too
        self.assertEqual(code, 1)
        self.assertIn("no shed named", err)

    def test_stopped_shed_is_started_on_connect(self):
        status, body = self.server.request("POST", "/api/sheds/box/stop")
        self.assertEqual((status, body["status"]), (200, "stopped"))
        code, out, err = self.ssh_text("echo up")
        self.assertEqual((code, out), (0, "up\n"))
        self.assertEqual(err, 'shed: starting shed "box"...\n')
        status, body = self.server.request("GET", "/api/sheds/box")
        self.assertEqual(body["status"], "running")

    def test_exit_status_and_exit_signal(self):
        self.assertEqual(self.ssh("true").returncode, 0)
        self.assertEqual(self.ssh("exit 7").returncode, 7)
        self.assertEqual(self.ssh("false").returncode, 1)
        # Killed by a signal: exit-signal (OpenSSH's client then exits 255, as with sshd).
        code, _, err = self.ssh_text("kill -9 $$", options=["-v"])
        self.assertEqual(code, 255)
        self.assertIn("rtype exit-signal", err)
        self.assertNotIn("rtype exit-status", err)

    def test_exec_runs_through_the_login_shell(self):
        code, out, _ = self.ssh_text('echo "$0|$HOME|$USER|$(pwd)|$SSH_CONNECTION"')
        self.assertEqual(code, 0)
        shell, home, user, cwd, connection = out.strip().split("|")
        self.assertEqual((shell, home, user, cwd), ("bash", "/root", "root", "/root"))
        self.assertRegex(connection, r"^127\.0\.0\.1 \d+ 127\.0\.0\.1 %d$" % self.server.ssh_port)
        # Variables: LANG and LC_* pass (SendEnv), others do not.
        env = dict(os.environ, LANG="C.UTF-8", LC_TEST_X="yes", NOT_SENT="no")
        result = subprocess.run(self.ssh_argv(options=["-o", "SendEnv=LANG LC_* NOT_SENT"]) +
                                ["--", "echo $LANG/$LC_TEST_X/${NOT_SENT:-unset}"],
                                capture_output=True, env=env, timeout=300)
        self.assertEqual(result.stdout, b"C.UTF-8/yes/unset\n")

    def test_a_shed_started_before_the_agent_works_through_runc_exec(self):
        status, body = self.server.request("POST", "/api/sheds", {"name": "older"})
        self.assertEqual(status, 201, body)
        try:
            os.unlink(os.path.join(self.data_dir, "instances", "older", "container",
                                   "agent.sock"))
            code, out, err = self.ssh_text("cat; exit 6", user="older", input=b"through\n")
            self.assertEqual((code, out), (6, "through\n"), err)
            code, out = run_on_pty(self.ssh_argv(user="older", options=["-t"]) + ["--", "tty"],
                                   24, 80)
            self.assertEqual(code, 0, out)
            self.assertIn("/dev/pts/", out)
        finally:
            self.server.request("DELETE", "/api/sheds/older")

    def test_100_mib_through_cat_both_ways(self):
        sent, received, code = sha256_through(self.ssh_argv() + ["--", "cat"], 100 * MIB)
        self.assertEqual(code, 0)
        self.assertEqual(received, sent)

    def server_rss(self):
        with open("/proc/%d/status" % self.server.proc.pid) as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

    def stalled(self, read_progress):
        """The progress read_progress() reports once two readings in a row agree (polled)."""
        previous = [None]

        def same():
            now = read_progress()
            agree = now is not None and now == previous[0]
            previous[0] = now
            return now if agree else None
        return wait_for(same)

    def test_a_client_that_does_not_read_holds_the_shed_back(self):
        """The SSH window is the only buffer: the server's memory does not grow with what the
        shed writes when the client reads nothing."""
        before = self.server_rss()
        proc = subprocess.Popen(self.ssh_argv() + ["--", "dd if=/dev/zero bs=1M count=512 "
                                                   "status=none"], stdout=subprocess.PIPE)

        def written():
            code, out, _ = self.ssh_text("cat /proc/$(pgrep -x dd)/io 2>/dev/null")
            return next((int(l.split()[1]) for l in out.splitlines()
                         if l.startswith("wchar:")), None)
        try:
            blocked_at = self.stalled(written)
            self.assertIsNotNone(blocked_at)
            # Stopped past the first MiB (the pipe and the window filled), long before 512.
            self.assertGreater(blocked_at, MIB)
            self.assertLess(blocked_at, 64 * MIB)
            self.assertLess(self.server_rss() - before, 64 * MIB)
            total = sum(len(b) for b in iter(lambda: proc.stdout.read(MIB), b""))
            self.assertEqual((total, proc.wait()), (512 * MIB, 0))
        finally:
            proc.kill()
            proc.wait()

    def test_a_process_that_does_not_read_holds_the_client_back(self):
        before = self.server_rss()
        proc = subprocess.Popen(self.ssh_argv() + ["--", "exec sleep 600"], stdin=subprocess.PIPE)
        sent = [0]

        def feed():
            chunk = b"x" * (1 << 16)
            try:
                while sent[0] < 512 * MIB:
                    proc.stdin.write(chunk)
                    proc.stdin.flush()
                    sent[0] += len(chunk)
            except (BrokenPipeError, ValueError):
                pass
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            # Read after a round trip that also sees the process run: readings apart in time.
            stuck_at = self.stalled(
                lambda: sent[0] if self.ssh("pgrep -x sleep").returncode == 0 else None)
            self.assertGreater(stuck_at, MIB)  # the window was used up, then nothing more
            self.assertLess(stuck_at, 64 * MIB)
            self.assertLess(self.server_rss() - before, 64 * MIB)
        finally:
            proc.kill()
            proc.wait()
            writer.join()

    def test_stdout_stderr_and_stdin_eof_stay_apart(self):
        result = self.ssh("cat; echo to-stderr >&2; printf '\\000\\377'", input=b"in\x00put\n")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, b"in\x00put\n\x00\xff")
        self.assertEqual(result.stderr, b"to-stderr\n")

    def test_tty_and_window_resize(self):
        code, out = run_on_pty(self.ssh_argv(options=["-t"]) + ["--", "tty; stty size"], 30, 100)
        self.assertEqual(code, 0, out)
        self.assertRegex(out, r"/dev/pts/\d+\r\n30 100\r\n")
        # Resized while it runs: the shed's terminal follows (waited for in the shed).
        script = ('stty size; while [ "$(stty size)" = "30 100" ]; do sleep 0.05; done; '
                  'echo "now $(stty size)"')
        resized = []

        def on_output(fd, output):
            if b"30 100" in output and not resized:
                resize(fd, 45, 132)
                resized.append(True)
        code, out = run_on_pty(self.ssh_argv(options=["-t"]) + ["--", script], 30, 100,
                               on_output=on_output)
        self.assertEqual(code, 0, out)
        self.assertIn("now 45 132", out)

    def test_local_forward_100_mib_both_ways(self):
        self.ssh("socat TCP-LISTEN:7000,bind=127.0.0.1,fork,reuseaddr EXEC:cat "
                 ">/dev/null 2>&1 &")
        self.assertTrue(wait_for(lambda: self.ssh("socat -u /dev/null TCP:127.0.0.1:7000")
                                 .returncode == 0))
        forward = Forward(self, "127.0.0.1", 7000)
        try:
            conn = forward.connect()
            sent, received = hashlib.sha256(), hashlib.sha256()
            chunk = os.urandom(MIB)

            def feed():
                for _ in range(100):
                    sent.update(chunk)
                    conn.sendall(chunk)
                conn.shutdown(socket.SHUT_WR)
            writer = threading.Thread(target=feed)
            writer.start()
            total = 0
            for block in iter(lambda: conn.recv(MIB), b""):
                received.update(block)
                total += len(block)
            writer.join()
            conn.close()
            self.assertEqual((total, received.hexdigest()), (100 * MIB, sent.hexdigest()))
        finally:
            forward.close()

    def test_refused_port_and_non_loopback_destination_are_refused(self):
        for destination, port, why in (("127.0.0.1", 7999, "refused port"),
                                       ("10.1.2.3", 80, "not the shed's loopback"),
                                       ("example.com", 80, "not the shed's loopback")):
            forward = Forward(self, destination, port)
            try:
                conn = forward.connect()
                conn.settimeout(120)
                self.assertEqual(conn.recv(16), b"", why)  # closed, never connected
                conn.close()
            finally:
                err = forward.close()
            self.assertRegex(err, r"channel \d+: open failed", why)
        self.assertIn("destination=127.0.0.1:7999 result=\"refused: cannot connect", self.log())
        self.assertIn("destination=10.1.2.3:80 result=\"refused: only the shed's own loopback",
                      self.log())

    def scp_argv(self, *args):
        return (["scp", "-F", "/dev/null", "-o", "UserKnownHostsFile=" + self.known_hosts,
                 "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o",
                 "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i", KEYS["allowed"],
                 "-P", str(self.server.ssh_port)] + list(args))

    def test_scp_both_ways_sftp_and_legacy(self):
        local = os.path.join(self.data_dir + "-scp")
        os.makedirs(local, exist_ok=True)
        payload = os.urandom(5 * MIB)
        with open(os.path.join(local, "up"), "wb") as f:
            f.write(payload)
        for mode in ([], ["-O"]):  # the sftp protocol (default), the old scp protocol
            subprocess.run(self.scp_argv(*mode, os.path.join(local, "up"),
                                         "box@127.0.0.1:/tmp/scp-up"), check=True, timeout=300)
            down = os.path.join(local, "down")
            subprocess.run(self.scp_argv(*mode, "box@127.0.0.1:/tmp/scp-up", down), check=True,
                           timeout=300)
            with open(down, "rb") as f:
                self.assertEqual(f.read(), payload, mode)
            os.unlink(down)

    def test_sftp_put_and_get(self):
        local = self.data_dir + "-sftp"
        os.makedirs(local, exist_ok=True)
        payload = os.urandom(3 * MIB + 17)
        with open(os.path.join(local, "put"), "wb") as f:
            f.write(payload)
        batch = "put %s/put sftp-file\nget sftp-file %s/got\npwd\n" % (local, local)
        result = subprocess.run(["sftp", "-F", "/dev/null", "-o",
                                 "UserKnownHostsFile=" + self.known_hosts, "-o",
                                 "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                                 "-o", "IdentityAgent=none", "-i", KEYS["allowed"], "-P",
                                 str(self.server.ssh_port), "-b", "-", "box@127.0.0.1"],
                                input=batch.encode(), capture_output=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"Remote working directory: /root", result.stdout)
        with open(os.path.join(local, "got"), "rb") as f:
            self.assertEqual(f.read(), payload)

    def test_sftp_without_an_sftp_server_is_a_clean_channel_failure(self):
        result = subprocess.run(["sftp", "-F", "/dev/null", "-o",
                                 "UserKnownHostsFile=" + self.known_hosts, "-o",
                                 "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                                 "-o", "IdentityAgent=none", "-i", KEYS["allowed"], "-P",
                                 str(self.server.ssh_port), "-b", "-", "bare@127.0.0.1"],
                                input=b"pwd\n", capture_output=True, timeout=300)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"subsystem request failed", result.stderr)
        self.assertEqual(self.ssh("true", user="bare").returncode, 0)  # the shed itself works

    def test_rsync_of_a_tree_both_ways(self):
        tree = self.data_dir + "-tree"
        for sub in ("a/b/c", "d"):
            os.makedirs(os.path.join(tree, sub), exist_ok=True)
        for i, rel in enumerate(("a/x", "a/b/y", "a/b/c/z", "d/big")):
            with open(os.path.join(tree, rel), "wb") as f:
                f.write(os.urandom(10 + i * (2 * MIB if rel == "d/big" else 100)))
        os.symlink("a/x", os.path.join(tree, "link"))
        rsh = " ".join(self.ssh_argv()[:-1])
        subprocess.run(["rsync", "-a", "-e", rsh, tree + "/", "box@127.0.0.1:/root/tree/"],
                       check=True, timeout=300)
        back = self.data_dir + "-tree-back"
        subprocess.run(["rsync", "-a", "-e", rsh, "box@127.0.0.1:/root/tree/", back + "/"],
                       check=True, timeout=300)
        self.assertEqual(subprocess.run(["diff", "-r", "--no-dereference", tree, back])
                         .returncode, 0)

    def test_agent_forwarding_lists_the_test_agent_key(self):
        agent_sock = os.path.join(self.data_dir + "-agent.sock")
        agent = subprocess.Popen(["ssh-agent", "-D", "-a", agent_sock], stdout=subprocess.DEVNULL)
        try:
            env = dict(os.environ, SSH_AUTH_SOCK=agent_sock)
            self.assertTrue(wait_for(lambda: os.path.exists(agent_sock)))
            subprocess.run(["ssh-add", "-q", KEYS["wrong2"]], env=env, check=True, timeout=60)
            argv = self.ssh_argv(key=None, options=["-A", "-i", KEYS["allowed"]])
            result = subprocess.run(argv + ["--", "echo $SSH_AUTH_SOCK; ssh-add -l"], env=env,
                                    capture_output=True, timeout=300)
            self.assertEqual(result.returncode, 0, result.stderr)
            lines = result.stdout.decode().splitlines()
            self.assertRegex(lines[0], r"^/tmp/shed-agent\.\w+/agent\.sock$")
            self.assertIn("wrong2@test (ED25519)", lines[1])
            # Without -A: no socket, no agent.
            code, out, _ = self.ssh_text("echo ${SSH_AUTH_SOCK:-none}")
            self.assertEqual(out, "none\n")
        finally:
            agent.terminate()
            agent.wait()

    def test_50_concurrent_sessions(self):
        self.ssh("rm -rf /tmp/arrived && mkdir /tmp/arrived")
        # Each session waits (in the shed) until all 50 have arrived: they run at once.
        script = ('touch /tmp/arrived/%d; while [ $(ls /tmp/arrived | wc -l) -lt 50 ]; do '
                  'sleep 0.1; done; echo session-%d')
        results = {}

        def one(i):
            results[i] = self.ssh_text(script % (i, i), timeout=600)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), list(range(50)))
        for i, (code, out, err) in results.items():
            self.assertEqual((code, out), (0, "session-%d\n" % i), err)

    def server_counts(self):
        pid = self.server.proc.pid
        return (len(os.listdir("/proc/%d/task" % pid)), len(os.listdir("/proc/%d/fd" % pid)))

    def test_client_killed_mid_transfer_leaves_nothing_behind(self):
        # Everything lazily made is made; the baseline is taken once that connection is over
        # (its log line is written as its thread ends), so no thread of it is counted.
        self.assertEqual(self.ssh("true # baseline").returncode, 0)
        self.assertTrue(wait_for(lambda: 'command="true # baseline"' in self.log()))
        before = wait_for(lambda: (lambda c: c if c == self.server_counts() else None)(
            self.server_counts()))
        client = subprocess.Popen(self.ssh_argv() + ["--", "cat >/dev/null"],
                                  stdin=subprocess.PIPE)
        chunk = os.urandom(MIB)
        for _ in range(20):
            client.stdin.write(chunk)
        client.stdin.flush()
        client.kill()
        client.wait()
        # Back where they were: a baseline thread of the previous connection may still have
        # been ending when it was taken (seen under ASan), so fewer is fine, more is a leak.
        self.assertEqual(wait_for(lambda: all(a <= b for a, b in zip(self.server_counts(),
                                                                     before))), True,
                         "threads, fds: %s, before %s" % (self.server_counts(), before))
        # Its cat in the shed was hung up.
        self.assertTrue(wait_for(lambda: self.ssh("pgrep -x cat").returncode == 1))

    def test_host_key_is_the_one_the_api_serves(self):
        result = subprocess.run(["ssh-keyscan", "-p", str(self.server.ssh_port), "-t", "ed25519",
                                 "127.0.0.1"], capture_output=True, text=True, timeout=120)
        keys = [" ".join(line.split()[1:3]) for line in result.stdout.splitlines()
                if not line.startswith("#")]
        self.assertEqual(keys, [self.server.host_key])
        with open(os.path.join(self.data_dir, "ssh_host_ed25519_key.pub")) as f:
            self.assertEqual(" ".join(f.read().split()[:2]), self.server.host_key)

    def test_one_log_line_per_connection(self):
        self.assertEqual(self.ssh("exit 3").returncode, 3)
        line = wait_for(lambda: next((l for l in self.log().splitlines()
                                      if ' command="exit 3"' in l), None))
        fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", KEYS["allowed"] + ".pub"],
                                     capture_output=True, text=True).stdout.split()[1]
        self.assertRegex(line, r" ssh peer=127\.0\.0\.1:\d+ user=box key=%s shed=box "
                         r'command="exit 3" exit=3 ms=\d+ result="closed"$' % re.escape(fingerprint))
        self.ssh("true", key="wrong")
        self.assertTrue(wait_for(lambda: re.search(r' ssh peer=\S+ user=box key=- shed=- .*'
                                                   r'result="not authenticated"', self.log())))


# ---- limits ------------------------------------------------------------------------------------

class LimitsTest(SshTestCase):
    sheds = (("box", "tmux"),)

    @classmethod
    def setUpClass(cls):
        cls.ssh_section = ("ssh:\n  keys: [\"%s\"]\n  authorized_keys: /nonexistent/keys\n"
                           "  max_auth_tries: 2\n  login_grace_seconds: 3\n"
                           "  max_connections: 3\n" % public_key("allowed"))
        super().setUpClass()

    def raw(self):
        """A TCP connection to the SSH port and the server's banner (b"" when refused)."""
        conn = socket.create_connection(("127.0.0.1", self.server.ssh_port), timeout=120)
        return conn, conn.recv(256)

    def test_too_many_authentication_failures_end_the_connection(self):
        options = ["-i", KEYS["wrong"], "-i", KEYS["wrong2"], "-i", KEYS["allowed"]]
        code, _, err = self.ssh_text("true", key=None, options=options + ["-o",
                                                                          "IdentityAgent=none"])
        self.assertEqual(code, 255, err)
        self.assertTrue(wait_for(lambda: 'result="too many authentication failures"' in self.log()))
        self.assertEqual(self.ssh("true").returncode, 0)  # the right key first: fine

    def test_login_grace_time_closes_an_idle_connection(self):
        conn, banner = self.raw()
        self.assertTrue(banner.startswith(b"SSH-2.0-"))
        conn.settimeout(120)
        closed = False
        try:
            # Nothing sent: after 3 s the server says goodbye (maybe) and closes.
            while conn.recv(4096):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        conn.close()
        self.assertTrue(closed)
        self.assertTrue(wait_for(lambda: "key exchange failed" in self.log() or
                                 "login grace time over" in self.log()))

    def test_max_connections_refuses_the_next_one(self):
        held = [self.raw() for _ in range(3)]
        try:
            self.assertTrue(all(banner.startswith(b"SSH-2.0-") for _, banner in held))
            conn, banner = self.raw()
            conn.close()
            self.assertEqual(banner, b"")
            self.assertIn('result=refused reason="too many connections', self.log())
        finally:
            for conn, _ in held:
                conn.close()
        self.assertTrue(wait_for(lambda: self.ssh("true").returncode == 0))


# ---- auth none, tmux shell ---------------------------------------------------------------------

class OpenTest(SshTestCase):
    sheds = (("box", "tmux"),)
    ssh_section = "ssh:\n  auth: none\n  shell: tmux\n"

    def test_auth_none_logs_in_without_a_key(self):
        code, out, _ = self.ssh_text("hostname", key=None,
                                     options=["-o", "PubkeyAuthentication=no",
                                              "-o", "IdentityAgent=none"])
        self.assertEqual((code, out), (0, "box\n"))

    def test_shell_tmux_attaches_session_default(self):
        argv = self.ssh_argv(key=None, options=["-tt", "-o", "PubkeyAuthentication=no",
                                                "-o", "IdentityAgent=none"])

        def attached():
            status, body = self.server.request("GET", "/api/sheds/box/sessions")
            return any(s["name"] == "default" and s["attached"] for s in body["sessions"])
        detached = []

        def on_output(fd, output):
            if not detached and attached():
                os.write(fd, b"\x02d")  # the tmux prefix, then d: detach
                detached.append(True)
        code, out = run_on_pty(argv, 24, 80, on_output=on_output)
        self.assertIn("detached", out)
        status, body = self.server.request("GET", "/api/sheds/box/sessions")
        self.assertEqual([s["name"] for s in body["sessions"]], ["default"])


# ---- the shed client ---------------------------------------------------------------------------

@unittest.skipUnless(SHED_CLI, "SHED_CLI (the shed client) not given")
class ClientTest(SshTestCase):
    sheds = (("box", "tmux"),)

    @classmethod
    def setUpClass(cls):
        cls.ssh_section = "ssh:\n  keys: [\"%s\"]\n" % public_key("allowed")
        super().setUpClass()
        cls.home = tempfile.mkdtemp(prefix="shed-ssh-home-", dir=WORK)
        cls.agent_sock = os.path.join(cls.home, "agent.sock")
        cls.agent = subprocess.Popen(["ssh-agent", "-D", "-a", cls.agent_sock],
                                     stdout=subprocess.DEVNULL)
        cls.env = dict(os.environ, HOME=cls.home, XDG_CONFIG_HOME=os.path.join(cls.home, "xdg"),
                       SHED_CLIENT_CONFIG="/nonexistent/client.yaml", SSH_AUTH_SOCK=cls.agent_sock)
        cls.env.pop("SHED_API_TOKEN", None)
        wait_for(lambda: os.path.exists(cls.agent_sock))
        subprocess.run(["ssh-add", "-q", KEYS["allowed"]], env=cls.env, check=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.agent.terminate()
        cls.agent.wait()
        super().tearDownClass()

    def shed(self, *args, **kw):
        return subprocess.run([SHED_CLI, "-s", "http://127.0.0.1:%d" % self.server.port] +
                              list(args), env=self.env, capture_output=True, timeout=600, **kw)

    def test_ssh_config_used_as_is_with_strict_host_key_checking(self):
        result = self.shed("ssh-config")
        self.assertEqual(result.returncode, 0, result.stderr)
        text = result.stdout.decode()
        self.assertIn("Host box.ssh-test\n", text)
        self.assertIn("    Port %d\n    User box\n" % self.server.ssh_port, text)
        self.assertIn("    StrictHostKeyChecking yes\n", text)
        config = os.path.join(self.home, "printed_ssh_config")
        with open(config, "w") as f:
            f.write(text)
        ssh = ["ssh", "-F", config, "-o", "BatchMode=yes", "box.ssh-test"]
        result = subprocess.run(ssh + ["hostname"], env=self.env, capture_output=True, timeout=300)
        self.assertEqual((result.returncode, result.stdout), (0, b"box\n"), result.stderr)
        # The pin is what decides: another key under the alias is refused, not asked about.
        known_hosts = os.path.join(self.home, "xdg", "shed", "known_hosts")
        with open(known_hosts) as f:
            pinned = f.read()
        with open(KEYS["wrong"] + ".pub") as f:
            forged = "shed-ssh-test " + " ".join(f.read().split()[:2]) + "\n"
        with open(known_hosts, "w") as f:
            f.write(forged)
        result = subprocess.run(ssh + ["true"], env=self.env, capture_output=True, timeout=300)
        self.assertEqual(result.returncode, 255)
        self.assertIn(b"Host key verification failed", result.stderr)
        with open(known_hosts, "w") as f:
            f.write(pinned)

    def test_ssh_config_install_includes_it_once(self):
        for _ in range(2):
            result = self.shed("ssh-config", "--install")
            self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(self.home, ".ssh", "config")) as f:
            config = f.read()
        installed = os.path.join(self.home, "xdg", "shed", "ssh_config")
        self.assertEqual(config, 'Include "%s"\n' % installed)
        result = subprocess.run(["ssh", "-F", os.path.join(self.home, ".ssh", "config"), "-o",
                                 "BatchMode=yes", "box.ssh-test", "hostname"], env=self.env,
                                capture_output=True, timeout=300)
        self.assertEqual((result.returncode, result.stdout), (0, b"box\n"), result.stderr)

    def test_shed_exec_passes_argv_stdio_and_exit_status(self):
        result = self.shed("exec", "box", "--", "sh", "-c", 'cat; echo "[$1]" >&2; exit 5', "sh",
                           "two  spaces 'quoted'", input=b"stdin\n")
        self.assertEqual(result.returncode, 5, result.stderr)
        self.assertEqual(result.stdout, b"stdin\n")
        self.assertEqual(result.stderr, b"[two  spaces 'quoted']\n")
        result = self.shed("exec", "ghost", "--", "true")
        self.assertEqual(result.returncode, 1)
        self.assertIn(b'no shed named "ghost"', result.stderr)
        self.assertEqual(self.shed("exec", "-bad", "--", "true").returncode, 2)

    def test_shed_ssh_runs_a_command_and_a_login_shell(self):
        result = self.shed("ssh", "box", "--", "echo", "$0")
        self.assertEqual((result.returncode, result.stdout), (0, b"bash\n"), result.stderr)
        result = self.shed("ssh", "box", input=b"echo from-the-shell; exit 4\n")
        self.assertEqual(result.returncode, 4)
        self.assertIn(b"from-the-shell\n", result.stdout)

    def test_shed_attach_creates_and_attaches_the_session(self):
        def attached():
            status, body = self.server.request("GET", "/api/sheds/box/sessions")
            return any(s["name"] == "work" and s["attached"] for s in body["sessions"])
        detached = []

        def on_output(fd, output):
            if not detached and attached():
                os.write(fd, b"\x02d")
                detached.append(True)
        env_argv = ["env"] + ["%s=%s" % kv for kv in self.env.items()]
        code, out = run_on_pty(env_argv + [SHED_CLI, "-s", "http://127.0.0.1:%d" %
                                           self.server.port, "attach", "box", "work"], 24, 80,
                               on_output=on_output)
        self.assertEqual(code, 0, out)
        self.assertIn("detached", out)
        status, body = self.server.request("GET", "/api/sheds/box/sessions")
        self.assertIn("work", [s["name"] for s in body["sessions"]])


def skip_reason():
    reason = ctrtest.skip_reason()
    if reason:
        return reason
    for tool in ("ssh", "scp", "sftp", "rsync", "ssh-keygen", "ssh-keyscan", "ssh-agent",
                 "ssh-add"):
        if shutil.which(tool) is None:
            return "%s is not installed (openssh-client, rsync)" % tool
    if not SHED_SERVER:
        return "SHED_SERVER not set (run through ctest)"
    return None


def main():
    global FIXTURE, WORK
    reason = skip_reason()
    if reason:
        return testrun.skip_all(reason)
    WORK = tempfile.mkdtemp(prefix="shed-ssh-test-")
    try:
        make_keys(WORK)
        try:
            FIXTURE = ctrtest.FixtureRegistry(WORK)
        except ctrtest.fixture_image.Unavailable as e:
            return testrun.skip_all("fixture image unavailable: %s" % e)
        return testrun.main()
    finally:
        if FIXTURE is not None:
            FIXTURE.stop()
        ctrtest.force_cleanup(WORK)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
