#!/usr/bin/env bash
# One fuzz target under libFuzzer for a bounded time (the ctest entries fuzz.<name> of the
# Fuzz build, and scripts/fuzz.sh).
#
#   run_fuzzer.sh FUZZER SEED_CORPUS WORK_DIR NAME
#
# Runs FUZZER for $SHED_FUZZ_SECONDS (default 30) seconds on the seeds of SEED_CORPUS (read
# only) plus what earlier runs found in WORK_DIR/corpus/NAME (written to). A crash, a leak, a
# sanitizer report or a timeout of one input (10 s) fails the run; the input that did it is
# in WORK_DIR/artifacts/NAME/ (add it to SEED_CORPUS with the fix, as its regression test).
# The last lines of the output are libFuzzer's final statistics (stat::number_of_executed_units).
set -euo pipefail
fuzzer=$1 seeds=$2 work=$3 name=$4
seconds=${SHED_FUZZ_SECONDS:-30}
corpus=$work/corpus/$name
artifacts=$work/artifacts/$name
mkdir -p "$corpus" "$artifacts"
echo "fuzz $name: ${seconds}s, seeds $seeds ($(ls "$seeds" | wc -l) files), corpus $corpus"
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$corpus" "$seeds"
