#!/usr/bin/env bash
# Instance-disk benchmark, in two parts.
#
# 1. Files: `shed-server clone` of a 20 GiB sparse ext4 image holding ~300 MB of data, on a
#    loop-mounted XFS (reflink=1: FICLONE) and on the ext4 this machine runs on (the
#    copy_file_range / sparse-copy fallback), against `cp --reflink=never`.
# 2. Sheds (scripts/bench/clone_sheds.py): whole sheds through a real server and runc from
#    an image with ~2 GiB of data, as overlay sheds and full copies on this machine's ext4
#    and as reflink clones on a loop XFS: median create→running, new disk per shed, and
#    inside one shed sequential write/read, an untar of a git repository of /usr/include and
#    `git status` on it; with the ratios of issue 13's targets (overlay create within 2x of
#    a reflink, <= 1 MiB new disk per shed, in-shed throughput >= 0.7x a full copy).
#
# Usage: scripts/bench/clone.sh [BUILD_DIR]     (needs root for the loop mounts)
# Env:   CLONES=100 (clones per file system)  CP_RUNS=10 (cp runs per file system)
#        DATA_MB=300  IMAGE_SIZE=20G  WORK_DIR=/var/tmp (must be on the local ext4)
#        SHEDS=1 (0: part 1 only)  SHED_ROUNDS=5 (creates per disk kind)  SHED_RUNS=3
#        (workload runs)  SHED_DATA_MB=2048 (the image's data); part 2 needs runc,
#        docker-registry, git and the fixture image (build-cache/, built when missing) and
#        drops the machine's page cache before its cold reads.
# Prints, per file system: the strategy, the median ms per clone measured inside shed-server
# (clone_file only, fsync of file and directory included) and around the process (exec
# included), the median ms of cp alone and of cp followed by an fsync of the copy (clone_file
# is durable, cp is not), and the ratios; then part 2's table.
set -euo pipefail

BUILD_DIR=${1:-build}
SHED_SERVER=$(realpath "$BUILD_DIR/shed-server")
REPO=$(realpath "$(dirname "$0")/../..")
SHEDS=${SHEDS:-1}
CLONES=${CLONES:-100}
CP_RUNS=${CP_RUNS:-10}
DATA_MB=${DATA_MB:-300}
IMAGE_SIZE=${IMAGE_SIZE:-20G}
WORK_DIR=${WORK_DIR:-/var/tmp}

[[ -x $SHED_SERVER ]] || { echo "clone.sh: $SHED_SERVER not found; build first" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "clone.sh: needs root to loop-mount an XFS file system" >&2; exit 1; }

work=$(mktemp -d "$WORK_DIR/shed-bench-clone-XXXXXX")
mnt=$work/xfs
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi # detaches the loop device
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
now_ns() { date +%s%N; }

make_image() { # $1: path
  local tree=$work/tree
  mkdir -p "$tree/etc"
  echo shed >"$tree/etc/hostname"
  head -c "$((DATA_MB << 20))" /dev/urandom >"$tree/data.bin"
  mke2fs -q -F -t ext4 -d "$tree" "$1" "$IMAGE_SIZE" >/dev/null
  rm -rf "$tree"
}

# bench_fs LABEL DIR: clones of DIR/image.ext4, then cp runs; prints one result block.
bench_fs() {
  local label=$1 dir=$2 src=$2/image.ext4
  local inside=$work/inside.txt outside=$work/outside.txt strategy=""
  local cp_times=$work/cp.txt cp_sync_times=$work/cp_sync.txt
  : >"$inside"; : >"$outside"; : >"$cp_times"; : >"$cp_sync_times"
  sync
  for ((i = 0; i < CLONES; i++)); do
    local dst=$dir/clone-$i.ext4 start end json
    start=$(now_ns)
    json=$("$SHED_SERVER" clone --json "$src" "$dst")
    end=$(now_ns)
    strategy=$(sed -E 's/.*"strategy":"([^"]*)".*/\1/' <<<"$json")
    sed -E 's/.*"elapsed_ms":([0-9.]+).*/\1/' <<<"$json" >>"$inside"
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f\n", (e - s) / 1e6}' >>"$outside"
    rm -f "$dst"
  done
  for ((i = 0; i < CP_RUNS; i++)); do
    local dst=$dir/cp-$i.ext4 start mid end
    start=$(now_ns)
    cp --reflink=never --sparse=auto "$src" "$dst"
    mid=$(now_ns)
    sync "$dst" # fsync of the one file, as clone_file does
    end=$(now_ns)
    awk -v s="$start" -v e="$mid" 'BEGIN {printf "%.3f\n", (e - s) / 1e6}' >>"$cp_times"
    awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f\n", (e - s) / 1e6}' >>"$cp_sync_times"
    rm -f "$dst"
  done
  local m_in m_out m_cp m_cp_sync
  m_in=$(median <"$inside")
  m_out=$(median <"$outside")
  m_cp=$(median <"$cp_times")
  m_cp_sync=$(median <"$cp_sync_times")
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (b > 0 ? a / b : 0)}'; }
  echo "$label: strategy $strategy, $CLONES clones, $CP_RUNS cp runs (medians)"
  printf '  clone_file (in process)      %10.3f ms\n' "$m_in"
  printf '  shed-server clone (process)  %10.3f ms\n' "$m_out"
  printf '  cp --reflink=never           %10.3f ms   cp / clone_file = %sx\n' "$m_cp" "$(ratio "$m_cp" "$m_in")"
  printf '  cp --reflink=never + fsync   %10.3f ms   (cp+fsync) / clone_file = %sx\n' "$m_cp_sync" "$(ratio "$m_cp_sync" "$m_in")"
}

echo "image: $IMAGE_SIZE sparse ext4 with ${DATA_MB} MB of data; $(uname -r)"

# XFS with reflinks on a loop device: a sparse backing file big enough for the data.
truncate -s $((DATA_MB * 4 + 1024))M "$work/xfs.img"
mkfs.xfs -q -m reflink=1 "$work/xfs.img"
mkdir -p "$mnt"
mount -o loop "$work/xfs.img" "$mnt"
make_image "$mnt/image.ext4"
bench_fs xfs "$mnt"

# The machine's own file system (ext4 here): no reflinks, so the fallback runs.
mkdir -p "$work/ext4"
make_image "$work/ext4/image.ext4"
bench_fs "$(findmnt -n -o FSTYPE -T "$work/ext4")" "$work/ext4"

# Part 2: whole sheds (overlay, copy, reflink) through a real server.
if [[ $SHEDS != 0 ]]; then
  mkdir -p "$work/sheds"
  SHED_BUILD_CACHE=${SHED_BUILD_CACHE:-$(realpath -m "$BUILD_DIR/../build-cache")} \
  SHED_FIXTURES=$REPO/tests/fixtures ROUNDS=${SHED_ROUNDS:-5} RUNS=${SHED_RUNS:-3} \
  DATA_MB=${SHED_DATA_MB:-2048} \
    python3 "$REPO/scripts/bench/clone_sheds.py" "$SHED_SERVER" "$work/sheds"
fi
