#!/usr/bin/env bash
# Fuzzes every target longer than CI does: builds build-fuzz (clang, libFuzzer, ASan+UBSan)
# and runs each target for SECONDS (default 600) through tests/fuzz/run_fuzzer.sh, one after
# the other. What a run finds stays in build-fuzz/fuzz/corpus/<target>/ for the next run;
# a crash leaves its input in build-fuzz/fuzz/artifacts/<target>/ and makes the script exit 1
# after the remaining targets ran. Prints the executions of each target at the end.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: config layer manifest router www_authenticate
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(config layer manifest router www_authenticate)
fi
bash scripts/deps.sh
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_COMPILER=clang >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_targets
status=0
summary=()
for target in "${targets[@]}"; do
  log=build-fuzz/fuzz/$target.log
  mkdir -p build-fuzz/fuzz
  if SHED_FUZZ_SECONDS=$seconds bash tests/fuzz/run_fuzzer.sh "build-fuzz/fuzz_$target" \
    "tests/fuzz/corpus/$target" build-fuzz/fuzz "$target" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and build-fuzz/fuzz/artifacts/$target/)"
    status=1
  fi
  runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
  summary+=("$(printf '%-18s %12s executions in %ss: %s' "$target" "${runs:-?}" "$seconds" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $status
