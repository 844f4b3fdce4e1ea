"""Progress as a user sees it, on a pseudo-terminal and without one: shed-server convert and
pull-images, and `shed create` (its SSE progress) against a real server with the container
backend. On a terminal: one line per phase, redrawn in place with bytes, rate and ETA, no
two phases (nor two variants) on one line, nothing wider than the terminal, the last line
complete, also after Ctrl-C; without one: plain lines, no carriage returns or escapes.

The registry sits behind a throttling proxy so that downloads take long enough to be
drawn (and interrupted) on any machine. Needs docker-registry; the create test also root,
runc and loop devices.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import clitest
import fault_proxy
import shedserver
import shedtest
import terminal
import testrun
from clitest import SHED, SHED_SERVER

COLUMNS = 200  # wide enough that no completed line wraps
REGISTRY = None
PROXY = None
WORK = None
REFS = {}  # name -> ref through the throttling proxy


def bulk_layer(name, size):
    """A layer whose data does not compress: downloads and conversion take real time."""
    return (shedtest.LayerBuilder().dir("data").file("data/" + name, os.urandom(size))
            .file("etc/hostname", name + "\n").tar_bytes())


def setUpModule():
    global REGISTRY, PROXY, WORK
    WORK = tempfile.mkdtemp(prefix="shed-progress-")
    REGISTRY = shedtest.Registry(workdir=os.path.join(WORK, "registry")).start()
    pusher = shedtest.Pusher(REGISTRY.url)
    for name in ("one", "two"):
        shedtest.push_image(pusher, "prog/" + name, "v1",
                            [(bulk_layer(name, 600 << 10), "gzip"),
                             (bulk_layer(name + "-top", 200 << 10), "gzip")])
    if os.path.exists("/bin/busybox"):
        shedtest.push_image(pusher, "prog/box", "v1", [(shedtest.busybox_layer("box"), "gzip"),
                                                       (bulk_layer("box", 400 << 10), "gzip")])
    PROXY = fault_proxy.FaultProxy(REGISTRY.host).start()
    for name in ("one", "two", "box"):
        REFS[name] = "%s/prog/%s:v1" % (PROXY.host, name)


def tearDownModule():
    if PROXY is not None:
        PROXY.stop()
    if REGISTRY is not None:
        REGISTRY.stop()
    shutil.rmtree(WORK, ignore_errors=True)


class ProgressTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="case-", dir=WORK)
        self.data_dir = os.path.join(self.dir, "data")
        self.out = os.path.join(self.dir, "out.ext4")
        PROXY.clear()
        # about 320 KiB/s: a few seconds per image, drawn many times
        PROXY.add_fault("throttle", "/blobs/", chunk=16384, delay=0.05, times=None)

    def tearDown(self):
        PROXY.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, images):
        path = os.path.join(self.dir, "server.yaml")
        with open(path, "w") as f:
            f.write("data_dir: %s\nrootfs_size: 64M\nbase_image: null\nimages:\n" % self.data_dir)
            for name, ref in images.items():
                f.write("  %s: %s\n" % (name, ref))
        return path

    def assertOnePhasePerLine(self, lines, phases):
        for line in lines:
            self.assertLessEqual(sum(line.count(p) for p in phases), 1, lines)

    def assertPlain(self, text):
        self.assertNotIn("\r", text)
        self.assertNotIn("\x1b", text)


class ConvertProgressTest(ProgressTestCase):
    PHASES = ("downloading", "converting")

    def test_on_a_terminal_each_phase_is_one_line_with_rate_and_eta(self):
        code, output, _ = terminal.run_on_pty(
            [SHED_SERVER, "convert", "--data-dir", self.data_dir, REFS["one"], "-o", self.out,
             "--size", "64M"], columns=COLUMNS)
        self.assertEqual(code, 0, output)
        for text in terminal.live_draws(output):
            self.assertLess(len(text), COLUMNS, text)
        shown = terminal.screen(output, COLUMNS)
        self.assertEqual(len(shown), 3, shown)
        self.assertRegex(shown[0], r"^downloading 2 layer\(s\): [0-9.]+ KiB in [0-9.]+ s "
                         r"\([0-9.]+ [KM]iB/s\)$")
        self.assertRegex(shown[1], r"^converting to %s: [0-9.]+ [KM]iB in [0-9.]+ s" % self.out)
        self.assertRegex(shown[2], r"^%s: 64\.0 MiB ext4 root filesystem of " % self.out)
        self.assertOnePhasePerLine(shown, self.PHASES)
        # while it ran: a bar, the bytes, the rate and the time left
        self.assertRegex(output, r"downloading 2 layer\(s\) \[[#.]{20}\] +\d+% [0-9.]+ KiB / "
                         r"[0-9.]+ KiB  [0-9.]+ KiB/s  ETA \d+s")
        self.assertTrue(terminal.ends_complete(output), repr(output[-120:]))

    def test_a_narrow_terminal_never_wraps(self):
        code, output, _ = terminal.run_on_pty(
            [SHED_SERVER, "convert", "--data-dir", self.data_dir, REFS["two"], "-o", self.out],
            columns=40)
        self.assertEqual(code, 0, output)
        draws = terminal.live_draws(output)
        self.assertTrue(draws, output)
        for text in draws:  # never the last column: a redraw that wrapped would stay behind
            self.assertLess(len(text), 40, draws)
        self.assertTrue(any("%" in text for text in draws), draws)

    def test_without_a_terminal_plain_lines(self):
        result = subprocess.run([SHED_SERVER, "convert", "--data-dir", self.data_dir,
                                 REFS["one"], "-o", self.out], capture_output=True, text=True,
                                timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertPlain(result.stderr)
        lines = result.stderr.splitlines()
        self.assertEqual(len(lines), 2, result.stderr)
        self.assertRegex(lines[0], r"^downloading 2 layer\(s\): ")
        self.assertRegex(lines[1], r"^converting to %s: " % self.out)

    def test_ctrl_c_leaves_no_half_drawn_line(self):
        sent = []

        def interrupt_once_drawn(proc, text):
            if not sent and "KiB / " in text:
                proc.send_signal(signal.SIGINT)
                sent.append(True)

        code, output, _ = terminal.run_on_pty(
            [SHED_SERVER, "convert", "--data-dir", self.data_dir, REFS["two"], "-o", self.out],
            columns=COLUMNS, on_output=interrupt_once_drawn)
        self.assertTrue(sent, output)
        self.assertNotEqual(code, 0)
        shown = terminal.screen(output, COLUMNS)
        self.assertRegex(shown[-1], r"^shed-server: INTERRUPTED: ")
        self.assertEqual([l for l in shown if "downloading" in l], [], shown)
        self.assertTrue(terminal.ends_complete(output), repr(output[-120:]))
        self.assertFalse(os.path.exists(self.out))


class PullImagesProgressTest(ProgressTestCase):
    PHASES = ("downloading layers", "converting to ext4", "ready", "pulling ")

    def test_on_a_terminal_two_variants_never_share_a_line(self):
        config = self.write_config({"a": REFS["one"], "b": REFS["two"]})
        code, output, _ = terminal.run_on_pty([SHED_SERVER, "pull-images", "--config", config],
                                              columns=COLUMNS)
        self.assertEqual(code, 0, output)
        shown = terminal.screen(output, COLUMNS)
        self.assertEqual(shown[-1], "2 image(s) pulled", shown)
        for line in shown[:-1]:
            self.assertRegex(line, r"^[ab]: ", shown)
            self.assertFalse("a: " in line and "b: " in line, shown)
        self.assertOnePhasePerLine(shown, self.PHASES)
        for name in ("a", "b"):
            mine = [l for l in shown if l.startswith(name + ": ")]
            self.assertEqual(len([l for l in mine if "downloading layers: " in l]), 1, shown)
            self.assertEqual(len([l for l in mine if "converting to ext4: " in l]), 1, shown)
            self.assertRegex(mine[-1], r"^%s: ready " % name)
        self.assertTrue(terminal.ends_complete(output))

    def test_without_a_terminal_plain_lines(self):
        config = self.write_config({"a": REFS["one"]})
        result = subprocess.run([SHED_SERVER, "pull-images", "--config", config],
                                capture_output=True, text=True, timeout=300)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertPlain(result.stderr + result.stdout)
        self.assertEqual([l.split(": ")[1] for l in result.stderr.splitlines()],
                         ["downloading layers", "converting to ext4"])
        self.assertRegex(result.stdout, r"(?m)^a: ready ")


class CreateProgressTest(ProgressTestCase):
    """`shed create` draws the server's SSE progress (phase image with bytes, rootfs,
    container...) with the same renderer."""

    PHASES = ("image: ", "rootfs: ", "network: ", "container: ", "repo: ")

    @classmethod
    def setUpClass(cls):
        reason = shedserver.container_skip_reason()
        if reason is None and not os.path.exists("/bin/busybox"):
            reason = "/bin/busybox (busybox-static) is missing"
        if reason:
            raise unittest.SkipTest(reason)
        cls.server_dir = tempfile.mkdtemp(prefix="server-", dir=WORK)
        cls.server = shedserver.ServerProcess(
            SHED_SERVER, os.path.join(cls.server_dir, "data"),
            "name: progress\nbase_image: %s\nrootfs_size: 128M\ndefault_cpus: 1\n"
            "default_memory_mb: 256\nimages:\n  again: %s\n" % (REFS["box"], REFS["box"]),
            stop_timeout=300).start()
        cls.url = "127.0.0.1:%d" % cls.server.port

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shedserver.force_cleanup(cls.server.data_dir)
        shutil.rmtree(cls.server_dir, ignore_errors=True)
        if code != 0:
            raise AssertionError("shed-server exited with %s:\n%s" % (code, cls.server.log()))

    def tearDown(self):
        for name in ("tty", "plain"):
            self.server.request("DELETE", "/api/sheds/" + name)
        super().tearDown()

    def test_on_a_terminal_one_line_per_phase_and_the_last_one_complete(self):
        env = dict(os.environ, HOME=self.dir)
        code, output, _ = terminal.run_on_pty([SHED, "-s", self.url, "create", "tty"],
                                              columns=COLUMNS, env=env)
        self.assertEqual(code, 0, output)
        shown = terminal.screen(output, COLUMNS)
        self.assertEqual(shown[-1], "created tty (running, container)", shown)
        phases = shown[:-1]
        self.assertRegex(phases[0], r"^image: .*: [0-9.]+ [KM]iB in [0-9.]+ s", shown)
        self.assertTrue(any(l.startswith("rootfs: ") for l in phases), shown)
        for line in phases:
            self.assertRegex(line, r"^(image|rootfs|network|container|repo): ", shown)
        self.assertOnePhasePerLine(shown, self.PHASES)
        self.assertEqual(len({l.split(":")[0] for l in phases}), len(phases), shown)
        self.assertIn("KiB/s", output)
        self.assertTrue(terminal.ends_complete(output), repr(output[-120:]))

    def test_without_a_terminal_plain_lines(self):
        result = subprocess.run([SHED, "-s", self.url, "create", "plain", "--image", "again"],
                                capture_output=True, text=True, timeout=600,
                                env=dict(os.environ, HOME=self.dir))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertPlain(result.stderr)
        self.assertEqual(result.stdout, "created plain (running, container)\n")
        for line in result.stderr.splitlines():
            self.assertRegex(line, r"^(image|rootfs|network|container|repo): ")


if __name__ == "__main__":
    reason = clitest.programs_missing()
    if reason is None and shutil.which("docker-registry") is None:
        reason = "docker-registry is not installed (loopback registry fixture)"
    if reason:
        sys.exit(testrun.skip_all(reason))
    sys.exit(testrun.main())
