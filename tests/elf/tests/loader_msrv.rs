//! ld-cas's portable code must keep compiling with Debian's rustc 1.63 (the aarch64
//! toolchain) and no external crates: runs `ld-cas/scripts/check-rust-1.63.sh`.

use std::path::Path;
use std::process::Command;

use elf_tests::{require_tool, run_ok, workspace_root};

#[test]
fn ld_cas_builds_with_rustc_1_63_for_x86_64_and_type_checks_for_aarch64() {
    require_tool("gcc");
    assert!(
        Path::new("/usr/bin/rustc").exists(),
        "Debian's rustc 1.63 is missing: run scripts/install-deps.sh"
    );
    let script = workspace_root().join("ld-cas/scripts/check-rust-1.63.sh");
    let out = run_ok(&mut Command::new(script));
    assert!(out.contains("rustc 1.63"), "{out}");
    assert!(
        out.contains("aarch64: ld-cas's portable code type-checks"),
        "{out}"
    );
}
