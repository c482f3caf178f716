#!/usr/bin/env bash
# Checks that ld-cas (everything but the platform crates is shared) builds with Debian's
# rustc 1.63 and no external crates, the compiler the aarch64 build depends on: builds it
# for x86_64 and aarch64 (ld-cas/scripts/build-rustc-1.63.sh) and runs each, the aarch64
# one under qemu-aarch64.
#
# Usage: ld-cas/scripts/check-rust-1.63.sh [RUSTC]   (default /usr/bin/rustc)
set -euo pipefail
export RUSTC_1_63=${1:-/usr/bin/rustc}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$RUSTC_1_63" --version
export CARGO_PKG_VERSION=0.0.0-msrv
"$root/ld-cas/scripts/build-rustc-1.63.sh" x86_64-unknown-linux-gnu "$out/ld-cas"
"$out/ld-cas" --version
"$root/ld-cas/scripts/build-rustc-1.63.sh" aarch64-unknown-linux-gnu "$out/ld-cas-aarch64"
qemu-aarch64 "$out/ld-cas-aarch64" --version
echo "aarch64: ld-cas builds with $("$RUSTC_1_63" --version) and runs under qemu-aarch64"
