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

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
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
