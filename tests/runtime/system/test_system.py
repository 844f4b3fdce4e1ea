"""`system df` and `system prune` on real on-disk states: image variants pulled and converted
from a docker-registry on 127.0.0.1 (`shed-server pull-images`), shed directories with real
clones of them (`shed-server clone`), orphans left the way interrupted runs leave them.
Checked through the local commands, the REST API (`shed-server serve`) and the `shed` CLI.

"Running" sheds are real long-lived processes recorded as the shed's pid (backend ""), which
is how the server tells running-ness for sheds of a backend it does not drive."""

import fcntl
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import shedtest
import testrun
from fault_proxy import FaultProxy

SHED_SERVER = os.environ.get("SHED_SERVER", "shed-server")
SHED_CLI = os.environ.get("SHED_CLI", "shed")
OLD = 5 * 24 * 3600
TOO_RECENT = re.compile(r"^too recent \(\d+[hms] < 72h\)$")


def run(argv, check=True, input_text=None, env=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, input=input_text,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(argv), proc.returncode,
                                                        proc.stdout, proc.stderr))
    return proc


def set_age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def layer(hostname, size):
    return (shedtest.LayerBuilder().dir("etc").file("etc/hostname", hostname + "\n")
            .file("data.bin", os.urandom(size)).tar_bytes())


def shedtest_wait():
    """How long to wait for something that must happen: generous, the CI machine is slow."""
    return 120


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inode_usage(paths):
    """Physical bytes of the distinct inodes among paths (what totals must say)."""
    seen, total = set(), 0
    for path in paths:
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def all_files(root):
    out = []
    for dirpath, _, files in os.walk(root):
        out.extend(os.path.join(dirpath, f) for f in files)
    return sorted(out)


class SystemTestCase(unittest.TestCase):
    """One registry per class with images a, b, c; a fresh data dir per test."""

    @classmethod
    def setUpClass(cls):
        cls.registry = shedtest.Registry().start()
        pusher = shedtest.Pusher(cls.registry.url)
        for name, size in (("a", 300 << 10), ("b", 500 << 10), ("c", 700 << 10)):
            shedtest.push_image(pusher, "sys/" + name, "v1", [(layer(name, size), "gzip")])

    @classmethod
    def tearDownClass(cls):
        cls.registry.stop()

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shed-system-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.data_dir = os.path.join(self.dir, "data")
        self.images_dir = os.path.join(self.data_dir, "images")
        self.instance_dir = os.path.join(self.data_dir, "instances")
        self.config = os.path.join(self.dir, "server.yaml")
        self.sleepers = []
        self.addCleanup(self.stop_sleepers)

    def stop_sleepers(self):
        for proc in self.sleepers:
            proc.kill()
            proc.wait()

    def ref(self, name, tag="v1"):
        return "%s/sys/%s:%s" % (self.registry.host, name, tag)

    def write_config(self, images):
        with open(self.config, "w") as f:
            f.write("name: sys-test\ndata_dir: %s\nrootfs_size: 64M\nbase_image: null\n"
                    % self.data_dir)
            if images:
                f.write("images:\n")
                for name, ref in images.items():
                    f.write("  %s: %s\n" % (name, ref))

    def pull(self, names):
        """Caches the variants names (name -> registry image) through pull-images."""
        self.write_config({n: self.ref(img) for n, img in names.items()})
        run([SHED_SERVER, "pull-images", "--config", self.config])

    def variant(self, name):
        return os.path.join(self.images_dir, name + "-rootfs.ext4")

    def make_shed(self, name, image, age=OLD, status="stopped", pid=0, console=b""):
        d = os.path.join(self.instance_dir, name)
        os.makedirs(d)
        run([SHED_SERVER, "clone", self.variant(image), os.path.join(d, "rootfs.ext4")])
        meta = {"name": name, "status": status, "created_at": "2026-01-20T10:30:00Z",
                "repo": "", "backend": "", "image": image, "pid": pid}
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(meta, f)
        if console:
            with open(os.path.join(d, "console.log"), "wb") as f:
                f.write(console)
        set_age(os.path.join(d, "metadata.json"), age)
        return d

    def running_pid(self):
        proc = subprocess.Popen(["sleep", "3600"])
        self.sleepers.append(proc)
        return proc.pid

    def system(self, *args, check=True):
        return run([SHED_SERVER, "system"] + list(args) + ["--config", self.config], check=check)

    def df(self):
        return json.loads(self.system("df", "--json").stdout)

    def prune(self, *args):
        return json.loads(self.system("prune", "--json", *args).stdout)

    @staticmethod
    def listing(result):
        items = [(i["kind"], i.get("name"), i.get("path"), i["action"]) for i in result["items"]]
        skipped = [(i["kind"], i.get("name"), i.get("path"), i["reason"])
                   for i in result["skipped"]]
        return items, skipped

    @staticmethod
    def skipped_reason(result, name_or_path):
        for s in result["skipped"]:
            if s.get("name") == name_or_path or s.get("path") == name_or_path:
                return s["reason"]
        return None

    @staticmethod
    def item(result, kind, name_or_path):
        for i in result["items"]:
            if i["kind"] == kind and (i.get("name") == name_or_path or i.get("path") == name_or_path):
                return i
        return None

    def serve_two_images_and_an_old_shed(self):
        """Images a (in the config) and b (used only by the stopped shed "old"), served."""
        self.pull({"a": "a", "b": "b"})
        self.make_shed("old", "b")
        self.write_config({"a": self.ref("a")})
        self.server = Server(self.config, self.data_dir)
        self.addCleanup(self.server.stop)


class DiskUsageTest(SystemTestCase):
    def test_df_reports_every_category_with_the_spec_fields(self):
        self.pull({"a": "a", "b": "b"})
        self.make_shed("one", "a", console=b"boot\n" * 1000)
        write(os.path.join(self.images_dir, "gone-rootfs.ext4.tmp"), b"x" * 5000)
        df = self.df()
        for key in ("server_name", "backend", "generated_at", "images", "sheds", "orphans",
                    "totals", "notes"):
            self.assertIn(key, df)
        self.assertEqual(df["server_name"], "sys-test")
        self.assertEqual([i["name"] for i in df["images"]], ["a", "b"])
        image = df["images"][0]
        self.assertEqual(image["docker_ref"], self.ref("a"))
        self.assertEqual(image["path"], self.variant("a"))
        for key in ("logical_bytes", "physical_bytes", "exclusive_bytes"):
            self.assertIn(key, image["size"])
        self.assertEqual(image["size"]["logical_bytes"], 64 << 20)
        shed = df["sheds"][0]
        self.assertEqual((shed["name"], shed["status"], shed["image"]), ("one", "stopped", "a"))
        self.assertEqual(shed["rootfs"]["kind"], "rootfs")
        self.assertEqual(shed["console_log"]["kind"], "console_log")
        self.assertEqual(shed["console_log"]["size"]["logical_bytes"], 5000)
        self.assertIn({"path": os.path.join(self.images_dir, "gone-rootfs.ext4.tmp"),
                       "kind": "tmp"},
                      [{"path": o["path"], "kind": o["kind"]} for o in df["orphans"]])
        totals = df["totals"]
        for field in ("logical_bytes", "physical_bytes", "exclusive_bytes"):
            self.assertEqual(totals["all"][field], totals["images"][field] +
                             totals["sheds"][field] + totals["orphans"][field])
        self.assertTrue(any("st_blocks*512" in n and "FIEMAP" in n for n in df["notes"]))

    def test_totals_count_hardlinked_variants_once_and_match_the_disk(self):
        # two names for one digest share one content-addressed rootfs (hardlinks)
        self.pull({"a": "a", "twin": "a", "b": "b"})
        self.assertEqual(os.stat(self.variant("a")).st_ino, os.stat(self.variant("twin")).st_ino)
        self.make_shed("one", "a")
        df = self.df()
        everything = all_files(self.images_dir) + all_files(self.instance_dir)
        everything = [p for p in everything if "/refs/" not in p and "/.locks/" not in p]
        self.assertEqual(df["totals"]["all"]["physical_bytes"], inode_usage(everything))
        twin = [i for i in df["images"] if i["name"] == "twin"][0]
        a = [i for i in df["images"] if i["name"] == "a"][0]
        self.assertEqual(twin["size"]["physical_bytes"], a["size"]["physical_bytes"])

    def test_unreferenced_blobs_and_content_rootfs_are_orphans_of_kind_blob(self):
        self.pull({"a": "a", "b": "b"})
        df = self.df()
        self.assertFalse([o for o in df["orphans"] if o["kind"] == "blob"])
        content = [b["path"] for b in df["blobs"] if b["path"].endswith(".ext4")]
        self.assertEqual(len(content), 2)
        # forget b: its variant, .source and ref index entry go; its blobs stay behind
        os.unlink(self.variant("b"))
        os.unlink(self.variant("b") + ".source")
        for entry in os.listdir(os.path.join(self.images_dir, "refs")):
            if "sys%2Fb" in entry:
                os.unlink(os.path.join(self.images_dir, "refs", entry))
        df = self.df()
        blobs = sorted(o["path"] for o in df["orphans"] if o["kind"] == "blob")
        content_orphans = [p for p in blobs if p.endswith(".ext4")]
        oci_orphans = [p for p in blobs if "/blobs/sha256/" in p]
        self.assertEqual(len(content_orphans), 1)
        self.assertEqual(len(oci_orphans), 3)  # b's manifest, config and layer
        lock = self.variant("b") + ".lock"
        self.assertIn({"path": lock, "kind": "lock"},
                      [{"path": o["path"], "kind": o["kind"]} for o in df["orphans"]])


class PruneTest(SystemTestCase):
    def test_running_sheds_never_pruned_and_recent_ones_skipped_as_too_recent(self):
        self.pull({"a": "a"})
        self.make_shed("runner", "a", status="running", pid=self.running_pid())
        self.make_shed("fresh", "a", age=3 * 3600 + 60)
        self.make_shed("old", "a")
        result = self.prune("--scope", "instances")
        self.assertEqual(self.skipped_reason(result, "runner"), "cannot prune running shed")
        self.assertRegex(self.skipped_reason(result, "fresh"), TOO_RECENT)
        self.assertEqual(self.skipped_reason(result, "fresh"), "too recent (3h < 72h)")
        self.assertIsNotNone(self.item(result, "instance", "old"))
        self.assertTrue(os.path.isdir(os.path.join(self.instance_dir, "runner")))
        self.assertTrue(os.path.isdir(os.path.join(self.instance_dir, "fresh")))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "old")))

    def test_old_stopped_shed_deleted_with_its_whole_directory_and_leftovers(self):
        self.pull({"a": "a"})
        d = self.make_shed("old", "a", console=b"x" * 10000)
        os.makedirs(os.path.join(d, "run", "state"))
        write(os.path.join(d, "run", "state", "pidfile"), "1\n".encode())
        write(os.path.join(d, "spec.json"), "{}".encode())
        set_age(os.path.join(d, "metadata.json"), OLD)
        result = self.prune()
        item = self.item(result, "instance", "old")
        self.assertEqual(item["path"], d)
        self.assertEqual(item["action"], "deleted")
        self.assertGreater(item["freed"]["logical_bytes"], 64 << 20)
        self.assertFalse(os.path.exists(d))
        # the shed's lock file stays (lock files are never deleted)
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, ".locks", "old.lock")))

    def test_images_protected_by_config_or_surviving_shed_freed_with_their_last_shed(self):
        self.pull({"a": "a", "b": "b", "c": "c"})
        self.make_shed("uses-b", "b")                 # old: pruned in this run
        self.make_shed("uses-c", "c", age=3600)       # recent: survives
        self.write_config({"a": self.ref("a")})      # b and c no longer configured
        dry = self.prune("--dry-run")
        result = self.prune()
        self.assertEqual(self.listing(dry), self.listing(result))
        self.assertIsNotNone(self.item(result, "instance", "uses-b"))
        image_b = self.item(result, "image", "b")
        self.assertIsNotNone(image_b)
        self.assertIsNone(self.item(result, "image", "a"))
        self.assertIsNone(self.item(result, "image", "c"))
        self.assertFalse(os.path.exists(self.variant("b")))
        self.assertFalse(os.path.exists(self.variant("b") + ".source"))
        self.assertTrue(os.path.exists(self.variant("b") + ".lock"))
        self.assertTrue(os.path.exists(self.variant("a")))
        self.assertTrue(os.path.exists(self.variant("c")))
        # b's content-addressed copy went with it: that is what frees the blocks
        self.assertGreater(image_b["freed"]["physical_bytes"], 0)
        content = os.path.join(self.images_dir, "rootfs", "sha256")
        self.assertEqual(len([f for f in os.listdir(content) if f.endswith(".ext4")]), 2)

    def test_stale_config_cache_is_pruned(self):
        self.pull({"a": "a", "b": "b"})
        # the config now names another ref for a: the cached copy no longer protects it
        self.write_config({"a": self.ref("c"), "b": self.ref("b")})
        result = self.prune("--scope", "images")
        self.assertIsNotNone(self.item(result, "image", "a"))
        self.assertIsNone(self.item(result, "image", "b"))
        self.assertFalse(os.path.exists(self.variant("a")))
        self.assertTrue(os.path.exists(self.variant("b")))

    def test_orphans_young_tmp_kept_locks_retained_held_lock_skipped(self):
        self.write_config({})
        os.makedirs(self.images_dir)
        young = os.path.join(self.images_dir, "young-rootfs.ext4.tmp")
        old = os.path.join(self.images_dir, "old-rootfs.ext4.tmp")
        busy = os.path.join(self.images_dir, "busy-rootfs.ext4.tmp")
        source = os.path.join(self.images_dir, "old-rootfs.ext4.source")
        lock = os.path.join(self.images_dir, "old-rootfs.ext4.lock")
        busy_lock = os.path.join(self.images_dir, "busy-rootfs.ext4.lock")
        for path in (young, old, busy, source, lock, busy_lock):
            write(path, b"z" * 100)
        set_age(old, 2 * 3600)
        set_age(busy, 2 * 3600)
        holder = subprocess.Popen([sys.executable, "-c",
                                   "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\n"
                                   "fcntl.flock(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\n"
                                   "time.sleep(3600)", busy_lock],
                                  stdout=subprocess.PIPE, text=True)
        self.sleepers.append(holder)
        self.addCleanup(holder.stdout.close)
        self.assertEqual(holder.stdout.readline().strip(), "locked")
        result = self.prune("--scope", "orphans")
        self.assertIsNotNone(self.item(result, "tmp", old))
        self.assertIsNotNone(self.item(result, "source", source))
        self.assertRegex(self.skipped_reason(result, young), r"^too recent \(\d+s < 1h\)$")
        self.assertEqual(self.skipped_reason(result, busy), "lock held (conversion in progress)")
        self.assertEqual(self.skipped_reason(result, lock), "lock file retained")
        self.assertEqual(self.skipped_reason(result, busy_lock), "lock file retained")
        self.assertFalse(os.path.exists(old))
        self.assertFalse(os.path.exists(source))
        for kept in (young, busy, lock, busy_lock):
            self.assertTrue(os.path.exists(kept), kept)

    # ---- blobs whose manifest the walk must read as the puller does ------------------------
    def pull_ref(self, name):
        """`shed-server pull` of sys/<name>:v1 into the data dir; returns its ref index file."""
        self.write_config({})
        run([SHED_SERVER, "pull", "--config", self.config, self.ref(name)])
        refs = os.path.join(self.images_dir, "refs")
        entries = [e for e in os.listdir(refs) if "sys%2F" + name in e]
        self.assertEqual(len(entries), 1, entries)
        return os.path.join(refs, entries[0])

    def blob(self, digest):
        return os.path.join(self.images_dir, "blobs", "sha256", digest.split(":", 1)[1])

    def age_blob_store(self):
        """Old enough for prune: an unreferenced blob would be deleted."""
        root = os.path.join(self.images_dir, "blobs", "sha256")
        for entry in os.listdir(root):
            set_age(os.path.join(root, entry), 2 * 3600)

    def assert_blobs_kept(self, paths):
        result = self.prune("--scope", "orphans")
        self.assertEqual([i for i in result["items"] if i["kind"] == "blob"], [])
        for path in paths:
            self.assertTrue(os.path.exists(path), path)
        df = self.df()
        self.assertEqual([o for o in df["orphans"] if o["kind"] == "blob"], [])
        listed = [b["path"] for b in df["blobs"]]
        for path in paths:
            self.assertIn(path, listed)
        return result, df

    def test_layers_of_a_6_mib_manifest_survive_prune_and_count_as_referenced(self):
        ref_file = self.pull_ref("a")
        with open(ref_file) as f:
            small_digest = f.read().strip()
        with open(self.blob(small_digest), "rb") as f:
            manifest = json.load(f)
        # The loopback registry refuses manifests over 4 MiB; registries that serve them
        # exist and the puller takes up to 8 MiB. Leave the store as such a pull does: the
        # 6 MiB manifest and a ref index entry naming it, and no other manifest for a's blobs.
        manifest["annotations"] = {"padding": "p" * (6 << 20)}
        body = json.dumps(manifest).encode()
        big_digest = shedtest.sha256_digest(body)
        write(self.blob(big_digest), body)
        with open(ref_file, "w") as f:
            f.write(big_digest + "\n")
        os.unlink(self.blob(small_digest))
        self.age_blob_store()
        needed = [self.blob(big_digest), self.blob(manifest["config"]["digest"])]
        needed += [self.blob(layer["digest"]) for layer in manifest["layers"]]
        self.assert_blobs_kept(needed)

    def test_layers_of_an_unreadable_manifest_survive_prune_and_say_why(self):
        ref_file = self.pull_ref("b")
        with open(ref_file) as f:
            digest = f.read().strip()
        with open(self.blob(digest), "rb") as f:
            manifest = json.load(f)
        write(self.blob(digest), b'{"schemaVersion": 2, "layers": [')  # damaged on disk
        self.age_blob_store()
        needed = [self.blob(manifest["config"]["digest"])]
        needed += [self.blob(layer["digest"]) for layer in manifest["layers"]]
        result, df = self.assert_blobs_kept(needed)
        self.assertTrue(any(digest in n and "no OCI blob is pruned" in n
                            for n in result["notes"]), result["notes"])
        self.assertTrue(any(digest in n and "counts as referenced" in n for n in df["notes"]),
                        df["notes"])

    def test_prune_during_a_pull_keeps_the_blobs_the_pull_relies_on(self):
        # A pull of a whose manifest and ref entry are gone since: its layers are old,
        # unreferenced blobs, prune's prey, and exactly what a new pull of a finds present
        # and builds its image on.
        ref_file = self.pull_ref("a")
        with open(ref_file) as f:
            digest = f.read().strip()
        with open(self.blob(digest), "rb") as f:
            manifest = json.load(f)
        config_digest = manifest["config"]["digest"]
        layers = [self.blob(layer["digest"]) for layer in manifest["layers"]]
        for path in (ref_file, self.blob(digest), self.blob(config_digest)):
            os.unlink(path)
        self.age_blob_store()
        requested, release = threading.Event(), threading.Event()

        def hold_config():  # the pull waits for its config; its layers are checked present
            requested.set()
            release.wait(shedtest_wait())

        with FaultProxy(self.registry.host) as proxy:
            proxy.add_fault("call", config_digest, fn=hold_config)
            pull = subprocess.Popen([SHED_SERVER, "pull", "--config", self.config,
                                     "%s/sys/a:v1" % proxy.host], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            try:
                self.assertTrue(requested.wait(shedtest_wait()), "the pull never asked")
                during = self.prune("--scope", "orphans")
            finally:
                release.set()
            _, stderr = pull.communicate(timeout=shedtest_wait())
        self.assertEqual(pull.returncode, 0, stderr)
        self.assertEqual([i for i in during["items"] if i["kind"] == "blob"], [])
        for path in layers:
            self.assertEqual(self.skipped_reason(during, path),
                             "lock held (a pull is using the blob store)")
            self.assertTrue(os.path.exists(path), path)
        # Manifest in the store: the whole image is there, and nothing of it is an orphan now.
        self.assertEqual([o for o in self.df()["orphans"] if o["kind"] == "blob"], [])
        self.assertEqual([i for i in self.prune("--scope", "orphans")["items"]
                          if i["kind"] == "blob"], [])
        for path in layers:
            self.assertTrue(os.path.exists(path), path)

    def test_dry_run_changes_nothing_and_lists_exactly_what_the_real_run_does(self):
        self.pull({"a": "a", "b": "b"})
        self.make_shed("old", "b", console=b"c" * 100000)
        self.make_shed("runner", "a", status="running", pid=self.running_pid())
        self.make_shed("fresh", "a", age=60)
        tmp = os.path.join(self.images_dir, "x-rootfs.ext4.tmp")
        write(tmp, b"t" * 100)
        set_age(tmp, 7200)
        self.write_config({"a": self.ref("a")})
        # lock files are created by lockers and never deleted: not part of the state
        before = [(p, os.stat(p).st_size) for p in all_files(self.data_dir) if "/.locks/" not in p]
        scopes = ("--scope", "images", "--scope", "instances", "--scope", "orphans",
                  "--scope", "logs", "--log-tail-bytes", "1000")
        dry = self.prune("--dry-run", *scopes)
        self.assertTrue(dry["dry_run"])
        after = [(p, os.stat(p).st_size) for p in all_files(self.data_dir) if "/.locks/" not in p]
        self.assertEqual(before, after)
        real = self.prune(*scopes)
        self.assertFalse(real["dry_run"])
        self.assertEqual(self.listing(dry), self.listing(real))
        self.assertEqual(dry["totals"]["items"], real["totals"]["items"])
        self.assertEqual(dry["scope"], ["images", "instances", "logs", "orphans"])
        self.assertEqual(dry["until"], "72h0m0s")

    def test_logs_scope_keeps_the_last_bytes_of_each_console_log_in_place(self):
        self.pull({"a": "a"})
        tail = os.urandom(4096)
        d = self.make_shed("chatty", "a", age=60, console=os.urandom(1 << 20) + tail)
        log = os.path.join(d, "console.log")
        inode = os.stat(log).st_ino
        result = self.prune("--scope", "logs", "--log-tail-bytes", "4096")
        item = self.item(result, "console_log", "chatty")
        self.assertEqual(item["action"], "truncated")
        self.assertEqual(item["freed"]["logical_bytes"], 1 << 20)
        self.assertEqual(os.stat(log).st_ino, inode)
        with open(log, "rb") as f:
            self.assertEqual(f.read(), tail)


class Server:
    def __init__(self, config, data_dir):
        self.port = free_port()
        self.log = open(os.path.join(data_dir, "..", "server.log"), "ab")
        self.proc = subprocess.Popen([SHED_SERVER, "serve", "--config", config, "--port",
                                      str(self.port), "--bind", "127.0.0.1", "--ssh-port", "0"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120  # generous: the CI machine is loaded
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.request("GET", "/api/info")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("shed-server serve did not start")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def request(self, method, path):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, json.loads(body) if body else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


class ApiTest(SystemTestCase):
    def setUp(self):
        super().setUp()
        self.serve_two_images_and_an_old_shed()

    def test_df_endpoint_answers_the_same_report_as_the_local_command(self):
        status, body = self.server.request("GET", "/api/system/df")
        self.assertEqual(status, 200)
        local = self.df()
        self.assertEqual(body["totals"], local["totals"])
        self.assertEqual([i["name"] for i in body["images"]], ["a", "b"])
        self.assertEqual(body["server_name"], "sys-test")
        # the resolved backend, as the server reports it, never the configured "detect"
        self.assertEqual(local["backend"], body["backend"])
        self.assertNotEqual(local["backend"], "detect")

    def test_df_refuses_prune_only_options(self):
        for option in (["--until", "1h"], ["--dry-run"], ["--scope", "logs"]):
            proc = self.system("df", *option, check=False)
            self.assertEqual(proc.returncode, 2, (option, proc.stderr))
            self.assertIn("only applies to 'system prune'", proc.stderr)

    def test_every_bad_query_value_is_400_and_changes_nothing(self):
        before = all_files(self.data_dir)
        bad = ["scope=bogus", "scope=", "scope", "scope=images&scope=nope", "dry_run=",
               "dry_run", "dry_run=yes", "until=-1h", "until=abc", "until=", "until",
               "until=1.5h", "log_tail_bytes=-1", "log_tail_bytes=67108865",
               "log_tail_bytes=x", "log_tail_bytes=", "log_tail_bytes"]
        for query in bad:
            status, body = self.server.request("POST", "/api/system/prune?" + query)
            self.assertEqual(status, 400, query)
            self.assertEqual(body["error"]["code"], "INVALID_REQUEST", query)
        self.assertEqual(before, all_files(self.data_dir))

    def test_prune_endpoint_echoes_query_and_runs_the_plan(self):
        status, dry = self.server.request(
            "POST", "/api/system/prune?dry_run=true&scope=instances&scope=images&until=90m"
                    "&log_tail_bytes=67108864")
        self.assertEqual(status, 200)
        self.assertEqual(dry["scope"], ["images", "instances"])
        self.assertEqual(dry["until"], "1h30m0s")
        self.assertTrue(dry["dry_run"])
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, "old")))
        status, real = self.server.request("POST", "/api/system/prune?scope=instances&scope=images"
                                                   "&until=90m")
        self.assertEqual(status, 200)
        self.assertEqual(self.listing(dry), self.listing(real))
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "old")))
        self.assertFalse(os.path.exists(self.variant("b")))
        status, default = self.server.request("POST", "/api/system/prune?dry_run=false")
        self.assertEqual(status, 200)
        self.assertEqual(default["until"], "72h0m0s")
        self.assertEqual(default["scope"], ["images", "instances", "orphans"])
        self.assertEqual(default["totals"]["items"], 0)

    def test_wrong_method_is_405(self):
        status, body = self.server.request("GET", "/api/system/prune")
        self.assertEqual(status, 405)
        status, body = self.server.request("POST", "/api/system/df")
        self.assertEqual(status, 405)


class CliTest(SystemTestCase):
    def setUp(self):
        super().setUp()
        self.serve_two_images_and_an_old_shed()
        self.env = dict(os.environ, SHED_CLIENT_CONFIG=os.path.join(self.dir, "client.yaml"))

    def shed(self, *args, input_text=None, check=True):
        return run([SHED_CLI, "-s", self.server.url, "system"] + list(args), check=check,
                   input_text=input_text, env=self.env)

    def test_df_prints_the_rollup_table_and_verbose_items(self):
        out = self.shed("df").stdout
        self.assertRegex(out.splitlines()[0], r"^CATEGORY\s+FILES\s+ON DISK\s+LOGICAL$")
        for row in ("images", "sheds", "orphans", "total"):
            self.assertRegex(out, r"(?m)^%s\s+\d+" % row)
        verbose = self.shed("df", "-v").stdout
        self.assertRegex(verbose, r"(?m)^\s+shed\s+.*old \(stopped\)$")
        self.assertRegex(verbose, r"(?m)^\s+image\s+.*\bb$")

    def test_prune_shows_the_dry_run_and_asks_before_deleting(self):
        proc = self.shed("prune", input_text="n\n")
        self.assertIn("would delete instance", proc.stdout)
        self.assertIn("Proceed? [y/N]", proc.stdout)
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, "old")))
        proc = self.shed("prune", input_text="y\n")
        self.assertRegex(proc.stdout, r"(?m)^deleted instance\s+old")
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "old")))

    def test_json_prune_executes_only_with_force(self):
        out = json.loads(self.shed("prune", "--json").stdout)
        self.assertTrue(out["dry_run"])
        self.assertTrue(os.path.exists(os.path.join(self.instance_dir, "old")))
        out = json.loads(self.shed("prune", "--json", "--force").stdout)
        self.assertFalse(out["dry_run"])
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "old")))

    def test_all_fans_out_to_every_server_and_reports_each_result_or_error(self):
        other_dir = tempfile.mkdtemp(prefix="shed-system-other-")
        self.addCleanup(shutil.rmtree, other_dir, True)
        other_data = os.path.join(other_dir, "data")
        other_config = os.path.join(other_dir, "server.yaml")
        with open(other_config, "w") as f:
            f.write("name: other\ndata_dir: %s\nbase_image: null\n" % other_data)
        os.makedirs(other_data)
        other = Server(other_config, other_data)
        self.addCleanup(other.stop)
        with open(self.env["SHED_CLIENT_CONFIG"], "w") as f:
            f.write("servers:\n  first: %s\n  second: %s\n  dead: http://127.0.0.1:%d\n"
                    % (self.server.url, other.url, free_port()))
        proc = run([SHED_CLI, "system", "df", "--all", "--json"], check=False, env=self.env)
        self.assertEqual(proc.returncode, 1)
        servers = json.loads(proc.stdout)["servers"]
        self.assertEqual([s["server"] for s in servers], ["first", "second", "dead"])
        self.assertEqual(servers[0]["result"]["server_name"], "sys-test")
        self.assertEqual(servers[1]["result"]["server_name"], "other")
        self.assertEqual(servers[2]["error"]["code"], "CONNECTION")
        proc = run([SHED_CLI, "system", "prune", "--all", "--force"], check=False, env=self.env)
        self.assertIn("== first", proc.stdout)
        self.assertIn("== second", proc.stdout)
        self.assertIn("dead: CONNECTION", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir, "old")))


if __name__ == "__main__":
    for tool in ("docker-registry", "mke2fs"):
        if shutil.which(tool) is None:
            sys.exit(testrun.skip_all("%s not installed" % tool))
    sys.exit(testrun.main())
