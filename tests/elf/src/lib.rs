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
    tool_path(tool);
}

/// Where `tool` is on `PATH`; fails the test (never skips) when it is not there.
pub fn tool_path(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{tool}` is not installed: run `scripts/install-deps.sh` (it installs every tool the tests use)"
        )
    })
}

/// Runs `cmd`, panicking with its stderr when it cannot be started.
///
/// A program this test process has just written can be busy (`ETXTBSY`) for a moment:
/// another test thread's child, between its fork and its exec, still holds a copy of the
/// descriptor it was written through. Starting it is retried for up to a second.
pub fn run(cmd: &mut Command) -> Output {
    let mut busy = 0;
    loop {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && busy < 100 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result.unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
        }
    }
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

/// Whether the `strace -e trace=mmap` output `trace` (or qemu's `-strace`) shows ld-cas's own mapping
/// (`ld-cas/src/near.rs`: 512 KiB, anonymous, read-write), which it makes only when the
/// rest of the program's last page cannot hold what it builds for ld.so.
pub fn ld_cas_maps_its_own_memory(trace: &str) -> bool {
    trace.lines().any(|l| {
        l.replace(' ', "")
            .contains(",524288,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0)")
    })
}

/// Defines each test once per machine, as `NAME::x86_64` and `NAME::aarch64` (under qemu,
/// [`arch`]): the body gets the machine as the named [`arch::Arch`].
#[macro_export]
macro_rules! on_each_arch {
    ($($(#[doc = $doc:literal])* fn $name:ident($arch:ident) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn body($arch: $crate::arch::Arch) $body
            #[test]
            fn x86_64() {
                body($crate::arch::Arch::X86_64)
            }
            #[test]
            fn aarch64() {
                body($crate::arch::Arch::Aarch64)
            }
        }
    )*};
}

/// The directory holding the C fixtures' sources.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Adds string-valued dynamic entries (`tag`, `value`) to the ELF file at `path`, the way a
/// converter records extra data for the interpreter: Debian's `patchelf --add-needed` adds
/// each string to `.dynstr` as a `DT_NEEDED`, then that entry is retagged in place.
/// Test-only: real conversions use `elfpatch`.
pub fn add_dynamic_string_tags(path: &Path, tags: &[(u64, &str)]) {
    require_tool("patchelf");
    for (_, value) in tags {
        run_ok(
            Command::new("patchelf")
                .arg("--add-needed")
                .arg(value)
                .arg(path),
        );
    }
    let mut data = std::fs::read(path).unwrap();
    let u16_at = |d: &[u8], o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(&data, 32) as usize, u16_at(&data, 56));
    let phdrs: Vec<[u64; 5]> = (0..phnum)
        .map(|i| {
            let o = phoff + i * 56;
            let t = u32::from_le_bytes(data[o..o + 4].try_into().unwrap()) as u64;
            [
                t,
                u64_at(&data, o + 8),
                u64_at(&data, o + 16),
                u64_at(&data, o + 32),
                0,
            ]
        })
        .collect();
    let dynamic = phdrs.iter().find(|p| p[0] == 2).expect("PT_DYNAMIC");
    let to_off = |vaddr: u64| {
        phdrs
            .iter()
            .find(|p| p[0] == 1 && vaddr >= p[2] && vaddr < p[2] + p[3])
            .map(|p| (vaddr - p[2] + p[1]) as usize)
            .expect("address in a PT_LOAD")
    };
    let entries: Vec<(usize, u64, u64)> = (0..dynamic[3] as usize / 16)
        .map(|i| {
            let o = dynamic[1] as usize + i * 16;
            (o, u64_at(&data, o), u64_at(&data, o + 8))
        })
        .collect();
    let strtab = to_off(entries.iter().find(|e| e.1 == 5).expect("DT_STRTAB").2);
    for (tag, value) in tags {
        let slot = entries
            .iter()
            .find(|e| {
                e.1 == 1 && {
                    let s = strtab + e.2 as usize;
                    data[s..].split(|&c| c == 0).next() == Some(value.as_bytes())
                }
            })
            .unwrap_or_else(|| panic!("patchelf did not add {value:?}"));
        data[slot.0..slot.0 + 8].copy_from_slice(&tag.to_le_bytes());
    }
    std::fs::write(path, data).unwrap();
}
/// A section as `readelf -SW` lists it.
pub struct SectionRow {
    /// Its address.
    pub addr: u64,
    /// Its file offset.
    pub offset: u64,
    /// Its size.
    pub size: u64,
}

/// The section `name` of `file`, from `readelf -SW`.
pub fn section_of(file: &Path, name: &str) -> SectionRow {
    require_tool("readelf");
    let listing = run_ok(Command::new("readelf").arg("-SW").arg(file));
    let fields = listing
        .lines()
        .filter_map(|l| l.split_once(']'))
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .unwrap_or_else(|| panic!("{}: no section {name}:\n{listing}", file.display()));
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex field");
    SectionRow {
        addr: hex(fields[2]),
        offset: hex(fields[3]),
        size: hex(fields[4]),
    }
}

pub mod arch;
pub mod attacker;
pub mod chain;
pub mod conversion;
pub mod nixstyle;
