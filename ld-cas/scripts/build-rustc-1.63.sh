#!/usr/bin/env bash
# Builds ld-cas with Debian's rustc 1.63, linked exactly like the Cargo build (the same
# ld-cas/link/args and ld-cas/link/exports.map as ld-cas/build.rs). For aarch64 this is the only build there is: rustup cannot add targets
# here, and Debian's rustc is the compiler with an aarch64 `core`; aarch64-linux-gnu-gcc
# links it. For x86_64 it checks that the shared code keeps building with Rust 1.63.
#
# Usage: ld-cas/scripts/build-rustc-1.63.sh [TARGET [OUT]]
#        TARGET: aarch64-unknown-linux-gnu (default) or x86_64-unknown-linux-gnu
#        OUT:    default target/TARGET/release/ld-cas
#        RUSTC_1_63: the compiler (default /usr/bin/rustc); CARGO_PKG_VERSION: the version
#        ld-cas reports (default: the workspace's)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
target=${1:-aarch64-unknown-linux-gnu}
out=${2:-$root/target/$target/release/ld-cas}
rustc=${RUSTC_1_63:-/usr/bin/rustc}
case $target in
  aarch64-unknown-linux-gnu) platform=aarch64_linux; dir=aarch64-linux; linker=aarch64-linux-gnu-gcc ;;
  x86_64-unknown-linux-gnu) platform=x86_64_linux; dir=x86_64-linux; linker=cc ;;
  *) echo "error: no ld-cas platform crate for $target" >&2; exit 2 ;;
esac
for tool in "$rustc" "$linker"; do
  command -v "$tool" >/dev/null || { echo "error: $tool is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$out")"
if [ -z "${CARGO_PKG_VERSION:-}" ]; then
  CARGO_PKG_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
fi
export CARGO_PKG_VERSION
common=(--edition 2021 --target "$target" -C panic=abort -C opt-level=s -C strip=debuginfo
        -D warnings -A unknown-lints)
# The crates ld-cas links, each an rlib: the platform layer and the content-address core.
"$rustc" "${common[@]}" --crate-type rlib --crate-name "$platform" \
    -o "$work/lib$platform.rlib" "$root/$dir/src/lib.rs"
"$rustc" "${common[@]}" --crate-type rlib --crate-name resolver_core \
    -o "$work/libresolver_core.rlib" "$root/resolver/core/src/lib.rs"
# The link arguments of ld-cas/build.rs: ld-cas/link/args (one a line, `#` comments,
# `{link}` the directory of the file).
link=(-C "linker=$linker")
link_dir=$root/ld-cas/link
while IFS= read -r a; do
  case $a in ''|'#'*) continue ;; esac
  # The replacement quoted: bash 5.2 would put the match in place of an unquoted `&`.
  link+=(-C "link-arg=${a//\{link\}/"$link_dir"}")
done <"$link_dir/args"
"$rustc" "${common[@]}" --crate-type bin --crate-name ld_cas \
    --extern "$platform=$work/lib$platform.rlib" \
    --extern "resolver_core=$work/libresolver_core.rlib" \
    -C relocation-model=pie "${link[@]}" -o "$out" "$root/ld-cas/src/main.rs"
echo "built $out with $("$rustc" --version) ($(stat -c %s "$out") bytes)"
