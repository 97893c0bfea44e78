#!/usr/bin/env bash
# Installs the Debian packages fleece needs to build, test and benchmark.
# Idempotent: installs only what is missing; runs `apt-get update` at most once.
# Usage: scripts/install-deps.sh [--bench]   (--bench adds fio, nbdkit, qemu-nbd peers)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libasio-dev libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev googletest
  libnbd-dev libnbd-bin python3-libnbd
  libsystemd-dev libssl-dev zlib1g-dev libzstd-dev
  qemu-utils
  clang libclang-rt-14-dev
  nbdkit fio qemu-system-common python3-pytest
  e2fsprogs fuse2fs fuse3
  systemd dpkg-dev groff-base openssl
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
