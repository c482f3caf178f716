//! ld-cas attacked as an unprivileged local user would (issue 11): set-user-ID fixtures run
//! by a user the test creates, with the caller's store in the environment, without
//! `/proc`, through a hard link beside the caller's own store, with writable stores,
//! crafted tables, crafted programs, FIFOs as table, loader and library. Every attack is
//! run next to the legitimate case, which must still work, and every run is under
//! `timeout`: each failure must be one line and exit status 127, never a signal or a hang.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use elf_tests::attacker::{give_to_attacker, setpriv_args, user};
use elf_tests::{compile, fixture_dir, require_tool, run, run_ok};
use resolver::table::write::{build, NewEntry};
use resolver::table::Table;
use resolver::uri::Hash;

mod loader_common;
use loader_common::*;

/// Seconds any single run may take before it counts as a hang.
const TIMEOUT: &str = "30";

/// `prog args` run by the attacker (through `setpriv`), with only `env` and `PATH`.
fn as_user(prog: &Path, args: &[&Path], env: &[(&str, &Path)], cwd: &Path) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", TIMEOUT]);
    setpriv_args(&mut cmd);
    cmd.arg(prog).args(args);
    with_env(&mut cmd, env, cwd);
    run(&mut cmd)
}

fn with_env(cmd: &mut Command, env: &[(&str, &Path)], cwd: &Path) {
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// `prog args` run by root (no set-user-ID transition: not secure mode), under `timeout`.
fn as_root(prog: &Path, args: &[&Path], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", TIMEOUT]).arg(prog).args(args);
    with_env(&mut cmd, env, Path::new("/"));
    run(&mut cmd)
}

/// The run failed the way every ld-cas failure must: exit 127, one line on stderr starting
/// with `ld-cas: ` and holding each of `parts`, nothing from the attacker's library.
#[track_caller]
fn assert_refused(out: &Output, parts: &[&str]) {
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
struct Extras {
    spawn_root: PathBuf,
    evil_lib: PathBuf,
    tiny_lib: PathBuf,
}

fn extras() -> &'static Extras {
    static EXTRAS: OnceLock<Extras> = OnceLock::new();
    EXTRAS.get_or_init(|| {
        let w = world();
        let dir = w.root.join("secure-extras");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let fx = fixture_dir().join("loader");
        let e = Extras {
            spawn_root: dir.join("spawn_root"),
            evil_lib: dir.join("libchain_c.so"),
            tiny_lib: dir.join("libtiny.so"),
        };
        compile("gcc", &[&fx.join("spawn_root.c")], &e.spawn_root, &["-g"]);
        for (src, out, soname) in [
            ("evil_chain_c.c", &e.evil_lib, "libchain_c.so"),
            ("tiny.c", &e.tiny_lib, "libtiny.so"),
        ] {
            let soname = format!("-Wl,-soname,{soname}");
            compile("gcc", &[&fx.join(src)], out, &["-shared", "-fPIC", &soname]);
        }
        e
    })
}

/// A copy of the converted world in a fresh directory under `/tmp` (root's, mode 755),
/// with the extra programs converted into its `bin/`.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let w = world();
        let x = extras();
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        let site = Site { dir };
        convert_program(
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
        site
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn bin(&self, name: &str) -> PathBuf {
        self.root().join("bin").join(name)
    }
    fn store(&self) -> PathBuf {
        self.root().join("store")
    }
    fn setuid(&self, name: &str) -> PathBuf {
        let p = self.bin(name);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)).unwrap();
        p
    }
}

fn table_entries(store: &Path) -> Vec<NewEntry> {
    let bytes = fs::read(store.join("table")).unwrap();
    let table = Table::parse(&bytes).unwrap();
    // Unchecked reads: the tests write entries that checked reads refuse.
    (0..table.len())
        .map(|i| NewEntry::from(table.entry(i).unwrap()))
        .collect()
}

/// The table entry of `uri`.
fn entry(store: &Path, uri: &str) -> NewEntry {
    let hash: Hash = uri.parse().unwrap();
    table_entries(store)
        .into_iter()
        .find(|e| e.hash == hash)
        .unwrap_or_else(|| panic!("{uri} not in {}", store.display()))
}

/// The file the table names for `uri` (whatever the store's object layout).
fn object(store: &Path, uri: &str) -> PathBuf {
    store.join(String::from_utf8(entry(store, uri).path).unwrap())
}

/// Rewrites the store's table with `f` applied to each entry (the writer takes any path:
/// that is what an attacker with write access to a table, or a damaged one, gives).
fn rewrite_table(store: &Path, f: impl Fn(&mut NewEntry)) {
    let table = store.join("table");
    let mut entries = table_entries(store);
    entries.iter_mut().for_each(f);
    let bytes = build(entries, 99).unwrap();
    let _ = fs::remove_file(&table);
    fs::write(&table, bytes).unwrap();
    fs::set_permissions(&table, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Points the entry of `uri` at `path` (store-relative), with `size`.
fn point_entry(store: &Path, uri: &str, path: &[u8], size: u64) {
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
fn evil_store(site: &Site, at: &Path) -> PathBuf {
    run_ok(Command::new("cp").arg("-a").arg(site.store()).arg(at));
    let store = at.join("store");
    let evil = &extras().evil_lib;
    fs::copy(evil, store.join("objects/evil-libchain_c.so")).unwrap();
    let size = fs::metadata(evil).unwrap().len();
    point_entry(
        &store,
        world().uri("libchain_c.so"),
        b"objects/evil-libchain_c.so",
        size,
    );
    give_to_attacker(at);
    store
}

/// A directory the attacker owns.
fn attacker_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    give_to_attacker(d.path());
    d
}

/// Sets the value of the `nth` dynamic entry tagged `tag` in the ELF file at `path`.
fn set_dynamic(path: &Path, tag: u64, nth: usize, value: u64) {
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
fn make_fifo(path: &Path) {
    require_tool("mkfifo");
    let _ = fs::remove_file(path);
    run_ok(Command::new("mkfifo").arg(path));
}

#[test]
fn children_of_a_setuid_program_never_see_ld_cas_variables() {
    let site = Site::new();
    let spawn = site.setuid("spawn_root");
    let helper = site.bin("setuid"); // converted, not set-user-ID: prints euid and chain_c()
    let attacker = attacker_dir();
    let evil = evil_store(&site, attacker.path());
    let evil_lib = attacker.path().join("libchain_c.so");
    fs::copy(&extras().evil_lib, &evil_lib).unwrap();
    let override_ = PathBuf::from(format!("libchain_c.so={}", evil_lib.display()));
    let env: &[(&str, &Path)] = &[
        ("LD_CAS_STORE", &evil),
        ("LD_CAS_OVERRIDE", &override_),
        ("LD_CAS_DEBUG", Path::new("1")),
        ("KEEP_ME", Path::new("1")),
    ];

    // The attacker's store works wherever it is honoured (so the attack below is real): a
    // program run normally follows LD_CAS_STORE and loads the attacker's library.
    let out = as_root(&helper, &[], &env[..1]);
    assert_eq!(stdout(&out), "euid 0 value 666\n", "{}", stderr(&out));

    // The attack: the set-user-ID launcher becomes root and runs the helper. The helper
    // (real and effective user root: not secure) would obey LD_CAS_STORE: it must not
    // get it. The launcher's own environment has lost every LD_CAS_ variable and kept
    // the rest; its auxiliary vector is intact (it runs, and sees AT_SECURE).
    let out = as_user(&spawn, &[&helper], env, attacker.path());
    assert_eq!(
        stdout(&out),
        "secure 1\nenv KEEP_ME=1\neuid 0 value 40\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "LD_CAS_DEBUG must be ignored and removed");
    assert_eq!(out.status.code(), Some(0));

    // What any child sees: no LD_CAS_ variable, everything else.
    let out = as_user(&spawn, &[Path::new("/usr/bin/env")], env, attacker.path());
    let text = stdout(&out);
    assert!(!text.contains("LD_CAS_"), "{text}");
    assert!(text.contains("\nKEEP_ME=1\n"), "{text}");

    // Not secure (root runs the launcher: no set-user-ID transition): the variables are
    // the caller's own, kept for the program and its children.
    let out = as_root(&spawn, &[&helper], &env[..1]);
    assert_eq!(
        stdout(&out),
        format!(
            "secure 0\nenv LD_CAS_STORE={}\neuid 0 value 666\n",
            evil.display()
        ),
        "{}",
        stderr(&out)
    );
}

/// `unshare -m` with an empty tmpfs over `/proc`, then `timeout`, `setpriv` when
/// `as_user`, and the program.
fn without_proc(prog: &Path, as_user: bool, cwd: &Path) -> Output {
    require_tool("unshare");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -t tmpfs none /proc && exec \"$@\"",
        "sh",
        "timeout",
        "-k",
        "5",
        TIMEOUT,
    ]);
    if as_user {
        setpriv_args(&mut cmd);
    }
    cmd.arg(prog);
    with_env(&mut cmd, &[], cwd);
    run(&mut cmd)
}

#[test]
fn no_store_from_the_working_directory_without_proc() {
    let site = Site::new();
    let prog = site.setuid("setuid");
    // The attacker's store where the old fallback looked: `./..` of their directory.
    let attacker = attacker_dir();
    evil_store(&site, attacker.path());
    let cwd = attacker.path().join("sub");
    fs::create_dir(&cwd).unwrap();
    give_to_attacker(&cwd);

    let out = as_user(&prog, &[], &[], &cwd);
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));

    let out = without_proc(&prog, true, &cwd);
    assert_refused(&out, &["/proc/self/exe", "set-user-ID"]);
    assert_eq!(stdout(&out), "");

    // Not secure, /proc missing: the path it was run by (absolute here) still gives the
    // program's directory.
    let out = without_proc(&prog, false, &cwd);
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));

    // A path of 1023 bytes or more in /proc/self/exe: refused, never truncated or
    // replaced by the working directory.
    let mut deep = site.root().to_path_buf();
    while deep.as_os_str().len() < 1100 {
        deep.push("d".repeat(200));
    }
    fs::create_dir_all(&deep).unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(site.root().join("bin"))
            .arg(&deep),
    );
    run_ok(Command::new("cp").arg("-a").arg(site.store()).arg(&deep));
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX,go-w"])
            .arg(site.root()),
    );
    let long = deep.join("bin/setuid");
    fs::set_permissions(&long, fs::Permissions::from_mode(0o4755)).unwrap();
    let out = as_user(&long, &[], &[], &cwd);
    assert_refused(&out, &["/proc/self/exe"]);
}

#[test]
fn a_setuid_program_uses_only_a_trusted_store() {
    let site = Site::new();
    let prog = site.setuid("setuid");
    let store = site.store();
    let w = world();
    let lib = object(&store, w.uri("libchain_c.so"));
    let loader = object(&store, &w.loader_uri);
    let works = |why: &str| {
        let out = as_user(&prog, &[], &[], Path::new("/"));
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{why}: {}", stderr(&out));
    };
    works("as converted");

    let uid = user().uid.clone();
    let owner = format!("is owned by uid {uid}");
    let cases: &[(&Path, &str, &str, &str)] = &[
        (
            &store.join("objects"),
            "o+w",
            "755",
            "is writable by group or others",
        ),
        (
            &store.join("table"),
            "g+w",
            "644",
            "is writable by group or others",
        ),
        (&store, "o+w", "755", "is writable by group or others"),
        (&lib, "o+w", "444", "is writable by group or others"),
        (&loader, "g+w", "444", "is writable by group or others"),
        (&store.join("table"), "chown", "root", &owner),
        (&store.join("objects"), "chown", "root", &owner),
        (&lib, "chown", "root", &owner),
    ];
    for (path, change, restore, why) in cases {
        let mode = fs::metadata(path).unwrap().permissions().mode();
        if *change == "chown" {
            run_ok(Command::new("chown").arg(&uid).arg(path));
        } else {
            run_ok(Command::new("chmod").arg(change).arg(path));
        }
        let out = as_user(&prog, &[], &[], Path::new("/"));
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_refused(&out, &["refused", name, why]);
        // Not secure: the same store is the user's own business.
        let out = as_root(&prog, &[], &[]);
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
        if *change == "chown" {
            run_ok(Command::new("chown").arg(restore).arg(path));
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        works(&format!("{} restored", path.display()));
    }
}

/// Sets `fs.protected_hardlinks` for as long as it lives; restores the old value when
/// dropped, also when the test fails. One at a time in this process.
struct ProtectedHardlinks {
    old: String,
    _serial: std::sync::MutexGuard<'static, ()>,
}

const PROTECTED_HARDLINKS: &str = "/proc/sys/fs/protected_hardlinks";

impl ProtectedHardlinks {
    fn set(value: &str) -> ProtectedHardlinks {
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let old = fs::read_to_string(PROTECTED_HARDLINKS).unwrap();
        fs::write(PROTECTED_HARDLINKS, value).unwrap();
        ProtectedHardlinks {
            old,
            _serial: serial,
        }
    }
}

impl Drop for ProtectedHardlinks {
    fn drop(&mut self) {
        let _ = fs::write(PROTECTED_HARDLINKS, self.old.trim());
    }
}

#[test]
fn a_hard_link_beside_the_callers_store_is_refused() {
    let site = Site::new();
    let prog = site.setuid("setuid");
    let attacker = attacker_dir();
    evil_store(&site, attacker.path());
    let bin = attacker.path().join("bin");
    fs::create_dir(&bin).unwrap();
    give_to_attacker(&bin);
    let link = bin.join("setuid");
    {
        let _relaxed = ProtectedHardlinks::set("0");
        let mut ln = Command::new("timeout");
        ln.args(["-k", "5", TIMEOUT]);
        setpriv_args(&mut ln);
        ln.arg("ln").arg(&prog).arg(&link);
        with_env(&mut ln, &[], attacker.path());
        run_ok(&mut ln);
    }
    assert!(fs::metadata(&link).unwrap().permissions().mode() & 0o4000 != 0);

    // Run by the link, the program's directory is the attacker's, and `../store` their
    // store: not owned by root, refused.
    let out = as_user(&link, &[], &[], attacker.path());
    assert_refused(
        &out,
        &["refused", &format!("is owned by uid {}", user().uid)],
    );
    // The same file by its own path works.
    let out = as_user(&prog, &[], &[], attacker.path());
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
}

#[test]
fn table_paths_never_leave_the_store() {
    let site = Site::new();
    let store = site.store();
    let prog = site.bin("setuid");
    let w = world();
    let uri = w.uri("libchain_c.so");
    let good = entry(&store, uri);
    let evil_dir = site.root().join("evil");
    fs::create_dir(&evil_dir).unwrap();
    let evil = evil_dir.join("libchain_c.so");
    fs::copy(&extras().evil_lib, &evil).unwrap();
    let evil_size = fs::metadata(&evil).unwrap().len();

    // Any normalised path inside the store is fine (a library kept in a converted tree).
    let home = store.join("roots/tree/lib");
    fs::create_dir_all(&home).unwrap();
    fs::copy(object(&store, uri), home.join("libchain_c.so")).unwrap();
    point_entry(&store, uri, b"roots/tree/lib/libchain_c.so", good.size);
    let out = as_root(&prog, &[], &[]);
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));

    let absolute = evil.to_str().unwrap().as_bytes().to_vec();
    let cases: &[(&[u8], &str)] = &[
        (b"../evil/libchain_c.so", "`..` component"),
        (&absolute, "absolute"),
        (b"objects/../../evil/libchain_c.so", "`..` component"),
        (b"./objects/x.so", "not normalised"),
        (b"objects//x.so", "not normalised"),
        (b"objects/x.so\0/../../evil/libchain_c.so", "NUL byte"),
    ];
    for (path, why) in cases {
        point_entry(&store, uri, path, evil_size);
        let out = as_root(&prog, &[], &[]);
        assert_refused(&out, &["path field", why, uri]);
        let list = run(Command::new(ld_cas()).arg("--verify").arg(&prog));
        assert_ne!(list.status.code(), Some(0));
        assert!(stdout(&list).contains("path field"), "{}", stdout(&list));
    }
    // Secure mode the same.
    let setuid = site.setuid("setuid");
    point_entry(&store, uri, b"../evil/libchain_c.so", evil_size);
    assert_refused(&as_user(&setuid, &[], &[], Path::new("/")), &["path field"]);

    // The loader's entry likewise.
    point_entry(&store, uri, &good.path, good.size);
    let ld = entry(&store, &w.loader_uri);
    fs::copy(object(&store, &w.loader_uri), evil_dir.join("ld.so")).unwrap();
    point_entry(&store, &w.loader_uri, b"../evil/ld.so", ld.size);
    assert_refused(
        &as_root(&site.bin("hello"), &[], &[]),
        &["loader", "path field"],
    );
    point_entry(&store, &w.loader_uri, &ld.path, ld.size);
    let out = as_root(&prog, &[], &[]);
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
}

#[test]
fn crafted_loaders_and_programs_fail_with_a_sentence() {
    let site = Site::new();
    let store = site.store();
    let w = world();
    let hello = site.bin("hello");
    let works = || {
        let out = as_root(&hello, &[Path::new("x")], &[]);
        assert!(stdout(&out).contains("arg x\n"), "{}", stderr(&out));
    };
    works();
    let ld = entry(&store, &w.loader_uri);

    // The loader's entry names libc.so.6, then a program: neither is an ld.so.
    let libc = entry(&store, w.uri("libc.so.6"));
    point_entry(&store, &w.loader_uri, &libc.path, libc.size);
    assert_refused(
        &as_root(&hello, &[], &[]),
        &["cannot load the loader", "not a program interpreter"],
    );
    fs::copy(&hello, store.join("objects/a-program")).unwrap();
    let size = fs::metadata(store.join("objects/a-program")).unwrap().len();
    point_entry(&store, &w.loader_uri, b"objects/a-program", size);
    assert_refused(&as_root(&hello, &[], &[]), &["not a program interpreter"]);
    // A loader whose entry point lies outside its executable segments.
    let mut bad = fs::read(store.join(String::from_utf8(ld.path.clone()).unwrap())).unwrap();
    bad[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    fs::write(store.join("objects/bad-entry-ld.so"), &bad).unwrap();
    point_entry(
        &store,
        &w.loader_uri,
        b"objects/bad-entry-ld.so",
        bad.len() as u64,
    );
    assert_refused(&as_root(&hello, &[], &[]), &["not a loadable ELF file"]);
    // A loader whose size is not the recorded one (a damaged store).
    point_entry(&store, &w.loader_uri, &ld.path, ld.size + 1);
    assert_refused(&as_root(&hello, &[], &[]), &["the lookup table records"]);
    point_entry(&store, &w.loader_uri, &ld.path, ld.size);
    works();

    // A huge DT_STRSZ, then a DT_NEEDED offset far outside the string table.
    let strsz = site.bin("hello-strsz");
    fs::copy(&hello, &strsz).unwrap();
    set_dynamic(&strsz, 10, 0, 1 << 40);
    assert_refused(&as_root(&strsz, &[], &[]), &["string table"]);
    let needed = site.bin("hello-needed");
    fs::copy(&hello, &needed).unwrap();
    set_dynamic(&needed, 1, 0, 0x7fff_0000);
    assert_refused(
        &as_root(&needed, &[], &[]),
        &["DT_NEEDED", "outside its string table"],
    );
    // A program whose entry point lies outside its segments, run as `ld-cas PROGRAM`.
    let entry_ = site.bin("hello-entry");
    let mut bad = fs::read(&hello).unwrap();
    bad[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes());
    fs::write(&entry_, &bad).unwrap();
    assert_refused(
        &as_root(&ld_cas(), &[&entry_], &[]),
        &["cannot run", "not a loadable ELF file"],
    );
    // The same through `ld-cas PROGRAM`, and set-user-ID.
    let out = as_root(&ld_cas(), &[&needed], &[]);
    assert_refused(&out, &["DT_NEEDED"]);
    fs::set_permissions(&needed, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_refused(&as_user(&needed, &[], &[], Path::new("/")), &["DT_NEEDED"]);
    works();
}

#[test]
fn fifos_and_directories_never_make_it_wait() {
    let w = world();
    // The table.
    let site = Site::new();
    let hello = site.bin("hello");
    make_fifo(&site.store().join("table"));
    assert_refused(&as_root(&hello, &[], &[]), &["lookup table", "a FIFO"]);
    assert_refused(
        &as_user(&site.setuid("hello"), &[], &[], Path::new("/")),
        &["a FIFO"],
    );
    let _ = fs::remove_file(site.store().join("table"));
    fs::create_dir(site.store().join("table")).unwrap();
    assert_refused(&as_root(&hello, &[], &[]), &["lookup table", "a directory"]);

    // The loader.
    let site = Site::new();
    make_fifo(&object(&site.store(), &w.loader_uri));
    assert_refused(
        &as_root(&site.bin("hello"), &[], &[]),
        &["cannot load the loader", "a FIFO"],
    );
    assert_refused(
        &as_user(&site.setuid("hello"), &[], &[], Path::new("/")),
        &["loader", "a FIFO"],
    );

    // A library, with and without set-user-ID; then one of the wrong size.
    let site = Site::new();
    let prog = site.bin("setuid");
    let out = as_root(&prog, &[], &[]);
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
    let lib = object(&site.store(), w.uri("libchain_c.so"));
    let bytes = fs::read(&lib).unwrap();
    make_fifo(&lib);
    assert_refused(
        &as_root(&prog, &[], &[]),
        &[w.uri("libchain_c.so"), "a FIFO"],
    );
    // An LD_CAS_OVERRIDE that names a FIFO (the user's own choice, still no wait).
    let fifo = site.root().join("fifo");
    make_fifo(&fifo);
    let over = PathBuf::from(format!("libchain_c.so={}", fifo.display()));
    let out = as_root(&site.bin("chain"), &[], &[("LD_CAS_OVERRIDE", &over)]);
    assert_refused(&out, &["a FIFO"]);
    let setuid = site.setuid("setuid");
    assert_refused(&as_user(&setuid, &[], &[], Path::new("/")), &["a FIFO"]);
    let _ = fs::remove_file(&lib);
    fs::write(&lib, [&bytes[..], b"x"].concat()).unwrap();
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o444)).unwrap();
    assert_refused(&as_root(&prog, &[], &[]), &["the lookup table records"]);
    assert_refused(
        &as_user(&setuid, &[], &[], Path::new("/")),
        &["the lookup table records"],
    );
    let _ = fs::remove_file(&lib);
    fs::write(&lib, &bytes).unwrap();
    fs::set_permissions(&lib, fs::Permissions::from_mode(0o444)).unwrap();
    let out = as_user(&setuid, &[], &[], Path::new("/"));
    assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
}

#[test]
fn verify_fails_loudly_past_its_limits() {
    require_tool("patchelf");
    let site = Site::new();
    let store = site.store();
    // 1100 distinct copies of a tiny library in the store.
    let copies = site.root().join("copies");
    fs::create_dir(&copies).unwrap();
    let tiny = fs::read(&extras().tiny_lib).unwrap();
    let files: Vec<PathBuf> = (0..1100)
        .map(|i| {
            let p = copies.join(format!("libtiny{i}.so"));
            fs::write(&p, [&tiny[..], format!("{i:08}").as_bytes()].concat()).unwrap();
            p
        })
        .collect();
    let out = run_ok(
        Command::new(elfpatch())
            .args(["store", "add", "--kind", "library", "--store"])
            .arg(&store)
            .args(&files),
    );
    let uris: Vec<String> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap().trim().to_string())
        .collect();
    assert_eq!(uris.len(), files.len(), "{out}");
    let add_needed = |file: &Path, names: &[String]| {
        let mut cmd = Command::new("patchelf");
        for n in names {
            cmd.arg("--add-needed").arg(n);
        }
        run_ok(cmd.arg(file));
    };

    // The legitimate closure verifies.
    let out = run(Command::new(ld_cas())
        .arg("--verify")
        .arg(site.bin("chain")));
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(!stdout(&out).contains("MISMATCH"), "{}", stdout(&out));

    // One library that refers to 300 others: more references than --verify keeps.
    let hub = copies.join("libhub.so");
    fs::copy(&extras().tiny_lib, &hub).unwrap();
    add_needed(&hub, &uris[..300]);
    let hub_uri = store_add(&store, &hub);
    let prog = site.bin("hub");
    fs::copy(site.bin("hello"), &prog).unwrap();
    add_needed(&prog, &[hub_uri]);
    let out = run(Command::new(ld_cas()).arg("--verify").arg(&prog));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("refers to more than 256 objects"),
        "{}",
        stdout(&out)
    );

    // A closure of 1100 objects: more than --list and --verify handle.
    let wide = site.bin("wide");
    fs::copy(site.bin("hello"), &wide).unwrap();
    add_needed(&wide, &uris);
    for mode in ["--list", "--verify"] {
        let out = run(Command::new(ld_cas()).arg(mode).arg(&wide));
        assert_eq!(out.status.code(), Some(1), "{mode}");
        assert!(
            stderr(&out).contains("more than 1023 content-addressed objects"),
            "{mode}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn trusted_owners_are_root_and_the_setuid_owner_never_the_caller() {
    let uid = user().uid.clone();
    // Set-group-ID (to root's group): secure mode, but no user is gained: root alone is
    // trusted, never the caller.
    let site = Site::new();
    let prog = site.bin("setuid");
    run_ok(Command::new("chown").arg("root:root").arg(&prog));
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o2755)).unwrap();
    let out = as_user(&prog, &[], &[], Path::new("/"));
    assert_eq!(
        stdout(&out),
        format!("euid {uid} value 40\n"),
        "{}",
        stderr(&out)
    );
    let table = site.store().join("table");
    run_ok(Command::new("chown").arg(&uid).arg(&table));
    assert_refused(
        &as_user(&prog, &[], &[], Path::new("/")),
        &["refused", &format!("is owned by uid {uid}")],
    );

    // Set-user-ID to another user (nobody): a store of that user's is trusted (it holds
    // the program's rights already), the caller's still is not.
    let site = Site::new();
    let prog = site.bin("setuid");
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg("nobody")
            .arg(site.store()),
    );
    run_ok(Command::new("chown").arg("nobody").arg(&prog));
    fs::set_permissions(&prog, fs::Permissions::from_mode(0o4755)).unwrap();
    let nobody = run_ok(Command::new("id").args(["-u", "nobody"]))
        .trim()
        .to_string();
    let out = as_user(&prog, &[], &[], Path::new("/"));
    assert_eq!(
        stdout(&out),
        format!("euid {nobody} value 40\n"),
        "{}",
        stderr(&out)
    );
    let table = site.store().join("table");
    run_ok(Command::new("chown").arg(&uid).arg(&table));
    assert_refused(
        &as_user(&prog, &[], &[], Path::new("/")),
        &["refused", &format!("is owned by uid {uid}")],
    );
}
