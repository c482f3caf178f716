//! ld-cas end-to-end: converted C and C++ programs run exactly as if linked the ordinary way
//! (see `loader_common` for how the fixtures are built and converted). Every test runs on
//! x86_64 and on aarch64 under qemu (`NAME::x86_64`, `NAME::aarch64`).
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
    fn hello_runs_with_its_own_exe_and_arguments(w) {
        let hello = w.bin("hello");
        let out = run_ok(w.command(&hello).args(["one", "two"]).env_clear());
        let exe = fs::canonicalize(&hello).unwrap();
        assert_eq!(
            out,
            format!(
                "hello from {}\narg one\narg two\nexe {}\n",
                hello.display(),
                exe.display()
            )
        );
    }

    fn plain_program_runs_through_ld_cas_unchanged(w) {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("plain");
        compile(w.arch.cc(), &[&fixture_dir().join("loader/hello.c")], &prog, &[]);
        let direct = run_ok(w.command(w.arch.ld_cas()).arg(&prog).arg("x"));
        assert!(
            direct.starts_with(&format!("hello from {}\narg x\n", prog.display())),
            "{direct}"
        );
        run_ok(
            Command::new("patchelf")
                .arg("--set-interpreter")
                .arg(w.arch.ld_cas())
                .arg(&prog),
        );
        let interp = run_ok(w.command(&prog).arg("x"));
        assert!(
            interp.ends_with(&format!(
                "exe {}\n",
                fs::canonicalize(&prog).unwrap().display()
            )),
            "{interp}"
        );
    }

    fn chain_and_diamond_resolve_transitively(w) {
        assert_eq!(run_ok(&mut w.run_bin("chain")), "chain 42\n");
        // Both sides of the diamond share one instance of the bottom library.
        assert_eq!(
            run_ok(&mut w.run_bin("diamond")),
            "left 1 right 2\n"
        );
    }

    fn no_failed_file_system_lookup_for_uri_names(w) {
        let out = run(&mut w.arch.trace_files(w.bin("diamond")));
        let trace = stderr(&out);
        assert!(out.status.success(), "{trace}");
        // A `uri:` name reaches the file system only as ld.so's search of the store's index,
        // and then at its first probe.
        let uri_lookups: Vec<&str> = trace.lines().filter(|l| l.contains("uri:blake3")).collect();
        for l in &uri_lookups {
            assert!(
                l.contains("/store/index/") && !l.contains("= -1"),
                "a uri: name looked up elsewhere than in the index, or failing: {l}\n{trace}"
            );
        }
        let failed: Vec<&str> = trace
            .lines()
            .filter(|l| l.contains("/store/") && l.contains("= -1"))
            .collect();
        assert!(
            failed.is_empty(),
            "failed look-ups in the store: {failed:?}"
        );
    }

    fn dlopen_by_uri_and_by_soname_with_dlopened_tls_and_threads(w) {
        let missing = format!("uri:blake3:{}", "0".repeat(64));
        let out = run_ok(
            w.run_bin("dl")
                .arg(w.uri("libplugin.so"))
                .arg(&missing),
        );
        assert_eq!(
            out,
            "plugin 42\nthread tls 103\nthread tls 103\nthread tls 103\nthread tls 103\nmain tls 101\n\
             libm cos(0) 1.0\nmissing refused\n"
        );
    }

    fn thread_local_storage_of_a_startup_library_is_per_thread(w) {
        let out = run_ok(&mut w.run_bin("threads"));
        let mut expected: String = (0..8)
            .map(|i| format!("thread {i} tls {}\n", 7 + i + 1))
            .collect();
        expected.push_str("main tls 7\n");
        assert_eq!(out, expected);
    }

    fn cxx_exceptions_cross_libraries(w) {
        assert_eq!(
            run_ok(&mut w.run_bin("catcher")),
            "caught boom 7\n"
        );
    }

    fn environment_is_untouched_for_the_program_and_its_children(w) {
        // Under qemu-user a child cannot be started (no binfmt_misc): the parent only.
        let alone: &[&str] = if w.arch == Arch::Aarch64 { &["alone"] } else { &[] };
        let out = run_ok(
            w.run_bin("env")
                .args(alone)
                .env_clear()
                .env("ALPHA", "1")
                .env("LD_CAS_DEBUG", "0")
                .env("PATH", "/usr/bin:/bin"),
        );
        let mut parent: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("parent "))
            .collect();
        if w.arch == Arch::Aarch64 {
            // qemu-user hands the environment to the program in the reverse order.
            parent.reverse();
        }
        let child: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("child "))
            .collect();
        assert_eq!(parent, ["ALPHA=1", "LD_CAS_DEBUG=0", "PATH=/usr/bin:/bin"]);
        if alone.is_empty() {
            assert_eq!(parent, child);
        }
        // An empty environment stays empty.
        let out = run_ok(w.run_bin("env").args(alone).env_clear());
        assert_eq!(out, "");
    }

    fn origin_of_a_library_is_its_real_directory(w) {
        let out = run_ok(&mut w.run_bin("origin"));
        let origin = out.trim().strip_prefix("origin ").unwrap();
        // A loose library lives in its own directory, objects/<hex>/.
        assert_eq!(
            fs::canonicalize(origin).unwrap().parent().unwrap(),
            fs::canonicalize(w.store().join("objects")).unwrap(),
            "{out}"
        );
    }

    fn debug_traces_every_resolution(w) {
        let out = run(w.run_bin("chain").env("LD_CAS_DEBUG", "1"));
        assert!(out.status.success());
        let err = stderr(&out);
        for lib in [
            "libchain_a.so",
            "libchain_b.so",
            "libchain_c.so",
            "libc.so.6",
        ] {
            let line = format!("{} ({lib}) => ", w.uri(lib));
            assert!(err.contains(&line), "no trace for {lib}:\n{err}");
        }
        assert!(err.contains("ld-cas: store "), "{err}");
        assert!(err.contains("ld-cas: loader "), "{err}");
    }

    fn store_and_programs_move_together_without_rewriting(w) {
        let dir = tempfile::tempdir().unwrap();
        copy_world(w, dir.path());
        let moved = dir.path().join("bin/chain");
        let out = run(w.command(&moved).env("LD_CAS_DEBUG", "1"));
        assert_eq!(stdout(&out), "chain 42\n", "{}", stderr(&out));
        assert!(stderr(&out).contains(&format!(
            "{}/../store/objects/",
            dir.path().join("bin").display()
        )));
    }

    fn store_from_the_environment_and_programs_reached_through_symlinks(w) {
        let dir = tempfile::tempdir().unwrap();
        // A program away from its store: LD_CAS_STORE names it.
        let lone = dir.path().join("hello");
        fs::copy(w.bin("hello"), &lone).unwrap();
        let out = run(&mut w.command(&lone));
        assert_eq!(out.status.code(), Some(127));
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
        let out = run(w.command(&lone)
            .env("LD_CAS_STORE", w.store())
            .env("LD_CAS_DEBUG", "1"));
        assert!(stdout(&out).starts_with("hello from "), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("(from LD_CAS_STORE)"),
            "{}",
            stderr(&out)
        );

        // Reached through a symbolic link elsewhere: the recorded store is still found next to
        // the real program.
        let link = dir.path().join("chain-link");
        std::os::unix::fs::symlink(w.bin("chain"), &link).unwrap();
        assert_eq!(run_ok(&mut w.command(&link)), "chain 42\n");
        // An empty LD_CAS_STORE is no setting.
        assert_eq!(
            run_ok(w.command(&link).env("LD_CAS_STORE", "")),
            "chain 42\n"
        );
    }

    /// Plain sonames stay plain: `LD_LIBRARY_PATH` still picks which copy is loaded (the GPU
    /// driver swap), next to libraries named by content.
    fn plain_sonames_still_obey_ld_library_path(w) {
        let dir = tempfile::tempdir().unwrap();
        let (d, fx) = (dir.path(), fixture_dir().join("loader"));
        for (sub, value) in [("a", "1"), ("b", "2")] {
            fs::create_dir(d.join(sub)).unwrap();
            let def = format!("-DSWAP_VALUE={value}");
            compile(
                w.arch.cc(),
                &[&fx.join("swap.c")],
                &d.join(sub).join("libswap.so"),
                &["-shared", "-fPIC", "-Wl,-soname,libswap.so", &def],
            );
        }
        let prog = d.join("swap");
        let l = format!("-L{}", d.join("a").display());
        compile(w.arch.cc(), &[&fx.join("swap_main.c")], &prog, &[&l, "-lswap"]);
        let bin = d.join("bin");
        fs::create_dir(&bin).unwrap();
        // Only libc is converted; the store is the world's, by absolute path.
        let uris: BTreeMap<String, String> =
            [("libc.so.6".to_string(), w.uri("libc.so.6").to_string())]
                .into_iter()
                .collect();
        let store = w.store();
        convert_program_for(
            w.arch,
            &prog,
            &bin.join("swap"),
            &uris,
            &w.loader_uri,
            store.to_str().unwrap(),
        );
        for (sub, value) in [("a", "1"), ("b", "2")] {
            let out = run_ok(w.command(bin.join("swap")).env("LD_LIBRARY_PATH", d.join(sub)));
            assert_eq!(out, format!("swap {value}\n"));
        }
    }
}
