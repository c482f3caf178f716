//! Fixtures shared by the conversion tests: small C programs and libraries built with gcc.

#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use elf_tests::{compile, fixture_dir};

/// The C source `name` of the conversion fixtures.
pub fn src(name: &str) -> PathBuf {
    fixture_dir().join("convert").join(name)
}

/// Fixtures built in `dir`: `a/libgreet.so.1` ("alpha"), `b/libgreet.so.1` ("beta"),
/// `prog-a` and `prog-b` linked against each with RUNPATH, `preload.so`, and the ring.
pub struct Fixtures {
    dir: PathBuf,
}

impl Fixtures {
    pub fn build(dir: &Path) -> Fixtures {
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
        // libring_a and libring_b need each other: b is built first without a, then a
        // against it, then b again against a.
        let ring_lib = |name: &str, needs: Option<&str>| {
            let soname = format!("-Wl,-soname,lib{name}.so");
            let search = format!("-L{}", ring.display());
            let mut args = vec!["-shared", "-fPIC", &soname, "-Wl,-rpath,$ORIGIN", &search];
            let link = needs.map(|n| format!("-l{n}"));
            args.extend(link.as_deref());
            compile("gcc", &[&src(&format!("{name}.c"))], &so(name), &args);
        };
        ring_lib("ring_b", None);
        ring_lib("ring_a", Some("ring_b"));
        ring_lib("ring_b", Some("ring_a"));
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

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A temporary directory with the fixtures built in `fx/` and an empty store at `store`.
pub fn fixtures_and_store(store: &str) -> (tempfile::TempDir, Fixtures, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join(store);
    elf_tests::conversion::init_store(&store);
    (tmp, fx, store)
}

pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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

/// Asserts that two directories hold the same files with the same bytes (naming the
/// files that differ, not their bytes).
pub fn assert_same_files(a: &Path, b: &Path) {
    let (a, b) = (snapshot(a), snapshot(b));
    let differing: Vec<&PathBuf> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    assert!(differing.is_empty(), "files that differ: {differing:?}");
}
