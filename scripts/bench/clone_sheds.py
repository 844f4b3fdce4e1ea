"""The shed half of scripts/bench/clone.sh: whole sheds from an image holding ~2 GiB of data,
as overlay sheds and full copies on this machine's ext4 root file system, as overlay sheds on
a private loop-mounted ext4 and as reflink clones on a loop-mounted XFS (reflink=1), each
through a real `shed-server serve` and runc. (The root file system is shared with whatever
else runs on the machine: its fsync latency, which every create pays a few times, varies
with that load; the loop file systems show the same operations without it.)

Per disk kind it measures
  - create→running: POST /api/sheds until 201 "running", median of ROUNDS creates (the image
    already cached: one warm-up create pulled and converted it);
  - new disk per shed: the shed directory's allocated bytes (du: st_blocks of its files, after
    the create) and the file system's free-space change across the create (statvfs; on the
    shared root file system other processes add noise to that one);
  - inside one shed (commands through `shed-server exec`, timed inside the shed), medians of
    RUNS runs: sequential write (dd of 1 GiB from /dev/zero, fsync), sequential read (dd of
    the image's 2 GiB file after dropping the page cache), untar of a git repository of
    /usr/include (~8000 files, then sync), `git status` after dropping the page cache
    (cold: the first one also refreshes git's index) and five times more (warm).
and prints one table with the ratios the issue's targets are about. The four setups have
their own data dirs and servers, all up at once: their creates and workload runs alternate
(round i of every setup, then round i+1), so a change of the machine's load during the run
(it is shared) hits every kind alike instead of whichever ran at that moment.

  python3 scripts/bench/clone_sheds.py SHED_SERVER WORK_DIR
Env: ROUNDS (5), RUNS (3), DATA_MB (2048). Needs root, runc, docker-registry, xfsprogs, git,
the fixture image (build-cache/, tests/fixtures/fixture_image.py). Drops the page cache
(/proc/sys/vm/drop_caches) before the cold measurements: the whole machine's.
"""

import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path[:0] = [os.path.join(ROOT, "tests", "fixtures")]
import ctrtest  # noqa: E402
import shedserver  # noqa: E402
import shedtest  # noqa: E402
from loop_xfs import LoopExt4, LoopXfs  # noqa: E402

SHED_SERVER, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
ROUNDS = int(os.environ.get("ROUNDS", "5"))
RUNS = int(os.environ.get("RUNS", "3"))
DATA_MB = int(os.environ.get("DATA_MB", "2048"))
MiB = 1 << 20
TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---- the image: the fixture (Debian minbase + tmux) plus a layer of data ----------------------

def source_tarball(path):
    """A git repository of a copy of /usr/include, as a tar."""
    src = os.path.join(WORK, "src")
    shutil.copytree("/usr/include", os.path.join(src, "include"), symlinks=True)
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@x")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "src"]):
        subprocess.run(argv, cwd=src, check=True, env=env)
    subprocess.run(["tar", "-cf", path, "-C", src, "."], check=True)
    shutil.rmtree(src)


def data_layer(path):
    """/data/blob (DATA_MB of random bytes), /bench/src.tar, /usr/local/bin/git (this host's:
    Debian bookworm like the image; git needs only libc, libz and libpcre2-8, all in it)."""
    src_tar = os.path.join(WORK, "src.tar")
    source_tarball(src_tar)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("data", "bench", "usr/local/bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        blob = tarfile.TarInfo("data/blob")
        blob.size = DATA_MB * MiB

        class Random:
            def read(self, n):
                return os.urandom(n)
        tar.addfile(blob, Random())
        tar.add(src_tar, "bench/src.tar")
        tar.add("/usr/bin/git", "usr/local/bin/git")
    os.unlink(src_tar)


def push_file_blob(registry_url, repo, path):
    """A monolithic upload streamed from the file (it does not fit in memory comfortably)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            h.update(chunk)
    digest, size = "sha256:" + h.hexdigest(), os.path.getsize(path)
    url = urllib.parse.urlparse(registry_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=3600)
    conn.request("POST", "/v2/%s/blobs/uploads/" % repo, body=b"")
    resp = conn.getresponse()
    resp.read()
    location = resp.headers["Location"]
    location = urllib.parse.urlparse(location)
    target = location.path + "?" + location.query + "&digest=" + digest
    with open(path, "rb") as f:
        conn.request("PUT", target, body=f, headers={"Content-Type": "application/octet-stream",
                                                     "Content-Length": str(size)})
        resp = conn.getresponse()
        resp.read()
    assert resp.status in (201, 204), resp.status
    conn.close()
    return digest, size, digest  # an uncompressed layer's diff_id is its digest


def push_bench_image(fixture):
    layer = os.path.join(WORK, "data-layer.tar")
    log("building the data layer (%d MiB + /usr/include as a git repo)" % DATA_MB)
    data_layer(layer)
    pusher = shedtest.Pusher(fixture.registry.url)
    descriptors, diff_ids = [], []
    for gz in fixture.layers:
        with open(gz, "rb") as f:
            blob = f.read()
        descriptors.append({"mediaType": shedtest.LAYER_TYPES[("oci", "gzip")],
                            "digest": pusher.push_blob("bench/data", blob), "size": len(blob)})
        diff_ids.append(ctrtest._gz_diff_id(gz))
    digest, size, diff_id = push_file_blob(fixture.registry.url, "bench/data", layer)
    descriptors.append({"mediaType": TAR_LAYER, "digest": digest, "size": size})
    diff_ids.append(diff_id)
    os.unlink(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
                "config": {"mediaType": shedtest.OCI_CONFIG,
                           "digest": pusher.push_blob("bench/data", config), "size": len(config)},
                "layers": descriptors}
    pusher.push_manifest("bench/data", "v1", json.dumps(manifest).encode(), shedtest.OCI_MANIFEST)
    return fixture.ref("bench/data")


# ---- measuring --------------------------------------------------------------------------------

def allocated(path):
    """st_blocks*512 of the files below path (each inode once, not crossing mounts)."""
    seen, total, dev = set(), 0, os.lstat(path).st_dev
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev]
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def free_bytes(path):
    os.sync()
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


class Setup:
    def __init__(self, key, label, data_dir, disk, ref):
        self.key, self.label, self.data_dir, self.disk = key, label, data_dir, disk
        config = ("name: bench\nrootfs_size: 8G\ndefault_cpus: 2\ndefault_memory_mb: 4096\n"
                  "instance_disk: %s\nimages:\n  data: %s\n" % (disk, ref))
        self.server = shedserver.ServerProcess(SHED_SERVER, data_dir, config, stop_timeout=300)

    def timed_create(self, name):
        start = time.monotonic()
        status, body = self.server.request("POST", "/api/sheds", {"name": name, "image": "data"})
        elapsed = (time.monotonic() - start) * 1000
        if status != 201 or body["status"] != "running":
            raise SystemExit("%s: create %s: %s %s\n%s" % (self.label, name, status, body,
                                                          self.server.log()[-3000:]))
        return elapsed, body

    def sh(self, name, script):
        """Runs script in the shed; its last line of output (a number) as a float."""
        proc = subprocess.run([SHED_SERVER, "exec", "--config", self.server.config,
                               "--data-dir", self.data_dir, name, "--", "sh", "-c", script],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("%s: %s failed: %s%s" % (self.label, script, proc.stdout,
                                                      proc.stderr))
        return float(proc.stdout.split()[-1])

    def start(self):
        self.server.start()
        self.result = {"create_ms": [], "du": [], "statvfs": [], "write_mbs": [],
                       "read_mbs": [], "untar_ms": [], "status_cold_ms": [],
                       "status_warm_ms": []}

    def close(self):
        if self.server.proc is None:
            return
        status, body = self.server.request("GET", "/api/sheds")
        for shed in body.get("sheds", []):
            self.server.request("DELETE", "/api/sheds/" + shed["name"])
        self.server.stop()

    def warm_up(self):
        log("%s: warm-up create (pull + convert of the image)" % self.label)
        self.result["warmup_ms"], _ = self.timed_create("warmup")
        self.result["disk"] = self.disk_of("warmup")
        self.server.request("DELETE", "/api/sheds/warmup")

    def create_round(self, i):
        name = "bench-%d" % i
        before = free_bytes(self.data_dir)
        ms, _ = self.timed_create(name)
        self.result["create_ms"].append(ms)
        self.result["statvfs"].append(before - free_bytes(self.data_dir))
        self.result["du"].append(allocated(os.path.join(self.data_dir, "instances", name)))
        log("%s: create %d: %.0f ms" % (self.label, i, ms))

    def keep_one(self):
        """Only bench-0 stays, for the workloads."""
        for i in range(1, ROUNDS):
            self.server.request("DELETE", "/api/sheds/bench-%d" % i)

    def disk_of(self, name):
        with open(os.path.join(self.data_dir, "instances", name, "metadata.json")) as f:
            return json.load(f)["disk"]["kind"]

    def workload_round(self, run, name="bench-0"):
        """One run of each workload in the shed. Callers alternate the setups run by run, so
        every kind sees the same machine load (the machine is shared; its load drifts)."""
        now = "$(date +%s%N)"
        out = self.result
        ns = self.sh(name, "rm -f /root/seq; s=%s; dd if=/dev/zero of=/root/seq bs=1M "
                     "count=1024 conv=fsync 2>/dev/null; e=%s; echo $((e-s))" % (now, now))
        out["write_mbs"].append(1024 / (ns / 1e9))
        drop_caches()
        ns = self.sh(name, "s=%s; dd if=/data/blob of=/dev/null bs=1M 2>/dev/null; e=%s; "
                     "echo $((e-s))" % (now, now))
        out["read_mbs"].append(DATA_MB / (ns / 1e9))
        ns = self.sh(name, "rm -rf /root/src; mkdir /root/src; sync -f /root; s=%s; tar -xf "
                     "/bench/src.tar -C /root/src && sync -f /root/src; e=%s; echo $((e-s))"
                     % (now, now))
        out["untar_ms"].append(ns / 1e6)
        drop_caches()
        status = "s=%s; git -C /root/src status --porcelain >/dev/null; e=%s; echo $((e-s))" % (
            now, now)
        out["status_cold_ms"].append(self.sh(name, status) / 1e6)
        for _ in range(5):  # warm: short, so five of them per run
            out["status_warm_ms"].append(self.sh(name, status) / 1e6)
        log("%s: workloads run %d done" % (self.label, run))


# ---- the report -------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


def report(results):
    cols = [("overlay", "ext4 overlay"), ("copy", "ext4 copy"), ("loop-overlay", "loop ext4 ovl"),
            ("reflink", "loop xfs reflink")]
    r = {key: results[key] for key, _ in cols}
    print("\nsheds from an image with %d MiB of data (+ Debian minbase + tmux + the source "
          "tarball); %d creates, %d workload runs; medians; %s" %
          (DATA_MB, ROUNDS, RUNS, os.uname().release))
    line = "%-34s" + " %16s" * len(cols)
    print(line % ("", *[label for _, label in cols]))
    print(line % ("disk kind recorded", *[r[k]["disk"] for k, _ in cols]))

    def row(label, key, fmt, scale=1.0):
        print(line % (label, *[fmt % (median(r[k][key]) * scale) for k, _ in cols]))
    row("create -> running (ms)", "create_ms", "%.0f")
    row("new disk per shed, du (KiB)", "du", "%.0f", 1 / 1024)
    row("new disk per shed, statvfs (KiB)", "statvfs", "%.0f", 1 / 1024)
    row("sequential write 1 GiB (MB/s)", "write_mbs", "%.0f")
    row("sequential read %d MiB (MB/s)" % DATA_MB, "read_mbs", "%.0f")
    row("untar of /usr/include git (ms)", "untar_ms", "%.0f")
    row("git status, cold cache (ms)", "status_cold_ms", "%.0f")
    row("git status, warm cache (ms)", "status_warm_ms", "%.0f")
    o, c, x, lo = r["overlay"], r["copy"], r["reflink"], r["loop-overlay"]

    def ratio(a, b):
        return median(a) / median(b)
    print("\ntargets (overlay and copy on the root ext4, shared with whatever else runs here; "
          "loop ext4 and loop xfs are private file systems in a file on it):")
    print("  overlay create / reflink create  = %.2fx   (target <= 2x; root ext4 vs loop xfs)"
          % ratio(o["create_ms"], x["create_ms"]))
    print("  overlay create / reflink create  = %.2fx   (loop ext4 vs loop xfs)"
          % ratio(lo["create_ms"], x["create_ms"]))
    print("  overlay new disk per shed (du)   = %.0f KiB (target <= 1024 KiB)"
          % (median(o["du"]) / 1024))
    for label, key, higher_better in (("sequential write", "write_mbs", True),
                                      ("sequential read", "read_mbs", True),
                                      ("untar", "untar_ms", False),
                                      ("git status cold", "status_cold_ms", False),
                                      ("git status warm", "status_warm_ms", False)):
        speed = ratio(o[key], c[key]) if higher_better else ratio(c[key], o[key])
        print("  %-17s overlay / copy    = %.2fx   (throughput; target >= 0.7x)"
              % (label, speed))
    print("  copy create / overlay create     = %.1fx" % ratio(c["create_ms"], o["create_ms"]))


def measure(setups):
    """All servers up at once; creates and workload runs alternate between the setups, so a
    change of the machine's load (it is shared) hits every kind alike."""
    for setup in setups:
        setup.start()
        setup.warm_up()
    for i in range(ROUNDS):
        for setup in setups:
            setup.create_round(i)
    for setup in setups:
        setup.keep_one()
    for run in range(RUNS):
        for setup in setups:
            setup.workload_round(run)
    return {setup.key: setup.result for setup in setups}


def main():
    if os.geteuid() != 0:
        raise SystemExit("clone_sheds.py: needs root (runc, loop devices, mounts)")
    fixture = xfs = ext4 = None
    setups = []
    try:
        fixture = ctrtest.FixtureRegistry(WORK)
        ref = push_bench_image(fixture)
        ext4 = LoopExt4((DATA_MB * 4 + 8192) * MiB, prefix="shed-bench-sheds-ext4-")
        xfs = LoopXfs((DATA_MB * 4 + 8192) * MiB, prefix="shed-bench-sheds-xfs-")
        for key, label, data_dir, disk in (
                ("overlay", "ext4 overlay", os.path.join(WORK, "ext4-overlay"), "overlay"),
                ("copy", "ext4 copy", os.path.join(WORK, "ext4-copy"), "copy"),
                ("loop-overlay", "loop ext4 overlay", os.path.join(ext4.mountpoint, "data"),
                 "overlay"),
                ("reflink", "xfs reflink", os.path.join(xfs.mountpoint, "data"), "reflink")):
            setups.append(Setup(key, label, data_dir, disk, ref))
        results = measure(setups)
        for setup in setups:
            setup.close()
        report(results)
    finally:
        for setup in setups:
            try:
                setup.close()
            except OSError:
                pass
        if fixture is not None:
            fixture.stop()
        for fs in (xfs, ext4):
            if fs is not None:
                ctrtest.force_cleanup(fs.mountpoint)
                fs.close()
        ctrtest.force_cleanup(WORK)


if __name__ == "__main__":
    main()
