//! ld-cas must keep building with Debian's rustc 1.63 (the aarch64 toolchain) and no
//! external crates, for both architectures: runs `ld-cas/scripts/check-rust-1.63.sh`.

use std::path::Path;
use std::process::Command;

use elf_tests::{require_tool, run_ok, workspace_root};

#[test]
fn ld_cas_builds_with_rustc_1_63_for_x86_64_and_aarch64() {
    require_tool("gcc");
    require_tool("aarch64-linux-gnu-gcc");
    require_tool("qemu-aarch64");
    assert!(
        Path::new("/usr/bin/rustc").exists(),
        "Debian's rustc 1.63 is missing: run scripts/install-deps.sh"
    );
    let script = workspace_root().join("ld-cas/scripts/check-rust-1.63.sh");
    let out = run_ok(&mut Command::new(script));
    assert!(out.contains("rustc 1.63"), "{out}");
    assert!(
        out.contains("aarch64: ld-cas builds with rustc 1.63")
            && out.matches("ld-cas 0.0.0-msrv").count() == 2,
        "{out}"
    );
}
