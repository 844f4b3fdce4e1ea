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
  (cd "$dir" && ctest --output-on-failure --timeout 900) || status=1
done
exit $status
