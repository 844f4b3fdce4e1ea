#!/usr/bin/env bash
# Installs every build, run and test dependency of shed on Debian 12 (apt-get only),
# including clang-format for the style check (ctest structure.clang_format), man-db and
# zsh for the install test (man pages render, the zsh completion parses), and clang with its
# libFuzzer runtime for the fuzz targets (build-fuzz: scripts/test.sh, scripts/fuzz.sh).
# Idempotent: packages already present are left as they are.
set -euo pipefail

BUILD_PKGS=(build-essential cmake pkg-config
  libcurl4-openssl-dev libarchive-dev libext2fs-dev e2fsprogs libjansson-dev
  libmicrohttpd-dev libyaml-dev libssl-dev libzstd-dev zlib1g-dev libisal-dev libssh-dev)
TEST_PKGS=(docker-registry umoci skopeo busybox-static apache2-utils debootstrap
  xfsprogs btrfs-progs tmux runc qemu-system-x86 wrk isal zstd gzip curl
  python3 openssl iproute2 iptables util-linux time jq clang-format man-db zsh clang
  libclang-rt-14-dev git openssh-server openssh-client openssh-sftp-server rsync socat)

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi

missing=()
for pkg in "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # docker-registry's postinst tries to reach systemd, which is absent here: harmless.
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "deps: all ${#BUILD_PKGS[@]} build and ${#TEST_PKGS[@]} test packages present"
