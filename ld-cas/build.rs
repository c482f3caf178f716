//! Builds the libc-free audit module that ld-cas embeds, and links ld-cas itself as a
//! freestanding static PIE with its own `_start`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let cc = env::var("LD_CAS_AUDIT_CC").unwrap_or_else(|_| match arch.as_str() {
        "aarch64" if !cfg!(target_arch = "aarch64") => "aarch64-linux-gnu-gcc".into(),
        _ => "gcc".into(),
    });
    let so = out.join("audit.so");
    let status = Command::new(&cc)
        .args([
            "-shared",
            "-fPIC",
            "-nostdlib",
            "-Os",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-unwind-tables",
            "-Wl,-z,norelro",
            "-Wl,-z,noseparate-code",
            "-Wl,--build-id=none",
            "-Wl,--hash-style=gnu",
            "-s",
            "-o",
        ])
        .arg(&so)
        .arg("audit/audit.c")
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc} to build the audit module: {e}"));
    assert!(status.success(), "{cc} failed to build the audit module");
    println!("cargo:rerun-if-changed=audit/audit.c");
    println!("cargo:rerun-if-env-changed=LD_CAS_AUDIT_CC");

    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,-u,_start",
        "-Wl,-z,noseparate-code",
        "-Wl,--build-id=none",
        "-Wl,-z,norelro",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
