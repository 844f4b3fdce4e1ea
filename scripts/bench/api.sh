#!/usr/bin/env bash
# API throughput: wrk against GET /api/sheds (100 sheds, metadata.json made by hand) and
# GET /api/info on loopback, 2 threads. Prints req/s and p99 latency per endpoint.
# Target on GET /api/sheds: >= 10,000 req/s and p99 < 10 ms.
# Then create -> running: POST /api/sheds (plain, answered once the shed runs) for one shed
# from a cached image (a static busybox pushed to a loopback registry, container backend),
# RUNS times, each shed deleted before the next; prints the median, min and max. Needs root,
# runc and docker-registry, else that part says why and is skipped. This isolates the
# pipeline's own cost (a ~1 MB image); scripts/bench/create.sh times the same on the container
# tests' Debian+tmux image, plus stop/start.
#
# Usage: scripts/bench/api.sh [-d SECONDS] [-c CONNECTIONS] [-b BUILD_DIR] [-n RUNS] [-s SIZE]
#   -d  duration per endpoint (default 30)
#   -c  open connections (default 50)
#   -b  build directory holding shed-server (default build, i.e. the Release build)
#   -n  create runs (default 7; 0 skips the create part)
#   -s  rootfs_size of the image for the create part (default 2G)
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=30
connections=50
build=build
runs=7
rootfs_size=2G
while getopts "d:c:b:n:s:h" opt; do
  case $opt in
    d) duration=$OPTARG ;;
    c) connections=$OPTARG ;;
    b) build=$OPTARG ;;
    n) runs=$OPTARG ;;
    s) rootfs_size=$OPTARG ;;
    h) sed -n '2,18p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

server=$build/shed-server
[[ -x $server ]] || { echo "api.sh: $server not found (build first)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "api.sh: wrk not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d /tmp/shed-bench-api.XXXXXX)
server_pid=
create_server_pid=
registry_started=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  if [[ -n $create_server_pid ]]; then
    # sheds of an interrupted run: delete them through the server, which unmounts them
    for dir in "$work"/create/instances/*/; do
      [[ -d $dir ]] && curl -s -X DELETE "http://127.0.0.1:$create_port/api/sheds/$(basename "$dir")" >/dev/null
    done
    kill "$create_server_pid" 2>/dev/null && wait "$create_server_pid" 2>/dev/null
  fi
  [[ -n $registry_started ]] && python3 tests/fixtures/shedtest.py registry-stop "$work/registry" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/data/instances"
for i in $(seq -w 1 100); do
  name=shed-$i
  mkdir -p "$work/data/instances/$name"
  printf '{"name":"%s","status":"stopped","created_at":"2026-01-20T10:30:00Z","repo":"owner/repo","backend":"container","image":"base","cpus":2,"memory_mb":4096,"rootfs_path":"%s/data/instances/%s/rootfs.ext4"}\n' \
    "$name" "$work" "$name" >"$work/data/instances/$name/metadata.json"
done
printf 'name: bench\n' >"$work/server.yaml"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The per-request log goes to a file: a terminal would measure the terminal.
"$server" serve --config "$work/server.yaml" --port "$port" --data-dir "$work/data" \
  2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$port/api/info" >/dev/null && break
  sleep 0.05
done
count=$(curl -sf "http://127.0.0.1:$port/api/sheds" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sheds"]))')
[[ $count == 100 ]] || { echo "api.sh: expected 100 sheds, got $count" >&2; exit 1; }

echo "shed-server $($server --version | cut -d' ' -f2), $(nproc) CPUs, wrk -t2 -c$connections -d${duration}s"
printf '%-16s %12s %10s %10s %10s\n' endpoint req/s p50 p99 errors
for path in /api/sheds /api/info; do
  out=$(wrk -t2 -c"$connections" -d"${duration}s" --latency "http://127.0.0.1:$port$path")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/ {e = e $0 "; "} END {print (e == "" ? "0" : e)}' <<<"$out")
  printf '%-16s %12s %10s %10s %10s\n' "$path" "$rps" "$p50" "$p99" "$errors"
done

# ---- create -> running ------------------------------------------------------------------------
create_skip_reason() {
  [[ $runs -gt 0 ]] || { echo "-n 0"; return; }
  [[ $(id -u) == 0 ]] || { echo "needs root (runc, loop devices, mounts)"; return; }
  command -v runc >/dev/null || { echo "runc not installed"; return; }
  command -v docker-registry >/dev/null || { echo "docker-registry not installed"; return; }
  [[ -x /bin/busybox ]] || { echo "/bin/busybox (busybox-static) missing"; return; }
}
reason=$(create_skip_reason)
if [[ -n $reason ]]; then
  echo "create -> running: skipped ($reason)"
  exit 0
fi

registry=$(python3 tests/fixtures/shedtest.py registry-start "$work/registry")
registry_started=1
# The test suite's busybox image (tests/server/test_create.py), pushed as shed/bench:v1.
PYTHONDONTWRITEBYTECODE=1 python3 - "$registry" <<'PY'
import sys
sys.path[:0] = ["tests/fixtures", "tests/server"]
import shedtest, test_create
pusher = shedtest.Pusher("http://" + sys.argv[1])
shedtest.push_image(pusher, "shed/bench", "v1", [(test_create.busybox_layer("bench"), "gzip")])
PY
printf 'name: bench-create\nbase_image: %s/shed/bench:v1\nrootfs_size: %s\ndefault_backend: container\n' \
  "$registry" "$rootfs_size" >"$work/create.yaml"
create_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" serve --config "$work/create.yaml" --port "$create_port" --data-dir "$work/create" \
  2>"$work/create.log" &
create_server_pid=$!
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$create_port/api/info" >/dev/null && break
  sleep 0.05
done

# One create -> running; prints seconds. The 201 comes after the backend reports it running.
create_once() {
  local name=$1 out status
  out=$(curl -s -o "$work/created.json" -w '%{http_code} %{time_total}' \
    -H 'Content-Type: application/json' -d "{\"name\":\"$name\"}" \
    "http://127.0.0.1:$create_port/api/sheds")
  status=${out%% *}
  [[ $status == 201 ]] || { echo "api.sh: create $name: HTTP $status $(cat "$work/created.json")" >&2; return 1; }
  grep -q '"status":"running"' "$work/created.json" || { echo "api.sh: $name not running" >&2; return 1; }
  echo "${out#* }"
}
delete_shed() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' -X DELETE "http://127.0.0.1:$create_port/api/sheds/$1") == 204 ]] ||
    { echo "api.sh: delete $1 failed" >&2; return 1; }
}

# A first create pulls and converts the image: not measured.
create_once warmup >/dev/null
delete_shed warmup
times=()
for i in $(seq 1 "$runs"); do
  times+=("$(create_once "bench-$i")")
  delete_shed "bench-$i"
done
clone=$(grep -o 'create shed=bench-1 .*clone=[a-z_]*' "$work/create.log" | sed 's/.*clone=//')
printf '%s\n' "${times[@]}" | python3 -c '
import statistics, sys
t = sorted(float(x) * 1000 for x in sys.stdin)
print("create -> running (cached image, rootfs_size %s, clone %s): median %.0f ms, min %.0f ms, max %.0f ms over %d runs"
      % (sys.argv[1], sys.argv[2], statistics.median(t), t[0], t[-1], len(t)))' "$rootfs_size" "$clone"
