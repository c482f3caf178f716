//! Links ld-cas as a freestanding position-independent ELF with its own `_start`: a shared
//! object (so that ld.so can also load it as an audit module: glibc refuses to load objects
//! flagged as PIE) that exports nothing but the `la_*` audit entry points and binds every
//! reference to itself (`-Bsymbolic`), leaving only relative relocations, which it applies
//! to itself at start. The kernel runs it like a static PIE. See `src/audit.rs`.
//!
//! The arguments are a file, `link/args` (which names the version script and the layout
//! script beside it), which the rustc 1.63 build (`scripts/build-rustc-1.63.sh`) reads too.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// Whether rustc links this target with its self-contained lld: x86_64 GNU/Linux, rustc
/// 1.90 or newer, and no linker chosen in the flags.
fn uses_rust_lld() -> bool {
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu"
        || flags.contains("linker")
        || env::var_os("RUSTC_LINKER").is_some()
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let version = String::from_utf8_lossy(&version);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    matches!(minor, Some(m) if m >= 90)
}

fn main() {
    let link =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("link");
    let args = link.join("args");
    let text = fs::read_to_string(&args).expect("ld-cas/link/args is readable");
    let dir = link.to_str().expect("the source tree's path is UTF-8");
    // One argument per line; `#` starts a comment line; `{link}` is this directory.
    for arg in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        println!("cargo:rustc-link-arg-bins={}", arg.replace("{link}", dir));
    }
    // One read-only-and-executable segment instead of two saves a mapping in every process
    // (and in ld.so's load of the audit copy). GNU ld does that by itself with
    // `-z noseparate-code`; rust-lld, the default linker of x86_64-unknown-linux-gnu since
    // Rust 1.90, needs `--no-rosegment` (which GNU ld would reject).
    if uses_rust_lld() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-rosegment");
        // The writable segment starts a page of its own, so that what start-up writes
        // (the relocated data, the dynamic section, the GOT, the few hot statics: less than
        // a page) is one page, one fault. Cold buffers are zeroed statics (`.bss`), on
        // pages after it that a common start never touches.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,separate-loadable-segments");
    }
    println!("cargo:rerun-if-changed=build.rs");
    for file in ["args", "exports.map", "layout.ld"] {
        println!("cargo:rerun-if-changed={}", link.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
}
