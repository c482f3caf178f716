#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, builds, runs every test,
# checks the Rust 1.63 build of the interpreter's shared code, formatting and lints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --workspace --locked
cargo test --release --workspace --locked
scripts/check-rust-1.63.sh
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
