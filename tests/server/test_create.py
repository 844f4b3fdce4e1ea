"""POST /api/sheds end to end and the /api/images endpoints, on a real `shed-server serve` with
the real container backend (runc over a loop-mounted rootfs): a static busybox image pushed to
a loopback registry, creates plain and streamed (SSE), their 4xx, failed creates that must
leave nothing behind (no instance dir, no mount, no loop device, no runc container), 20
concurrent creates from one uncached image (one conversion), image list/delete/prune, and
the repo: its URL policy, the unprivileged clone, a git host that never answers (the clone's
deadline), and creates cancelled by DELETE and by SIGTERM.

Needs root, runc, loop devices and docker-registry; otherwise prints why and skips (exit 77).

Run: test_create.py --shed-server PATH
"""

import argparse
import fcntl
import http.client
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import fault_proxy  # noqa: E402
import shedtest  # noqa: E402
import shedserver  # noqa: E402
import testrun  # noqa: E402
from shedserver import (force_cleanup, loop_devices_backed_by, mounts_under,  # noqa: E402
                        runc_containers)

SHED_SERVER = None
SHED = None  # the CLI, optional
REGISTRY = None
IMAGE_REFS = {}  # variant name -> ref in the loopback registry
WORK = None

IMAGE_FIELDS = {"name", "path", "docker_ref", "digest", "size_bytes", "source", "cached",
                "physical_bytes", "disk_bytes", "logical_bytes"}


def skip_reason():
    reason = shedserver.container_skip_reason()
    if reason is not None:
        return reason
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox (busybox-static) is missing: it is the test image's content"
    return None


def push_fixture_images(registry):
    pusher = shedtest.Pusher(registry.url)
    for name in ("base", "sse", "fresh", "imgs", "vanish"):
        shedtest.push_image(pusher, "shed/" + name, "v1", [(shedtest.busybox_layer(name), "gzip")])
        IMAGE_REFS[name] = "%s/shed/%s:v1" % (registry.host, name)


# ---- leftovers ------------------------------------------------------------------------------

def runc_status(runc_root, container):
    result = subprocess.run(["runc", "--root", runc_root, "state", container],
                            capture_output=True, text=True)
    return json.loads(result.stdout)["status"] if result.returncode == 0 else None


def can_reflink(directory):
    """Whether FICLONE works between two files of directory: what instance_disk auto asks."""
    ficlone = 0x40049409
    with tempfile.TemporaryFile(dir=directory) as src, tempfile.TemporaryFile(dir=directory) as dst:
        src.write(b"x" * 4096)
        src.flush()
        try:
            fcntl.ioctl(dst.fileno(), ficlone, src.fileno())
            return True
        except OSError:
            return False


def proc_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


# ---- the server -----------------------------------------------------------------------------

class Server(shedserver.ServerProcess):
    def __init__(self, data_dir, images, extra_config=""):
        config = ("name: create-test\nbase_image: %s\nrootfs_size: 256M\ndefault_cpus: 1\n"
                  "default_memory_mb: 256\ndefault_backend: detect\nlocal_dir_roots: [%s]\n"
                  "%simages:\n" % (IMAGE_REFS["base"], WORK, extra_config))
        for name, ref in images.items():
            config += "  %s: %s\n" % (name, ref)
        super().__init__(SHED_SERVER, data_dir, config, stop_timeout=300)

    def create_sse(self, body):
        """(status, headers, [(event, data)]) — or (status, headers, error body) before a
        stream. Checks the framing: every frame is exactly one event line and one data line."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("POST", "/api/sheds", body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json",
                              "Accept": "text/event-stream"})
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status != 200:
            result = resp.status, headers, json.loads(resp.read() or b"null")
            conn.close()
            return result
        text = resp.read().decode()
        conn.close()
        events = []
        assert text.endswith("\n\n"), repr(text[-200:])
        for frame in text[:-2].split("\n\n"):
            lines = frame.split("\n")
            assert len(lines) == 2, frame
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
            events.append((lines[0][7:], json.loads(lines[1][6:])))
        return resp.status, headers, events


# ---- tests ----------------------------------------------------------------------------------

class CreateTestCase(unittest.TestCase):
    images = {}
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="shed-create-", dir=WORK)
        cls.runc_root = os.path.join(cls.data_dir, "runc")
        cls.instance_dir = os.path.join(cls.data_dir, "instances")
        cls.images_dir = os.path.join(cls.data_dir, "images")
        cls.server = Server(cls.data_dir, cls.images, cls.extra_config).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        force_cleanup(cls.data_dir)
        # SIGTERM ends the server with 0; anything else (a sanitizer report, a crash) fails.
        if code != 0:
            raise AssertionError("shed-server exited with %s:\n%s" % (code, cls.server.log()[-4000:]))

    def setUp(self):
        self.names = []

    def tearDown(self):
        for name in self.names:
            self.server.request("DELETE", "/api/sheds/" + name)
        force_cleanup(self.data_dir)
        for name in self.names:
            self.assert_nothing_left(name)

    def assert_nothing_left(self, name):
        shed_dir = os.path.join(self.instance_dir, name)
        self.assertFalse(os.path.exists(shed_dir), "%s still exists" % shed_dir)
        self.assertEqual(mounts_under(shed_dir), [])
        self.assertEqual(loop_devices_backed_by(shed_dir), [])
        self.assertNotIn("shed-" + name, runc_containers(self.runc_root))
        self.assertEqual(self.server.request("GET", "/api/sheds/" + name)[0], 404)

    def create(self, name, **fields):
        self.names.append(name)
        return self.server.request("POST", "/api/sheds", dict(name=name, **fields))

    def assert_running(self, name):
        """Running as the backend sees it: GET (reconciled with the backend's status), the
        init process alive, runc's own state."""
        status, shed = self.server.request("GET", "/api/sheds/" + name)
        self.assertEqual((status, shed["status"]), (200, "running"), shed)
        self.assertTrue(proc_alive(shed["pid"]), shed)
        self.assertEqual(runc_status(self.runc_root, "shed-" + name), "running")
        return shed

    def assert_error(self, response, status, code):
        self.assertEqual(response[0], status, response)
        body = response[-1]
        self.assertEqual(set(body), {"error"}, body)
        self.assertEqual(body["error"]["code"], code, body)
        self.assertTrue(body["error"]["message"])


class CreateTest(CreateTestCase):

    @classmethod
    def setUpClass(cls):
        # "broken": a configured local image file that is not ext4 — the pipeline clones it
        # fine and the backend's loop mount then fails: an honest backend failure.
        cls.not_ext4 = os.path.join(WORK, "not-ext4.img")
        with open(cls.not_ext4, "wb") as f:
            f.write(b"this is not a file system\n" * 4096)
        # "gone": a configured local image file that does not exist (any more).
        cls.gone = os.path.join(WORK, "gone.ext4")
        # "vanish": pulled through a proxy, so the test can act while the freshness check of
        # a cached copy asks the registry, after the check saw the rootfs and before the
        # clone reads it.
        cls.proxy = fault_proxy.FaultProxy(REGISTRY.host).start()
        cls.images = {"sse": IMAGE_REFS["sse"], "broken": cls.not_ext4, "gone": cls.gone,
                      "vanish": "%s/shed/vanish:v1" % cls.proxy.host}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.proxy.stop()

    def test_create_plain_is_201_and_the_shed_really_runs(self):
        status, shed = self.create("plain", cpus=1, memory_mb=128)
        self.assertEqual(status, 201, shed)
        self.assertEqual(shed["name"], "plain")
        self.assertEqual(shed["status"], "running")
        self.assertEqual(shed["backend"], "container")
        self.assertEqual(shed["image"], "_base")
        self.assertEqual((shed["cpus"], shed["memory_mb"]), (1, 128))
        # the shed's own disk (instance_disk auto): a reflink clone where the data dir can
        # reflink, else (ext4) the upper layer of an overlay over the image
        kind, own = (("reflink", "rootfs.ext4") if can_reflink(self.instance_dir)
                     else ("overlay", "upper.ext4"))
        self.assertEqual(shed["disk"], kind)
        self.assertEqual(os.path.realpath(shed["rootfs_path"]),
                         os.path.realpath(os.path.join(self.instance_dir, "plain", own)))
        self.assertTrue(os.path.isfile(shed["rootfs_path"]))
        self.assertEqual(self.assert_running("plain"), shed)
        with open(os.path.join(self.instance_dir, "plain", "metadata.json")) as f:
            self.assertEqual(json.load(f)["status"], "running")
        self.assertRegex(self.server.log(), r"create shed=plain image=_base backend=container "
                         r"image_outcome=\w+ bytes_fetched=\d+ clone=%s disk=%s result=ok"
                         % ("reflink" if kind == "reflink" else "none", kind))
        status, _ = self.server.request("DELETE", "/api/sheds/plain")
        self.assertEqual(status, 204)
        self.names.remove("plain")
        self.assert_nothing_left("plain")

    def test_create_sse_streams_progress_then_one_complete(self):
        self.names.append("streamed")
        status, headers, events = self.server.create_sse({"name": "streamed", "image": "sse"})
        self.assertEqual(status, 200, events)
        self.assertTrue(headers["content-type"].startswith("text/event-stream"), headers)
        self.assertEqual(headers.get("cache-control"), "no-cache", headers)
        kinds = [kind for kind, _ in events]
        self.assertEqual(kinds[-1], "complete", events)
        self.assertEqual(kinds.count("complete"), 1, kinds)
        self.assertTrue(all(kind == "progress" for kind in kinds[:-1]), kinds)
        progress = [data for kind, data in events if kind == "progress"]
        for data in progress:
            self.assertLessEqual({"phase", "message", "warning"}, set(data), data)
            self.assertIn(data["phase"], {"image", "rootfs", "network", "vm", "agent", "repo",
                                          "container"})
            self.assertIs(data["warning"], False, data)
        phases = [data["phase"] for data in progress]
        self.assertEqual(phases[0], "image", phases)
        self.assertIn("rootfs", phases)
        # every "image" frame comes before the first "rootfs" one
        self.assertNotIn("image", phases[phases.index("rootfs"):], phases)
        # "sse" was not cached: the pull reports bytes, never more done than total.
        with_bytes = [d for d in progress if "bytes_total" in d]
        self.assertTrue(with_bytes, progress)
        for data in with_bytes:
            self.assertEqual(data["phase"], "image")
            self.assertLessEqual(data["bytes_done"], data["bytes_total"], data)
        final = events[-1][1]
        self.assertEqual((final["name"], final["status"], final["image"]),
                         ("streamed", "running", "sse"))
        self.assertEqual(self.assert_running("streamed"), final)

    def test_client_gone_mid_stream_create_still_completes(self):
        self.names.append("dropped")
        sock = socket.create_connection(("127.0.0.1", self.server.port))
        body = json.dumps({"name": "dropped"}).encode()
        sock.sendall(b"POST /api/sheds HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        received = b""
        while b"event: progress" not in received:
            chunk = sock.recv(4096)
            self.assertTrue(chunk, received)
            received += chunk
        sock.close()
        # The create goes on without its client and ends running. (A DELETE now would cancel
        # it: the shed is still "starting".)
        ended = shedserver.wait_for(lambda: re.search(r"create shed=dropped .* result=(\w+)",
                                                      self.server.log()))
        self.assertIsNotNone(ended, self.server.log())
        self.assertEqual(ended.group(1), "ok", self.server.log())
        self.assertEqual(self.assert_running("dropped")["name"], "dropped")
        self.assertEqual(self.server.request("DELETE", "/api/sheds/dropped")[0], 204)
        self.assert_nothing_left("dropped")

    def test_unknown_image_is_400_before_anything_or_any_stream(self):
        for headers in ({}, {"Accept": "text/event-stream"}):
            with self.subTest(headers=headers):
                self.names.append("noimage")
                response = self.server.request("POST", "/api/sheds",
                                               {"name": "noimage", "image": "nope"}, headers)
                self.assert_error(response, 400, "UNKNOWN_IMAGE")
                self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "noimage")))

    def test_existing_name_is_409_plain_and_before_a_stream(self):
        status, shed = self.create("twice")
        self.assertEqual(status, 201, shed)
        self.assert_error(self.create("twice"), 409, "SHED_ALREADY_EXISTS")
        status, _, body = self.server.create_sse({"name": "twice"})
        self.assert_error((status, body), 409, "SHED_ALREADY_EXISTS")
        self.assertEqual(self.assert_running("twice")["pid"], shed["pid"])

    def test_backend_failure_rolls_back_completely(self):
        response = self.create("broken", image="broken")
        self.assertEqual(response[0], 500, response)
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assert_nothing_left("broken")
        self.assertNotIn("rollback:", response[1]["error"]["message"])
        # streamed: progress, then exactly one error event, and again nothing left
        status, _, events = self.server.create_sse({"name": "broken", "image": "broken"})
        self.assertEqual(status, 200, events)
        kinds = [kind for kind, _ in events]
        self.assertEqual(kinds[-1], "error", events)
        self.assertEqual(kinds.count("error"), 1, kinds)
        self.assertNotIn("complete", kinds)
        self.assertEqual(set(events[-1][1]), {"code", "message"}, events[-1])
        self.assertEqual(events[-1][1]["code"], "BACKEND_ERROR")
        self.assert_nothing_left("broken")
        # the name is free again: a good create of it works
        status, shed = self.create("broken")
        self.assertEqual(status, 201, shed)

    def test_a_configured_local_image_that_is_gone_is_500_naming_the_file(self):
        self.assertFalse(os.path.exists(self.gone))
        response = self.create("nolocal", image="gone")
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assertIn(self.gone, response[1]["error"]["message"])
        self.assert_nothing_left("nolocal")

    def test_an_image_file_vanishing_before_the_clone_is_500_naming_the_file(self):
        status, shed = self.create("cached", image="vanish")  # caches vanish-rootfs.ext4
        self.assertEqual(status, 201, shed)
        self.assertEqual(self.server.request("DELETE", "/api/sheds/cached")[0], 204)
        self.names.remove("cached")
        rootfs = os.path.join(self.images_dir, "vanish-rootfs.ext4")
        self.assertTrue(os.path.isfile(rootfs))
        # The next create finds the cache (rootfs and .source) and asks the registry whether
        # the tag moved: that is when the file goes away.
        self.proxy.add_fault("call", "/manifests/", fn=lambda: os.unlink(rootfs))
        response = self.create("late", image="vanish")
        self.assertFalse(os.path.exists(rootfs))
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assertIn(rootfs, response[1]["error"]["message"])
        self.assert_nothing_left("late")

    def test_file_urls_and_private_hosts_are_refused_before_anything(self):
        for repo, why in [("file://" + os.path.join(WORK, "repo.git"), "file is not in repo_schemes"),
                          ("http://example.com/o/r.git", "http is not in repo_schemes"),
                          ("https://127.0.0.1:1/o/r.git", "loopback"),
                          ("git@169.254.169.254:o/r.git", "link-local"),
                          ("ext::sh -c id", "whitespace")]:
            for headers in ({}, {"Accept": "text/event-stream"}):
                with self.subTest(repo=repo, headers=headers):
                    response = self.server.request("POST", "/api/sheds",
                                                   {"name": "badrepo", "repo": repo}, headers)
                    self.assert_error(response, 400, "INVALID_REPO_URL")
                    self.assertIn(why, response[1]["error"]["message"])
                    self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "badrepo")))

    def test_local_dir_is_bind_mounted_and_released_on_delete(self):
        shared = tempfile.mkdtemp(prefix="shared-", dir=WORK)
        status, shed = self.create("withdir", local_dir=shared)
        self.assertEqual(status, 201, shed)
        self.assertEqual(shed["local_dir"], shared)
        self.assert_running("withdir")
        self.assertEqual(self.server.request("DELETE", "/api/sheds/withdir")[0], 204)
        self.names.remove("withdir")
        self.assert_nothing_left("withdir")
        self.assertTrue(os.path.isdir(shared))


# ---- the repo ---------------------------------------------------------------------------------

class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a git host that
    hangs); counts the connections it holds."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.held = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.stopping = True
        self.listener.close()
        for conn in self.held:
            conn.close()


def processes_mentioning(text):
    """pids whose command line contains text (git and its helpers carry the URL)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def make_repo(parent, mode):
    """A git repo with one file, in a fresh directory of mode under parent (outside /tmp:
    git sees a private /tmp of its own)."""
    top = tempfile.mkdtemp(prefix="shed-repo-", dir=parent)
    repo = os.path.join(top, "r.git")
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=top)
    shedtest.make_git_repo(repo, "cloned\n", env=env)
    subprocess.run(["chmod", "-R", "a+rX", top], check=True)
    os.chmod(top, mode)
    return top, repo


class RepoTestCase(CreateTestCase):
    repo_timeout = 4

    @classmethod
    def setUpClass(cls):
        cls.hole = BlackHole()
        cls.extra_config = ("repo_schemes: [https, ssh, file]\nrepo_allow_hosts: [127.0.0.1]\n"
                            "repo_timeout_seconds: %d\n" % cls.repo_timeout)
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.hole.close()

    def hole_url(self):
        return "https://127.0.0.1:%d/o/r.git" % self.hole.port

    def assert_no_git_left(self):
        marker = "127.0.0.1:%d" % self.hole.port
        self.assertEqual(shedserver.wait_for(lambda: processes_mentioning(marker) == []), True,
                         processes_mentioning(marker))


class RepoTest(RepoTestCase):
    def test_repo_clone_failure_warns_and_rolls_back(self):
        repo = "file:///var/empty/no-such-repo.git"
        response = self.create("norepo", repo=repo)
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assertIn("the repository could not be fetched", response[1]["error"]["message"])
        self.assert_nothing_left("norepo")
        status, _, events = self.server.create_sse({"name": "norepo", "repo": repo})
        self.assertEqual(status, 200, events)
        warnings = [d for kind, d in events if kind == "progress" and d["warning"]]
        self.assertTrue(warnings and warnings[0]["phase"] == "repo", events)
        self.assertEqual([kind for kind, _ in events][-1], "error", events)
        self.assert_nothing_left("norepo")

    def test_a_git_host_that_never_answers_fails_the_create_at_the_deadline(self):
        start = time.monotonic()
        response = self.create("hole", repo=self.hole_url())
        seconds = time.monotonic() - start
        print("create failed after %.1f s (repo_timeout_seconds %d)" % (seconds, self.repo_timeout))
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assertIn("did not finish within 4 s (repo_timeout_seconds)",
                      response[1]["error"]["message"])
        self.assertGreaterEqual(len(self.hole.held), 1, "git never reached the host")
        self.assert_nothing_left("hole")
        self.assert_no_git_left()

    def test_the_clone_runs_unprivileged_and_the_tree_belongs_to_the_shed(self):
        readable, readable_repo = make_repo("/var/tmp", 0o755)
        private, private_repo = make_repo("/var/tmp", 0o700)
        self.addCleanup(shutil.rmtree, readable, True)
        self.addCleanup(shutil.rmtree, private, True)
        status, shed = self.create("cloned", repo="file://" + readable_repo)
        self.assertEqual(status, 201, shed)
        workspace = os.path.join(self.instance_dir, "cloned", "container", "rootfs", "workspace")
        readme = os.path.join(workspace, "README")
        with open(readme) as f:
            self.assertEqual(f.read(), "cloned\n")
        for path in (workspace, readme, os.path.join(workspace, ".git", "HEAD")):
            st = os.lstat(path)
            self.assertEqual((st.st_uid, st.st_gid), (0, 0), path)  # the shed's root
        # As host root git could read a 0700 repo of root's; as nobody it cannot.
        response = self.create("private", repo="file://" + private_repo)
        self.assert_error(response, 500, "BACKEND_ERROR")
        self.assertIn("the repository could not be fetched", response[1]["error"]["message"])
        self.assert_nothing_left("private")


class CancelTest(RepoTestCase):
    repo_timeout = 600  # never reached: the create is cancelled long before

    def start_create_into_the_hole(self, name):
        """A create hanging in its clone; returns (thread, result list)."""
        self.names.append(name)
        result = []
        thread = threading.Thread(target=lambda: result.append(self.server.request(
            "POST", "/api/sheds", {"name": name, "repo": self.hole_url()})), daemon=True)
        connected = len(self.hole.held)
        thread.start()
        self.assertTrue(shedserver.wait_for(lambda: len(self.hole.held) > connected),
                        "git never reached the host")
        status, shed = self.server.request("GET", "/api/sheds/" + name)
        self.assertEqual((status, shed["status"]), (200, "starting"), shed)
        return thread, result

    def test_delete_of_a_starting_shed_cancels_its_create(self):
        thread, result = self.start_create_into_the_hole("doomed")
        start = time.monotonic()
        status, _ = self.server.request("DELETE", "/api/sheds/doomed")
        print("DELETE answered after %.1f s" % (time.monotonic() - start))
        self.assertEqual(status, 204)
        thread.join(shedserver.WAIT_SECONDS)
        self.assertEqual(len(result), 1)
        self.assert_error(result[0], 500, "BACKEND_ERROR")
        self.assertIn("cancelled", result[0][1]["error"]["message"])
        self.assert_nothing_left("doomed")
        self.assert_no_git_left()
        self.assertRegex(self.server.log(), r"create shed=doomed .* result=BACKEND_ERROR")


class SigtermTest(RepoTestCase):
    repo_timeout = 600

    def test_sigterm_cancels_a_create_in_flight_and_the_server_stops(self):
        thread, result = CancelTest.start_create_into_the_hole(self, "interrupted")
        start = time.monotonic()
        code = self.server.stop()
        print("server stopped %.1f s after SIGTERM" % (time.monotonic() - start))
        self.assertEqual(code, 0, self.server.log()[-2000:])
        thread.join(shedserver.WAIT_SECONDS)
        self.assertIn("cancelled", result[0][1]["error"]["message"])
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "interrupted")))
        self.assertEqual(mounts_under(self.data_dir), [])
        self.assert_no_git_left()
        self.names.remove("interrupted")
        self.server.start()  # for tearDownClass


class CrashTest(RepoTestCase):
    repo_timeout = 600

    def test_git_dies_with_a_killed_server(self):
        thread, _ = CancelTest.start_create_into_the_hole(self, "orphan")
        marker = "127.0.0.1:%d" % self.hole.port
        self.assertTrue(processes_mentioning(marker), "no git process to orphan")
        self.server.proc.kill()  # no SIGTERM, no cleanup: a crash
        self.server.proc.wait()
        thread.join(shedserver.WAIT_SECONDS)
        self.assert_no_git_left()  # PR_SET_PDEATHSIG: git and its children went with it
        # What the crash left is the crash-consistency work's; a restarted server deletes it.
        self.server.start()
        force_cleanup(self.data_dir)


class CliTest(CreateTestCase):
    """The shed CLI on the real pipeline: create draws progress from the SSE stream."""

    def shed(self, *args):
        env = dict(os.environ, HOME=WORK)  # no client.yaml of the machine's user
        return subprocess.run([SHED, "-s", "http://127.0.0.1:%d" % self.server.port] + list(args),
                              capture_output=True, text=True, env=env)

    def setUp(self):
        super().setUp()
        if SHED is None:
            self.skipTest("no --shed given")

    def test_cli_create_images_delete(self):
        self.names.append("cli")
        result = self.shed("--json", "create", "cli")
        self.assertEqual(result.returncode, 0, result.stderr)
        shed = json.loads(result.stdout)
        self.assertEqual((shed["name"], shed["status"]), ("cli", "running"))
        self.assertIn("rootfs", result.stderr)  # progress lines (not a terminal: one per frame)
        self.assert_running("cli")
        result = self.shed("create", "cli")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("SHED_ALREADY_EXISTS", result.stderr)
        result = self.shed("--json", "images")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), self.server.request("GET", "/api/images")[1])
        result = self.shed("delete", "cli")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.names.remove("cli")
        self.assert_nothing_left("cli")


class ConcurrencyTest(CreateTestCase):
    COUNT = 20

    @classmethod
    def setUpClass(cls):
        cls.images = {"fresh": IMAGE_REFS["fresh"]}
        super().setUpClass()

    def test_twenty_concurrent_creates_of_one_uncached_image_convert_once(self):
        self.assertFalse(os.path.exists(os.path.join(self.images_dir, "fresh-rootfs.ext4")))
        names = ["c%02d" % i for i in range(self.COUNT)]
        self.names.extend(names)
        results = shedserver.create_concurrently(self.server, names, "fresh")
        for name in names:
            self.assertEqual(results[name][0], 201, (name, results[name]))
            self.assertEqual(results[name][1]["status"], "running")
        for name in names:
            self.assert_running(name)
        status, listing = self.server.request("GET", "/api/sheds")
        self.assertEqual(sorted(s["name"] for s in listing["sheds"] if s["status"] == "running"),
                         names)
        # exactly one conversion: the server log's per-create line, and one rootfs file
        log = self.server.log()
        outcomes = [line.split("image_outcome=")[1].split()[0] for line in log.splitlines()
                    if " create shed=c" in line and " image=fresh " in line]
        self.assertEqual(len(outcomes), self.COUNT, log[-3000:])
        self.assertEqual(outcomes.count("converted"), 1, outcomes)
        self.assertEqual(outcomes.count("fresh"), self.COUNT - 1, outcomes)
        with open(os.path.join(self.images_dir, "fresh-rootfs.ext4.source")) as f:
            source = json.load(f)
        self.assertEqual(source["ref"], IMAGE_REFS["fresh"])
        content = os.listdir(os.path.join(self.images_dir, "rootfs", "sha256"))
        self.assertEqual(len([f for f in content if f.endswith(".ext4")]), 1, content)
        # and all of them go away again
        for name in names:
            self.assertEqual(self.server.request("DELETE", "/api/sheds/" + name)[0], 204, name)
        for name in names:
            self.assert_nothing_left(name)
        self.assertEqual(self.server.request("GET", "/api/sheds"), (200, {"sheds": []}))


class ImagesTest(CreateTestCase):
    @classmethod
    def setUpClass(cls):
        cls.images = {"imgs": IMAGE_REFS["imgs"], "notpulled": IMAGE_REFS["imgs"]}
        super().setUpClass()

    def discover(self, name):
        """A hand-placed <name>-rootfs.ext4 (a copy of a cached one): a discovered image."""
        src = os.path.join(self.images_dir, "imgs-rootfs.ext4")
        shutil.copyfile(src, os.path.join(self.images_dir, name + "-rootfs.ext4"))

    def list_images(self):
        status, body = self.server.request("GET", "/api/images")
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"images"})
        for image in body["images"]:
            extra = {"is_base"} if image["name"] == "_base" else set()
            self.assertEqual(set(image), IMAGE_FIELDS | extra, image)
        return {image["name"]: image for image in body["images"]}, [i["name"] for i in body["images"]]

    def test_list_delete_prune(self):
        status, shed = self.create("user", image="imgs")  # caches imgs, not _base
        self.assertEqual(status, 201, shed)
        self.discover("stray")
        self.discover("kept")
        self.discover("gone")
        status, shed = self.create("keeper", image="kept")  # a shed on a discovered image
        self.assertEqual(status, 201, shed)
        self.assertEqual(shed["image"], "kept")

        by_name, order = self.list_images()
        # config variants, the base image (issue 12: listed like the others, marked), then
        # the discovered ones
        self.assertEqual(order, ["imgs", "notpulled", "_base", "gone", "kept", "stray"])
        self.assertEqual(by_name["_base"],
                         {"name": "_base", "path": "", "docker_ref": IMAGE_REFS["base"],
                          "digest": "", "size_bytes": 0, "source": "config", "cached": False,
                          "is_base": True, "physical_bytes": 0, "disk_bytes": 0,
                          "logical_bytes": 0})
        imgs = by_name["imgs"]
        self.assertEqual((imgs["source"], imgs["cached"], imgs["docker_ref"]),
                         ("config", True, IMAGE_REFS["imgs"]))
        self.assertEqual(imgs["path"], os.path.join(self.images_dir, "imgs-rootfs.ext4"))
        self.assertTrue(imgs["digest"].startswith("sha256:"), imgs)
        self.assertEqual(imgs["size_bytes"], os.stat(imgs["path"]).st_size)
        self.assertEqual(by_name["notpulled"],
                         {"name": "notpulled", "path": "", "docker_ref": IMAGE_REFS["imgs"],
                          "digest": "", "size_bytes": 0, "source": "config", "cached": False,
                          "physical_bytes": 0, "disk_bytes": 0, "logical_bytes": 0})
        # On disk: the blocks the rootfs holds (sparse), each counted once; logical: st_size.
        self.assertEqual(imgs["physical_bytes"], imgs["disk_bytes"])
        self.assertLess(imgs["disk_bytes"], imgs["size_bytes"])
        self.assertEqual((by_name["stray"]["source"], by_name["stray"]["cached"]),
                         ("discovered", True))

        self.assert_error(self.server.request("DELETE", "/api/images/nope"), 404,
                          "IMAGE_NOT_FOUND")
        self.assert_error(self.server.request("DELETE", "/api/images/imgs"), 409, "IMAGE_IN_USE")
        self.assert_error(self.server.request("DELETE", "/api/images/kept"), 409, "IMAGE_IN_USE")
        self.assertEqual(self.server.request("DELETE", "/api/images/gone"), (204, None))
        self.assertFalse(os.path.exists(os.path.join(self.images_dir, "gone-rootfs.ext4")))
        self.assert_error(self.server.request("DELETE", "/api/images/gone"), 404,
                          "IMAGE_NOT_FOUND")
        self.assertNotIn("gone", self.list_images()[0])

        self.assert_error(self.server.request("POST", "/api/images/prune?dry_run=maybe"), 400,
                          "INVALID_REQUEST")
        status, dry = self.server.request("POST", "/api/images/prune?dry_run=true")
        self.assertEqual(status, 200, dry)
        self.assertEqual([image["name"] for image in dry["deleted"]], ["stray"])
        for image in dry["deleted"]:
            self.assertEqual(set(image), IMAGE_FIELDS | {"freed"}, image)
        self.assertTrue(dry["dry_run"])
        self.assertTrue(os.path.exists(os.path.join(self.images_dir, "stray-rootfs.ext4")))
        status, real = self.server.request("POST", "/api/images/prune?dry_run=false")
        self.assertEqual(status, 200, real)
        self.assertEqual(real["deleted"], dry["deleted"])
        self.assertEqual(real["freed"], dry["freed"])
        self.assertFalse(os.path.exists(os.path.join(self.images_dir, "stray-rootfs.ext4")))
        status, again = self.server.request("POST", "/api/images/prune")
        self.assertEqual((status, again["deleted"]), (200, []))
        self.assertEqual(self.list_images()[1], ["imgs", "notpulled", "_base", "kept"])
        # the shed on the discovered image still runs; once it is gone, its image is prunable
        self.assert_running("keeper")
        self.assertEqual(self.server.request("DELETE", "/api/sheds/keeper")[0], 204)
        status, body = self.server.request("POST", "/api/images/prune")
        self.assertEqual([image["name"] for image in body["deleted"]], ["kept"])


def main():
    global SHED_SERVER, SHED, REGISTRY, WORK
    parser = argparse.ArgumentParser()
    parser.add_argument("--shed-server", required=True)
    parser.add_argument("--shed", help="the shed CLI (its tests are skipped without it)")
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args()
    SHED_SERVER = os.path.abspath(args.shed_server)
    SHED = os.path.abspath(args.shed) if args.shed else None
    reason = skip_reason()
    if reason:
        return testrun.skip_all(reason)
    WORK = tempfile.mkdtemp(prefix="shed-create-test-")
    try:
        REGISTRY = shedtest.Registry(workdir=os.path.join(WORK, "registry")).start()
        push_fixture_images(REGISTRY)
        loader = unittest.defaultTestLoader
        module = sys.modules[__name__]
        suite = (loader.loadTestsFromNames(args.tests, module) if args.tests
                 else loader.loadTestsFromModule(module))
        return testrun.run(suite)
    finally:
        if REGISTRY is not None:
            REGISTRY.stop()
        force_cleanup(WORK)
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
