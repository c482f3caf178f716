//! The store's index (`STORE/index`, `resolver/src/store/index.rs`): ld.so finds a
//! library's own `uri:` names there. Its entries for the store's objects are hard links of
//! them; a store copied without its hard links is refused until its index is linked again,
//! an index of symbolic links (an older one) still serves, and a damaged index is reported
//! and repaired.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::chain::chain;
use elf_tests::conversion::{convert, elfpatch, init_store};
use elf_tests::{run, run_ok};

/// What the chain fixture prints.
const CHAIN_OUTPUT: &str = "euid 0 value 42\n";

/// The chain fixture converted into `dir/store`.
fn converted_chain(dir: &Path) -> PathBuf {
    let prog = chain(dir, 16);
    assert_eq!(run_ok(&mut Command::new(&prog)), CHAIN_OUTPUT);
    let store = dir.join("store");
    init_store(&store);
    convert(&store, &[], &[prog]);
    store
}

/// The index's entries (`index/uri:*`).
fn index_entries(store: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(store.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("uri:"))
        .collect();
    entries.sort();
    assert!(!entries.is_empty());
    entries
}

/// A copy of `store` at `to` made by `cp ARGS`, pointed at its new place.
fn copied(store: &Path, to: &Path, args: &[&str]) -> PathBuf {
    let ok = Command::new("cp")
        .args(args)
        .arg(store)
        .arg(to)
        .status()
        .unwrap();
    assert!(ok.success());
    run_ok(elfpatch().args(["relocate", "--store"]).arg(to));
    to.to_path_buf()
}

fn verify(store: &Path) -> std::process::Output {
    run(elfpatch().args(["store", "verify", "--store"]).arg(store))
}

#[test]
fn a_store_copied_without_its_hard_links_is_refused_until_its_index_is_linked_again() {
    let tmp = tempfile::tempdir().unwrap();
    let store = converted_chain(tmp.path());
    // Each entry is its object's file: the same inode, so a second name.
    for entry in index_entries(&store) {
        let m = fs::symlink_metadata(&entry).unwrap();
        assert!(
            m.file_type().is_file() && m.nlink() >= 2,
            "{}",
            entry.display()
        );
    }
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog"))),
        CHAIN_OUTPUT
    );

    // `cp -a` keeps the hard links: the copy runs.
    let kept = copied(&store, &tmp.path().join("kept"), &["-a"]);
    assert_eq!(
        run_ok(&mut Command::new(kept.join("bin/prog"))),
        CHAIN_OUTPUT
    );

    // `cp -r` does not: each entry is a second file, which ld.so would load as a second
    // libinner beside the object. Refused, naming the entry and the way out.
    let lost = copied(&store, &tmp.path().join("lost"), &["-r"]);
    let out = run(&mut Command::new(lost.join("bin/prog")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        err.contains("the store's index holds a copy of")
            && err.contains("not a link to it")
            && err.contains("rsync -aH")
            && err.contains(&format!("elfpatch store init --store {}", lost.display())),
        "{err}"
    );
    let report = verify(&lost);
    assert_eq!(report.status.code(), Some(1));
    let report = String::from_utf8_lossy(&report.stderr);
    assert!(
        report.contains("index entry") && report.contains("lost its hard links"),
        "{report}"
    );

    init_store(&lost);
    assert_eq!(
        run_ok(&mut Command::new(lost.join("bin/prog"))),
        CHAIN_OUTPUT
    );
    assert_eq!(verify(&lost).status.code(), Some(0));
}

#[test]
fn an_index_of_symbolic_links_still_serves_and_is_made_hard_links() {
    let tmp = tempfile::tempdir().unwrap();
    let store = converted_chain(tmp.path());
    let entries = index_entries(&store);
    // The index an earlier version made: relative symbolic links to the objects.
    for entry in &entries {
        let hex = entry.file_name().unwrap().to_string_lossy()["uri:blake3:".len()..].to_string();
        let dir = store.join("objects").join(&hex);
        let object = fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .file_name();
        fs::remove_file(entry).unwrap();
        symlink(Path::new("../objects").join(&hex).join(object), entry).unwrap();
    }
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog"))),
        CHAIN_OUTPUT
    );
    assert_eq!(verify(&store).status.code(), Some(0));
    init_store(&store);
    for entry in &entries {
        assert!(fs::symlink_metadata(entry).unwrap().file_type().is_file());
    }
    assert_eq!(
        run_ok(&mut Command::new(store.join("bin/prog"))),
        CHAIN_OUTPUT
    );
}

#[test]
fn store_verify_names_a_damaged_index_and_store_init_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = converted_chain(tmp.path());
    let bin = store.join("bin/prog");
    // libinner is reached only through the index: without it the program cannot start.
    fs::remove_dir_all(store.join("index")).unwrap();
    let out = run(&mut Command::new(&bin));
    assert_eq!(out.status.code(), Some(127));
    let verify = run(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stderr).contains("index entry"));
    init_store(&store);
    assert_eq!(run_ok(&mut Command::new(&bin)), CHAIN_OUTPUT);
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
}
