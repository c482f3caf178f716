//! Shared helpers of the end-to-end tests: where the built binaries are, building C fixtures,
//! running programs and checking their output.
//!
//! Tests in CI never skip: when a tool they need is missing, [`require_tool`] fails the test
//! with the command that installs it (`scripts/install-deps.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/elf sits two levels below the workspace root")
        .to_path_buf()
}

/// The path of a binary built by `cargo build --release --workspace` (or the debug profile
/// when `LD_CAS_TEST_PROFILE=debug`). Fails the test when it was not built.
pub fn built_binary(name: &str) -> PathBuf {
    let profile = std::env::var("LD_CAS_TEST_PROFILE").unwrap_or_else(|_| "release".into());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --workspace` first",
        path.display()
    );
    path
}

/// Fails the test (never skips) when `tool` is not on `PATH`.
pub fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: run `scripts/install-deps.sh` (it installs every tool the tests use)"
    );
}

/// Runs `cmd`, panicking with its stderr when it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Runs `cmd` and returns its stdout; panics with stdout and stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compiles C (or C++, by `compiler`) `sources` into `output` with extra `args`.
pub fn compile(compiler: &str, sources: &[&Path], output: &Path, args: &[&str]) {
    require_tool(compiler);
    let mut cmd = Command::new(compiler);
    cmd.args(sources).arg("-o").arg(output).args(args);
    run_ok(&mut cmd);
}

/// The directory holding the C fixtures' sources.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
