//! Shared by the attack tests of ld-cas (`loader_secure`, `loader_crafted`): the attacker
//! running things, a converted site with set-user-ID programs, crafted stores and tables.

#![allow(dead_code)] // each test binary uses its own part

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use elf_tests::attacker::{give_to_attacker, setpriv_args};
use elf_tests::{compile, fixture_dir, require_tool, run, run_ok};
use resolver::table::write::{build, NewEntry};
use resolver::table::Table;
use resolver::uri::Hash;

use crate::loader_common::*;

/// Seconds any single run may take before it counts as a hang.
pub const TIMEOUT: &str = "30";

/// `prog args` run by the attacker (through `setpriv`), with only `env` and `PATH`.
pub fn as_user(prog: &Path, args: &[&Path], env: &[(&str, &Path)], cwd: &Path) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", TIMEOUT]);
    setpriv_args(&mut cmd);
    cmd.arg(prog).args(args);
    with_env(&mut cmd, env, cwd);
    run(&mut cmd)
}

pub fn with_env(cmd: &mut Command, env: &[(&str, &Path)], cwd: &Path) {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// `prog args` run by root (no set-user-ID transition: not secure mode), under `timeout`.
pub fn as_root(prog: &Path, args: &[&Path], env: &[(&str, &Path)]) -> Output {
    as_root_on(Arch::X86_64, prog, args, env)
}

/// [`as_root`] for a program of `arch` (under qemu for aarch64).
pub fn as_root_on(arch: Arch, prog: &Path, args: &[&Path], env: &[(&str, &Path)]) -> Output {
    let started = arch.command(prog);
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", TIMEOUT])
        .arg(started.get_program())
        .args(started.get_args())
        .args(args);
    with_env(&mut cmd, env, Path::new("/"));
    run(&mut cmd)
}

/// The run failed the way every ld-cas failure must: exit 127, one line on stderr starting
/// with `ld-cas: ` and holding each of `parts`, nothing from the attacker's library.
#[track_caller]
pub fn assert_refused(out: &Output, parts: &[&str]) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(127),
        "status {} (124: a hang; 128+n: signal n)\nstdout: {}\nstderr: {err}",
        out.status,
        stdout(out)
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ld-cas: "), "{err}");
    for part in parts {
        assert!(err.contains(part), "{part:?} missing from {err:?}");
    }
    assert!(!stdout(out).contains("666"), "{}", stdout(out));
}

/// The fixtures built for these tests alone (once per test process).
pub struct Extras {
    pub spawn_root: PathBuf,
    pub evil_lib: PathBuf,
    pub tiny_lib: PathBuf,
}

pub fn extras() -> &'static Extras {
    extras_on(Arch::X86_64)
}

/// [`extras`] built for `arch`.
pub fn extras_on(arch: Arch) -> &'static Extras {
    static X86_64: OnceLock<Extras> = OnceLock::new();
    static AARCH64: OnceLock<Extras> = OnceLock::new();
    let cell = match arch {
        Arch::X86_64 => &X86_64,
        Arch::Aarch64 => &AARCH64,
    };
    cell.get_or_init(|| {
        let w = world_on(arch);
        let dir = w.root.join("secure-extras");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let fx = fixture_dir().join("loader");
        let e = Extras {
            spawn_root: dir.join("spawn_root"),
            evil_lib: dir.join("libchain_c.so"),
            tiny_lib: dir.join("libtiny.so"),
        };
        compile(
            arch.cc(),
            &[&fx.join("spawn_root.c")],
            &e.spawn_root,
            &["-g"],
        );
        for (src, out, soname) in [
            ("evil_chain_c.c", &e.evil_lib, "libchain_c.so"),
            ("tiny.c", &e.tiny_lib, "libtiny.so"),
        ] {
            let soname = format!("-Wl,-soname,{soname}");
            compile(
                arch.cc(),
                &[&fx.join(src)],
                out,
                &["-shared", "-fPIC", &soname],
            );
        }
        e
    })
}

/// A copy of the converted world in a fresh directory under `/tmp` (root's, mode 755),
/// with the extra programs converted into its `bin/`.
pub struct Site {
    pub dir: tempfile::TempDir,
    /// The machine of its files.
    pub arch: Arch,
}

impl Site {
    pub fn new() -> Site {
        Site::on(Arch::X86_64)
    }

    /// A site of the world of `arch`.
    pub fn on(arch: Arch) -> Site {
        let w = world_on(arch);
        let x = extras_on(arch);
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        let site = Site { dir, arch };
        convert_program_for(
            arch,
            &x.spawn_root,
            &site.bin("spawn_root"),
            &w.uris,
            &w.loader_uri,
            "../store",
        );
        run_ok(
            Command::new("chmod")
                .args(["-R", "a+rX,go-w"])
                .arg(site.root()),
        );
        if arch == Arch::Aarch64 {
            elf_tests::attacker::install_setuid_qemu(site.root());
        }
        site
    }

    /// Where an aarch64 site's set-user-ID `qemu-aarch64` is
    /// ([`elf_tests::attacker::install_setuid_qemu`]).
    pub fn setuid_qemu(&self) -> PathBuf {
        self.root().join(elf_tests::attacker::SETUID_QEMU)
    }
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    /// `prog` (set-user-ID root) run by the attacker from `/`: in secure mode, as root.
    /// On aarch64 through the site's set-user-ID qemu, with no `-L`: ld-cas opens the
    /// store from `/` one component at a time there, and qemu would take `/` for the
    /// sysroot.
    pub fn as_user_setuid(&self, prog: &Path) -> Output {
        self.as_user(prog, &[], &[], Path::new("/"))
    }

    /// [`as_user`] of a program of this site's machine (see [`Site::as_user_setuid`]).
    pub fn as_user(
        &self,
        prog: &Path,
        args: &[&Path],
        env: &[(&str, &Path)],
        cwd: &Path,
    ) -> Output {
        match self.arch {
            Arch::X86_64 => as_user(prog, args, env, cwd),
            Arch::Aarch64 => {
                let mut all = vec![prog];
                all.extend_from_slice(args);
                as_user(&self.setuid_qemu(), &all, env, cwd)
            }
        }
    }
    /// [`as_root_on`] this site's machine.
    pub fn as_root(&self, prog: &Path, args: &[&Path], env: &[(&str, &Path)]) -> Output {
        as_root_on(self.arch, prog, args, env)
    }
    pub fn bin(&self, name: &str) -> PathBuf {
        self.root().join("bin").join(name)
    }
    pub fn store(&self) -> PathBuf {
        self.root().join("store")
    }
    pub fn setuid(&self, name: &str) -> PathBuf {
        let p = self.bin(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)).unwrap();
        p
    }
}

pub fn table_entries(store: &Path) -> Vec<NewEntry> {
    let bytes = fs::read(store.join("table")).unwrap();
    let table = Table::parse(&bytes).unwrap();
    // Unchecked reads: the tests write entries that checked reads refuse.
    (0..table.len())
        .map(|i| NewEntry::from(table.entry(i).unwrap()))
        .collect()
}

/// The table entry of `uri`.
pub fn entry(store: &Path, uri: &str) -> NewEntry {
    let hash: Hash = uri.parse().unwrap();
    table_entries(store)
        .into_iter()
        .find(|e| e.hash == hash)
        .unwrap_or_else(|| panic!("{uri} not in {}", store.display()))
}

/// The file the table names for `uri` (whatever the store's object layout).
pub fn object(store: &Path, uri: &str) -> PathBuf {
    store.join(String::from_utf8(entry(store, uri).path).unwrap())
}

/// Rewrites the store's table with `f` applied to each entry (the writer takes any path:
/// that is what an attacker with write access to a table, or a damaged one, gives).
pub fn rewrite_table(store: &Path, f: impl Fn(&mut NewEntry)) {
    let table = store.join("table");
    let mut entries = table_entries(store);
    entries.iter_mut().for_each(f);
    let bytes = build(entries, 99).unwrap();
    let _ = fs::remove_file(&table);
    fs::write(&table, bytes).unwrap();
    fs::set_permissions(&table, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Points the entry of `uri` at `path` (store-relative), with `size`.
pub fn point_entry(store: &Path, uri: &str, path: &[u8], size: u64) {
    let hash: Hash = uri.parse().unwrap();
    rewrite_table(store, |e| {
        if e.hash == hash {
            e.path = path.to_vec();
            e.size = size;
        }
    });
}

/// The attacker's store at `at`: the site's store with libchain_c's URI naming the
/// attacker's library, all of it owned by the attacker.
pub fn evil_store(site: &Site, at: &Path) -> PathBuf {
    run_ok(Command::new("cp").arg("-a").arg(site.store()).arg(at));
    let store = at.join("store");
    let evil = &extras_on(site.arch).evil_lib;
    fs::copy(evil, store.join("objects/evil-libchain_c.so")).unwrap();
    let size = fs::metadata(evil).unwrap().len();
    let uri = world_on(site.arch).uri("libchain_c.so");
    point_entry(&store, uri, b"objects/evil-libchain_c.so", size);
    // And its index entry, as a write of the store would make it (a hard link of the object).
    let entry = store.join("index").join(uri);
    fs::remove_file(&entry).unwrap();
    fs::hard_link(store.join("objects/evil-libchain_c.so"), &entry).unwrap();
    give_to_attacker(at);
    store
}

/// A directory the attacker owns.
pub fn attacker_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    give_to_attacker(d.path());
    d
}

/// Sets the value of the `nth` dynamic entry tagged `tag` in the ELF file at `path`.
pub fn set_dynamic(path: &Path, tag: u64, nth: usize, value: u64) {
    let mut d = fs::read(path).unwrap();
    let u16_at = |d: &[u8], o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |d: &[u8], o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
    let (phoff, phnum) = (u64_at(&d, 32) as usize, u16_at(&d, 56));
    let dynamic = (0..phnum)
        .map(|i| phoff + i * 56)
        .find(|&o| u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) == 2)
        .expect("PT_DYNAMIC");
    let (off, size) = (u64_at(&d, dynamic + 8) as usize, u64_at(&d, dynamic + 32));
    let slot = (0..size as usize / 16)
        .map(|i| off + i * 16)
        .filter(|&o| u64_at(&d, o) == tag)
        .nth(nth)
        .expect("no such dynamic entry");
    d[slot + 8..slot + 16].copy_from_slice(&value.to_le_bytes());
    let _ = fs::remove_file(path);
    fs::write(path, d).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Replaces the file at `path` with a FIFO (nobody ever writes to it).
pub fn make_fifo(path: &Path) {
    require_tool("mkfifo");
    let _ = fs::remove_file(path);
    run_ok(Command::new("mkfifo").arg(path));
}

/// A directory the attacker owns holding their store (see [`evil_store`]), and in it a
/// subdirectory `sub` they own too: where they stand.
pub fn attacker_beside_evil_store(site: &Site, sub: &str) -> (tempfile::TempDir, PathBuf) {
    let attacker = attacker_dir();
    evil_store(site, attacker.path());
    let dir = attacker.path().join(sub);
    fs::create_dir(&dir).unwrap();
    give_to_attacker(&dir);
    (attacker, dir)
}
