#!/usr/bin/env bash
# create→running time for one shed from a cached image (container backend, runc), as root.
#
# A loopback registry holds the container tests' fixture image (Debian minbase + tmux,
# tests/fixtures/fixture_image.py, cached in build-cache/); a real shed-server serves a temp
# data dir. The image is cached first (one create + delete), then each round times
#   POST /api/sheds {"name"}            → 201 with status "running" (clone + mount + runc run)
#   POST /api/sheds/{name}/stop, /start → 200 (start alone: mount + runc run)
#   DELETE /api/sheds/{name}
# and prints every round plus the medians. Clones are reflinks where the data dir's file
# system shares extents (XFS/btrfs), else sparse copies (ext4 here): the script says which.
#
# Usage: scripts/bench/create.sh [-n ROUNDS] [-b BUILD_DIR] [-d DATA_PARENT]
#   -n  rounds (default 10)
#   -b  build directory holding shed-server (default build)
#   -d  directory to create the temp data dir in (default /tmp; use an XFS mount for reflinks)
set -euo pipefail
cd "$(dirname "$0")/../.."

rounds=10
build=build
parent=/tmp
while getopts "n:b:d:h" opt; do
  case $opt in
    n) rounds=$OPTARG ;;
    b) build=$OPTARG ;;
    d) parent=$OPTARG ;;
    h) sed -n '2,17p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "create.sh: needs root (runc, loop devices)" >&2; exit 1; }
[[ -x $build/shed-server ]] || { echo "create.sh: $build/shed-server not found (build first)" >&2; exit 1; }
command -v runc >/dev/null || { echo "create.sh: runc not installed" >&2; exit 1; }

SHED_SERVER=$(realpath "$build/shed-server") SHED_FIXTURES=$PWD/tests/fixtures \
SHED_BUILD_CACHE=$(realpath -m "$build/../build-cache") ROUNDS=$rounds PARENT=$parent \
python3 - <<'EOF'
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time
sys.path[:0] = ["tests/fixtures", "tests/runtime/container"]
import ctrtest
from test_container import Server

work = tempfile.mkdtemp(prefix="shed-bench-create-", dir=os.environ["PARENT"])
fixture = server = None
try:
    fixture = ctrtest.FixtureRegistry(work)
    import test_container
    test_container.SHED_SERVER = os.environ["SHED_SERVER"]
    data = os.path.join(work, "data")
    server = Server(data, {"tmux": fixture.ref("shed/tmux")}).start()

    def timed(method, path, body=None):
        start = time.monotonic()
        status, reply = server.request(method, path, body)
        return status, reply, (time.monotonic() - start) * 1000

    status, reply, warm = timed("POST", "/api/sheds", {"name": "warmup"})
    if status != 201:
        sys.exit("create.sh: warm-up create failed: %s %s" % (status, reply))
    server.request("DELETE", "/api/sheds/warmup")
    creates, starts = [], []
    print("round  create→running ms  start ms")
    for i in range(int(os.environ["ROUNDS"])):
        name = "bench-%d" % i
        status, reply, create_ms = timed("POST", "/api/sheds", {"name": name})
        assert status == 201 and reply["status"] == "running", (status, reply)
        assert server.request("POST", "/api/sheds/%s/stop" % name)[0] == 200
        status, reply, start_ms = timed("POST", "/api/sheds/%s/start" % name)
        assert status == 200 and reply["status"] == "running", (status, reply)
        assert server.request("DELETE", "/api/sheds/" + name)[0] == 204
        creates.append(create_ms)
        starts.append(start_ms)
        print("%5d  %17.0f  %8.0f" % (i, create_ms, start_ms))
    fs = subprocess.run(["stat", "-f", "-c", "%T", data], capture_output=True, text=True).stdout.strip()
    print("median create→running %.0f ms, start %.0f ms (first create incl. image pull+convert: "
          "%.0f ms; data dir on %s)" % (statistics.median(creates), statistics.median(starts),
                                        warm, fs))
finally:
    if server is not None:
        server.stop()
    if fixture is not None:
        fixture.stop()
    ctrtest.force_cleanup(work)
    shutil.rmtree(work, ignore_errors=True)
EOF
