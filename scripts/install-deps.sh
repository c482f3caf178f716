#!/usr/bin/env bash
# Installs the system packages the build, the tests and the benchmarks need on a fresh
# Debian 12 machine (x86_64). Safe to run again: apt skips what is already there.
set -euo pipefail

packages=(
  build-essential g++ gdb strace patchelf b3sum lld hyperfine binutils file nix-bin
  qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-i686-linux-gnu libc6-dev-i386-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross gcc-riscv64-linux-gnu libc6-dev-riscv64-cross
  gcc-s390x-linux-gnu libc6-dev-s390x-cross musl-tools
  rustc libstd-rust-dev:arm64
  python3 python3-venv python3-pip perl curl git openjdk-17-jdk-headless abigail-tools afl++
  valgrind passwd
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
