#!/usr/bin/env bash
# Benchmark of `shed-server convert` on the cached 3-layer Debian minbase image (see
# tests/fixtures/debian_image.py), in one run against:
#   reference: tar -x of the layers into a directory + mke2fs -t ext4 -d (the usual pipeline)
#   floor:     gzip -dc of the layers to /dev/null
# Each is run RUNS times (default 5), interleaved, warm page cache; prints medians, ratios and
# the peak RSS of the conversion (/usr/bin/time -v). Needs root (debootstrap, tar -x owners).
#
#   scripts/bench/convert.sh [BUILD_DIR]      (default: build-release, else build)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
source scripts/bench/lib.sh
bench_server convert.sh "${1:-}"
runs=${RUNS:-5}
size=${SIZE:-20G}

cache=$repo/build-cache
mapfile -t layers < <(python3 tests/imaged/debian_image.py "$cache")
work=$(mktemp -d /var/tmp/shed-bench.XXXXXX)
regdir=$work/registry
mkdir -p "$regdir"
cleanup() {
  python3 tests/fixtures/shedtest.py registry-stop "$regdir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

host=$(python3 tests/fixtures/shedtest.py registry-start "$regdir")
ref=$(python3 - "$host" "${layers[@]}" <<'EOF'
import json, sys
sys.path.insert(0, "tests/fixtures")
import shedtest
host, paths = sys.argv[1], sys.argv[2:]
pusher = shedtest.Pusher("http://" + host)
repo = "bench/debian"
blobs = []
for p in paths:
    data = open(p, "rb").read()
    blobs.append({"mediaType": shedtest.LAYER_TYPES[("oci", "gzip")],
                  "digest": pusher.push_blob(repo, data), "size": len(data)})
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
manifest = {"schemaVersion": 2, "mediaType": shedtest.OCI_MANIFEST,
            "config": {"mediaType": shedtest.OCI_CONFIG, "size": len(config),
                       "digest": pusher.push_blob(repo, config)},
            "layers": blobs}
pusher.push_manifest(repo, "v1", json.dumps(manifest).encode(), shedtest.OCI_MANIFEST)
print("%s/%s:v1" % (host, repo))
EOF
)
data=$work/data
# First conversion pulls the blobs into the store; the timed ones find them there.
"$server" convert "$ref" -o "$work/warm.ext4" --data-dir "$data" --size "$size" >/dev/null
rm -f "$work/warm.ext4"

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

run_ours() {
  local t0 t1
  t0=$(now)
  /usr/bin/time -v -o "$work/time.txt" "$server" convert "$ref" -o "$work/ours.ext4" \
    --data-dir "$data" --size "$size" >/dev/null
  t1=$(now)
  rm -f "$work/ours.ext4"
  awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt" >>"$work/rss"
  elapsed "$t0" "$t1"
}

run_reference() {
  local t0 t1 dir=$work/tree
  rm -rf "$dir"
  mkdir "$dir"
  t0=$(now)
  for l in "${layers[@]}"; do
    tar -xzf "$l" -C "$dir" --numeric-owner --same-owner -p --xattrs --xattrs-include='*'
  done
  mke2fs -q -F -t ext4 -I 256 -d "$dir" "$work/ref.ext4" "$size" >/dev/null
  t1=$(now)
  rm -rf "$dir" "$work/ref.ext4"
  elapsed "$t0" "$t1"
}

run_floor() {
  local t0 t1
  t0=$(now)
  gzip -dc "${layers[@]}" >/dev/null
  t1=$(now)
  elapsed "$t0" "$t1"
}

: >"$work/rss"
# sync before each timed command: no run pays for the previous one's writeback.
for ((i = 1; i <= runs; i++)); do
  sync
  run_ours >>"$work/ours"
  sync
  run_reference >>"$work/reference"
  sync
  run_floor >>"$work/floor"
  echo "run $i/$runs: ours $(tail -1 "$work/ours") s, reference $(tail -1 "$work/reference") s," \
    "floor $(tail -1 "$work/floor") s" >&2
done

median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours=$(median "$work/ours")
reference=$(median "$work/reference")
floor=$(median "$work/floor")
rss_kib=$(sort -n "$work/rss" | tail -1)
compressed=$(stat -c %s "${layers[@]}" | awk '{s+=$1} END {printf "%.1f", s/1048576}')

printf 'image: Debian bookworm minbase, %d gzip layers, %s MiB compressed; fs size %s; %d runs\n' \
  "${#layers[@]}" "$compressed" "$size" "$runs"
printf '  %-44s %8.3f s\n' "shed-server convert (median)" "$ours"
printf '  %-44s %8.3f s\n' "tar -x + mke2fs -t ext4 -d (median)" "$reference"
printf '  %-44s %8.3f s\n' "gzip -dc > /dev/null (median)" "$floor"
printf '  %-44s %8.2fx  (target >= 3)\n' "speedup vs reference pipeline" "$(echo "$reference / $ours" | bc -l)"
printf '  %-44s %8.2fx  (target <= 1.25)\n' "time vs floor" "$(echo "$ours / $floor" | bc -l)"
printf '  %-44s %8.1f MiB (target <= 64)\n' "peak RSS of shed-server convert" "$(echo "$rss_kib / 1024" | bc -l)"
