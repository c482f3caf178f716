//! The shared part of the ld-cas end-to-end tests: C and C++ fixtures are built, converted
//! to content-addressed form (libraries rewritten bottom-up and added to a store, programs
//! given ld-cas as `PT_INTERP` and the loader/store tags), then run through ld-cas.
//!
//! Conversion here uses Debian's `patchelf` (`--replace-needed`, `--set-interpreter`) and
//! `elfpatch store add`, so that ld-cas is tested apart from the converter; one test also
//! runs `elfpatch convert`. The C library and its ld.so are taken into the store as they are.
//!
//! A world is built for one machine ([`Arch`], `elf_tests::arch`): x86_64, or aarch64 run
//! under `qemu-aarch64`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use elf_tests::arch::Arch;
use elf_tests::{
    add_dynamic_string_tags, built_binary, compile, fixture_dir, require_tool, run_ok,
};

pub use resolver::tags::{DT_LDCAS_LOADER, DT_LDCAS_STORE};

/// Converted fixtures: `root/bin/<program>` next to `root/store`.
pub struct World {
    /// The machine its files are for.
    pub arch: Arch,
    pub root: PathBuf,
    /// soname → URI of everything put into the store.
    pub uris: BTreeMap<String, String>,
    pub loader_uri: String,
}

impl World {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root.join("bin").join(name)
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
    pub fn uri(&self, soname: &str) -> &str {
        &self.uris[soname]
    }
    /// A command that starts `program`, one of this world's files (a path).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        self.arch.command(program)
    }
    /// A command that starts the world's program `name`.
    pub fn run_bin(&self, name: &str) -> Command {
        self.command(self.bin(name))
    }
}

pub fn elfpatch() -> PathBuf {
    built_binary("elfpatch")
}

pub fn ld_cas() -> PathBuf {
    built_binary("ld-cas")
}

/// Adds `file` to `store` and returns its URI.
pub fn store_add(store: &Path, file: &Path) -> String {
    let out = run_ok(
        Command::new(elfpatch())
            .args(["store", "add", "--store"])
            .arg(store)
            .arg(file),
    );
    out.split('\t').next().unwrap().trim().to_string()
}

/// Rewrites every `DT_NEEDED` of `file` that names a converted soname to its URI.
pub fn replace_needed(file: &Path, uris: &BTreeMap<String, String>) {
    let mut cmd = Command::new("patchelf");
    for (soname, uri) in uris {
        cmd.arg("--replace-needed").arg(soname).arg(uri);
    }
    run_ok(cmd.arg(file));
}

/// Converts the program `src` into `dst`: URIs, ld-cas as interpreter, loader and store tags.
pub fn convert_program(
    src: &Path,
    dst: &Path,
    uris: &BTreeMap<String, String>,
    loader_uri: &str,
    store: &str,
) {
    convert_program_for(Arch::X86_64, src, dst, uris, loader_uri, store)
}

/// [`convert_program`] for a program of the machine `arch`.
pub fn convert_program_for(
    arch: Arch,
    src: &Path,
    dst: &Path,
    uris: &BTreeMap<String, String>,
    loader_uri: &str,
    store: &str,
) {
    fs::copy(src, dst).unwrap();
    replace_needed(dst, uris);
    run_ok(
        Command::new("patchelf")
            .arg("--set-interpreter")
            .arg(arch.ld_cas())
            .arg(dst),
    );
    add_dynamic_string_tags(
        dst,
        &[(DT_LDCAS_LOADER, loader_uri), (DT_LDCAS_STORE, store)],
    );
}

pub fn build_world(dir: &Path, arch: Arch) -> World {
    require_tool(arch.cc());
    require_tool(arch.compiler_for(".cpp"));
    require_tool("patchelf");
    let _ = fs::remove_dir_all(dir);
    let (build, bin, store) = (dir.join("build"), dir.join("bin"), dir.join("store"));
    for d in [&build, &bin] {
        fs::create_dir_all(d).unwrap();
    }
    run_ok(
        Command::new(elfpatch())
            .args(["store", "init", "--store"])
            .arg(&store),
    );
    let mut uris = BTreeMap::new();
    uris.insert("libc.so.6".to_string(), store_add(&store, arch.libc()));
    let loader_uri = store_add(&store, arch.ld_so());
    let fx = fixture_dir().join("loader");

    // Libraries, bottom-up: build, rewrite their own needs, add to the store.
    let libs: &[(&str, &str, &[&str])] = &[
        ("libchain_c.so", "chain_c.c", &[]),
        ("libchain_b.so", "chain_b.c", &["libchain_c.so"]),
        ("libchain_a.so", "chain_a.c", &["libchain_b.so"]),
        ("libbottom.so", "bottom.c", &[]),
        ("libleft.so", "left.c", &["libbottom.so"]),
        ("libright.so", "right.c", &["libbottom.so"]),
        ("libplugin.so", "plugin.c", &[]),
        ("libtls.so", "tls.c", &[]),
        ("liborigin.so", "origin.c", &[]),
        ("libthrower.so", "thrower.cpp", &[]),
    ];
    for (soname, src, deps) in libs {
        let out = build.join(soname);
        let compiler = arch.compiler_for(src);
        let mut args = vec![
            "-shared".to_string(),
            "-fPIC".into(),
            "-g".into(),
            format!("-Wl,-soname,{soname}"),
        ];
        args.push(format!("-L{}", build.display()));
        args.extend(deps.iter().map(|d| format!("-l:{d}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        compile(compiler, &[&fx.join(src)], &out, &args);
        let conv = build.join(format!("conv-{soname}"));
        fs::copy(&out, &conv).unwrap();
        replace_needed(&conv, &uris);
        let uri = store_add(&store, &conv);
        uris.insert(soname.to_string(), uri);
    }

    let programs: &[(&str, &str, &[&str])] = &[
        ("hello", "hello.c", &[]),
        ("chain", "chain.c", &["libchain_a.so"]),
        ("diamond", "diamond.c", &["libleft.so", "libright.so"]),
        ("dl", "dl.c", &["-ldl", "-lpthread"]),
        ("threads", "threads.c", &["libtls.so", "-lpthread"]),
        ("catcher", "catcher.cpp", &["libthrower.so"]),
        ("env", "env.c", &[]),
        ("origin", "origin_main.c", &["liborigin.so"]),
        ("setuid", "setuid.c", &["libchain_c.so"]),
    ];
    for (name, src, deps) in programs {
        let out = build.join(name);
        let compiler = arch.compiler_for(src);
        let mut args = vec![
            "-g".to_string(),
            format!("-L{}", build.display()),
            format!("-Wl,-rpath-link,{}", build.display()),
        ];
        args.extend(deps.iter().map(|d| {
            if d.starts_with('-') {
                d.to_string()
            } else {
                format!("-l:{d}")
            }
        }));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        compile(compiler, &[&fx.join(src)], &out, &args);
        convert_program_for(arch, &out, &bin.join(name), &uris, &loader_uri, "../store");
    }
    World {
        arch,
        root: dir.to_path_buf(),
        uris,
        loader_uri,
    }
}

/// The x86_64 world, built once per test binary.
pub fn world() -> &'static World {
    world_on(Arch::X86_64)
}

/// The world of the machine `arch`, built once per test binary.
pub fn world_on(arch: Arch) -> &'static World {
    static X86_64: OnceLock<World> = OnceLock::new();
    static AARCH64: OnceLock<World> = OnceLock::new();
    let (cell, dir) = match arch {
        Arch::X86_64 => (&X86_64, concat!("loader-", env!("CARGO_CRATE_NAME"))),
        Arch::Aarch64 => (
            &AARCH64,
            concat!("loader-aarch64-", env!("CARGO_CRATE_NAME")),
        ),
    };
    cell.get_or_init(|| build_world(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir), arch))
}

/// Defines each test once per machine (`elf_tests::on_each_arch!`): the body gets that
/// machine's world as `w`.
#[macro_export]
macro_rules! on_each_world {
    ($($(#[doc = $doc:literal])* fn $name:ident($w:ident) $body:block)*) => {
        elf_tests::on_each_arch! {$(
            $(#[doc = $doc])*
            fn $name(arch) {
                let $w = world_on(arch);
                $body
            }
        )*}
    };
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies the bin and store directories under a fresh directory.
pub fn copy_world(w: &World, to: &Path) {
    require_tool("cp");
    for d in ["bin", "store"] {
        run_ok(Command::new("cp").arg("-a").arg(w.root.join(d)).arg(to));
    }
}
