#!/usr/bin/env bash
# Builds the aarch64 ld-cas with Debian's rustc 1.63 (the only compiler here with an
# aarch64 `core`; rustup cannot add targets) and aarch64-linux-gnu-gcc as the linker, linked
# exactly like the x86_64 build (see ld-cas/build.rs).
#
# Usage: ld-cas/scripts/build-aarch64.sh [OUT]
#        (default OUT: target/aarch64-unknown-linux-gnu/release/ld-cas)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/target/aarch64-unknown-linux-gnu/release/ld-cas}
rustc=${RUSTC_1_63:-/usr/bin/rustc}
for tool in "$rustc" aarch64-linux-gnu-gcc; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
export CARGO_PKG_VERSION=$version
target=aarch64-unknown-linux-gnu
common=(--edition 2021 --target "$target" -C panic=abort -C opt-level=s -C strip=debuginfo -D warnings -A unknown-lints)
"$rustc" "${common[@]}" --crate-type rlib --crate-name aarch64_linux \
    -o "$work/libaarch64_linux.rlib" "$root/aarch64-linux/src/lib.rs"
printf '{\n  global: la_version; la_objopen; la_objsearch; la_preinit;\n  local: *;\n};\n' >"$work/exports.map"
link=(-C linker=aarch64-linux-gnu-gcc)
for a in -nostartfiles -nostdlib -shared -Wl,-Bsymbolic -Wl,-e,_start -Wl,-u,_start \
    -Wl,-z,noseparate-code -Wl,--build-id=none -Wl,-z,norelro -Wl,--hash-style=gnu \
    "-Wl,--version-script=$work/exports.map"; do
  link+=(-C "link-arg=$a")
done
"$rustc" "${common[@]}" --crate-type bin --crate-name ld_cas \
    --extern aarch64_linux="$work/libaarch64_linux.rlib" -C relocation-model=pie "${link[@]}" \
    -o "$out" "$root/ld-cas/src/main.rs"
echo "built $out ($(stat -c %s "$out") bytes)"
