//! ld-cas end-to-end: failures (missing libraries, broken stores and loaders), running
//! ld-cas as a command, and setuid programs. Each test runs on x86_64 and on aarch64 under
//! qemu (`NAME::x86_64`, `NAME::aarch64`).
#![allow(unused_imports)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use elf_tests::{compile, fixture_dir, require_tool, run, run_ok};

mod loader_common;
use loader_common::*;

on_each_world! {
    fn missing_library_names_uri_store_and_program(w) {
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());

        // A URI the store's table does not know: ld-cas says so, in one line, exit 127.
        let unknown = dir.path().join("bin/unknown");
        fs::copy(w.bin("hello"), &unknown).unwrap();
        let fake = format!("uri:blake3:{}", "f".repeat(64));
        run_ok(
            Command::new("patchelf")
                .arg("--replace-needed")
                .arg(w.uri("libc.so.6"))
                .arg(&fake)
                .arg(&unknown),
        );
        let out = run(&mut w.command(&unknown));
        assert_eq!(out.status.code(), Some(127));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("ld-cas: "), "{err}");
        for part in [
            fake.as_str(),
            "not in the lookup table",
            &unknown.display().to_string(),
            "/store",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err:?}");
        }

        // The same for a name a library needs: ld.so's own search of the index does not find
        // it, and ld.so says so, naming the name.
        let chain = dir.path().join("bin/chain-b");
        let b_uri = w.uri("libchain_b.so");
        let b_hex = b_uri.strip_prefix("uri:blake3:").unwrap();
        fs::copy(w.bin("chain"), &chain).unwrap();
        let b_obj = object_of(&dir.path().join("store"), b_hex);
        let mut bytes = fs::read(&b_obj).unwrap();
        let c_uri = w.uri("libchain_c.so");
        let at = bytes
            .windows(c_uri.len())
            .position(|x| x == c_uri.as_bytes())
            .unwrap();
        bytes[at..at + c_uri.len()].copy_from_slice(fake.as_bytes());
        fs::set_permissions(&b_obj, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&b_obj, &bytes).unwrap();
        let out = run(&mut w.command(&chain));
        assert_eq!(out.status.code(), Some(127));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&fake) && err.contains("cannot open shared object file"),
            "{err}"
        );

        // An object the table lists but whose file is gone (a damaged store), needed by a
        // library: ld.so's search of the index finds nothing and says so, naming the URI (an
        // object the program itself needs is checked by ld-cas: above). The index entry is a
        // hard link of the object: the file is gone once both its names are.
        let c_hex = c_uri.strip_prefix("uri:blake3:").unwrap();
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        fs::remove_file(object_of(&dir.path().join("store"), c_hex)).unwrap();
        fs::remove_file(dir.path().join("store/index").join(c_uri)).unwrap();
        let prog = dir.path().join("bin/chain");
        let out = run(&mut w.command(&prog));
        assert_eq!(out.status.code(), Some(127));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        for part in [
            c_hex,
            "cannot open shared object file",
            &prog.display().to_string(),
        ] {
            assert!(err.contains(part), "{part:?} missing from {err:?}");
        }
    }

    fn broken_stores_and_loaders_have_their_own_messages(w) {
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        let prog = dir.path().join("bin/hello");

        // Corrupt table.
        let table = dir.path().join("store/table");
        let mut bytes = fs::read(&table).unwrap();
        bytes[20] ^= 0xff;
        let _ = fs::remove_file(&table);
        fs::write(&table, &bytes).unwrap();
        let out = run(&mut w.command(&prog));
        assert_eq!(out.status.code(), Some(127));
        assert!(stderr(&out).contains("is corrupt"), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1);

        // Missing store.
        fs::rename(dir.path().join("store"), dir.path().join("gone")).unwrap();
        let out = run(&mut w.command(&prog));
        assert_eq!(out.status.code(), Some(127));
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

        // Unreadable loader.
        fs::rename(dir.path().join("gone"), dir.path().join("store")).unwrap();
        fs::write(&table, fs::read(w.store().join("table")).unwrap()).unwrap();
        let hex = w.loader_uri.strip_prefix("uri:blake3:").unwrap();
        let loader = object_of(&dir.path().join("store"), hex);
        fs::remove_file(&loader).unwrap();
        fs::write(&loader, b"not an ELF file").unwrap();
        let out = run(&mut w.command(&prog));
        assert_eq!(out.status.code(), Some(127));
        let err = stderr(&out);
        assert!(
            err.contains("cannot load the loader") && err.contains(&w.loader_uri),
            "{err}"
        );
    }

    fn run_directly_list_version_help(w) {
        let out = run_ok(w.command(w.arch.ld_cas()).arg(w.bin("hello")).arg("x"));
        assert!(
            out.starts_with(&format!("hello from {}\narg x\n", w.bin("hello").display())),
            "{out}"
        );

        let list = run_ok(w.command(w.arch.ld_cas()).arg("--list").arg(w.bin("diamond")));
        for lib in ["libleft.so", "libright.so", "libbottom.so", "libc.so.6"] {
            let line = format!("{} ({lib}) => ", w.uri(lib));
            assert!(list.contains(&line), "{lib} missing from:\n{list}");
        }
        assert_eq!(list.matches(w.uri("libbottom.so")).count(), 1, "{list}");
        assert!(list.contains(&format!("loader {}", w.loader_uri)), "{list}");

        assert!(run_ok(w.command(w.arch.ld_cas()).arg("--version")).starts_with("ld-cas "));
        assert!(run_ok(w.command(w.arch.ld_cas()).arg("--help")).contains("--list"));
        let out = run(w.command(w.arch.ld_cas()).arg("--bogus"));
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stderr(&out).lines().count(), 1);
    }
}

on_each_world! {
    /// Run by an unprivileged user (`elf_tests::attacker`; on aarch64 through a set-user-ID
    /// qemu, which hands the guest `AT_SECURE`: qemu ignores the program's own bit).
    fn environment_does_not_choose_the_store_for_setuid_programs(w) {
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()));
        let prog = dir.path().join("bin/setuid");
        run_ok(Command::new("chmod").arg("4755").arg(&prog));
        let qemu = (w.arch == Arch::Aarch64)
            .then(|| elf_tests::attacker::install_setuid_qemu(dir.path()));

        // A hostile store the caller points at: it must be ignored.
        let evil = tempfile::tempdir().unwrap();
        run_ok(Command::new("chmod").arg("755").arg(evil.path()));
        let as_user = |prog: &Path, env: &[(&str, &Path)]| {
            let mut cmd = Command::new("env");
            elf_tests::attacker::setpriv_args(&mut cmd);
            cmd.args(qemu.iter()).arg(prog);
            for (k, v) in env {
                cmd.env(k, v);
            }
            run(&mut cmd)
        };
        let out = as_user(
            &prog,
            &[
                ("LD_CAS_STORE", evil.path()),
                ("LD_CAS_DEBUG", Path::new("1")),
                // Were it honoured, the program could not start: the path does not exist.
                (
                    "LD_CAS_OVERRIDE",
                    Path::new("libchain_c.so=/nonexistent/libchain_c.so"),
                ),
            ],
        );
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
        assert_eq!(
            stderr(&out),
            "",
            "LD_CAS_DEBUG must be ignored under AT_SECURE"
        );

        // A setuid program whose library needs further uri: names: ld.so finds them in the
        // store's index, by the absolute search path ld-cas gives it (honoured in secure mode).
        let chain = dir.path().join("bin/chain");
        run_ok(Command::new("chmod").arg("4755").arg(&chain));
        let out = as_user(&chain, &[]);
        assert_eq!(stdout(&out), "chain 42\n", "{}", stderr(&out));
    }
}

/// The file of the object whose hash is `hex` in `store` (`objects/<hex>/<name>`).
fn object_of(store: &std::path::Path, hex: &str) -> std::path::PathBuf {
    elf_tests::conversion::object_files(store)
        .into_iter()
        .find(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|d| d.to_string_lossy() == hex)
        })
        .unwrap_or_else(|| panic!("no object {hex} in {}", store.display()))
}
