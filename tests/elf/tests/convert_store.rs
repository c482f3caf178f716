//! `elfpatch convert` and the store over time: garbage collection (with the roots that
//! conversions register) and relocation after the store moved.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, elfpatch, init_store, object_files, stable_ld_cas};
use elf_tests::{run, run_ok};

mod convert_common;
use convert_common::{fixtures_and_store, snapshot, Fixtures};

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
    let (tmp, fx, store) = fixtures_and_store("store-1");
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
    let (tmp, fx, store) = fixtures_and_store("store-1");
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
    // The store's merged interpreter of prog-a's loader, at its new place.
    let a = interp("prog-a");
    assert!(
        Path::new(a.trim()).starts_with(moved.join("interp")) && Path::new(a.trim()).is_file(),
        "{a}"
    );
    assert_eq!(interp("prog-b").trim(), stable.to_str().unwrap());
    // Relocating again finds nothing to do.
    let report = relocate(&moved);
    assert_eq!(report["bytes_written"], 0, "{report}");
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
    let beta = object_files(&store)
        .into_iter()
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
fn tree_libraries_are_listed_at_home_and_gc_never_deletes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store");
    init_store(&store);
    // A tree with a program and its library, converted to a place outside the store.
    let tree = tmp.path().join("pkg");
    fs::create_dir_all(tree.join("lib")).unwrap();
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::copy(fx.path("a/libgreet.so.1"), tree.join("lib/libgreet.so.1")).unwrap();
    run_ok(
        Command::new("patchelf")
            .args(["--set-rpath", "$ORIGIN/../lib"])
            .arg(fx.path("prog-a"))
            .arg("--output")
            .arg(tree.join("bin/prog")),
    );
    let out = tmp.path().join("out");
    let report = convert(&store, &["--out", out.to_str().unwrap()], &[tree]);
    let greet = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["soname"] == "libgreet.so.1")
        .unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_owned();
    // The table names it through the registered root, inside the store.
    let resolved = run_ok(
        elfpatch()
            .args(["store", "resolve", "--store"])
            .arg(&store)
            .arg(&greet),
    );
    let resolved = Path::new(resolved.trim());
    assert!(resolved.starts_with(store.join("roots")), "{resolved:?}");
    assert!(resolved.ends_with("lib/libgreet.so.1"), "{resolved:?}");
    assert_eq!(
        fs::canonicalize(resolved).unwrap(),
        fs::canonicalize(out.join("pkg/lib/libgreet.so.1")).unwrap()
    );
    assert_eq!(
        run_ok(Command::new(out.join("pkg/bin/prog")).env_clear()),
        "greet: alpha\nmain: done\n"
    );
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    assert!(object_files(&store)
        .iter()
        .all(|o| !o.ends_with("libgreet.so.1")));

    // Deleting the program only: gc stops listing the library but leaves the tree's file.
    fs::remove_file(out.join("pkg/bin/prog")).unwrap();
    let gc = run_ok(
        elfpatch()
            .args(["store", "gc", "--json", "--store"])
            .arg(&store),
    );
    assert!(gc.contains(&greet[11..]), "{gc}");
    assert!(out.join("pkg/lib/libgreet.so.1").is_file());
    let listed = run_ok(elfpatch().args(["store", "list", "--store"]).arg(&store));
    assert!(!listed.contains(&greet), "{listed}");
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
}
