#!/usr/bin/env bash
# Benchmark of `shed-server system df` and `system prune --dry-run` on a synthetic data dir:
# 1,000 stopped sheds (sparse 20G rootfs.ext4 with a little data, metadata.json 5 days old,
# console.log) and 50 images (sparse 20G variant hardlinked into the content store, .source,
# .lock), against `du -s` of the same tree. Warm page cache; each command runs RUNS times
# (default 5), interleaved; prints medians and the ratios to du. Target: < 0.5 s each.
#
#   scripts/bench/df.sh [BUILD_DIR]      (default: build-release, else build)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
bench_server df.sh "${1:-}"
runs=${RUNS:-5}
sheds=${SHEDS:-1000}
images=${IMAGES:-50}

work=$(mktemp -d /var/tmp/shed-bench-df.XXXXXX)
trap '[[ -n ${KEEP:-} ]] || rm -rf "$work"' EXIT
data=$work/data

python3 - "$data" "$sheds" "$images" <<'PY'
import hashlib, json, os, sys, time
data, sheds, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
img_dir, inst_dir = os.path.join(data, "images"), os.path.join(data, "instances")
content = os.path.join(img_dir, "rootfs", "sha256")
os.makedirs(content)
os.makedirs(inst_dir)
size = 20 << 30
old = time.time() - 5 * 24 * 3600
for i in range(images):
    name = "img-%02d" % i
    digest = hashlib.sha256(name.encode()).hexdigest()
    blob = os.path.join(content, "%s-%d.ext4" % (digest, size))
    with open(blob, "wb") as f:
        f.truncate(size)
        f.write(os.urandom(64 << 10))
    os.link(blob, os.path.join(img_dir, name + "-rootfs.ext4"))
    open(blob + ".lock", "w").close()
    open(os.path.join(img_dir, name + "-rootfs.ext4.lock"), "w").close()
    with open(os.path.join(img_dir, name + "-rootfs.ext4.source"), "w") as f:
        json.dump({"ref": "registry.example/bench/%s:latest" % name, "digest": "sha256:" + digest,
                   "rootfs_size": size, "created_at": "2026-01-20T10:30:00Z"}, f)
for i in range(sheds):
    name = "shed-%04d" % i
    d = os.path.join(inst_dir, name)
    os.mkdir(d)
    with open(os.path.join(d, "rootfs.ext4"), "wb") as f:
        f.truncate(size)
        f.write(os.urandom(16 << 10))
    with open(os.path.join(d, "console.log"), "wb") as f:
        f.write(b"boot log line\n" * 200)
    meta = {"name": name, "status": "stopped", "created_at": "2026-01-20T10:30:00Z",
            "repo": "", "backend": "container", "image": "img-%02d" % (i % images)}
    path = os.path.join(d, "metadata.json")
    with open(path, "w") as f:
        json.dump(meta, f)
    os.utime(path, (old, old))
PY
printf 'name: bench\ndata_dir: %s\n' "$data" > "$work/server.yaml"

# Warm the cache and check both commands work.
"$server" system df --json --config "$work/server.yaml" > "$work/df.json"
"$server" system prune --dry-run --json --config "$work/server.yaml" > "$work/prune.json"
du -s "$data" > /dev/null

seconds() { # run a command once, print its wall time in seconds
  local start end
  start=$(date +%s.%N)
  "$@" > /dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$work/t_df"; : > "$work/t_prune"; : > "$work/t_du"
for ((r = 0; r < runs; r++)); do
  seconds "$server" system df --json --config "$work/server.yaml" >> "$work/t_df"
  seconds "$server" system prune --dry-run --json --config "$work/server.yaml" >> "$work/t_prune"
  seconds du -s "$data" >> "$work/t_du"
done
df_s=$(median < "$work/t_df")
prune_s=$(median < "$work/t_prune")
du_s=$(median < "$work/t_du")
items=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["items"])' "$work/prune.json")

printf 'tree: %d sheds, %d images (%s)\n' "$sheds" "$images" "$(du -sh "$data" | cut -f1) on disk"
printf 'median of %d runs, warm cache:\n' "$runs"
printf '  system df                 %6.3f s  (%.2fx du -s)\n' "$df_s" "$(echo "$df_s / $du_s" | bc -l)"
printf '  system prune --dry-run    %6.3f s  (%.2fx du -s; %s items planned)\n' "$prune_s" \
  "$(echo "$prune_s / $du_s" | bc -l)" "$items"
printf '  du -s                     %6.3f s\n' "$du_s"
printf 'target < 0.5 s each: df %s, prune --dry-run %s\n' \
  "$(echo "$df_s < 0.5" | bc -l | sed 's/1/met/;s/0/MISSED/')" \
  "$(echo "$prune_s < 0.5" | bc -l | sed 's/1/met/;s/0/MISSED/')"
