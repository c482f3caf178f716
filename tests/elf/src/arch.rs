//! The machine a test's files are for: x86_64, run natively, or aarch64, built with the
//! cross toolchain and run under `qemu-aarch64` through the aarch64 ld-cas (Debian's rustc
//! 1.63 builds it), the cross toolchain's sysroot standing for the system's library
//! directories (`qemu-aarch64 -L`), where plain sonames such as `libstdc++.so.6` are found.
//!
//! qemu-user ignores a guest's set-user-ID bit: the attack tests reach the aarch64 ld-cas's
//! secure mode through a set-user-ID copy of qemu instead (`secure_common::Site`). What it
//! cannot do at all is not tested on aarch64: it starts no child of another machine
//! without `binfmt_misc`, and runs neither `valgrind` nor the system's `ldd`.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{built_binary, require_tool, run_ok, workspace_root};

/// The cross toolchain's root: the aarch64 C library, its ld.so and the plain libraries.
pub const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// The machine a world is built for, and how its programs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// This machine: programs run directly.
    X86_64,
    /// Built with `aarch64-linux-gnu-gcc`, run under `qemu-aarch64`.
    Aarch64,
}

impl Arch {
    /// The C compiler.
    pub fn cc(self) -> &'static str {
        match self {
            Arch::X86_64 => "gcc",
            Arch::Aarch64 => "aarch64-linux-gnu-gcc",
        }
    }

    /// The compiler of the source file `src` (C++ for `.cpp`).
    pub fn compiler_for(self, src: &str) -> &'static str {
        match (self, src.ends_with(".cpp")) {
            (Arch::X86_64, true) => "g++",
            (Arch::Aarch64, true) => "aarch64-linux-gnu-g++",
            (_, false) => self.cc(),
        }
    }

    /// The C library.
    pub fn libc(self) -> &'static Path {
        Path::new(match self {
            Arch::X86_64 => "/lib/x86_64-linux-gnu/libc.so.6",
            Arch::Aarch64 => "/usr/aarch64-linux-gnu/lib/libc.so.6",
        })
    }

    /// glibc's ld.so.
    pub fn ld_so(self) -> &'static Path {
        Path::new(match self {
            Arch::X86_64 => "/lib64/ld-linux-x86-64.so.2",
            Arch::Aarch64 => "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
        })
    }

    /// The ld-cas of this machine: the workspace's build, or for aarch64 one built once per
    /// test process by `ld-cas/scripts/build-rustc-1.63.sh` (into `target/tmp`, renamed
    /// into place: processes that build it at once write the same bytes).
    pub fn ld_cas(self) -> PathBuf {
        match self {
            Arch::X86_64 => built_binary("ld-cas"),
            Arch::Aarch64 => {
                static BUILT: OnceLock<PathBuf> = OnceLock::new();
                BUILT.get_or_init(build_aarch64_ld_cas).clone()
            }
        }
    }

    /// A binutils tool (`nm`, `readelf`) that reads this machine's files.
    pub fn binutil(self, tool: &str) -> String {
        match self {
            Arch::X86_64 => tool.to_string(),
            Arch::Aarch64 => format!("aarch64-linux-gnu-{tool}"),
        }
    }

    /// The linker argument that makes a file in `from` find libraries in `lib`. For
    /// aarch64 relative to `$ORIGIN` (`elfpatch convert --sysroot` reads an absolute
    /// RUNPATH as a directory of the sysroot, as the target machine's own paths are).
    pub fn rpath(self, from: &Path, lib: &Path) -> String {
        match (self, lib.strip_prefix(from)) {
            (Arch::Aarch64, Ok(rel)) => format!("-Wl,-rpath,$ORIGIN/{}", rel.display()),
            _ => format!("-Wl,-rpath,{}", lib.display()),
        }
    }

    /// Arguments of `elfpatch convert` for this machine's programs: for aarch64, the cross
    /// toolchain's sysroot, where their libraries and loader are found.
    pub fn convert_args(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &[],
            Arch::Aarch64 => &["--sysroot", AARCH64_SYSROOT],
        }
    }

    /// A command that starts `program`, a file of this machine.
    pub fn command(self, program: impl AsRef<OsStr>) -> Command {
        self.under_qemu(&[], program)
    }

    /// A command that starts `program` and writes every system call it makes with a path
    /// to its stderr, as `strace` shows them (`NAME(ARGS) = RESULT`, failures `= -1 …`).
    pub fn trace_files(self, program: impl AsRef<OsStr>) -> Command {
        self.trace("%file", program)
    }

    /// A command that starts `program` and writes at least the system calls `strace`'s
    /// `-e trace=FILTER` selects to its stderr. Under qemu, qemu's own record of every call
    /// the guest makes (`strace` would show qemu's, such as its look-up of every absolute
    /// path in the sysroot first), without the spaces after commas.
    pub fn trace(self, filter: &str, program: impl AsRef<OsStr>) -> Command {
        match self {
            Arch::X86_64 => {
                require_tool("strace");
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-e", &format!("trace={filter}")])
                    .arg(program);
                cmd
            }
            Arch::Aarch64 => self.under_qemu(&["-strace"], program),
        }
    }

    /// A command that starts `program` and kills it after `seconds` (`timeout`).
    pub fn timed(self, seconds: &str, program: impl AsRef<OsStr>) -> Command {
        let inner = self.command(program);
        let mut cmd = Command::new("timeout");
        cmd.arg(seconds)
            .arg(inner.get_program())
            .args(inner.get_args());
        cmd
    }

    /// `program` itself, or for aarch64 `qemu-aarch64 -L SYSROOT QEMU_ARGS program`.
    fn under_qemu(self, qemu_args: &[&str], program: impl AsRef<OsStr>) -> Command {
        match self {
            Arch::X86_64 => Command::new(program),
            Arch::Aarch64 => {
                require_tool("qemu-aarch64");
                let mut cmd = Command::new("qemu-aarch64");
                cmd.args(["-L", AARCH64_SYSROOT])
                    .args(qemu_args)
                    .arg(program);
                cmd
            }
        }
    }
}

/// Builds the aarch64 ld-cas into `target/tmp/ld-cas-aarch64`.
fn build_aarch64_ld_cas() -> PathBuf {
    require_tool("aarch64-linux-gnu-gcc");
    let dir = built_binary("ld-cas")
        .parent()
        .and_then(Path::parent)
        .expect("target/release/ld-cas")
        .join("tmp");
    fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ld-cas-aarch64");
    let mine = dir.join(format!("ld-cas-aarch64.{}", std::process::id()));
    run_ok(
        Command::new(workspace_root().join("ld-cas/scripts/build-rustc-1.63.sh"))
            .arg("aarch64-unknown-linux-gnu")
            .arg(&mine),
    );
    fs::rename(&mine, &out).unwrap();
    out
}
