#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds the Release and the Asan
# (AddressSanitizer + UndefinedBehaviorSanitizer) build types, runs ctest on both, then runs
# every fuzz target for a bounded time in a third build (build-fuzz: clang + libFuzzer).
#
# A test that cannot run on this machine (no root, no runc, no loop devices...) is skipped
# with its reason, and the reasons are listed after each ctest run. SHED_TEST_STRICT=1 (set
# by .ci/run) makes every skip a failure: on CI everything a test needs is there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if [[ ${SHED_TEST_STRICT:-0} != 0 ]]; then
  echo "=== SHED_TEST_STRICT=${SHED_TEST_STRICT}: a skipped test fails"
fi

# The skip reasons of the last ctest run in $1: "test: SKIP ..." lines of every test's output.
list_skips() {
  local log=$1/Testing/Temporary/LastTest.log
  [[ -f $log ]] || return 0
  awk '/^[0-9]+\/[0-9]+ Test: / { test = $3 }
       /^SKIP[: ]/ { print "  " test ": " $0; found = 1 }
       END { if (!found) print "  (none)" }' "$log"
}

status=0
# The fuzz targets under libFuzzer, each for a bounded time (SHED_FUZZ_SECONDS, default 30) with
# ASan+UBSan: ctest entries fuzz.<target> of the Fuzz build (clang) in build-fuzz. Only the
# fuzz targets and the modules they link are built there.
fuzz() {
  echo "=== Fuzz: configure and build in build-fuzz (clang, libFuzzer, ASan+UBSan)"
  cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_COMPILER=clang >/dev/null
  cmake --build build-fuzz -j"$(nproc)" --target fuzz_targets
  echo "=== Fuzz: ctest -R '^fuzz\.' (${SHED_FUZZ_SECONDS:-30} s per target)"
  (cd build-fuzz && ctest --output-on-failure -R '^fuzz\.' -j2) || status=1
  grep -h "stat::number_of_executed_units\|^fuzz [a-z_]*:" build-fuzz/Testing/Temporary/LastTest.log |
    sed 's/^/  /' || true
}

for type in Release Asan; do
  dir=build-${type,,}
  echo "=== ${type}: configure and build in ${dir}"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  echo "=== ${type}: ctest"
  # Tests wait on registries, runc and disks more than on the CPU, and each uses its own
  # ports, temp dirs and loop devices: three at a time keeps both cores busy.
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j"${SHED_TEST_JOBS:-3}") || status=1
  echo "=== ${type}: skipped tests and tests with skipped parts"
  list_skips "$dir"
done
fuzz
exit $status
