#!/usr/bin/env bash
# The SSH front door against OpenSSH's own sshd, same machine, same run, as root.
#
# A loopback registry holds the container tests' fixture image; a real shed-server serves a
# temp data dir with one shed. Debian's sshd (openssh-server) is started by this script on a
# loopback port with its own config (a temp host key and AuthorizedKeysFile, no PAM), and the
# same test key logs in as root on the host there, and into the shed here. Then, alternating
# between the two servers:
#   connect -> exit   `ssh ... true`, ROUNDS times each: the median (and the ratio to sshd's)
#   ssh ... cat       1 GiB written to `cat` and read back (MiB/s of the 1 GiB, median of 3)
#   ssh -L            1 GiB through a local forward to an echo server (socat EXEC:cat) and
#                     back: the shed's loopback for shed-server, the host's for sshd
#   exec              `shed-server exec SHED true` (the in-shed agent; runc exec before it)
# Targets (issue 11): connect->exit <= 1.2x sshd's; cat and -L throughput >= 0.8x sshd's.
#
# Usage: scripts/bench/ssh.sh [-n ROUNDS] [-b BUILD_DIR]
#   -n  connect->exit rounds per server (default 21, at least 20)
#   -b  build directory holding shed-server (default build-release, else build)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh

rounds=21
build=
while getopts "n:b:h" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    b) build=$OPTARG ;;
    h) sed -n '2,20p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
bench_server ssh.sh "$build"
[[ $(id -u) == 0 ]] || { echo "ssh.sh: needs root (runc, loop devices, sshd)" >&2; exit 1; }
for tool in runc socat ssh ssh-keygen /usr/sbin/sshd; do
  command -v "$tool" >/dev/null || { echo "ssh.sh: $tool not installed" >&2; exit 1; }
done
(( rounds >= 20 )) || { echo "ssh.sh: at least 20 rounds" >&2; exit 2; }

SHED_SERVER=$server SHED_FIXTURES=$PWD/tests/fixtures \
SHED_BUILD_CACHE=$(realpath -m "$(dirname "$server")/../build-cache") ROUNDS=$rounds \
python3 - <<'EOF'
import os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
sys.path[:0] = ["tests/fixtures"]
import ctrtest, shedserver

GIB = 1 << 30
ROUNDS = int(os.environ["ROUNDS"])
work = tempfile.mkdtemp(prefix="shed-bench-ssh-")
fixture = server = sshd = echo = None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit("ssh.sh: nothing listens on %d" % port)


def ssh_argv(port, user, known_hosts, key):
    return ["ssh", "-F", "/dev/null", "-o", "UserKnownHostsFile=" + known_hosts,
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none", "-i", key, "-p", str(port), user + "@127.0.0.1"]


def timed(argv):
    start = time.monotonic()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    return (time.monotonic() - start) * 1000


def pump_gib(what, write, read_chunk, finish_writing):
    """Writes 1 GiB with write() while reading it back; seconds from start to last byte."""
    chunk = os.urandom(1 << 20)
    start = time.monotonic()

    def feed():
        for _ in range(GIB // len(chunk)):
            write(chunk)
        finish_writing()
    writer = threading.Thread(target=feed)
    writer.start()
    got = 0
    while True:
        block = read_chunk()
        if not block:
            break
        got += len(block)
    writer.join()
    if got != GIB:
        sys.exit("ssh.sh: %s: %d bytes came back, not %d" % (what, got, GIB))
    return time.monotonic() - start


def through_cat(what, argv):
    proc = subprocess.Popen(argv + ["--", "cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    seconds = pump_gib(what + " cat", proc.stdin.write, lambda: proc.stdout.read1(1 << 20),
                       proc.stdin.close)
    if proc.wait() != 0:
        sys.exit("ssh.sh: ssh cat failed")
    return GIB / (1 << 20) / seconds


def through_forward(what, argv, echo_port):
    local = free_port()
    proc = subprocess.Popen(argv[:-1] + ["-N", "-o", "ExitOnForwardFailure=yes", "-L",
                                         "%d:127.0.0.1:%d" % (local, echo_port), argv[-1]])
    try:
        wait_port(local)
        conn = socket.create_connection(("127.0.0.1", local))
        seconds = pump_gib(what + " -L", conn.sendall, lambda: conn.recv(1 << 20),
                           lambda: conn.shutdown(socket.SHUT_WR))
        conn.close()
    finally:
        proc.kill()
        proc.wait()
    return GIB / (1 << 20) / seconds


try:
    key = os.path.join(work, "id_bench")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as f:
        public = f.read().strip()

    # shed-server with one shed from the fixture image
    fixture = ctrtest.FixtureRegistry(work)
    data = os.path.join(work, "data")
    config = ("name: bench\nbase_image: %s\nrootfs_size: 2G\ndefault_cpus: 1\n"
              "default_memory_mb: 1024\nssh:\n  keys: [\"%s\"]\n" % (fixture.ref("shed/tmux"), public))
    server = shedserver.ServerProcess(os.environ["SHED_SERVER"], data, config, stop_timeout=120)
    server.start()
    status, body = server.request("POST", "/api/sheds", {"name": "bench"})
    assert status == 201, body
    shed_port = server.request("GET", "/api/info")[1]["ssh_port"]
    shed_key = " ".join(server.request("GET", "/api/ssh-host-key")[1]["host_key"].split()[:2])

    # Debian's sshd on its own loopback port, logging into the host as root
    sshd_dir = os.path.join(work, "sshd")
    os.makedirs(sshd_dir)
    host_key = os.path.join(sshd_dir, "host_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
    with open(os.path.join(sshd_dir, "authorized_keys"), "w") as f:
        f.write(public + "\n")
    sshd_port = free_port()
    with open(os.path.join(sshd_dir, "sshd_config"), "w") as f:
        f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nAuthorizedKeysFile %s\n"
                "UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nStrictModes no\nAllowTcpForwarding yes\n"
                "PidFile none\n" % (sshd_port, host_key, os.path.join(sshd_dir, "authorized_keys")))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f",
                             os.path.join(sshd_dir, "sshd_config")],
                            stderr=open(os.path.join(sshd_dir, "log"), "w"))
    wait_port(sshd_port)
    with open(host_key + ".pub") as f:
        sshd_key = " ".join(f.read().split()[:2])
    known_hosts = os.path.join(work, "known_hosts")
    with open(known_hosts, "w") as f:
        f.write("[127.0.0.1]:%d %s\n[127.0.0.1]:%d %s\n" % (shed_port, shed_key, sshd_port,
                                                           sshd_key))
    shed = ssh_argv(shed_port, "bench", known_hosts, key)
    openssh = ssh_argv(sshd_port, "root", known_hosts, key)

    # echo servers for -L: in the shed's loopback, and on the host's
    subprocess.run(shed + ["--", "socat -t 60 TCP-LISTEN:7000,bind=127.0.0.1,fork,reuseaddr EXEC:cat "
                           ">/dev/null 2>&1 &"], check=True)
    host_echo_port = free_port()
    echo = subprocess.Popen(["socat", "-t", "60", "TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr"
                             % host_echo_port, "EXEC:cat"])
    wait_port(host_echo_port)
    deadline = time.monotonic() + 60
    while subprocess.run(shed + ["--", "socat -u /dev/null TCP:127.0.0.1:7000"]).returncode != 0:
        if time.monotonic() > deadline:
            sys.exit("ssh.sh: the echo server in the shed did not start")

    timed(shed + ["true"])
    timed(openssh + ["true"])
    connect = {"shed": [], "openssh": []}
    for _ in range(ROUNDS):
        connect["shed"].append(timed(shed + ["true"]))
        connect["openssh"].append(timed(openssh + ["true"]))
    cat = {"shed": [], "openssh": []}
    forward = {"shed": [], "openssh": []}
    for _ in range(3):
        cat["shed"].append(through_cat("shed-server", shed))
        cat["openssh"].append(through_cat("sshd", openssh))
        forward["shed"].append(through_forward("shed-server", shed, 7000))
        forward["openssh"].append(through_forward("sshd", openssh, host_echo_port))

    exec_argv = [os.environ["SHED_SERVER"], "exec", "--config", server.config, "--data-dir", data,
                 "bench", "--", "true"]
    timed(exec_argv)
    exec_ms = statistics.median(timed(exec_argv) for _ in range(ROUNDS))

    def line(what, unit, values, better_low, target):
        a, b = statistics.median(values["shed"]), statistics.median(values["openssh"])
        ratio = a / b
        ok = ratio <= target if better_low else ratio >= target
        print("%-22s shed-server %8.1f %-5s  sshd %8.1f %-5s  ratio %.2f (target %s %.1f: %s)"
              % (what, a, unit, b, unit, ratio, "<=" if better_low else ">=", target,
                 "met" if ok else "MISSED"))
    print("ssh.sh: %d connect rounds, 3 x 1 GiB per throughput figure, medians" % ROUNDS)
    line("connect -> exit", "ms", connect, True, 1.2)
    line("ssh ... cat (1 GiB)", "MiB/s", cat, False, 0.8)
    line("ssh -L (1 GiB)", "MiB/s", forward, False, 0.8)
    print("%-22s shed-server exec SHED true: %.1f ms (median of %d)" % ("exec", exec_ms, ROUNDS))
finally:
    if echo is not None:
        echo.kill()
        echo.wait()
    if sshd is not None:
        sshd.kill()
        sshd.wait()
    if server is not None:
        server.request("DELETE", "/api/sheds/bench")
        server.stop()
    if fixture is not None:
        fixture.stop()
    ctrtest.force_cleanup(work)
    shutil.rmtree(work, ignore_errors=True)
EOF
