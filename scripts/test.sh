#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds the Release and the Asan
# (AddressSanitizer + UndefinedBehaviorSanitizer) build types, runs ctest on both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
status=0
for type in Release Asan; do
  dir=build-${type,,}
  echo "=== ${type}: configure and build in ${dir}"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
  echo "=== ${type}: ctest"
  # Tests wait on registries, runc and disks more than on the CPU, and each uses its own
  # ports, temp dirs and loop devices: three at a time keeps both cores busy.
  (cd "$dir" && ctest --output-on-failure --timeout 900 -j"${SHED_TEST_JOBS:-3}") || status=1
done
exit $status
