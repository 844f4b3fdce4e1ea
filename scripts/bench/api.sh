#!/usr/bin/env bash
# API throughput: wrk against GET /api/sheds (100 sheds, metadata.json made by hand) and
# GET /api/info on loopback, 2 threads. Prints req/s and p99 latency per endpoint.
# Target on GET /api/sheds: >= 10,000 req/s and p99 < 10 ms.
#
# Usage: scripts/bench/api.sh [-d SECONDS] [-c CONNECTIONS] [-b BUILD_DIR]
#   -d  duration per endpoint (default 30)
#   -c  open connections (default 50)
#   -b  build directory holding shed-server (default build, i.e. the Release build)
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=30
connections=50
build=build
while getopts "d:c:b:h" opt; do
  case $opt in
    d) duration=$OPTARG ;;
    c) connections=$OPTARG ;;
    b) build=$OPTARG ;;
    h) sed -n '2,10p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

server=$build/shed-server
[[ -x $server ]] || { echo "api.sh: $server not found (build first)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "api.sh: wrk not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d /tmp/shed-bench-api.XXXXXX)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
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
