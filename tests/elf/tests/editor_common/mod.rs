//! Shared code of the editor tests: building the C fixtures in one flavour, running the
//! programs (natively or under qemu), running elfpatch, checking outputs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elf_tests::{built_binary, compile, fixture_dir, require_tool, run, run_ok};

/// A 75-byte content-addressed name (what `convert` writes into `DT_NEEDED`).
pub fn uri(n: u8) -> String {
    format!("uri:blake3:{}", format!("{n:02x}").repeat(32))
}

/// How to build and run one flavour of the fixtures.
#[derive(Clone, Debug)]
pub struct Flavour {
    pub name: &'static str,
    pub cc: &'static str,
    pub cflags: &'static [&'static str],
    /// Prefix of the command that runs a target program (qemu for foreign machines).
    pub runner: &'static [&'static str],
    /// The target's dynamic loader and libc (for the long-interpreter and libc renames).
    pub ld_so: &'static str,
    pub libc: &'static str,
    /// The target's `strip`.
    pub strip: &'static str,
}

/// The x86_64 flavours the issue lists.
pub const X86_64: &[(&str, &[&str])] = &[
    ("pie", &["-fPIE", "-pie"]),
    ("nopie", &["-fno-pie", "-no-pie"]),
    ("relro-now", &["-fPIE", "-pie", "-Wl,-z,relro,-z,now"]),
    ("hash-gnu", &["-Wl,--hash-style=gnu"]),
    ("hash-sysv", &["-Wl,--hash-style=sysv"]),
    ("separate-code", &["-no-pie", "-Wl,-z,separate-code"]),
    ("noseparate-code", &["-Wl,-z,noseparate-code"]),
    ("lld", &["-fuse-ld=lld"]),
    (
        "lld-nopie-sysv",
        &["-fuse-ld=lld", "-no-pie", "-Wl,--hash-style=sysv"],
    ),
];

pub fn x86_64(name: &'static str, cflags: &'static [&'static str]) -> Flavour {
    Flavour {
        name,
        cc: "gcc",
        cflags,
        runner: &[],
        ld_so: "/lib64/ld-linux-x86-64.so.2",
        libc: "/lib/x86_64-linux-gnu/libc.so.6",
        strip: "strip",
    }
}

pub fn aarch64(name: &'static str, cflags: &'static [&'static str]) -> Flavour {
    Flavour {
        name,
        cc: "aarch64-linux-gnu-gcc",
        cflags,
        runner: &["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
        ld_so: "/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1",
        libc: "/usr/aarch64-linux-gnu/lib/libc.so.6",
        strip: "aarch64-linux-gnu-strip",
    }
}

/// Built fixtures of one flavour in a temporary directory.
pub struct Fixture {
    pub flavour: Flavour,
    pub dir: tempfile::TempDir,
    pub prog: PathBuf,
    pub lib: PathBuf,
    /// Output of the unpatched program.
    pub expected: String,
}

impl Fixture {
    pub fn build(flavour: Flavour) -> Fixture {
        require_tool(flavour.cc);
        for t in flavour.runner.iter().take(1) {
            require_tool(t);
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        let src = fixture_dir().join("editor");
        let lib = d.join("libgreet.so.1");
        let extra = d.join("libextra.so");
        let mut shared: Vec<&str> = vec!["-shared", "-fPIC", "-Wl,-soname,libgreet.so.1"];
        shared.extend(
            flavour
                .cflags
                .iter()
                .filter(|f| f.starts_with("-Wl,") || f.starts_with("-fuse-ld")),
        );
        compile(flavour.cc, &[&src.join("greet.c")], &lib, &shared);
        compile(
            flavour.cc,
            &[&src.join("extra.c")],
            &extra,
            &["-shared", "-fPIC", "-Wl,-soname,libextra.so"],
        );
        let prog = d.join("prog");
        let (lib_s, extra_s) = (lib.display().to_string(), extra.display().to_string());
        let mut args: Vec<&str> = flavour.cflags.to_vec();
        args.extend([
            "-Wl,--no-as-needed",
            lib_s.as_str(),
            extra_s.as_str(),
            "-Wl,-rpath,$ORIGIN",
            "-Wl,--enable-new-dtags",
        ]);
        compile(flavour.cc, &[&src.join("main.c")], &prog, &args);
        let mut fx = Fixture {
            flavour,
            dir,
            prog,
            lib,
            expected: String::new(),
        };
        fx.expected = fx.run_ok(&fx.prog.clone(), &[]);
        assert!(
            fx.expected.contains("hello, world-2"),
            "unexpected fixture output {:?}",
            fx.expected
        );
        fx
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A copy of the program (or `src`) under a new name.
    pub fn copy(&self, src: &Path, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::copy(src, &p).expect("copy fixture");
        p
    }

    fn command(&self, prog: &Path, env: &[(&str, &str)]) -> Command {
        let mut cmd = match self.flavour.runner.split_first() {
            Some((r, rest)) => {
                let mut c = Command::new(r);
                c.args(rest).arg(prog);
                c
            }
            None => Command::new(prog),
        };
        cmd.env_clear().envs(env.iter().copied()).arg("x");
        cmd
    }

    /// Runs a program of this flavour; panics when it fails.
    pub fn run_ok(&self, prog: &Path, env: &[(&str, &str)]) -> String {
        run_ok(&mut self.command(prog, env))
    }

    /// Runs a patched program and checks its output equals the unpatched one's.
    pub fn assert_runs(&self, prog: &Path, env: &[(&str, &str)]) {
        let out = self.run_ok(prog, env);
        assert_eq!(
            out,
            self.expected,
            "{}: {} prints something else",
            self.flavour.name,
            prog.display()
        );
    }

    /// A long interpreter path (a symlink to the real loader) for `--set-interpreter`.
    pub fn long_interp(&self) -> String {
        let dir = self.path(&format!("interp-{}", "x".repeat(100)));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let link = dir.join("ld.so");
        let _ = std::os::unix::fs::symlink(self.flavour.ld_so, &link);
        link.display().to_string()
    }

    /// Makes `name` (in the fixture directory, found through `$ORIGIN`) point at `target`.
    pub fn alias(&self, name: &str, target: &Path) {
        let _ = std::os::unix::fs::symlink(target, self.path(name));
    }
}

/// Runs elfpatch with patchelf's command line.
pub fn elfpatch(args: &[&str]) -> Output {
    run(Command::new(built_binary("elfpatch")).args(args))
}

/// Runs elfpatch and returns its stdout; panics when it fails.
pub fn elfpatch_ok(args: &[&str]) -> String {
    run_ok(Command::new(built_binary("elfpatch")).args(args))
}

/// Runs elfpatch on `file` with `args`, then checks the result with the verify pass and
/// with readelf (no warnings).
pub fn patch(file: &Path, args: &[&str]) {
    let mut a: Vec<&str> = args.to_vec();
    let f = file.to_str().expect("utf-8 path");
    a.push(f);
    elfpatch_ok(&a);
    check_file(file);
}

/// Cuts the section header table off `file`, as `sstrip` does (it ends files made by GNU
/// ld and lld), and clears `e_shoff`, `e_shnum` and `e_shstrndx`.
pub fn drop_section_headers(file: &Path) {
    let mut b = std::fs::read(file).expect("read");
    let (is64, big) = (b[4] == 2, b[5] == 2);
    let read = |b: &[u8], at: usize, n: usize| {
        let f = &b[at..at + n];
        let mut v = 0u64;
        for i in 0..n {
            let byte = if big { f[i] } else { f[n - 1 - i] };
            v = v << 8 | u64::from(byte);
        }
        v
    };
    let (shoff_at, word, shentsize_at) = if is64 { (40, 8, 58) } else { (32, 4, 46) };
    let shoff = read(&b, shoff_at, word);
    let table = read(&b, shentsize_at, 2) * read(&b, shentsize_at + 2, 2);
    assert_eq!(
        shoff + table,
        b.len() as u64,
        "{}: section headers do not end the file",
        file.display()
    );
    b.truncate(shoff as usize);
    b[shoff_at..shoff_at + word].fill(0);
    b[shentsize_at + 2..shentsize_at + 6].fill(0);
    std::fs::write(file, b).expect("write");
}

/// File offset and size of the section `name` of `file`, from `readelf -SW`.
pub fn section_range(file: &Path, name: &str) -> (usize, usize) {
    let s = elf_tests::section_of(file, name);
    (s.offset as usize, s.size as usize)
}

/// The verify pass and `readelf -lSdW` accept `file`.
pub fn check_file(file: &Path) {
    let bytes = std::fs::read(file).expect("read output");
    if let Err(e) = elfpatch::elf::verify(&bytes) {
        panic!("{}: {e}", file.display());
    }
    readelf_clean(file);
}

/// `readelf -lSdVW` prints no warning or error about `file`.
pub fn readelf_clean(file: &Path) {
    require_tool("readelf");
    let out = run(Command::new("readelf").args(["-lSdVW"]).arg(file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "readelf on {}: {err}",
        file.display()
    );
}

/// `elfpatch --print-<what> file`, trimmed.
pub fn print(what: &str, file: &Path) -> String {
    elfpatch_ok(&[
        &format!("--print-{what}"),
        file.to_str().expect("utf-8 path"),
    ])
    .trim_end()
    .to_string()
}

/// `readelf -W <flag> file`.
pub fn readelf(flag: &str, file: &Path) -> String {
    run_ok(Command::new("readelf").args(["-W", flag]).arg(file))
}

pub mod corpus;
pub mod ops;
// The synthetic files are the editor's unit tests' too: one builder, in the library.
#[path = "../../../../elfpatch/src/elf/synth.rs"]
pub mod synth;

/// i386 fixtures, run under qemu-i386 (ELF32, little endian, 4 KiB pages).
pub fn i386(name: &'static str, cflags: &'static [&'static str]) -> Flavour {
    Flavour {
        name,
        cc: "i686-linux-gnu-gcc",
        cflags,
        runner: &["qemu-i386", "-L", "/usr/i686-linux-gnu"],
        ld_so: "/usr/i686-linux-gnu/lib/ld-linux.so.2",
        libc: "/usr/i686-linux-gnu/lib/libc.so.6",
        strip: "i686-linux-gnu-strip",
    }
}

/// 32-bit arm (hard float) fixtures, run under qemu-arm (ELF32, 64 KiB maximum page).
pub fn armhf(name: &'static str, cflags: &'static [&'static str]) -> Flavour {
    Flavour {
        name,
        cc: "arm-linux-gnueabihf-gcc",
        cflags,
        runner: &["qemu-arm", "-L", "/usr/arm-linux-gnueabihf"],
        ld_so: "/usr/arm-linux-gnueabihf/lib/ld-linux-armhf.so.3",
        libc: "/usr/arm-linux-gnueabihf/lib/libc.so.6",
        strip: "arm-linux-gnueabihf-strip",
    }
}

/// A cross target run under qemu-user with its Debian sysroot `/usr/<triplet>`.
pub fn cross(
    name: &'static str,
    triplet: &'static str,
    qemu: &'static str,
    ld_so: &'static str,
) -> Flavour {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    Flavour {
        name,
        cc: leak(format!("{triplet}-gcc")),
        cflags: &[],
        runner: leak_slice(vec![qemu, "-L", leak(format!("/usr/{triplet}"))]),
        ld_so: leak(format!("/usr/{triplet}/lib/{ld_so}")),
        libc: leak(format!("/usr/{triplet}/lib/libc.so.6")),
        strip: leak(format!("{triplet}-strip")),
    }
}

fn leak_slice(v: Vec<&'static str>) -> &'static [&'static str] {
    Box::leak(v.into_boxed_slice())
}
