#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, builds, runs every test
# and the main job (scripts/demo.sh), checks the Rust 1.63 build of the interpreter's
# shared code, formatting and lints, and ends with one line counting every test that ran.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace --locked
log=$(mktemp)
demo=$(mktemp)
trap 'rm -f "$log" "$demo"' EXIT
cargo test --release --workspace --locked 2>&1 | tee "$log"
if scripts/demo.sh >"$demo" 2>&1; then
  echo "main job (scripts/demo.sh): ok"
else
  cat "$demo"
  echo "main job (scripts/demo.sh): FAILED"
  exit 1
fi
# A short coverage-guided run of each fuzz target (docs/reliability.md has a longer one's
# figures); a crash or a hang fails the run.
for target in table uri elf edit; do
  resolver/fuzz/run.sh "$target" 20
done
scripts/check-rust-1.63.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
