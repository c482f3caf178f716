//! `elfpatch convert` on small C fixtures: the run-time escape hatches users rely on
//! (`LD_PRELOAD`, `--keep-soname` with a driver-style swap through the usual search), two
//! different libraries with one soname, a dependency cycle, reproducibility and idempotence.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, elfpatch, init_store, needed, stable_ld_cas};
use elf_tests::{compile, run, run_ok};

mod convert_common;
use convert_common::{fixtures_and_store, snapshot, src, Fixtures};

#[test]
fn preload_keep_soname_and_duplicate_sonames() {
    let (tmp, fx, store) = fixtures_and_store("store");

    // Two programs whose libgreet.so.1 differ: both land, both run with their own.
    let report = convert(&store, &[], &[fx.path("prog-a"), fx.path("prog-b")]);
    assert_eq!(report["programs"], 2);
    let a = store.join("bin/prog-a");
    let b = store.join("bin/prog-b");
    assert_eq!(run_ok(&mut Command::new(&a)), "greet: alpha\nmain: done\n");
    assert_eq!(run_ok(&mut Command::new(&b)), "greet: beta\nmain: done\n");
    let objects = report["objects"].as_array().unwrap();
    let greets: Vec<_> = objects
        .iter()
        .filter(|o| o["soname"] == "libgreet.so.1")
        .collect();
    assert_eq!(
        greets.len(),
        2,
        "both libgreet.so.1 are in the store: {objects:?}"
    );
    assert!(
        needed(&a).iter().all(|n| n.starts_with("uri:blake3:")),
        "{:?}",
        needed(&a)
    );
    // The RUNPATH served only converted names: it is gone, and the search path is the
    // store's index alone (a DT_RPATH, which every library without a RUNPATH searches).
    let dynamic = run_ok(Command::new("readelf").arg("-dW").arg(&a));
    assert!(
        !dynamic.contains("RUNPATH") && dynamic.contains("Library rpath: [$ORIGIN/../index]"),
        "{dynamic}"
    );

    // A soname-keyed override substitutes a library at run time, and says so when traced.
    let out = run_ok(Command::new(&a).env(
        "LD_CAS_OVERRIDE",
        format!(
            "libother.so=/nonexistent:libgreet.so.1={}",
            fx.path("b/libgreet.so.1").display()
        ),
    ));
    assert_eq!(out, "greet: beta\nmain: done\n");
    let traced = run(Command::new(&a)
        .env(
            "LD_CAS_OVERRIDE",
            format!("libgreet.so.1={}", fx.path("b/libgreet.so.1").display()),
        )
        .env("LD_CAS_DEBUG", "1"));
    assert!(String::from_utf8_lossy(&traced.stderr).contains("(LD_CAS_OVERRIDE)"));
    // An override for another soname changes nothing.
    let out = run_ok(Command::new(&a).env("LD_CAS_OVERRIDE", "libz.so.1=/nonexistent"));
    assert_eq!(out, "greet: alpha\nmain: done\n");

    // LD_PRELOAD still interposes.
    let out = run_ok(Command::new(&a).env("LD_PRELOAD", fx.path("preload.so")));
    assert_eq!(out, "greet: interposed by LD_PRELOAD\nmain: done\n");

    // --keep-soname leaves the name plain and its RUNPATH entry in place; the usual
    // search (here LD_LIBRARY_PATH, as for /run/opengl-driver/lib) swaps the library.
    let kept_out = tmp.path().join("kept");
    convert(
        &store,
        &[
            "--keep-soname",
            "libgreet*",
            "--out",
            kept_out.to_str().unwrap(),
        ],
        &[fx.path("prog-a")],
    );
    let kept = kept_out.join("prog-a");
    let names = needed(&kept);
    assert!(names.contains(&"libgreet.so.1".to_owned()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("uri:blake3:")),
        "libc is still converted: {names:?}"
    );
    assert_eq!(
        run_ok(&mut Command::new(&kept)),
        "greet: alpha\nmain: done\n"
    );
    let swapped = run_ok(Command::new(&kept).env("LD_LIBRARY_PATH", fx.path("b")));
    assert_eq!(swapped, "greet: beta\nmain: done\n");
}

#[test]
fn cycles_convert_and_verify() {
    let (_tmp, fx, store) = fixtures_and_store("store");
    let original = run_ok(&mut Command::new(fx.path("prog-ring")));
    assert_eq!(original, "ring: a=1 b=2\n");
    let report = convert(&store, &[], &[fx.path("prog-ring")]);
    let objects: BTreeMap<String, String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["soname"].as_str().unwrap().to_owned(),
                o["uri"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let a_uri = &objects["libring_a.so"];
    let b_uri = &objects["libring_b.so"];
    // Each member names the other by its real URI.
    let resolve = |uri: &str| {
        PathBuf::from(
            run_ok(
                elfpatch()
                    .args(["store", "resolve", "--store"])
                    .arg(&store)
                    .arg(uri),
            )
            .trim(),
        )
    };
    assert!(needed(&resolve(a_uri)).contains(b_uri));
    assert!(needed(&resolve(b_uri)).contains(a_uri));
    // The addresses follow the cycle rule, which verify checks.
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog-ring"))),
        original
    );
}

/// Every file under `dir`: relative path → bytes.
/// The generation recorded in the store's table (one more for every table update).
fn table_generation(store: &Path) -> u64 {
    let bytes = fs::read(store.join("table")).unwrap();
    resolver::table::Table::parse(&bytes).unwrap().generation()
}

#[test]
fn conversion_is_reproducible_and_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let interp = stable_ld_cas(tmp.path());
    let inputs = [
        fx.path("prog-a"),
        fx.path("prog-ring"),
        PathBuf::from("/usr/bin/curl"),
    ];
    let mut snapshots = Vec::new();
    for name in ["one", "two"] {
        let store = tmp.path().join(name);
        init_store(&store);
        let before = table_generation(&store);
        let report = convert(&store, &["--interp", interp.to_str().unwrap()], &inputs);
        // curl's closure has several levels of libraries; the whole conversion is still a
        // single table update.
        assert!(report["libraries"].as_u64().unwrap_or(0) > 10, "{report}");
        assert_eq!(
            table_generation(&store),
            before + 1,
            "one table update per conversion"
        );
        snapshots.push(snapshot(&store));
    }
    assert_eq!(
        snapshots[0].keys().collect::<Vec<_>>(),
        snapshots[1].keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &snapshots[0] {
        // The table records its generation; everything else is byte-identical.
        if path != Path::new("table") {
            assert!(
                &snapshots[1][path] == bytes,
                "{} differs between two conversions",
                path.display()
            );
        }
    }

    // Converting again, or converting the converted programs, changes nothing.
    let store = tmp.path().join("one");
    let report = convert(&store, &["--interp", interp.to_str().unwrap()], &inputs);
    assert_eq!(report["bytes_written"], 0, "{report}");
    assert!(
        snapshot(&store) == snapshots[0],
        "converting again changed the store"
    );
    // The converted programs themselves, converted where they lie: nothing changes.
    let bin = store.join("bin");
    let converted: Vec<PathBuf> = ["prog-a", "prog-ring", "curl"]
        .iter()
        .map(|p| bin.join(p))
        .collect();
    let report = convert(
        &store,
        &[
            "--interp",
            interp.to_str().unwrap(),
            "--out",
            bin.to_str().unwrap(),
        ],
        &converted,
    );
    assert_eq!(report["bytes_written"], 0, "{report}");
    assert!(
        snapshot(&store) == snapshots[0],
        "reconverting converted programs changed the store"
    );
    let out = run(Command::new(store.join("bin/curl")).arg("--version"));
    assert!(out.status.success());
}

/// The number of `PT_LOAD`s of `file` (read with `readelf`, which must not complain).
fn load_count(file: &Path) -> usize {
    let out = run(Command::new("readelf").arg("-lSW").arg(file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD "))
        .count()
}

#[test]
fn a_converted_system_library_keeps_its_segments_and_still_loads() {
    // libz's conversion replaces libc.so.6 by its longer URI: the new `.dynstr` fits in
    // the zero slack after the first read-only PT_LOAD, which grows over it, so the
    // stored libz maps with as many segments as the original.
    let tmp = tempfile::tempdir().unwrap();
    let prog = tmp.path().join("zversion");
    compile(
        "gcc",
        &[&src("zversion.c")],
        &prog,
        &["/usr/lib/x86_64-linux-gnu/libz.so.1"],
    );
    let expected = run_ok(&mut Command::new(&prog));
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], &[prog]);
    let objects = report["objects"].as_array().unwrap();
    let libz = objects
        .iter()
        .find(|o| o["soname"] == "libz.so.1")
        .unwrap_or_else(|| panic!("libz.so.1 is not among {objects:?}"));
    let converted = run_ok(
        elfpatch()
            .args(["store", "resolve", "--store"])
            .arg(&store)
            .arg(libz["uri"].as_str().unwrap()),
    );
    let original = Path::new(libz["source"].as_str().unwrap());
    assert!(needed(original).contains(&"libc.so.6".to_owned()));
    let converted = Path::new(converted.trim());
    assert!(needed(converted)
        .iter()
        .all(|n| n.starts_with("uri:blake3:")));
    assert_eq!(load_count(converted), load_count(original));
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/zversion"))),
        expected
    );
}

#[test]
fn missing_dependencies_are_named() {
    let (tmp, fx, store) = fixtures_and_store("store");
    let lonely = tmp.path().join("lonely");
    fs::copy(fx.path("prog-a"), &lonely).unwrap();
    fs::remove_file(fx.path("a/libgreet.so.1")).unwrap();
    let out = run(elfpatch()
        .args(["convert", "--store"])
        .arg(&store)
        .arg(&lonely));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("libgreet.so.1") && err.contains("lonely"),
        "{err}"
    );
    assert!(!store.join("bin/lonely").exists());
    let out = run(elfpatch()
        .args(["convert", "--allow-missing", "--store"])
        .arg(&store)
        .arg(&lonely));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("libgreet.so.1"));
    assert!(needed(&store.join("bin/lonely")).contains(&"libgreet.so.1".to_owned()));
}

#[test]
fn plugins_dlopened_by_name_in_a_converted_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("plugtree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("lib")).unwrap();
    let lib = tree.join("lib");
    compile(
        "gcc",
        &[&src("dep.c")],
        &lib.join("libdep.so.1"),
        &["-shared", "-fPIC", "-Wl,-soname,libdep.so.1"],
    );
    compile(
        "gcc",
        &[&src("plugin.c")],
        &lib.join("libplugin.so"),
        &[
            "-shared",
            "-fPIC",
            &format!("-L{}", lib.display()),
            "-l:libdep.so.1",
            "-Wl,-rpath,$ORIGIN",
        ],
    );
    compile(
        "gcc",
        &[&src("plugin_host.c")],
        &tree.join("bin/host"),
        &[
            &format!("-L{}", lib.display()),
            "-l:libdep.so.1",
            "-ldl",
            "-Wl,-rpath,$ORIGIN/../lib",
        ],
    );
    let expected = "dep 4 plugin 40\n";
    assert_eq!(run_ok(&mut Command::new(tree.join("bin/host"))), expected);

    let interp = stable_ld_cas(tmp.path());
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(
        &store,
        &["--interp", interp.to_str().unwrap()],
        std::slice::from_ref(&tree),
    );
    // host is a program; libplugin and libdep (which needs nothing, but host needs it, so
    // it is listed at its place in the tree) are the tree's other ELF files.
    assert_eq!(report["programs"], 1, "{report}");
    assert_eq!(report["tree_elf_files"], 2, "{report}");
    assert_eq!(report["copied"], 0, "{report}");
    fs::remove_dir_all(&tree).unwrap();
    let host = store.join("bin/plugtree/bin/host");
    assert!(needed(&host).iter().all(|n| n.starts_with("uri:blake3:")));
    // The plugin found by name in the converted tree resolves its own uri: needs.
    assert!(needed(&store.join("bin/plugtree/lib/libplugin.so"))
        .iter()
        .all(|n| n.starts_with("uri:blake3:")));
    assert_eq!(run_ok(&mut Command::new(&host)), expected);
    let moved = tmp.path().join("moved");
    fs::rename(&store, &moved).unwrap();
    assert_eq!(
        run_ok(&mut Command::new(moved.join("bin/plugtree/bin/host"))),
        expected
    );
}

#[test]
fn relative_input_paths_keep_their_origin() {
    // `prog` given by a relative name, its library found through `$ORIGIN/lib`: `$ORIGIN`
    // is the program's directory, not an empty string (which would make it `/lib`).
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("lib");
    fs::create_dir_all(&lib).unwrap();
    compile(
        "gcc",
        &[&src("greet.c")],
        &lib.join("libgreet.so.1"),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgreet.so.1",
            "-DWORD=\"relative\"",
        ],
    );
    compile(
        "gcc",
        &[&src("greet_main.c")],
        &tmp.path().join("prog"),
        &[
            &format!("-L{}", lib.display()),
            "-l:libgreet.so.1",
            "-Wl,-rpath,$ORIGIN/lib",
        ],
    );
    let store = tmp.path().join("store");
    init_store(&store);
    let interp = stable_ld_cas(tmp.path());
    run_ok(
        elfpatch()
            .current_dir(tmp.path())
            .args(["convert", "--store", "store", "--interp"])
            .arg(&interp)
            .arg("prog"),
    );
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog"))),
        "greet: relative\nmain: done\n"
    );
}

/// Every path under `dir` whose name starts with `.tmp-`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                found.push(path.clone());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn killed_conversions_leave_nothing_behind() {
    // Python's standard library tree (1500 files, its extension modules converted) and
    // curl: converting them takes long enough to be killed in the middle.
    let tmp = tempfile::tempdir().unwrap();
    let interp = stable_ld_cas(tmp.path());
    let inputs = [
        PathBuf::from("/usr/lib/python3.11"),
        PathBuf::from("/usr/bin/curl"),
    ];
    let store = tmp.path().join("store");
    init_store(&store);
    let mut left_behind = 0;
    for delay_ms in [30u64, 80, 150, 250, 400] {
        let mut child = elfpatch()
            .args(["convert", "--store"])
            .arg(&store)
            .args(["--interp", interp.to_str().unwrap()])
            .args(&inputs)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        left_behind += temporaries(&store).len();
    }
    // A stale file of a writer that is gone, and one of a live process (this test).
    let out = store.join("bin");
    fs::create_dir_all(&out).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    let dead = out.join(format!(".tmp-{gone_pid}-abcdef"));
    let live = out.join(format!(".tmp-{}-abcdef", std::process::id()));
    fs::write(&dead, b"stale").unwrap();
    fs::write(&live, b"in use").unwrap();

    let report = convert(&store, &["--interp", interp.to_str().unwrap()], &inputs);
    assert!(
        report["temporaries_removed"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(!dead.exists(), "a dead writer's temporary file stayed");
    assert!(live.exists(), "a live writer's temporary file was removed");
    fs::remove_file(&live).unwrap();
    let remaining = temporaries(&store);
    assert!(
        remaining.is_empty(),
        "left after a complete conversion ({left_behind} seen after the kills): {remaining:?}"
    );
    // The result is the same as an uninterrupted conversion's, and it runs.
    let clean = tmp.path().join("clean");
    init_store(&clean);
    convert(&clean, &["--interp", interp.to_str().unwrap()], &inputs);
    let (a, b) = (snapshot(&store.join("bin")), snapshot(&clean.join("bin")));
    assert_eq!(a.len(), b.len());
    assert!(
        a == b,
        "the interrupted store's outputs differ from a clean conversion's"
    );
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    let out = run(Command::new(store.join("bin/curl")).arg("--version"));
    assert!(out.status.success());
}

#[test]
fn hard_links_in_a_tree_stay_hard_links() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("pkg");
    for d in ["bin", "lib", "share"] {
        fs::create_dir_all(tree.join(d)).unwrap();
    }
    compile(
        "gcc",
        &[&src("greet.c")],
        &tree.join("lib/libgreet.so.1"),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgreet.so.1",
            "-DWORD=\"linked\"",
        ],
    );
    compile(
        "gcc",
        &[&src("greet_main.c")],
        &tree.join("bin/prog"),
        &[
            &format!("-L{}", tree.join("lib").display()),
            "-l:libgreet.so.1",
            "-Wl,-rpath,$ORIGIN/../lib",
        ],
    );
    fs::write(tree.join("share/data.txt"), b"some data\n").unwrap();
    // Each file with a second name, as `nix-store --optimise` or `cp -l` leave them.
    for (a, b) in [
        ("bin/prog", "bin/prog-again"),
        ("lib/libgreet.so.1", "lib/libgreet-again.so"),
        ("share/data.txt", "share/data-again.txt"),
    ] {
        fs::hard_link(tree.join(a), tree.join(b)).unwrap();
    }
    let store = tmp.path().join("store");
    init_store(&store);
    let interp = stable_ld_cas(tmp.path());
    let report = convert(
        &store,
        &["--interp", interp.to_str().unwrap()],
        std::slice::from_ref(&tree),
    );
    let out = store.join("bin/pkg");
    for (a, b) in [
        ("bin/prog", "bin/prog-again"),
        ("lib/libgreet.so.1", "lib/libgreet-again.so"),
        ("share/data.txt", "share/data-again.txt"),
    ] {
        let (x, y) = (
            fs::metadata(out.join(a)).unwrap(),
            fs::metadata(out.join(b)).unwrap(),
        );
        assert_eq!(
            (x.dev(), x.ino()),
            (y.dev(), y.ino()),
            "{a} and {b} are not one file"
        );
        assert_eq!(x.nlink(), 2, "{a}");
    }
    assert!(needed(&out.join("lib/libgreet-again.so"))
        .iter()
        .all(|n| n.starts_with("uri:blake3:") || n.starts_with("ld-linux")));
    for name in ["bin/prog", "bin/prog-again"] {
        assert_eq!(
            run_ok(&mut Command::new(out.join(name))),
            "greet: linked\nmain: done\n"
        );
    }
    // Converting again changes nothing.
    let again = convert(
        &store,
        &["--interp", interp.to_str().unwrap()],
        std::slice::from_ref(&tree),
    );
    assert_eq!(again["bytes_written"], 0, "{again}\n{report}");
}
