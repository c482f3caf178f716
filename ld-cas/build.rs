//! Links ld-cas as a freestanding position-independent ELF with its own `_start`: a shared
//! object (so that ld.so can also load it as an audit module: glibc refuses to load objects
//! flagged as PIE) that exports nothing but the `la_*` audit entry points and binds every
//! reference to itself (`-Bsymbolic`), leaving only relative relocations, which it applies
//! to itself at start. The kernel runs it like a static PIE. See `src/audit.rs`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = out.join("exports.map");
    fs::write(
        &script,
        "{\n  global: la_version; la_objopen; la_objsearch; la_preinit;\n  local: *;\n};\n",
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
    println!("cargo:rerun-if-changed=build.rs");
}
