#!/usr/bin/env bash
# Benchmark: `shed-server pull` vs `skopeo copy docker://… oci:…` of the same multi-layer
# image (≥ 100 MB compressed) from the same loopback registry in the same run.
# Prints each run, the medians and the ratio shed/skopeo (target ≤ 0.7).
#
#   scripts/bench/pull.sh [RUNS]        (default 5; SHED_SERVER=path overrides the binary)
#
# Fairness: every run pulls into a fresh directory; skopeo's blob info cache
# (/var/lib/containers/cache or $XDG_DATA_HOME/containers/cache) is moved aside for the
# benchmark and put back afterwards, so neither tool reuses anything; one untimed warm-up
# run of each puts the registry's files in the page cache for both alike; `sync` before
# each timed run.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
SHED_SERVER=${SHED_SERVER:-build/shed-server}
[[ -x $SHED_SERVER ]] || { echo "build first: $SHED_SERVER not found" >&2; exit 1; }
command -v skopeo >/dev/null || { echo "skopeo is not installed" >&2; exit 1; }

WORK=$(mktemp -d /tmp/shed-bench-pull.XXXXXX)
if [[ $(id -u) -eq 0 ]]; then SKOPEO_CACHE=/var/lib/containers/cache
else SKOPEO_CACHE=${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache; fi
CACHE_SAVED=
cleanup() {
  python3 tests/fixtures/shedtest.py registry-stop "$WORK/registry" >/dev/null 2>&1 || true
  if [[ -n $CACHE_SAVED ]]; then rm -rf "$SKOPEO_CACHE"; mv "$CACHE_SAVED" "$SKOPEO_CACHE"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
if [[ -d $SKOPEO_CACHE ]]; then
  CACHE_SAVED=$WORK/skopeo-cache-saved
  mv "$SKOPEO_CACHE" "$CACHE_SAVED"
fi

mkdir -p "$WORK/registry"
HOST=$(python3 tests/fixtures/shedtest.py registry-start "$WORK/registry")
REF=$HOST/bench/img:v1
echo "registry: $HOST"

# The image: two layers of files from /usr (gzip), one of random data (gzip, incompressible)
# and one zstd layer of text, ~120 MB of blobs in all.
python3 - "$HOST" <<'EOF'
import io, os, sys, tarfile
sys.path.insert(0, "tests/fixtures")
import shedtest

def tree_layer(roots, budget):
    buf = io.BytesIO()
    used = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root in roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if used >= budget or not os.path.isfile(path) or os.path.islink(path):
                        continue
                    try:
                        tar.add(path, arcname=path.lstrip("/"), recursive=False)
                        used += os.path.getsize(path)
                    except OSError:
                        pass
    return buf.getvalue()

def random_layer(size):
    builder = shedtest.LayerBuilder()
    for i in range(size // (8 << 20)):
        builder.file("data/random-%02d.bin" % i, os.urandom(8 << 20))
    return builder.tar_bytes()

def text_layer(size):
    words = b" ".join(b"word%d" % (i % 5000) for i in range(200000)) + b"\n"
    builder = shedtest.LayerBuilder()
    for i in range(size // len(words)):
        builder.file("text/file-%03d.txt" % i, words)
    return builder.tar_bytes()

layers = [(tree_layer(["/usr/lib/x86_64-linux-gnu", "/usr/lib"], 80 << 20), "gzip"),
          (tree_layer(["/usr/share", "/usr/bin"], 60 << 20), "gzip"),
          (random_layer(40 << 20), "gzip"),
          (text_layer(60 << 20), "zstd")]
pusher = shedtest.Pusher("http://" + sys.argv[1])
digest, _, descs = shedtest.push_image(pusher, "bench/img", "v1", layers)
total = sum(d["size"] for d in descs)
print("image: %s, %d layers, %.1f MB of blobs" % (digest, len(descs), total / 1e6))
if total < 100e6:
    sys.exit("image smaller than 100 MB")
EOF

now() { date +%s.%N; }
run_shed() { "$SHED_SERVER" pull --data-dir "$1" "$REF" >/dev/null 2>&1; }
run_skopeo() { skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$1:v1" >/dev/null; }

time_run() { # tool dir
  local start end
  rm -rf "$SKOPEO_CACHE"
  sync # the previous run's dirty pages must not be written back on this run's clock
  start=$(now)
  "run_$1" "$2"
  end=$(now)
  echo "$end - $start" | bc
}

time_run shed "$WORK/warm-shed" >/dev/null
time_run skopeo "$WORK/warm-skopeo" >/dev/null

shed_times=() skopeo_times=()
for i in $(seq 1 "$RUNS"); do
  # alternate the order so neither tool always runs right after the other's page-cache churn
  if (( i % 2 )); then
    s=$(time_run shed "$WORK/shed-$i"); k=$(time_run skopeo "$WORK/skopeo-$i")
  else
    k=$(time_run skopeo "$WORK/skopeo-$i"); s=$(time_run shed "$WORK/shed-$i")
  fi
  shed_times+=("$s") skopeo_times+=("$k")
  printf 'run %d: shed %.3f s  skopeo %.3f s\n' "$i" "$s" "$k"
  rm -rf "$WORK/shed-$i" "$WORK/skopeo-$i"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
shed_median=$(median "${shed_times[@]}")
skopeo_median=$(median "${skopeo_times[@]}")
ratio=$(echo "scale=3; $shed_median / $skopeo_median" | bc)
printf 'median of %d: shed-server pull %.3f s, skopeo copy %.3f s, ratio %.2fx (target <= 0.70x)\n' \
  "$RUNS" "$shed_median" "$skopeo_median" "$ratio"
