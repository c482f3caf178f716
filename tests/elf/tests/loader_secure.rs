//! ld-cas attacked as an unprivileged local user would (issue 11): set-user-ID fixtures run
//! by a user the test creates, with the caller's store in the environment, without
//! `/proc`, through a hard link beside the caller's own store, with writable stores,
//! crafted tables, crafted programs, FIFOs as table, loader and library. Every attack is
//! run next to the legitimate case, which must still work, and every run is under
//! `timeout`: each failure must be one line and exit status 127, never a signal or a hang.
//! The tests in `on_each_arch!` run on aarch64 too, through a set-user-ID qemu
//! (`secure_common::Site`); the others need what it cannot give: a child of the program
//! (qemu starts no aarch64 child), a start without `/proc` (qemu answers
//! `/proc/self/exe` itself), or another user than root gained (qemu is root's).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use elf_tests::attacker::{setpriv_args, user};
use elf_tests::{on_each_arch, require_tool, run, run_ok};

mod loader_common;
use loader_common::*;
mod secure_common;
use secure_common::*;

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
    // Kept until the end: the directory goes when it is dropped.
    let (_attacker, cwd) = attacker_beside_evil_store(&site, "sub");

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

on_each_arch! {
    fn a_setuid_program_uses_only_a_trusted_store(arch) {
        let site = Site::on(arch);
        let prog = site.setuid("setuid");
        let store = site.store();
        let w = world_on(arch);
        let lib = object(&store, w.uri("libchain_c.so"));
        let loader = object(&store, &w.loader_uri);
        let works = |why: &str| {
            let out = site.as_user(&prog, &[], &[], Path::new("/"));
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
            let out = site.as_user(&prog, &[], &[], Path::new("/"));
            let name = path.file_name().unwrap().to_str().unwrap();
            assert_refused(&out, &["refused", name, why]);
            // Not secure: the same store is the user's own business.
            let out = site.as_root(&prog, &[], &[]);
            assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
            if *change == "chown" {
                run_ok(Command::new("chown").arg(restore).arg(path));
            }
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
            works(&format!("{} restored", path.display()));
        }
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

on_each_arch! {
    fn a_hard_link_beside_the_callers_store_is_refused(arch) {
        let site = Site::on(arch);
        let prog = site.setuid("setuid");
        let (attacker, bin) = attacker_beside_evil_store(&site, "bin");
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
        let out = site.as_user(&link, &[], &[], attacker.path());
        assert_refused(
            &out,
            &["refused", &format!("is owned by uid {}", user().uid)],
        );
        // The same file by its own path works.
        let out = site.as_user(&prog, &[], &[], attacker.path());
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
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
