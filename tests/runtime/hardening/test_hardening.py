"""The attacks of issue 10 on the shed's box and the host's files, against a real
`shed-server serve`, real runc and a real Debian shed (tests/fixtures/fixture_image.py); the
attacks inside a shed run as its root through `shed-server exec`. Each must now be refused.

Suites (one ctest each):
  LocalDirTest  local_dir: "/", /proc, /etc, a symlink to "/", the data dir, ... -> 400 "not
                allowed" with one message whatever exists; an allowed root works read-write
                with nosuid,nodev and without the mounts below it; checked again at start
  MetadataTest  an edited rootfs_path is ignored; an edited pid never gets a host process
                killed
  SandboxTest   inside the shed: keyctl, add_key, unshare -Urn, clone(CLONE_NEWUSER),
                io_uring_setup, bpf, ... fail; Seccomp: 2; a fork loop stops at the pids
                limit; /tmp is sized, no core dumps; cpus above the host's count is a 400
  ConsoleTest   50 MB written to /proc/1/fd/1 leave console.log at its cap, the shed running;
                the logger outlives a kill -9 of the server
  CrashTest     kill -9 of the server at every crash point of a create, then a restart: no
                invisible instance, the shed reads "error" and can be started or deleted, no
                mount, loop device or container left
  UsernsTest    container.userns: root in the shed is host uid 100000, the rootfs idmapped
                (uid 0 inside and on disk), host files are nobody's, the repo still cloned
  ModesTest     the mode of every file and directory the server makes

  test_hardening.py SUITE --probe PATH_TO_SYSCALL_PROBE
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "container"))
import ctrtest  # noqa: E402
import shedserver  # noqa: E402  (on sys.path through ctrtest: SHED_FIXTURES)
import shedtest  # noqa: E402
from shedserver import wait_for  # noqa: E402

SHED_SERVER = os.environ.get("SHED_SERVER")
FIXTURE = None  # ctrtest.FixtureRegistry, one per process
WORK = None     # temp dir of this process
PROBE = None    # the static syscall_probe binary


def proc_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def proc_start_time(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def file_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Server(shedserver.ServerProcess):
    def __init__(self, data_dir, extra_config=""):
        config = ("name: hardening\nbase_image: %s\nrootfs_size: 2G\ndefault_cpus: 1\n"
                  "default_memory_mb: 512\n" % FIXTURE.ref("shed/tmux")) + extra_config
        super().__init__(SHED_SERVER, data_dir, config, stop_timeout=120, log_tail=6000)


class HardeningCase(unittest.TestCase):
    """One server per class over its own data dir; every test deletes its sheds and proves
    nothing of them is left."""
    extra_config = ""

    @classmethod
    def setUpClass(cls):
        cls.data_dir = tempfile.mkdtemp(prefix="shed-hard-", dir=WORK)
        cls.instance_dir = os.path.join(cls.data_dir, "instances")
        cls.runc_root = os.path.join(cls.data_dir, "runc")
        cls.server = Server(cls.data_dir, cls.extra_config)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        ctrtest.force_cleanup(cls.data_dir)

    def setUp(self):
        self.names = []
        if self.server.proc is None:
            self.server.env = None
            self.server.start()

    def tearDown(self):
        if self.server.proc is None:
            self.server.env = None
            self.server.start()
        for name in self.names:
            self.server.request("DELETE", "/api/sheds/" + name)
        if self.server.request("GET", "/api/sheds")[1]["sheds"] == []:
            # No shed left: nothing of the data dir is mounted or attached, including what
            # sheds share outside their directories (an overlay shed's lower under lowers/).
            self.assertEqual(ctrtest.mounts_under(self.data_dir), [], "mounts left behind")
            wait_for(lambda: not ctrtest.loop_devices_backed_by(self.data_dir))
            self.assertEqual(ctrtest.loop_devices_backed_by(self.data_dir), [],
                             "loop devices left behind")
        ctrtest.force_cleanup(self.data_dir)
        for name in self.names:
            self.assert_no_leftovers(name)

    def assert_no_leftovers(self, name):
        inst = os.path.join(self.instance_dir, name)
        self.assertFalse(os.path.exists(inst), "instance dir %s left behind" % inst)
        self.assert_nothing_held(name)

    def assert_nothing_held(self, name):
        """No mount, loop device or runc container of the shed (its directory may stay)."""
        inst = os.path.join(self.instance_dir, name)
        self.assertEqual(ctrtest.mounts_under(inst), [], "mounts left behind")
        wait_for(lambda: not ctrtest.loop_devices_backed_by(inst))
        self.assertEqual(ctrtest.loop_devices_backed_by(inst), [], "loop devices left behind")
        self.assertNotIn("shed-" + name, ctrtest.runc_containers(self.runc_root))

    def create(self, name, expect=201, **fields):
        self.names.append(name)
        status, body = self.server.request("POST", "/api/sheds", dict(name=name, **fields))
        self.assertEqual(status, expect, body)
        return body

    def exec_(self, name, *command, **kw):
        return subprocess.run([SHED_SERVER, "exec", "--config", self.server.config,
                               "--data-dir", self.data_dir, name, "--"] + list(command),
                              capture_output=True, **kw)

    def metadata_path(self, name):
        return os.path.join(self.instance_dir, name, "metadata.json")

    def metadata(self, name):
        with open(self.metadata_path(name)) as f:
            return json.load(f)

    def disk_file(self, name):
        """The shed's own disk: rootfs.ext4, or upper.ext4 for an overlay shed (the default
        where the data dir cannot reflink: this machine's ext4)."""
        overlay = self.metadata(name).get("disk", {}).get("kind") == "overlay"
        return os.path.join(self.instance_dir, name, "upper.ext4" if overlay else "rootfs.ext4")

    def edit_metadata(self, name, **fields):
        meta = self.metadata(name)
        meta.update(fields)
        tmp = self.metadata_path(name) + ".edit"
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, self.metadata_path(name))


# ---- local_dir -------------------------------------------------------------------------------

class LocalDirTest(HardeningCase):
    @classmethod
    def setUpClass(cls):
        cls.root = os.path.join(WORK, "local-root")
        os.makedirs(os.path.join(cls.root, "allowed"), exist_ok=True)
        for link, target in [("to-slash", "/"), ("to-etc", "/etc"), ("up", ".."),
                             ("inside-link", "allowed")]:
            if not os.path.lexists(os.path.join(cls.root, link)):
                os.symlink(target, os.path.join(cls.root, link))
        with open(os.path.join(cls.root, "a-file"), "w") as f:
            f.write("not a directory\n")
        # WORK is a root too: it holds every test's data dir.
        cls.extra_config = "local_dir_roots: [%s, %s]\n" % (cls.root, WORK)
        super().setUpClass()

    def refused(self, path):
        status, body = self.server.request("POST", "/api/sheds", {"name": "nope",
                                                                  "local_dir": path})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_LOCAL_DIR"), path)
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "nope")))
        return body["error"]["message"]

    def test_host_and_server_directories_are_refused(self):
        proc_mount = os.path.join(self.root, "procfs")
        os.makedirs(proc_mount, exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", proc_mount], check=True)
        try:
            for path in ["/", "/proc", "/proc/sys/kernel", "/etc", "/sys", "/dev", "/root",
                         "/boot", self.root + "/to-slash", self.root + "/to-slash/etc",
                         self.root + "/to-etc", self.root + "/up", self.root + "/up/local-root",
                         self.root + "/allowed/../..", self.root + "/./allowed", proc_mount,
                         self.data_dir, self.instance_dir, os.path.join(self.data_dir, "images"),
                         WORK, self.root + "/a-file", self.root + "/missing", "relative/dir"]:
                with self.subTest(path=path):
                    message = self.refused(path)
                    self.assertIn("not allowed", message)
        finally:
            subprocess.run(["umount", proc_mount], check=True)
        self.assertServerUp()

    def test_refusal_does_not_tell_whether_a_path_exists(self):
        messages = {path: self.refused(path).replace(path, "<path>")
                    for path in [self.root + "/a-file", self.root + "/missing",
                                 self.root + "/to-etc", self.root + "/up"]}
        self.assertEqual(len(set(messages.values())), 1, messages)

    def test_allowed_dir_is_read_write_nosuid_nodev_without_its_submounts(self):
        allowed = os.path.join(self.root, "allowed")
        sub = os.path.join(allowed, "submount")
        os.makedirs(sub, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sub], check=True)
        try:
            with open(os.path.join(sub, "only-on-the-host"), "w") as f:
                f.write("x")
            with open(os.path.join(allowed, "host-file"), "w") as f:
                f.write("host\n")
            shed = self.create("withdir", local_dir=allowed)
            self.assertEqual(shed["local_dir"], allowed)
            self.assertEqual(self.exec_("withdir", "cat", "/workspace/host-file").stdout,
                             b"host\n")
            self.assertEqual(self.exec_("withdir", "sh", "-c",
                                        "echo shed > /workspace/shed-file").returncode, 0)
            with open(os.path.join(allowed, "shed-file")) as f:
                self.assertEqual(f.read(), "shed\n")
            mounts = self.exec_("withdir", "cat", "/proc/mounts").stdout.decode()
            options = [line.split()[3].split(",") for line in mounts.splitlines()
                       if line.split()[1] == "/workspace"]
            self.assertEqual(len(options), 1, mounts)
            for flag in ("rw", "nosuid", "nodev"):
                self.assertIn(flag, options[0])
            # "bind", not "rbind": the tmpfs below local_dir stays on the host
            self.assertNotIn("/workspace/submount", mounts)
            listing = self.exec_("withdir", "ls", "/workspace/submount").stdout
            self.assertNotIn(b"only-on-the-host", listing)
        finally:
            subprocess.run(["umount", "-l", sub], check=True)

    def test_symlink_that_stays_inside_the_root_is_allowed(self):
        self.create("vialink", local_dir=os.path.join(self.root, "inside-link"))
        self.assertEqual(self.exec_("vialink", "test", "-d", "/workspace").returncode, 0)

    def test_local_dir_is_checked_again_at_every_start(self):
        changing = os.path.join(self.root, "changing")
        os.makedirs(changing, exist_ok=True)
        self.create("recheck", local_dir=changing)
        self.assertEqual(self.server.request("POST", "/api/sheds/recheck/stop")[0], 200)
        os.rmdir(changing)
        os.symlink("/", changing)  # swapped for a way out while the shed was stopped
        try:
            status, body = self.server.request("POST", "/api/sheds/recheck/start")
            self.assertEqual((status, body["error"]["code"]), (400, "INVALID_LOCAL_DIR"))
            self.assertEqual(self.server.request("GET", "/api/sheds/recheck")[1]["status"],
                             "stopped")
            self.assert_nothing_held("recheck")
        finally:
            os.unlink(changing)
        os.makedirs(changing)
        status, body = self.server.request("POST", "/api/sheds/recheck/start")
        self.assertEqual((status, body["status"]), (200, "running"))

    def assertServerUp(self):
        self.assertEqual(self.server.request("GET", "/api/info")[0], 200)


# ---- metadata.json -----------------------------------------------------------------------------

class MetadataTest(HardeningCase):
    def test_edited_rootfs_path_is_ignored(self):
        self.create("meta")
        self.assertEqual(self.exec_("meta", "sh", "-c", "echo mine > /root/marker").returncode, 0)
        self.assertEqual(self.server.request("POST", "/api/sheds/meta/stop")[0], 200)
        victim = os.path.join(WORK, "host-victim.img")
        with open(victim, "wb") as f:
            f.write(os.urandom(1 << 20))
            f.truncate(64 << 20)
        before = (file_sha256(victim), os.stat(victim).st_mtime_ns)
        self.edit_metadata("meta", rootfs_path=victim)
        status, body = self.server.request("POST", "/api/sheds/meta/start")
        self.assertEqual((status, body["status"]), (200, "running"), body)
        own = self.disk_file("meta")
        self.assertEqual(body["rootfs_path"], own)
        self.assertEqual(self.exec_("meta", "cat", "/root/marker").stdout, b"mine\n")
        self.assertEqual([b for _, b in ctrtest.loop_devices_backed_by(WORK) if b == victim], [])
        backing = [b for _, b in ctrtest.loop_devices_backed_by(self.instance_dir)]
        self.assertEqual(backing, [own])
        self.assertEqual((file_sha256(victim), os.stat(victim).st_mtime_ns), before)

    def test_edited_pid_never_gets_a_host_process_killed(self):
        self.create("pidx")
        self.assertEqual(self.server.request("POST", "/api/sheds/pidx/stop")[0], 200)
        sleeper = subprocess.Popen(["sleep", "600"])
        try:
            state = dict(self.metadata("pidx").get("backend_state") or {})
            state["init_start_time"] = proc_start_time(sleeper.pid)
            self.edit_metadata("pidx", status="running", pid=sleeper.pid, backend_state=state)
            status, body = self.server.request("GET", "/api/sheds/pidx")
            self.assertEqual((status, body["status"]), (200, "stopped"))
            status, body = self.server.request("POST", "/api/sheds/pidx/start")
            self.assertEqual((status, body["status"]), (200, "running"), body)
            self.assertEqual(self.server.request("DELETE", "/api/sheds/pidx")[0], 204)
            self.names.remove("pidx")
            self.assertTrue(proc_alive(sleeper.pid), "a host process was killed")
        finally:
            sleeper.kill()
            sleeper.wait()


# ---- seccomp, pids, limits ---------------------------------------------------------------------

REFUSED = {"keyctl": "EPERM", "add_key": "EPERM", "request_key": "EPERM",
           "unshare_user": "EPERM", "unshare_net": "EPERM", "clone_newuser": "EPERM",
           "io_uring_setup": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
           "userfaultfd": "EPERM", "mount": "EPERM", "kexec_load": "EPERM",
           "init_module": "EPERM", "socket_vsock": "EPERM", "clone3": "ENOSYS"}
ALLOWED = {"clone_plain": "ok", "socket_unix": "ok", "getpid": "ok"}
PIDS_LIMIT = 96


class SandboxTest(HardeningCase):
    extra_config = "container:\n  pids_limit: %d\n  tmp_size: 64M\n" % PIDS_LIMIT

    def setUp(self):
        super().setUp()
        self.create("box")
        with open(PROBE, "rb") as f:
            # Into the rootfs, not the /tmp tmpfs: exec looks commands up in the rootfs.
            copied = self.exec_("box", "sh", "-c", "cat > /usr/local/bin/shed-probe && "
                                "chmod 755 /usr/local/bin/shed-probe", input=f.read())
        self.assertEqual(copied.returncode, 0, copied.stderr)

    def test_seccomp_filter_is_on(self):
        status = self.exec_("box", "cat", "/proc/self/status").stdout.decode()
        self.assertIn("Seccomp:\t2\n", status)

    def test_refused_syscalls_fail_and_allowed_ones_work(self):
        result = self.exec_("box", "/usr/local/bin/shed-probe")
        self.assertEqual(result.returncode, 0, result.stderr)
        seen = dict(line.split() for line in result.stdout.decode().splitlines())
        self.assertEqual({k: seen.get(k) for k in REFUSED}, REFUSED)
        self.assertEqual({k: seen.get(k) for k in ALLOWED}, ALLOWED)

    def test_unshare_gives_no_nested_user_namespace(self):
        result = self.exec_("box", "unshare", "-Urn", "true")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(b"Operation not permitted", result.stderr)

    def test_fork_loop_stops_at_the_pids_limit(self):
        pid = self.metadata("box")["pid"]
        with open("/proc/%d/cgroup" % pid) as f:
            pids_cgroup = next(line.split(":")[2].strip() for line in f
                               if line.split(":")[1] == "pids")
        cgroup = "/sys/fs/cgroup/pids" + pids_cgroup
        with open(os.path.join(cgroup, "pids.max")) as f:
            self.assertEqual(f.read().strip(), str(PIDS_LIMIT))
        # The sleeps must not hold exec's stdout, or exec would wait for them.
        loop = self.exec_("box", "sh", "-c", "i=0; while [ $i -lt 500 ]; do "
                          "sleep 600 >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; echo done")
        try:
            with open(os.path.join(cgroup, "pids.current")) as f:
                self.assertLessEqual(int(f.read()), PIDS_LIMIT)
            with open(os.path.join(cgroup, "pids.events")) as f:
                self.assertGreater(int(f.read().split()[1]), 0, "the limit was never hit")
        finally:
            with open(os.path.join(cgroup, "cgroup.procs")) as f:
                for member in f.read().split():
                    if int(member) != pid:
                        os.kill(int(member), signal.SIGKILL)
        self.assertIn(loop.returncode, (0, 2), loop.stderr)
        # the shed lives on once the loop is gone
        wait_for(lambda: self.exec_("box", "true").returncode == 0)
        self.assertEqual(self.exec_("box", "true").returncode, 0)

    def test_tmp_is_sized_and_core_dumps_are_off(self):
        df = self.exec_("box", "df", "-k", "/tmp").stdout.decode().splitlines()[-1].split()
        self.assertEqual(int(df[1]), 64 * 1024)
        self.assertEqual(self.exec_("box", "sh", "-c", "ulimit -Hc").stdout.strip(), b"0")

    def test_cpus_above_the_host_count_are_refused(self):
        cpus = os.cpu_count()
        status, body = self.server.request("POST", "/api/sheds", {"name": "huge",
                                                                  "cpus": cpus + 1})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_REQUEST"))
        self.assertIn("at most %d" % cpus, body["error"]["message"])
        status, body = self.server.request("POST", "/api/sheds", {"name": "huge",
                                                                  "memory_mb": 16777216})
        self.assertEqual((status, body["error"]["code"]), (400, "INVALID_REQUEST"))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "huge")))


# ---- console ---------------------------------------------------------------------------------

CONSOLE_CAP = 1 << 20


class ConsoleTest(HardeningCase):
    extra_config = "console_log_max_bytes: 1M\n"

    def console(self, name, suffix=""):
        return os.path.join(self.instance_dir, name, "console.log" + suffix)

    def console_text(self, name):
        text = b""
        for suffix in (".1", ""):
            try:
                with open(self.console(name, suffix), "rb") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def assert_capped(self, name):
        for suffix in ("", ".1"):
            path = self.console(name, suffix)
            if os.path.exists(path):
                st = os.stat(path)
                self.assertLessEqual(st.st_size, CONSOLE_CAP, path)
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, path)

    def flood(self, name, megabytes, marker):
        result = self.exec_(name, "sh", "-c",
                            "head -c %d /dev/zero > /proc/1/fd/1; echo %s > /proc/1/fd/1"
                            % (megabytes << 20, marker))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(wait_for(lambda: marker.encode() in self.console_text(name)),
                        "the marker never reached console.log")

    def test_flood_of_pid1_stdout_leaves_console_log_at_its_cap(self):
        self.create("loud")
        link = self.exec_("loud", "readlink", "/proc/1/fd/1").stdout.decode()
        self.assertTrue(link.startswith("pipe:"), link)  # no host file in the shed
        self.flood("loud", 50, "END-OF-FLOOD")
        self.assert_capped("loud")
        self.assertTrue(os.path.exists(self.console("loud", ".1")))
        self.assertEqual(self.server.request("GET", "/api/sheds/loud")[1]["status"], "running")
        self.assertEqual(self.exec_("loud", "true").returncode, 0)
        status, df = self.server.request("GET", "/api/system/df")
        shed = next(s for s in df["sheds"] if s["name"] == "loud")
        self.assertIn("console_log_rotated", [f["kind"] for f in shed["other_files"]])

    def test_logger_outlives_a_killed_server(self):
        self.create("lasting")
        self.server.kill()
        self.flood("lasting", 3, "AFTER-THE-SERVER-DIED")
        self.assert_capped("lasting")
        self.server.start()
        self.assertEqual(self.server.request("GET", "/api/sheds/lasting")[1]["status"],
                         "running")

    def test_runc_messages_still_reach_console_log(self):
        self.create("broken")
        self.assertEqual(self.server.request("POST", "/api/sheds/broken/stop")[0], 200)
        # shed-init's mount point made a file: runc fails to start the shed (an overlay
        # shed's /.shed is in its upper.ext4, under upper/)
        disk = self.disk_file("broken")
        top = "/upper" if disk.endswith("upper.ext4") else ""
        for request in ("rm %s/.shed/init" % top, "rmdir %s/.shed" % top,
                        "write /etc/hostname %s/.shed" % top):
            subprocess.run(["debugfs", "-w", "-R", request, disk], capture_output=True,
                           check=True)
        status, body = self.server.request("POST", "/api/sheds/broken/start")
        self.assertEqual(status, 500, body)
        self.assertIn("runc run shed-broken failed", body["error"]["message"])
        with open(self.console("broken"), "rb") as f:
            self.assertIn(b"/.shed/init", f.read())
        self.assert_nothing_held("broken")

    def test_prune_logs_while_the_logger_writes(self):
        self.create("pruned")
        self.flood("pruned", 2, "BEFORE-PRUNE")
        prune = subprocess.run([SHED_SERVER, "system", "prune", "--scope", "logs",
                                "--log-tail-bytes", "1000", "--config", self.server.config,
                                "--data-dir", self.data_dir], capture_output=True, text=True)
        self.assertEqual(prune.returncode, 0, prune.stderr)
        self.assertLessEqual(os.stat(self.console("pruned")).st_size, 1000)
        self.flood("pruned", 0, "AFTER-PRUNE")
        with open(self.console("pruned"), "rb") as f:
            self.assertIn(b"AFTER-PRUNE", f.read())
        self.assert_capped("pruned")


# ---- kill -9 during a create -------------------------------------------------------------------

CRASH_POINTS = ["create-dir", "create-metadata", "create-rootfs", "container-mounted",
                "container-running"]


class CrashTest(HardeningCase):
    def crash_at(self, point, name):
        """Starts a create that stops dead at point, kills the server there (kill -9)."""
        self.server.stop()
        marker = os.path.join(WORK, "paused-%s" % name)
        self.server.env = {"SHED_TEST_PAUSE_AT": point, "SHED_TEST_PAUSE_MARKER": marker}
        self.server.start()
        outcome = {}

        def create():
            try:
                outcome["response"] = self.server.request("POST", "/api/sheds", {"name": name})
            except OSError as e:
                outcome["error"] = e
        thread = threading.Thread(target=create)
        thread.start()
        self.assertTrue(wait_for(lambda: os.path.exists(marker)), "never reached " + point)
        self.server.kill()
        thread.join()
        self.assertNotIn("response", outcome, "the create finished despite the pause")
        os.unlink(marker)

    def assert_nothing_invisible(self):
        """Every shed directory is a shed the API lists."""
        listed = {s["name"] for s in self.server.request("GET", "/api/sheds")[1]["sheds"]}
        on_disk = {n for n in os.listdir(self.instance_dir) if not n.startswith(".")}
        self.assertEqual(on_disk - listed, set(), "directories the API does not list")

    def check_point(self, point, then_start, squatter=False):
        name = "crash-" + point.replace("create-", "c-").replace("container-", "k-")
        self.names.append(name)
        self.crash_at(point, name)
        if squatter:
            # What a git clone orphaned by the crash looks like: a host process working
            # inside the mounted rootfs, which keeps the mount busy.
            mountpoint = os.path.join(self.instance_dir, name, "container", "rootfs")
            squatter = subprocess.Popen(["sleep", "600"], cwd=mountpoint)
        self.server.env = None
        self.server.start()  # reaps what the killed server left
        if squatter:
            self.assertTrue(wait_for(lambda: squatter.poll() is not None),
                            "the process inside the shed's directory was not killed")
            self.assertIn("killed process %d, left working inside a mount of a shed"
                          % squatter.pid, self.server.log())
        self.assert_nothing_invisible()
        inst = os.path.join(self.instance_dir, name)
        if point == "create-dir":
            self.assertFalse(os.path.exists(inst), "the orphan directory is still there")
            self.assertIn("no metadata.json", self.server.log())
            return
        status, body = self.server.request("GET", "/api/sheds/" + name)
        self.assertEqual((status, body["status"]), (200, "error"), body)
        self.assert_nothing_held(name)
        if then_start:
            status, body = self.server.request("POST", "/api/sheds/%s/start" % name)
            self.assertEqual((status, body["status"]), (200, "running"), body)
            self.assertEqual(self.exec_(name, "true").returncode, 0)
        status, _ = self.server.request("DELETE", "/api/sheds/" + name)
        self.assertEqual(status, 204)
        self.names.remove(name)
        self.assert_no_leftovers(name)

    def test_kill_after_the_mkdir_leaves_an_orphan_that_startup_removes(self):
        self.check_point("create-dir", False)

    def test_kill_after_the_metadata_reads_error_and_deletes(self):
        self.check_point("create-metadata", False)

    def test_kill_after_the_clone_reads_error_and_starts(self):
        self.check_point("create-rootfs", True)

    def test_kill_with_the_rootfs_mounted_releases_the_mount_and_its_users(self):
        self.check_point("container-mounted", False, squatter=True)

    def test_kill_with_the_container_running_releases_it_and_starts_again(self):
        self.check_point("container-running", True)

    def test_orphan_directory_is_reported_by_df_and_removed_by_prune(self):
        name = "crash-orphan"
        self.names.append(name)
        self.crash_at("create-dir", name)
        offline = ["--config", self.server.config, "--data-dir", self.data_dir]
        df = json.loads(subprocess.run([SHED_SERVER, "system", "df", "--json"] + offline,
                                       capture_output=True, check=True).stdout)
        orphan = [o for o in df["orphans"] if o["kind"] == "instance"]
        self.assertEqual([o["path"] for o in orphan], [os.path.join(self.instance_dir, name)])
        prune = json.loads(subprocess.run([SHED_SERVER, "system", "prune", "--scope", "orphans",
                                           "--json"] + offline,
                                          capture_output=True, check=True).stdout)
        self.assertIn((name, "instance"), [(i.get("name"), i["kind"]) for i in prune["items"]])
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, name)))


# ---- user-namespace mode ---------------------------------------------------------------------

USERNS_BASE = 100000


class UsernsTest(HardeningCase):
    @classmethod
    def setUpClass(cls):
        cls.shared = os.path.join(WORK, "userns-root", "shared")
        os.makedirs(cls.shared, exist_ok=True)
        with open(os.path.join(cls.shared, "host-owned"), "w") as f:
            f.write("host\n")
        # The host's directories above the data dir must let the mapped root through (the
        # server opens its own ones, 0710 to the mapped group, and says so about the others).
        os.chmod(WORK, 0o711)
        cls.extra_config = ("container:\n  userns: true\n  userns_base: %d\n"
                            "local_dir_roots: [%s]\nrepo_schemes: [https, ssh, file]\n"
                            % (USERNS_BASE, os.path.dirname(cls.shared)))
        super().setUpClass()

    def host_ids(self, pid):
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])

    def test_root_in_the_shed_is_an_unprivileged_host_uid(self):
        shed = self.create("mapped")
        with open("/proc/%d/uid_map" % shed["pid"]) as f:
            self.assertEqual(f.read().split(), ["0", str(USERNS_BASE), "65536"])
        self.assertEqual(self.host_ids(shed["pid"]), (USERNS_BASE, USERNS_BASE))
        self.assertEqual(self.exec_("mapped", "id", "-u").stdout.strip(), b"0")
        # the image's files are the shed's own (idmapped rootfs), and writable by its root
        self.assertEqual(self.exec_("mapped", "stat", "-c", "%u:%g", "/etc/passwd").stdout.strip(),
                         b"0:0")
        self.assertEqual(self.exec_("mapped", "sh", "-c", "echo x > /root/made-inside").returncode,
                         0)
        self.assertEqual(self.exec_("mapped", "tmux", "new", "-d", "-s", "w").returncode, 0)
        status, body = self.server.request("GET", "/api/sheds/mapped/sessions")
        self.assertEqual([s["name"] for s in body["sessions"]], ["w"])
        # the seccomp filter applies inside the user namespace too
        self.assertIn(b"Seccomp:\t2", self.exec_("mapped", "cat", "/proc/self/status").stdout)
        # on disk the files stay uid 0: the rootfs works in both modes
        self.assertEqual(self.server.request("POST", "/api/sheds/mapped/stop")[0], 200)
        rootfs = os.path.join(self.instance_dir, "mapped", "rootfs.ext4")
        owner = subprocess.run(["debugfs", "-R", "stat /root/made-inside", rootfs],
                               capture_output=True, text=True).stdout
        self.assertRegex(owner, r"User:\s+0\s+Group:\s+0")
        # the way to the bundle is open to the mapped group only, to traverse
        inst = os.stat(os.path.join(self.instance_dir, "mapped"))
        self.assertEqual((stat.S_IMODE(inst.st_mode), inst.st_gid), (0o710, USERNS_BASE))
        status, body = self.server.request("POST", "/api/sheds/mapped/start")
        self.assertEqual((status, body["status"]), (200, "running"), body)

    def test_host_files_are_not_root_owned_for_the_shed(self):
        self.create("guest", local_dir=self.shared)
        self.assertEqual(self.exec_("guest", "cat", "/workspace/host-owned").stdout, b"host\n")
        # host root's files are nobody's in the shed: its root cannot change them
        self.assertEqual(self.exec_("guest", "stat", "-c", "%u", "/workspace/host-owned")
                         .stdout.strip(), b"65534")
        write = self.exec_("guest", "sh", "-c", "echo x >> /workspace/host-owned")
        self.assertNotEqual(write.returncode, 0)
        with open(os.path.join(self.shared, "host-owned")) as f:
            self.assertEqual(f.read(), "host\n")

    def test_a_closed_host_directory_above_the_data_dir_is_named(self):
        os.chmod(WORK, 0o700)
        try:
            status, body = self.server.request("POST", "/api/sheds", {"name": "closed"})
        finally:
            os.chmod(WORK, 0o711)
        self.assertEqual(status, 500, body)
        self.assertIn("%s is not traversable by the shed's mapped root" % WORK,
                      body["error"]["message"])
        self.assert_no_leftovers("closed")

    def test_repo_is_cloned_before_the_mapping(self):
        # Outside /tmp, readable by all: git runs as nobody with a private /tmp of its own.
        repo = tempfile.mkdtemp(prefix="shed-repo-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, repo, True)
        shedtest.make_git_repo(repo, "cloned\n")
        self.create("cloned", repo="file://" + repo)
        self.assertEqual(self.exec_("cloned", "cat", "/workspace/README").stdout, b"cloned\n")
        self.assertEqual(self.exec_("cloned", "stat", "-c", "%u", "/workspace/README")
                         .stdout.strip(), b"0")


# ---- file modes --------------------------------------------------------------------------------

class ModesTest(HardeningCase):
    # Made by runc inside directories of ours that are 0700: its pid file and state.
    RUNC_MADE = ("/container/init.pid",)

    def test_every_file_the_server_makes_is_private(self):
        self.create("private")
        status, _ = self.server.request("POST", "/api/sheds", {"name": "second"})
        self.names.append("second")
        self.assertEqual(status, 201)
        self.assertEqual(self.server.request("POST", "/api/sheds/second/stop")[0], 200)
        # A mounted rootfs is the shed's own file system (its root's mode is the image's).
        mounts = set(ctrtest.mounts_under(self.data_dir))
        loose = []
        for root, dirs, files in os.walk(self.data_dir):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in mounts]
            for name in dirs + files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                made_by_runc = (path.startswith(self.runc_root + "/") or
                                path.endswith(self.RUNC_MADE))
                if stat.S_IMODE(st.st_mode) & 0o077 and not made_by_runc:
                    loose.append("%o %s" % (stat.S_IMODE(st.st_mode), path))
        self.assertEqual(loose, [])
        for path in (self.data_dir, self.instance_dir, os.path.join(self.data_dir, "images"),
                     self.runc_root, os.path.join(self.instance_dir, "private")):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700, path)
        for path in [self.disk_file("private")] + [
                os.path.join(self.instance_dir, "private", name)
                for name in ("metadata.json", "console.log")]:
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
        images = os.path.join(self.data_dir, "images")
        cached = [f for f in os.listdir(images) if f.endswith("-rootfs.ext4")]
        self.assertNotEqual(cached, [])
        for name in cached:
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(images, name)).st_mode), 0o600)


def main():
    global PROBE
    args = sys.argv[1:]
    if "--probe" in args:
        i = args.index("--probe")
        PROBE = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1 or PROBE is None:
        print(__doc__, file=sys.stderr)
        return 2

    def load_suite(work, fixture):
        global FIXTURE, WORK
        WORK, FIXTURE = work, fixture
        return unittest.defaultTestLoader.loadTestsFromName(args[0], sys.modules[__name__])

    return ctrtest.run_suite("shed-hard-", load_suite)


if __name__ == "__main__":
    sys.exit(main())
