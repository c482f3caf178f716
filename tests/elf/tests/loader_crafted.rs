//! ld-cas given crafted input (issue 11), by the attacker and by root: table entries whose
//! paths leave the store, loaders and programs with values out of bounds, FIFOs and
//! directories where files should be, closures past `--verify`'s limits. Each failure must
//! be one line and exit status 127 (1 for the commands), never a signal or a hang; every
//! run is under `timeout`, next to the legitimate case. Each test runs on x86_64 and on
//! aarch64 under qemu (its set-user-ID runs through a set-user-ID qemu: `Site::as_user`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::{on_each_arch, require_tool, run, run_ok};

mod loader_common;
use loader_common::*;
mod secure_common;
use secure_common::*;

on_each_arch! {
    fn table_paths_never_leave_the_store(arch) {
        let site = Site::on(arch);
        let store = site.store();
        let prog = site.bin("setuid");
        let w = world_on(arch);
        let uri = w.uri("libchain_c.so");
        let good = entry(&store, uri);
        let evil_dir = site.root().join("evil");
        fs::create_dir(&evil_dir).unwrap();
        let evil = evil_dir.join("libchain_c.so");
        fs::copy(&extras_on(arch).evil_lib, &evil).unwrap();
        let evil_size = fs::metadata(&evil).unwrap().len();

        // The attacker's runs are in secure mode, which ignores LD_CAS_DEBUG; root's are not.
        let debug: &[(&str, &Path)] = &[("LD_CAS_DEBUG", Path::new("1"))];
        let traced = site.as_root(&prog, &[], debug);
        assert!(stderr(&traced).contains("ld-cas: "), "{}", stderr(&traced));
        let secure = site.as_user(&site.setuid("setuid"), &[], debug, Path::new("/"));
        assert_eq!(stdout(&secure), "euid 0 value 40\n", "{}", stderr(&secure));
        assert_eq!(stderr(&secure), "");

        // Any normalised path inside the store is fine (a library kept in a converted tree).
        let home = store.join("roots/tree/lib");
        fs::create_dir_all(&home).unwrap();
        fs::copy(object(&store, uri), home.join("libchain_c.so")).unwrap();
        point_entry(&store, uri, b"roots/tree/lib/libchain_c.so", good.size);
        let out = site.as_root(&prog, &[], &[]);
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
            let out = site.as_root(&prog, &[], &[]);
            assert_refused(&out, &["path field", why, uri]);
            let list = run(arch.command(arch.ld_cas()).arg("--verify").arg(&prog));
            assert_ne!(list.status.code(), Some(0));
            assert!(stdout(&list).contains("path field"), "{}", stdout(&list));
        }
        // Secure mode the same.
        let setuid = site.setuid("setuid");
        point_entry(&store, uri, b"../evil/libchain_c.so", evil_size);
        assert_refused(&site.as_user_setuid(&setuid), &["path field"]);

        // The loader's entry likewise.
        point_entry(&store, uri, &good.path, good.size);
        let ld = entry(&store, &w.loader_uri);
        fs::copy(object(&store, &w.loader_uri), evil_dir.join("ld.so")).unwrap();
        point_entry(&store, &w.loader_uri, b"../evil/ld.so", ld.size);
        assert_refused(
            &site.as_root(&site.bin("hello"), &[], &[]),
            &["loader", "path field"],
        );
        point_entry(&store, &w.loader_uri, &ld.path, ld.size);
        let out = site.as_root(&prog, &[], &[]);
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
    }
}

on_each_arch! {
    fn crafted_loaders_and_programs_fail_with_a_sentence(arch) {
        let site = Site::on(arch);
        let store = site.store();
        let w = world_on(arch);
        let hello = site.bin("hello");
        let works = || {
            let out = site.as_root(&hello, &[Path::new("x")], &[]);
            assert!(stdout(&out).contains("arg x\n"), "{}", stderr(&out));
        };
        works();
        let ld = entry(&store, &w.loader_uri);

        // The loader's entry names libc.so.6, then a program: neither is an ld.so.
        let libc = entry(&store, w.uri("libc.so.6"));
        point_entry(&store, &w.loader_uri, &libc.path, libc.size);
        assert_refused(
            &site.as_root(&hello, &[], &[]),
            &["cannot load the loader", "not a program interpreter"],
        );
        fs::copy(&hello, store.join("objects/a-program")).unwrap();
        let size = fs::metadata(store.join("objects/a-program")).unwrap().len();
        point_entry(&store, &w.loader_uri, b"objects/a-program", size);
        assert_refused(&site.as_root(&hello, &[], &[]), &["not a program interpreter"]);
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
        assert_refused(&site.as_root(&hello, &[], &[]), &["not a loadable ELF file"]);
        // A loader whose size is not the recorded one (a damaged store).
        point_entry(&store, &w.loader_uri, &ld.path, ld.size + 1);
        assert_refused(&site.as_root(&hello, &[], &[]), &["the lookup table records"]);
        point_entry(&store, &w.loader_uri, &ld.path, ld.size);
        works();

        // A huge DT_STRSZ, then a DT_NEEDED offset far outside the string table.
        let strsz = site.bin("hello-strsz");
        fs::copy(&hello, &strsz).unwrap();
        set_dynamic(&strsz, 10, 0, 1 << 40);
        assert_refused(&site.as_root(&strsz, &[], &[]), &["string table"]);
        let needed = site.bin("hello-needed");
        fs::copy(&hello, &needed).unwrap();
        set_dynamic(&needed, 1, 0, 0x7fff_0000);
        assert_refused(
            &site.as_root(&needed, &[], &[]),
            &["DT_NEEDED", "outside its string table"],
        );
        // A program whose entry point lies outside its segments, run as `ld-cas PROGRAM`.
        let entry_ = site.bin("hello-entry");
        let mut bad = fs::read(&hello).unwrap();
        bad[24..32].copy_from_slice(&0xdead_0000u64.to_le_bytes());
        fs::write(&entry_, &bad).unwrap();
        assert_refused(
            &site.as_root(&arch.ld_cas(), &[&entry_], &[]),
            &["cannot run", "not a loadable ELF file"],
        );
        // The same through `ld-cas PROGRAM`, and set-user-ID.
        let out = site.as_root(&arch.ld_cas(), &[&needed], &[]);
        assert_refused(&out, &["DT_NEEDED"]);
        fs::set_permissions(&needed, fs::Permissions::from_mode(0o4755)).unwrap();
        assert_refused(&site.as_user_setuid(&needed), &["DT_NEEDED"]);
        works();
    }
}

on_each_arch! {
    fn fifos_and_directories_never_make_it_wait(arch) {
        let w = world_on(arch);
        // The table.
        let site = Site::on(arch);
        let hello = site.bin("hello");
        make_fifo(&site.store().join("table"));
        assert_refused(&site.as_root(&hello, &[], &[]), &["lookup table", "a FIFO"]);
        assert_refused(&site.as_user_setuid(&site.setuid("hello")), &["a FIFO"]);
        let _ = fs::remove_file(site.store().join("table"));
        fs::create_dir(site.store().join("table")).unwrap();
        assert_refused(&site.as_root(&hello, &[], &[]), &["lookup table", "a directory"]);

        // The loader.
        let site = Site::on(arch);
        make_fifo(&object(&site.store(), &w.loader_uri));
        assert_refused(
            &site.as_root(&site.bin("hello"), &[], &[]),
            &["cannot load the loader", "a FIFO"],
        );
        assert_refused(&site.as_user_setuid(&site.setuid("hello")), &["loader", "a FIFO"]);

        // A library, with and without set-user-ID; then one of the wrong size.
        let site = Site::on(arch);
        let prog = site.bin("setuid");
        let out = site.as_root(&prog, &[], &[]);
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
        let lib = object(&site.store(), w.uri("libchain_c.so"));
        let bytes = fs::read(&lib).unwrap();
        make_fifo(&lib);
        assert_refused(
            &site.as_root(&prog, &[], &[]),
            &[w.uri("libchain_c.so"), "a FIFO"],
        );
        // An LD_CAS_OVERRIDE that names a FIFO (the user's own choice, still no wait).
        let fifo = site.root().join("fifo");
        make_fifo(&fifo);
        let over = PathBuf::from(format!("libchain_c.so={}", fifo.display()));
        let out = site.as_root(&site.bin("chain"), &[], &[("LD_CAS_OVERRIDE", &over)]);
        assert_refused(&out, &["a FIFO"]);
        let setuid = site.setuid("setuid");
        assert_refused(&site.as_user_setuid(&setuid), &["a FIFO"]);
        let _ = fs::remove_file(&lib);
        fs::write(&lib, [&bytes[..], b"x"].concat()).unwrap();
        fs::set_permissions(&lib, fs::Permissions::from_mode(0o444)).unwrap();
        assert_refused(&site.as_root(&prog, &[], &[]), &["the lookup table records"]);
        assert_refused(&site.as_user_setuid(&setuid), &["the lookup table records"]);
        let _ = fs::remove_file(&lib);
        fs::write(&lib, &bytes).unwrap();
        fs::set_permissions(&lib, fs::Permissions::from_mode(0o444)).unwrap();
        // A new file: the index still holds the first one (its hard link), until linked again.
        assert_refused(&site.as_user_setuid(&setuid), &["the store's index holds a copy of"]);
        assert_refused(
            &site.as_root(&prog, &[], &[]),
            &["the store's index holds a copy of"],
        );
        elf_tests::conversion::init_store_on(arch, &site.store());
        let out = site.as_root(&prog, &[], &[]);
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
        let out = site.as_user_setuid(&setuid);
        assert_eq!(stdout(&out), "euid 0 value 40\n", "{}", stderr(&out));
    }
}

on_each_arch! {
    fn verify_fails_loudly_past_its_limits(arch) {
        require_tool("patchelf");
        let site = Site::on(arch);
        let store = site.store();
        // 1100 distinct copies of a tiny library in the store.
        let copies = site.root().join("copies");
        fs::create_dir(&copies).unwrap();
        let tiny = fs::read(&extras_on(arch).tiny_lib).unwrap();
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
        let out = run(arch.command(arch.ld_cas())
            .arg("--verify")
            .arg(site.bin("chain")));
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        assert!(!stdout(&out).contains("MISMATCH"), "{}", stdout(&out));

        // One library that refers to 300 others: more references than --verify keeps.
        let hub = copies.join("libhub.so");
        fs::copy(&extras_on(arch).tiny_lib, &hub).unwrap();
        add_needed(&hub, &uris[..300]);
        let hub_uri = store_add(&store, &hub);
        let prog = site.bin("hub");
        fs::copy(site.bin("hello"), &prog).unwrap();
        add_needed(&prog, &[hub_uri]);
        let out = run(arch.command(arch.ld_cas()).arg("--verify").arg(&prog));
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
            let out = run(arch.command(arch.ld_cas()).arg(mode).arg(&wide));
            assert_eq!(out.status.code(), Some(1), "{mode}");
            assert!(
                stderr(&out).contains("more than 1023 content-addressed objects"),
                "{mode}: {}",
                stderr(&out)
            );
        }
    }
}
