#!/usr/bin/env bash
# Times the ext4 writer against `mke2fs -t ext4 -d` on the same directory tree and prints
# the ratio. Usage: scripts/bench/ext4_write.sh [source dir] [image size, default 4G]
# Without a source dir, a synthetic tree is generated: 5,000 files of 20 KB (100 MB) in
# 100 directories, one 20,000-entry directory, symlinks and hardlinks.
# Needs the bench driver: cmake --build build --target bench_ext4_tree (BUILD_DIR=build).
set -euo pipefail
cd "$(dirname "$0")/../.."
driver="${BUILD_DIR:-build}/bench_ext4_tree"
[ -x "$driver" ] || { echo "build $driver first (cmake --build build --target bench_ext4_tree)" >&2; exit 2; }
size="${2:-4G}"
bytes=$(numfmt --from=iec "$size")
work=$(mktemp -d "${TMPDIR:-/tmp}/ext4_write_bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

source_dir="${1:-}"
if [ -z "$source_dir" ]; then
  source_dir="$work/tree"
  mkdir -p "$source_dir/big"
  head -c $((20000 * 100)) /dev/urandom > "$work/seed"
  for d in $(seq -w 0 99); do
    mkdir -p "$source_dir/d$d"
    for f in $(seq -w 0 49); do
      head -c 20000 /dev/urandom > "$source_dir/d$d/file$f"
    done
    ln -s "../d$d/file00" "$source_dir/d$d/link"
    ln "$source_dir/d$d/file01" "$source_dir/d$d/hardlink"
  done
  (cd "$source_dir/big" && seq -w 0 19999 | sed 's/^/entry-/' | xargs touch)
fi
sync

start=$(date +%s.%N)
"$driver" tree "$source_dir" "$work/shed.img" "$bytes" >"$work/shed.out"
shed_s=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
mke2fs -q -t ext4 -d "$source_dir" -F "$work/mke2fs.img" "$size" >/dev/null
sync -f "$work/mke2fs.img"
mke2fs_s=$(echo "$(date +%s.%N) - $start" | bc)

e2fsck -fn "$work/shed.img" >/dev/null 2>&1 && fsck=clean || fsck="NOT CLEAN"
entries=$(find "$source_dir" | wc -l)
printf 'tree: %s entries, %s\n' "$entries" "$(du -sh --apparent-size "$source_dir" | cut -f1)"
printf 'shed writer: %.3f s (%s; e2fsck %s)\n' "$shed_s" "$(cat "$work/shed.out")" "$fsck"
printf 'mke2fs -d:   %.3f s\n' "$mke2fs_s"
printf 'ratio mke2fs/shed: %.2fx\n' "$(echo "$mke2fs_s / $shed_s" | bc -l)"
