#!/usr/bin/env bash
# Checks that ld-cas (everything but the platform crates is shared) builds with Debian's
# rustc 1.63 and no external crates, the compiler the aarch64 build depends on.
#
#   1. x86_64: builds x86_64-linux and ld-cas with rustc 1.63 (full build, linked).
#   2. aarch64: builds aarch64-linux and ld-cas (ld-cas/scripts/build-aarch64.sh) and runs
#      it under qemu-aarch64.
#
# Usage: ld-cas/scripts/check-rust-1.63.sh [RUSTC]   (default /usr/bin/rustc)
set -euo pipefail
rustc=${1:-/usr/bin/rustc}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$rustc" --version
export CARGO_PKG_VERSION=0.0.0-msrv
common=(--edition 2021 -C panic=abort -C opt-level=s -D warnings -A unknown-lints)

# 1. x86_64, linked like cargo links it.
"$rustc" "${common[@]}" --crate-type rlib --crate-name x86_64_linux \
    -o "$out/libx86_64_linux.rlib" "$root/x86_64-linux/src/lib.rs"
printf '{\n  global: la_version; la_objopen; la_objsearch; la_preinit;\n  local: *;\n};\n' >"$out/exports.map"
link=()
for a in -nostartfiles -nostdlib -shared -Wl,-Bsymbolic -Wl,-e,_start -Wl,-u,_start \
    -Wl,-z,noseparate-code -Wl,--build-id=none -Wl,-z,norelro -Wl,--hash-style=gnu \
    "-Wl,--version-script=$out/exports.map"; do
  link+=(-C "link-arg=$a")
done
"$rustc" "${common[@]}" --crate-type bin --crate-name ld_cas \
    --extern x86_64_linux="$out/libx86_64_linux.rlib" -C relocation-model=pie "${link[@]}" \
    -o "$out/ld-cas" "$root/ld-cas/src/main.rs"
"$out/ld-cas" --version

# 2. aarch64: the real build (aarch64-linux/ and everything else), run under qemu.
RUSTC_1_63="$rustc" "$root/ld-cas/scripts/build-aarch64.sh" "$out/ld-cas-aarch64"
qemu-aarch64 "$out/ld-cas-aarch64" --version
echo "aarch64: ld-cas builds with $("$rustc" --version) and runs under qemu-aarch64"
