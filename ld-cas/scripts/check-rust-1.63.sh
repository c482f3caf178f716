#!/usr/bin/env bash
# Checks that ld-cas's portable code (everything but x86_64-linux/) still compiles with
# Debian's rustc 1.63 and no external crates, so the aarch64 build stays possible.
#
#   1. x86_64: builds x86_64-linux and ld-cas with rustc 1.63 (full build, linked).
#   2. aarch64: type-checks ld-cas against a stand-in platform crate that has the same
#      items as x86_64-linux, with Debian's aarch64 `core`.
#
# Usage: ld-cas/scripts/check-rust-1.63.sh [RUSTC]   (default /usr/bin/rustc)
set -euo pipefail
rustc=${1:-/usr/bin/rustc}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$rustc" --version
gcc -shared -fPIC -nostdlib -Os -fno-stack-protector -fno-asynchronous-unwind-tables \
    -Wl,--build-id=none -s -o "$out/audit.so" "$root/ld-cas/audit/audit.c"
export OUT_DIR=$out CARGO_PKG_VERSION=0.0.0-msrv
common=(--edition 2021 -C panic=abort -C opt-level=s -D warnings -A unknown-lints)

# 1. x86_64, linked like cargo links it.
"$rustc" "${common[@]}" --crate-type rlib --crate-name x86_64_linux \
    -o "$out/libx86_64_linux.rlib" "$root/x86_64-linux/src/lib.rs"
"$rustc" "${common[@]}" --crate-type bin --crate-name ld_cas \
    --extern x86_64_linux="$out/libx86_64_linux.rlib" -C relocation-model=pie \
    -C link-arg=-nostartfiles -C link-arg=-nostdlib -C link-arg=-static-pie \
    -C link-arg=-Wl,-u,_start -o "$out/ld-cas" "$root/ld-cas/src/main.rs"
"$out/ld-cas" --version

# 2. aarch64: the shared code against a stand-in platform layer (type-check only).
if "$rustc" --print target-libdir --target aarch64-unknown-linux-gnu >/dev/null 2>&1 &&
    [ -d "$("$rustc" --print target-libdir --target aarch64-unknown-linux-gnu)" ]; then
    cat >"$out/aarch64_linux.rs" <<'RS'
#![no_std]
pub const R_RELATIVE: u32 = 1027;
pub const EM_MACHINE: u16 = 183;
pub const DEFAULT_LOADER: &[u8] = b"/lib/ld-linux-aarch64.so.1\0";
pub mod nr {
    pub const READ: usize = 63; pub const WRITE: usize = 64; pub const CLOSE: usize = 57;
    pub const FSTAT: usize = 80; pub const MMAP: usize = 222; pub const MPROTECT: usize = 226;
    pub const MUNMAP: usize = 215; pub const PREAD64: usize = 67; pub const EXIT_GROUP: usize = 94;
    pub const OPENAT: usize = 56; pub const READLINKAT: usize = 78; pub const FACCESSAT: usize = 48;
    pub const MEMFD_CREATE: usize = 279;
}
pub unsafe fn jump(_sp: *mut usize, _entry: usize) -> ! { loop {} }
pub unsafe fn syscall6(_n: usize, _a: usize, _b: usize, _c: usize, _d: usize, _e: usize, _f: usize) -> isize { -38 }
RS
    "$rustc" "${common[@]}" --target aarch64-unknown-linux-gnu --crate-type rlib \
        --crate-name aarch64_linux -o "$out/libaarch64_linux.rlib" "$out/aarch64_linux.rs"
    "$rustc" "${common[@]}" --target aarch64-unknown-linux-gnu --crate-type bin --emit=metadata \
        --crate-name ld_cas --extern aarch64_linux="$out/libaarch64_linux.rlib" \
        -o "$out/ld_cas.rmeta" "$root/ld-cas/src/main.rs"
    echo "aarch64: ld-cas's portable code type-checks with $("$rustc" --version)"
else
    echo "aarch64 core for $rustc is missing: run scripts/install-deps.sh" >&2
    exit 1
fi
