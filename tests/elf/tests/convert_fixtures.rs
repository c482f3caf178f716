//! `elfpatch convert` on small C fixtures: the run-time escape hatches users rely on
//! (`LD_PRELOAD`, `--keep-soname` with a driver-style swap through the usual search), two
//! different libraries with one soname, a dependency cycle, reproducibility and idempotence.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, elfpatch, init_store, needed, stable_ld_cas};
use elf_tests::{compile, fixture_dir, run, run_ok};

fn src(name: &str) -> PathBuf {
    fixture_dir().join("convert").join(name)
}

/// Fixtures built in `dir`: `a/libgreet.so.1` ("alpha"), `b/libgreet.so.1` ("beta"),
/// `prog-a` and `prog-b` linked against each with RUNPATH, `preload.so`, and the ring.
struct Fixtures {
    dir: PathBuf,
}

impl Fixtures {
    fn build(dir: &Path) -> Fixtures {
        for (sub, word) in [("a", "alpha"), ("b", "beta")] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).unwrap();
            compile(
                "gcc",
                &[&src("greet.c")],
                &d.join("libgreet.so.1"),
                &[
                    "-shared",
                    "-fPIC",
                    "-Wl,-soname,libgreet.so.1",
                    &format!("-DWORD=\"{word}\""),
                ],
            );
            compile(
                "gcc",
                &[&src("greet_main.c")],
                &dir.join(format!("prog-{sub}")),
                &[
                    &format!("-L{}", d.display()),
                    "-l:libgreet.so.1",
                    &format!("-Wl,-rpath,{}", d.display()),
                ],
            );
        }
        compile(
            "gcc",
            &[&src("preload.c")],
            &dir.join("preload.so"),
            &["-shared", "-fPIC"],
        );
        let ring = dir.join("ring");
        fs::create_dir_all(&ring).unwrap();
        let so = |name: &str| ring.join(format!("lib{name}.so"));
        let common = |soname: &str| {
            vec![
                "-shared".to_string(),
                "-fPIC".into(),
                format!("-Wl,-soname,{soname}"),
                "-Wl,-rpath,$ORIGIN".into(),
                format!("-L{}", ring.display()),
            ]
        };
        let args = |v: &Vec<String>| {
            v.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\u{1}")
        };
        let b_first = common("libring_b.so");
        compile(
            "gcc",
            &[&src("ring_b.c")],
            &so("ring_b"),
            &args(&b_first).split('\u{1}').collect::<Vec<_>>(),
        );
        let mut a = common("libring_a.so");
        a.push("-lring_b".into());
        compile(
            "gcc",
            &[&src("ring_a.c")],
            &so("ring_a"),
            &args(&a).split('\u{1}').collect::<Vec<_>>(),
        );
        let mut b = common("libring_b.so");
        b.push("-lring_a".into());
        compile(
            "gcc",
            &[&src("ring_b.c")],
            &so("ring_b"),
            &args(&b).split('\u{1}').collect::<Vec<_>>(),
        );
        compile(
            "gcc",
            &[&src("ring_main.c")],
            &dir.join("prog-ring"),
            &[
                &format!("-L{}", ring.display()),
                "-lring_a",
                "-lring_b",
                &format!("-Wl,-rpath,{}", ring.display()),
            ],
        );
        Fixtures {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

#[test]
fn preload_keep_soname_and_duplicate_sonames() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store");
    init_store(&store);

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
    // The RUNPATH served only converted names: it is gone.
    let dynamic = run_ok(Command::new("readelf").arg("-dW").arg(&a));
    assert!(
        !dynamic.contains("RUNPATH") && !dynamic.contains("RPATH"),
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
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store");
    init_store(&store);
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

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() && e.file_name() != "lock" {
                out.insert(
                    e.path().strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(e.path()).unwrap(),
                );
            }
        }
    }
    out
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

#[test]
fn missing_dependencies_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store");
    init_store(&store);
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

/// Runs `elfpatch relocate --json` on `store` and returns its report.
fn relocate(store: &Path) -> serde_json::Value {
    let report = run_ok(
        elfpatch()
            .args(["relocate", "--json", "--store"])
            .arg(store),
    );
    serde_json::from_str(&report).unwrap()
}

#[test]
fn relocate_follows_a_store_that_moved_with_its_ld_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store-1");
    init_store(&store);
    // The default interpreter: the ld-cas that `store init` installed in the store.
    convert(
        &store,
        &[],
        &[fx.path("prog-a"), PathBuf::from("/usr/bin/curl")],
    );
    let expected = "greet: alpha\nmain: done\n";
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog-a"))),
        expected
    );
    let before = snapshot(&store);

    // Same length: the interpreter string is rewritten where it lies, nothing else.
    let same = tmp.path().join("store-2");
    fs::rename(&store, &same).unwrap();
    let report = relocate(&same);
    assert_eq!(report["in_place"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(run_ok(&mut Command::new(same.join("bin/prog-a"))), expected);
    let after = snapshot(&same);
    for (path, bytes) in &before {
        let new = &after[path];
        let differing = bytes.iter().zip(new).filter(|(a, b)| a != b).count();
        if path.starts_with("bin") {
            assert!(
                differing > 0 && differing <= 2,
                "{}: {differing} bytes changed",
                path.display()
            );
            assert_eq!(bytes.len(), new.len());
        } else {
            assert!(bytes == new, "{} changed", path.display());
        }
    }

    // Longer: the program is rewritten with its interpreter moved, keeps its owner and
    // group (the tests run as root), and still runs.
    std::os::unix::fs::chown(same.join("bin/prog-a"), Some(65534), Some(65534)).unwrap();
    let longer = tmp.path().join("a-much-longer-directory-name/store-3");
    fs::create_dir_all(longer.parent().unwrap()).unwrap();
    fs::rename(&same, &longer).unwrap();
    let report = relocate(&longer);
    assert_eq!(report["rewritten"].as_array().unwrap().len(), 2, "{report}");
    let owner = fs::metadata(longer.join("bin/prog-a")).unwrap();
    assert_eq!(
        (owner.uid(), owner.gid()),
        (65534, 65534),
        "relocate changed the owner"
    );
    assert_eq!(
        run_ok(&mut Command::new(longer.join("bin/prog-a"))),
        expected
    );
    assert!(run(Command::new(longer.join("bin/curl")).arg("--version"))
        .status
        .success());
    // Relocating again finds nothing to do.
    let report = relocate(&longer);
    assert_eq!(report["unchanged"], 2, "{report}");
    assert_eq!(report["bytes_written"], 0, "{report}");
}

#[test]
fn relocate_follows_programs_converted_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store-1");
    init_store(&store);
    // prog-a with the store's own ld-cas, prog-b with a stable one; both outside the store,
    // where they name the store by its absolute path.
    let apps = tmp.path().join("apps");
    let out = ["--out", apps.to_str().unwrap()];
    convert(&store, &out, &[fx.path("prog-a")]);
    let stable = stable_ld_cas(tmp.path());
    let with_stable = [&out[..], &["--interp", stable.to_str().unwrap()]].concat();
    convert(&store, &with_stable, &[fx.path("prog-b")]);
    let moved = tmp.path().join("moved/store-2");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&store, &moved).unwrap();
    assert!(!run(&mut Command::new(apps.join("prog-b"))).status.success());

    let report = relocate(&moved);
    assert_eq!(report["rewritten"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        run_ok(&mut Command::new(apps.join("prog-a"))),
        "greet: alpha\nmain: done\n"
    );
    assert_eq!(
        run_ok(&mut Command::new(apps.join("prog-b"))),
        "greet: beta\nmain: done\n"
    );
    let interp = |p: &str| run_ok(elfpatch().arg("--print-interpreter").arg(apps.join(p)));
    assert_eq!(
        interp("prog-a").trim(),
        moved.join("ld-cas").to_str().unwrap()
    );
    assert_eq!(interp("prog-b").trim(), stable.to_str().unwrap());
    // Relocating again finds nothing to do.
    let report = relocate(&moved);
    assert_eq!(report["bytes_written"], 0, "{report}");
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
    // host is a program, libplugin a converted tree file; libdep needs nothing and is copied.
    assert_eq!(report["programs"], 1, "{report}");
    assert_eq!(report["tree_elf_files"], 1, "{report}");
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
fn gc_removes_what_no_program_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let interp = stable_ld_cas(tmp.path());
    let store = tmp.path().join("store");
    init_store(&store);
    let i = ["--interp", interp.to_str().unwrap()];
    convert(&store, &i, &[fx.path("prog-a"), fx.path("prog-b")]);
    let gc = |extra: &[&str]| -> serde_json::Value {
        let out = run_ok(
            elfpatch()
                .args(["store", "gc", "--json", "--store"])
                .arg(&store)
                .args(extra),
        );
        serde_json::from_str(&out).unwrap()
    };
    let removed_names = |report: &serde_json::Value| -> Vec<String> {
        report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_owned())
            .collect()
    };
    // Everything is in use: nothing to remove; an unlisted file in objects/ is found.
    let junk = store.join("objects/0000-junk");
    fs::write(&junk, b"junk").unwrap();
    let report = gc(&["--dry-run"]);
    assert!(report["removed"].as_array().unwrap().is_empty(), "{report}");
    assert_eq!(report["unlisted"][0].as_str(), junk.to_str(), "{report}");
    assert!(junk.exists(), "a dry run removed a file");

    // prog-b is gone: its libgreet ("beta") is garbage, libc (shared with prog-a) is not.
    let beta = store
        .join("objects")
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.to_string_lossy().ends_with("libgreet.so.1")
                && fs::read(p).unwrap().windows(4).any(|w| w == b"beta")
        })
        .unwrap();
    let copy = tmp.path().join("copy-of-prog-b");
    fs::copy(store.join("bin/prog-b"), &copy).unwrap();
    fs::remove_file(store.join("bin/prog-b")).unwrap();
    let report = gc(&["--dry-run"]);
    assert_eq!(removed_names(&report), [beta.to_str().unwrap()], "{report}");
    assert!(beta.exists());
    // A root given on the command line (a copy of the converted prog-b) keeps it.
    let copy_root = ["--dry-run", "--root", copy.to_str().unwrap()];
    let report = gc(&copy_root);
    assert!(report["removed"].as_array().unwrap().is_empty(), "{report}");
    // So does prog-b converted to another place: convert registers it in STORE/roots,
    // and a real collection keeps its library; the junk goes.
    let elsewhere = tmp.path().join("elsewhere");
    let elsewhere_args = [
        "--interp",
        interp.to_str().unwrap(),
        "--out",
        elsewhere.to_str().unwrap(),
    ];
    convert(&store, &elsewhere_args, &[fx.path("prog-b")]);
    let roots: Vec<_> = fs::read_dir(store.join("roots"))
        .unwrap()
        .map(|e| fs::read_link(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(roots, [elsewhere.join("prog-b")]);
    let report = gc(&[]);
    assert!(report["removed"].as_array().unwrap().is_empty(), "{report}");
    assert!(beta.exists() && !junk.exists());
    assert_eq!(
        run_ok(&mut Command::new(elsewhere.join("prog-b"))),
        "greet: beta\nmain: done\n"
    );
    // Converting it again registers nothing new.
    convert(&store, &elsewhere_args, &[fx.path("prog-b")]);
    assert_eq!(fs::read_dir(store.join("roots")).unwrap().count(), 1);

    // Once that program is gone, its root is stale: the collection drops the link and the
    // object, the table stops listing it, prog-a runs.
    fs::remove_dir_all(&elsewhere).unwrap();
    let report = gc(&["--dry-run"]);
    assert_eq!(
        report["stale_roots"][0].as_str(),
        elsewhere.join("prog-b").to_str(),
        "{report}"
    );
    assert_eq!(removed_names(&report), [beta.to_str().unwrap()], "{report}");
    let kept_before = report["kept"].as_u64().unwrap();
    let report = gc(&[]);
    assert_eq!(removed_names(&report), [beta.to_str().unwrap()], "{report}");
    assert_eq!(report["kept"].as_u64().unwrap(), kept_before);
    assert!(!beta.exists());
    assert_eq!(fs::read_dir(store.join("roots")).unwrap().count(), 0);
    let listed = run_ok(elfpatch().args(["store", "list", "--store"]).arg(&store));
    assert!(!listed.contains(beta.to_str().unwrap()), "{listed}");
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog-a"))),
        "greet: alpha\nmain: done\n"
    );
    // Collecting again finds nothing.
    let report = gc(&[]);
    assert!(report["removed"].as_array().unwrap().is_empty(), "{report}");
    assert!(
        report["unlisted"].as_array().unwrap().is_empty(),
        "{report}"
    );
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
