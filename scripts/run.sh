#!/usr/bin/env bash
# Sets shed up on a fresh Debian 12 machine and runs the server's main job on its built-in
# defaults: installs dependencies, builds the Release binaries into build/, then runs
# `shed-server serve` (data dir /var/lib/shed as root, else ~/.local/share/shed; backend by
# detection; API on 127.0.0.1:8080). Extra arguments go to `shed-server serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec build/shed-server serve "$@"
