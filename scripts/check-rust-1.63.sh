#!/usr/bin/env bash
# Compiles the code ld-cas is built from with Debian's rustc 1.63 for x86_64 and aarch64:
# the content-address core (resolver/core) on its own, then ld-cas with both platform
# layers (ld-cas/scripts/check-rust-1.63.sh). The aarch64 interpreter can only be built
# with that compiler, with no external crates.
set -euo pipefail
cd "$(dirname "$0")/.."
rustc163=/usr/bin/rustc
[ -x "$rustc163" ] || { echo "error: $rustc163 is missing: run scripts/install-deps.sh" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  "$rustc163" --edition 2021 --crate-type rlib --crate-name resolver_core --target "$target" \
    -C opt-level=2 -D warnings --out-dir "$out/$target" resolver/core/src/lib.rs
  echo "rustc 1.63 ($target): resolver-core ok"
done
ld-cas/scripts/check-rust-1.63.sh "$rustc163"
