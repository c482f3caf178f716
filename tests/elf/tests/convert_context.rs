//! Content addresses that depend on content only: the same libraries converted through
//! different programs, in different orders, alone or together, get the same URIs and are
//! stored once; two libraries with one soname load side by side in one process; a library
//! of a tree is one file whether a program opens it by path or a library needs it by URI.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, init_store, stable_ld_cas};
use elf_tests::{compile, run, run_ok};

mod convert_common;
use convert_common::{assert_same_files, src};

/// Builds a shared library `dir/<soname>` from `source` with extra `args`.
fn library(dir: &Path, soname: &str, source: &str, args: &[&str]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let out = dir.join(soname);
    let soname_flag = format!("-Wl,-soname,{soname}");
    let mut all = vec!["-shared", "-fPIC", soname_flag.as_str()];
    all.extend_from_slice(args);
    compile("gcc", &[&src(source)], &out, &all);
    out
}

/// `-L DIR`, `-Wl,-rpath,DIR` and `-l:NAME` for each (DIR, NAME).
fn link_args(libs: &[(&Path, &str)]) -> Vec<String> {
    libs.iter()
        .flat_map(|(dir, name)| {
            [
                format!("-L{}", dir.display()),
                format!("-Wl,-rpath,{}", dir.display()),
                format!("-l:{name}"),
            ]
        })
        .collect()
}

/// The URI of each soname in a conversion report (panics when one soname has two).
fn uris_by_soname(report: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for o in report["objects"].as_array().unwrap() {
        let soname = o["soname"].as_str().unwrap().to_owned();
        let uri = o["uri"].as_str().unwrap().to_owned();
        if let Some(old) = out.insert(soname.clone(), uri.clone()) {
            assert_eq!(
                old, uri,
                "{soname} got two URIs in one conversion: {report}"
            );
        }
    }
    out
}

/// p1 needs liby and libx itself; p2 reaches libx only through liby. liby has a RUNPATH
/// that finds libx; libx has none and finds libbase only through the programs' RUNPATH
/// ... which it cannot inherit: so libbase lies beside libx and libx has `$ORIGIN`.
struct Context {
    p1: PathBuf,
    p2: PathBuf,
}

fn context_fixture(dir: &Path) -> Context {
    let lib = dir.join("lib");
    library(&lib, "libbase.so", "ctx_base.c", &[]);
    let x_args = link_args(&[(&lib, "libbase.so")]);
    let x_args: Vec<&str> = x_args.iter().map(String::as_str).collect();
    library(&lib, "libx.so", "ctx_x.c", &x_args);
    let y_args = link_args(&[(&lib, "libx.so")]);
    let y_args: Vec<&str> = y_args.iter().map(String::as_str).collect();
    library(&lib, "liby.so", "ctx_y.c", &y_args);
    let p1 = dir.join("p1");
    let p1_args = link_args(&[(&lib, "liby.so"), (&lib, "libx.so")]);
    let mut p1_args: Vec<&str> = p1_args.iter().map(String::as_str).collect();
    p1_args.push("-DDIRECT");
    compile("gcc", &[&src("ctx_main.c")], &p1, &p1_args);
    let p2 = dir.join("p2");
    let p2_args = link_args(&[(&lib, "liby.so")]);
    let p2_args: Vec<&str> = p2_args.iter().map(String::as_str).collect();
    compile("gcc", &[&src("ctx_main.c")], &p2, &p2_args);
    Context { p1, p2 }
}

#[test]
fn addresses_do_not_depend_on_who_reached_a_library_or_on_order() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = context_fixture(&tmp.path().join("fx"));
    let expected_p1 = run_ok(&mut Command::new(&fx.p1));
    let expected_p2 = run_ok(&mut Command::new(&fx.p2));
    assert_eq!(expected_p1, "x 8 y 9\n");

    let orders: [(&str, Vec<PathBuf>); 4] = [
        ("p1-alone", vec![fx.p1.clone()]),
        ("p2-alone", vec![fx.p2.clone()]),
        ("p1-p2", vec![fx.p1.clone(), fx.p2.clone()]),
        ("p2-p1", vec![fx.p2.clone(), fx.p1.clone()]),
    ];
    // Programs name the interpreter by path: one outside the stores, so that it is the
    // same for all of them.
    let interp = stable_ld_cas(tmp.path());
    let interp = ["--interp", interp.to_str().unwrap()];
    let mut seen: Option<BTreeMap<String, String>> = None;
    let mut stores = Vec::new();
    for (name, inputs) in &orders {
        let store = tmp.path().join(name);
        init_store(&store);
        let report = convert(&store, &interp, inputs);
        let uris = uris_by_soname(&report);
        for soname in ["libbase.so", "libx.so", "liby.so"] {
            assert!(uris.contains_key(soname), "{name}: {report}");
        }
        // Each library is stored once (and so is libc): one object per soname.
        let listed = run_ok(
            elf_tests::conversion::elfpatch()
                .args(["store", "list", "--json", "--store"])
                .arg(&store),
        );
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for o in listed.as_array().unwrap() {
            *count
                .entry(o["soname"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        assert!(count.values().all(|&c| c == 1), "{name}: {listed}");
        match &seen {
            None => seen = Some(uris),
            Some(first) => {
                for (soname, uri) in &uris {
                    assert_eq!(first.get(soname), Some(uri), "{name}: {soname}");
                }
            }
        }
        for (program, expected) in [("p1", &expected_p1), ("p2", &expected_p2)] {
            let converted = store.join("bin").join(program);
            if converted.exists() {
                assert_eq!(&run_ok(Command::new(&converted).env_clear()), expected);
            }
        }
        stores.push(store);
    }
    // Both orders of the same inputs give byte-identical stores.
    assert_same_files(&stores[2], &stores[3]);
}

#[test]
fn two_libraries_with_one_soname_load_in_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = tmp.path().join("fx");
    let d1 = fx.join("v1");
    let d2 = fx.join("v2");
    library(&d1, "libdup.so.1", "dup.c", &["-DV=1"]);
    library(&d2, "libdup.so.1", "dup.c", &["-DV=2"]);
    let dx = fx.join("x");
    let dy = fx.join("y");
    let x_args = link_args(&[(&d1, "libdup.so.1")]);
    let mut x_args: Vec<&str> = x_args.iter().map(String::as_str).collect();
    x_args.extend(["-DUSER=x", "-DV=1"]);
    library(&dx, "libx.so", "dup_user.c", &x_args);
    let y_args = link_args(&[(&d2, "libdup.so.1")]);
    let mut y_args: Vec<&str> = y_args.iter().map(String::as_str).collect();
    y_args.extend(["-DUSER=y", "-DV=2"]);
    library(&dy, "liby.so", "dup_user.c", &y_args);
    let prog = fx.join("dup");
    let p_args = link_args(&[(&dx, "libx.so"), (&dy, "liby.so")]);
    let mut p_args: Vec<&str> = p_args.iter().map(String::as_str).collect();
    // The link editor, like ld.so, sees only one libdup.so.1.
    p_args.push("-Wl,--allow-shlib-undefined");
    compile("gcc", &[&src("dup_main.c")], &prog, &p_args);
    // ld.so itself cannot run it: liby's libdup.so.1 is taken to be libx's.
    let original = run(&mut Command::new(&prog));
    assert!(!original.status.success());
    assert!(
        String::from_utf8_lossy(&original.stderr).contains("dup_v2"),
        "{original:?}"
    );

    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], &[prog]);
    let dups = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["soname"] == "libdup.so.1")
        .count();
    assert_eq!(dups, 2, "{report}");
    assert_eq!(
        run_ok(Command::new(store.join("bin/dup")).env_clear()),
        "x=1 y=2\n"
    );
}

#[test]
fn a_tree_library_opened_by_path_and_needed_by_uri_is_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let lib = tree.join("lib");
    library(&lib, "liba.so", "shared_a.c", &[]);
    let b_args = [
        format!("-L{}", lib.display()),
        "-Wl,-rpath,$ORIGIN".to_owned(),
        "-l:liba.so".to_owned(),
    ];
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    library(&lib, "libb.so", "shared_b.c", &b_args);
    fs::create_dir_all(tree.join("bin")).unwrap();
    let p_args = [
        format!("-L{}", lib.display()),
        "-Wl,-rpath,$ORIGIN/../lib".to_owned(),
        "-l:libb.so".to_owned(),
        "-ldl".to_owned(),
    ];
    let p_args: Vec<&str> = p_args.iter().map(String::as_str).collect();
    compile(
        "gcc",
        &[&src("shared_main.c")],
        &tree.join("bin/prog"),
        &p_args,
    );
    let expected = run_ok(&mut Command::new(tree.join("bin/prog")));
    assert_eq!(expected, "b_get() = 42\n");

    let store = tmp.path().join("store");
    init_store(&store);
    convert(&store, &[], std::slice::from_ref(&tree));
    let converted = store.join("bin/tree");
    assert_eq!(
        run_ok(Command::new(converted.join("bin/prog")).env_clear()),
        expected
    );
    // The table lists the tree's libraries at their place in the tree: nothing of them
    // is copied into objects/ (which holds only libc and the loader).
    let resolve = |uri: &str| -> PathBuf {
        PathBuf::from(
            run_ok(
                elf_tests::conversion::elfpatch()
                    .args(["store", "resolve", "--store"])
                    .arg(&store)
                    .arg(uri),
            )
            .trim(),
        )
    };
    let needed = elf_tests::conversion::needed(&converted.join("lib/libb.so"));
    let a_uri = needed
        .iter()
        .find(|n| n.starts_with("uri:"))
        .expect("libb names liba by URI");
    let home = resolve(a_uri);
    assert_eq!(
        fs::canonicalize(&home).unwrap(),
        fs::canonicalize(converted.join("lib/liba.so")).unwrap()
    );
    let objects = elf_tests::conversion::object_files(&store);
    assert!(
        objects
            .iter()
            .all(|o| !o.ends_with("liba.so") && !o.ends_with("libb.so")),
        "{objects:?}"
    );
    // A second copy of the tree is converted as hard links of the first's libraries.
    let copy = tmp.path().join("copy/tree2");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    run_ok(Command::new("cp").arg("-a").arg(&tree).arg(&copy));
    convert(&store, &[], &[copy]);
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&converted.join("lib/liba.so")),
        ino(&store.join("bin/tree2/lib/liba.so"))
    );
    assert_eq!(
        run_ok(Command::new(store.join("bin/tree2/bin/prog")).env_clear()),
        expected
    );
}

#[test]
fn trees_converted_together_find_each_other_after_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    // Nix-style packages: app's RUNPATH names lib's lib/ (absolute), then a directory of
    // decoys with the same sonames (standing for the system's).
    let nix = tmp.path().join("nix/store");
    let lib = nix.join("bbb-lib/lib");
    let decoy = tmp.path().join("decoy");
    for (dir, word) in [(&lib, "tree"), (&decoy, "decoy")] {
        let w = format!("-DWORD=\"{word}\"");
        library(dir, "libb.so.1", "prefix_lib.c", &["-DFN=b_word", &w]);
        library(dir, "libplug.so.1", "prefix_lib.c", &["-DFN=plug_word", &w]);
    }
    let app_dir = nix.join("aaa-app/bin");
    fs::create_dir_all(&app_dir).unwrap();
    let rpath = format!("-Wl,-rpath,{}:{}", lib.display(), decoy.display());
    let lflag = format!("-L{}", lib.display());
    compile(
        "gcc",
        &[&src("prefix_app.c")],
        &app_dir.join("app"),
        &[&lflag, &rpath, "-l:libb.so.1", "-ldl"],
    );
    let original = run_ok(&mut Command::new(app_dir.join("app")));
    assert!(original.starts_with("b tree plug tree\n"), "{original}");

    let interp = stable_ld_cas(tmp.path());
    let store = tmp.path().join("store");
    init_store(&store);
    convert(
        &store,
        &["--interp", interp.to_str().unwrap()],
        &[nix.join("aaa-app"), nix.join("bbb-lib")],
    );
    // The entry into the other tree became relative to the converted app, after the
    // store's index.
    let dynamic = run_ok(
        Command::new("readelf")
            .arg("-dW")
            .arg(store.join("bin/aaa-app/bin/app")),
    );
    assert!(
        dynamic.contains("[$ORIGIN/../../../index:$ORIGIN/../../bbb-lib/lib:"),
        "{dynamic}"
    );
    // The originals are gone and the store moves: the plugin, opened by its plain soname,
    // is the second tree's converted one.
    fs::remove_dir_all(tmp.path().join("nix")).unwrap();
    let moved = tmp.path().join("elsewhere/store");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&store, &moved).unwrap();
    let out = run_ok(Command::new(moved.join("bin/aaa-app/bin/app")).env_clear());
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("b tree plug tree"), "{out}");
    let from = lines.next().unwrap().strip_prefix("plug from ").unwrap();
    assert_eq!(
        fs::canonicalize(from).unwrap(),
        fs::canonicalize(moved.join("bin/bbb-lib/lib/libplug.so.1")).unwrap(),
        "{out}"
    );
}
