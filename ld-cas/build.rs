//! Links ld-cas as a freestanding position-independent ELF with its own `_start`: a shared
//! object (so that ld.so can also load it as an audit module: glibc refuses to load objects
//! flagged as PIE) that exports nothing but the `la_*` audit entry points and binds every
//! reference to itself (`-Bsymbolic`), leaving only relative relocations, which it applies
//! to itself at start. The kernel runs it like a static PIE. See `src/audit.rs`.

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
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("exports.map");
    fs::write(
        &script,
        "{\n  global: la_version; la_objopen; la_objsearch; la_activity; la_preinit; _dl_debug_state;\n  local: *;\n};\n",
    )
    .expect("OUT_DIR is writable");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-shared",
        "-Wl,-Bsymbolic",
        "-Wl,-e,_start",
        "-Wl,-u,_start",
        "-Wl,-z,noseparate-code",
        "-Wl,--build-id=none",
        "-Wl,-z,norelro",
        "-Wl,--hash-style=gnu",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--version-script={}",
        script.display()
    );
    // One read-only-and-executable segment instead of two saves a mapping in every process
    // (and in ld.so's load of the audit copy). GNU ld does that by itself with
    // `-z noseparate-code`; rust-lld, the default linker of x86_64-unknown-linux-gnu since
    // Rust 1.90, needs `--no-rosegment` (which GNU ld would reject).
    if uses_rust_lld() {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-rosegment");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
}
