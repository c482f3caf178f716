//! ld-cas end-to-end: with `elfpatch convert`, gdb, musl, and `--verify`.
#![allow(unused_imports)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use elf_tests::conversion::{convert, init_store};
use elf_tests::{compile, fixture_dir, ld_cas_maps_its_own_memory, require_tool, run, run_ok};

mod loader_common;
use loader_common::*;

#[test]
fn programs_converted_by_elfpatch_run_and_survive_a_store_move() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let build = w.root.join("build");
    let fx = fixture_dir().join("loader");
    // The unconverted libraries are in `build`; a DT_RPATH (inherited by the libraries)
    // lets convert find them as ld.so would.
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", build.display());
    let lflag = format!("-L{}", build.display());
    let chain = dir.path().join("chain");
    compile(
        "gcc",
        &[&fx.join("chain.c")],
        &chain,
        &[&lflag, &rpath, "-l:libchain_a.so"],
    );
    let catcher = dir.path().join("catcher");
    compile(
        "g++",
        &[&fx.join("catcher.cpp")],
        &catcher,
        &[&lflag, &rpath, "-l:libthrower.so"],
    );
    let store = dir.path().join("store");
    init_store(&store);
    let interp = ld_cas();
    convert(
        &store,
        &["--interp", interp.to_str().unwrap()],
        &[chain, catcher],
    );
    let run_both = |store: &Path| {
        assert_eq!(
            run_ok(Command::new(store.join("bin/chain")).env_clear()),
            "chain 42\n"
        );
        assert_eq!(
            run_ok(&mut Command::new(store.join("bin/catcher"))),
            "caught boom 7\n"
        );
    };
    run_both(&store);
    let moved = dir.path().join("elsewhere");
    fs::rename(&store, &moved).unwrap();
    run_both(&moved);
    // Its closure, listed by ld-cas: content addresses all the way down.
    let list = run_ok(
        Command::new(ld_cas())
            .arg("--list")
            .arg(moved.join("bin/catcher")),
    );
    for soname in [
        "(libthrower.so)",
        "(libstdc++.so.6)",
        "(libc.so.6)",
        "(libgcc_s.so.1)",
    ] {
        assert!(list.contains(soname), "{soname} missing from:\n{list}");
    }
    assert!(!list.contains("not found"), "{list}");
}

/// `gdb -batch -ex 'break F' -ex run -ex bt` cannot stop in a library function even for an
/// ordinary program: in batch mode gdb refuses pending breakpoints, and no library is known
/// before `run`. With pending breakpoints allowed, gdb stops in a `uri:` library's function
/// with its symbols and sources (see docs/ld-cas.md, "Debugging").
#[test]
fn gdb_stops_in_uri_library_functions_with_symbols_dlopened_ones_too() {
    require_tool("gdb");
    let w = world();
    // The exact command, on a function of a `uri:` library that the program calls: gdb
    // breaks on its PLT entry before `run` and moves the breakpoint into the library once
    // it is loaded.
    let out = run(Command::new("gdb")
        .args(["-batch", "-ex", "break chain_a", "-ex", "run", "-ex", "bt"])
        .arg(w.bin("chain")));
    let text = stdout(&out);
    assert!(
        text.contains("Breakpoint 1, chain_a () at ") && text.contains("chain_a.c"),
        "{text}\n{}",
        stderr(&out)
    );
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(
        frames.len() == 2 && frames[0].contains("chain_a () at ") && frames[1].contains("main ("),
        "{text}"
    );

    // A function deeper in the closure (no PLT entry in the program) needs pending
    // breakpoints, which batch mode refuses unless asked (the ordinary program below too).
    let out = run(Command::new("gdb")
        .args([
            "-batch",
            "-ex",
            "set breakpoint pending on",
            "-ex",
            "break chain_c",
            "-ex",
            "run",
            "-ex",
            "bt",
        ])
        .arg(w.bin("chain")));
    let text = stdout(&out);
    assert!(
        text.contains("Breakpoint 1, chain_c () at "),
        "{text}\n{}",
        stderr(&out)
    );
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(frames.len() >= 4, "{text}");
    for (frame, func) in frames.iter().zip(["chain_c", "chain_b", "chain_a", "main"]) {
        assert!(frame.contains(&format!("{func} () at ")), "{frame}");
    }

    // A library `dlopen`ed by its URI long after start: gdb hears of it through ld-cas's
    // `_dl_debug_state` (called from `la_activity`) and stops in it.
    let missing = format!("uri:blake3:{}", "0".repeat(64));
    let out = run(Command::new("gdb")
        .args([
            "-batch",
            "-ex",
            "set breakpoint pending on",
            "-ex",
            "break plugin_answer",
            "-ex",
            "run",
            "-ex",
            "bt",
            "-ex",
            "info sharedlibrary",
            "--args",
        ])
        .arg(w.bin("dl"))
        .arg(w.uri("libplugin.so"))
        .arg(&missing));
    let text = stdout(&out);
    assert!(
        text.contains("Breakpoint 1, plugin_answer () at "),
        "{text}\n{}",
        stderr(&out)
    );
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert!(
        frames.len() >= 2 && frames[1].contains("main (") && frames[1].contains("dl.c"),
        "{text}"
    );
    let warnings = stderr(&out);
    assert!(
        !warnings.contains("Unable to find dynamic linker breakpoint function"),
        "{warnings}"
    );
    // ld.so is listed under its own file (not ld-cas's), so gdb reads the right symbols.
    assert!(
        !warnings.contains("is not at the expected address"),
        "{warnings}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("Yes") && l.ends_with("/ld-linux-x86-64.so.2")),
        "{text}"
    );

    // The plain command, on the same program linked the ordinary way: gdb refuses too.
    let plain = run(Command::new("gdb")
        .args(["-batch", "-ex", "break chain_c", "-ex", "run", "-ex", "bt"])
        .arg(w.root.join("build/chain"))
        .env("LD_LIBRARY_PATH", w.root.join("build")));
    let all = format!("{}{}", stdout(&plain), stderr(&plain));
    assert!(
        all.contains("Make breakpoint pending on future shared library load?"),
        "{all}"
    );
    assert!(all.contains("No stack."), "{all}");
}

/// musl has no audit interface: ld-cas points the program's own `uri:` entries at the
/// objects' paths instead (a library that needs `uri:` names itself is refused).
#[test]
fn musl_programs_run_with_content_addressed_libraries() {
    require_tool("musl-gcc");
    let musl_ld = Path::new("/lib/ld-musl-x86_64.so.1");
    assert!(
        musl_ld.exists(),
        "musl's loader is missing: run scripts/install-deps.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let (d, fx) = (dir.path(), fixture_dir().join("loader"));
    let lib = d.join("libml.so");
    compile(
        "musl-gcc",
        &[&fx.join("musl_lib.c")],
        &lib,
        &["-shared", "-fPIC", "-Wl,-soname,libml.so"],
    );
    let prog = d.join("musl");
    let lflag = format!("-L{}", d.display());
    compile(
        "musl-gcc",
        &[&fx.join("musl_main.c")],
        &prog,
        &[&lflag, "-l:libml.so"],
    );
    let store = d.join("store");
    run_ok(
        Command::new(elfpatch())
            .args(["store", "init", "--store"])
            .arg(&store),
    );
    let loader = store_add(&store, musl_ld);
    let mut uris = BTreeMap::new();
    uris.insert("libml.so".to_string(), store_add(&store, &lib));
    fs::create_dir(d.join("bin")).unwrap();
    // musl's libc.so is its loader: that entry stays, like glibc's ld-linux name.
    convert_program(&prog, &d.join("bin/musl"), &uris, &loader, "../store");
    let out = run(Command::new(d.join("bin/musl")).env("LD_CAS_DEBUG", "1"));
    assert_eq!(stdout(&out), "musl 5\n", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ld-musl-x86_64.so.1"),
        "{}",
        stderr(&out)
    );
    // musl's loader gives the rest of the program's last page to its `malloc`: ld-cas
    // builds its paths in a mapping of its own instead.
    require_tool("strace");
    let out = run(Command::new("strace")
        .args(["-e", "trace=mmap"])
        .arg(d.join("bin/musl")));
    assert_eq!(stdout(&out), "musl 5\n", "{}", stderr(&out));
    assert!(
        ld_cas_maps_its_own_memory(&stderr(&out)),
        "{}",
        stderr(&out)
    );
}

/// A dependency cycle converted by `elfpatch convert` runs, `--verify` applies the cycle
/// rule to it, and a damaged object is reported.
#[test]
fn verify_rehashes_the_closure_with_the_cycle_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (d, fx) = (dir.path(), fixture_dir().join("loader"));
    let l = format!("-L{}", d.display());
    let shared = |src: &str, soname: &str, dep: Option<&str>| {
        let mut args = vec![
            "-shared".to_string(),
            "-fPIC".into(),
            format!("-Wl,-soname,{soname}"),
            l.clone(),
        ];
        args.extend(dep.map(|dep| format!("-l:{dep}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        compile("gcc", &[&fx.join(src)], &d.join(soname), &args);
    };
    shared("cyc_a.c", "libcyca.so", None);
    shared("cyc_b.c", "libcycb.so", Some("libcyca.so"));
    shared("cyc_a.c", "libcyca.so", Some("libcycb.so"));
    let prog = d.join("cycle");
    let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", d.display());
    compile(
        "gcc",
        &[&fx.join("cycle.c")],
        &prog,
        &[&l, &rpath, "-l:libcyca.so"],
    );
    let store = d.join("store");
    init_store(&store);
    let interp = ld_cas();
    convert(&store, &["--interp", interp.to_str().unwrap()], &[prog]);
    let converted = store.join("bin/cycle");
    assert_eq!(run_ok(&mut Command::new(&converted)), "cycle 5\n");

    let out = run_ok(Command::new(ld_cas()).arg("--verify").arg(&converted));
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("verify ")).collect();
    assert_eq!(lines.len(), 4, "loader, libc, two cycle members:\n{out}");
    assert!(lines.iter().all(|l| l.contains(" ok")), "{out}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.ends_with("ok (in a dependency cycle)"))
            .count(),
        2,
        "{out}"
    );

    // Damage one byte of the C library's copy in the store.
    let libc = elf_tests::conversion::object_files(&store)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("/libc.so.6"))
        .unwrap();
    let mut bytes = fs::read(&libc).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::set_permissions(&libc, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&libc, &bytes).unwrap();
    let out = run(Command::new(ld_cas()).arg("--verify").arg(&converted));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).matches("MISMATCH").count(),
        1,
        "{}",
        stdout(&out)
    );
}
