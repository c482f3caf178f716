//! A Nix-style store made from this Debian system's files, as a fixture: one directory per
//! package (`<32 hex>-<name>`), every ELF file with a RUNPATH listing the `lib` directories
//! of the packages it needs and, for programs, `PT_INTERP` pointing at the glibc package's
//! ld.so. Python is a package of its own (`bin/python3.11` beside `lib/python3.11/` with the
//! standard library and `lib-dynload/`), so its extension modules are `dlopen`ed by path
//! and must find their own dependencies.
//!
//! The layout is made with Debian's `patchelf`, independently of elfpatch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::conversion::needed as needed_names;
use crate::{require_tool, run_ok};

/// Libraries that belong to the glibc package.
const GLIBC: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libresolv.so.2",
    "libnsl.so.1",
    "libanl.so.1",
    "libmvec.so.1",
    "libcrypt.so.1",
];

/// The directories a Debian library is looked for in.
const SYSTEM_DIRS: &[&str] = &["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"];

/// A generated store.
pub struct NixStyle {
    /// The store directory (`.../nix/store`).
    pub store: PathBuf,
    /// Package name → package directory.
    pub packages: BTreeMap<String, PathBuf>,
}

impl NixStyle {
    /// The directory of package `name`.
    pub fn package(&self, name: &str) -> &Path {
        &self.packages[name]
    }
}

fn package_dir(store: &Path, name: &str) -> PathBuf {
    let hash = name_hash(name.as_bytes());
    store.join(format!("{}-{name}", &hash[..32]))
}

/// A hash-like name prefix (FNV-1a, hex), as Nix puts a hash in front of each package.
fn name_hash(bytes: &[u8]) -> String {
    let mut out = String::new();
    for round in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn system_library(soname: &str) -> PathBuf {
    SYSTEM_DIRS
        .iter()
        .map(|d| Path::new(d).join(soname))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{soname} is not installed in {SYSTEM_DIRS:?}"))
}

/// The package a library belongs to: glibc, or one package per library named after it.
fn package_of(soname: &str) -> String {
    if GLIBC.contains(&soname) {
        "glibc-2.36".into()
    } else {
        soname
            .split(".so")
            .next()
            .unwrap_or(soname)
            .trim_start_matches("lib")
            .to_owned()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "test" || name == "__pycache__" || name == "idlelib" || name == "tkinter" {
            continue;
        }
        let t = e.file_type().unwrap();
        let dest = to.join(&name);
        if t.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// Records an ELF file placed in the store and queues the sonames it needs.
fn place(file: PathBuf, placed: &mut Vec<(PathBuf, Vec<String>)>, queue: &mut VecDeque<String>) {
    let needs = needed_names(&file);
    queue.extend(needs.iter().cloned());
    placed.push((file, needs));
}

/// Builds the store under `root` with the programs `programs` (each its own package, named
/// after the program) and a python3 package.
pub fn generate(root: &Path, programs: &[&str]) -> NixStyle {
    require_tool("patchelf");
    require_tool("readelf");
    let store = root.join("nix/store");
    fs::create_dir_all(&store).unwrap();
    let mut packages: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Every ELF file placed, with the sonames it needs.
    let mut placed: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut libraries: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();

    for program in programs {
        let dir = package_dir(&store, program);
        fs::create_dir_all(dir.join("bin")).unwrap();
        let dest = dir.join("bin").join(program);
        fs::copy(Path::new("/usr/bin").join(program), &dest).unwrap();
        packages.insert((*program).to_owned(), dir);
        place(dest, &mut placed, &mut queue);
    }

    let python = package_dir(&store, "python3-3.11");
    fs::create_dir_all(python.join("bin")).unwrap();
    fs::copy("/usr/bin/python3.11", python.join("bin/python3.11")).unwrap();
    std::os::unix::fs::symlink("python3.11", python.join("bin/python3")).unwrap();
    copy_tree(
        Path::new("/usr/lib/python3.11"),
        &python.join("lib/python3.11"),
    );
    packages.insert("python3".into(), python.clone());
    place(python.join("bin/python3.11"), &mut placed, &mut queue);
    let dynload = python.join("lib/python3.11/lib-dynload");
    let mut modules: Vec<PathBuf> = fs::read_dir(&dynload)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    modules.sort();
    for m in modules
        .into_iter()
        .filter(|m| m.extension().is_some_and(|e| e == "so"))
    {
        place(m, &mut placed, &mut queue);
    }

    let mut seen: BTreeSet<String> = BTreeSet::new();
    while let Some(soname) = queue.pop_front() {
        if !seen.insert(soname.clone()) {
            continue;
        }
        let pkg = package_of(&soname);
        let dir = packages
            .entry(pkg.clone())
            .or_insert_with(|| package_dir(&store, &pkg))
            .clone();
        fs::create_dir_all(dir.join("lib")).unwrap();
        let dest = dir.join("lib").join(&soname);
        fs::copy(system_library(&soname), &dest).unwrap();
        libraries.insert(soname, dest.clone());
        place(dest, &mut placed, &mut queue);
    }

    let ld_so = libraries["ld-linux-x86-64.so.2"].clone();
    for (file, needs) in &placed {
        if file == &ld_so {
            continue;
        }
        let dirs: BTreeSet<String> = needs
            .iter()
            .filter(|n| n.as_str() != "ld-linux-x86-64.so.2")
            .map(|n| libraries[n].parent().unwrap().display().to_string())
            .collect();
        let mut cmd = Command::new("patchelf");
        if !dirs.is_empty() {
            cmd.arg("--set-rpath")
                .arg(dirs.into_iter().collect::<Vec<_>>().join(":"));
        }
        let is_program = run_ok(Command::new("readelf").arg("-lW").arg(file)).contains("INTERP");
        let is_library = file.parent().is_some_and(|p| p.ends_with("lib"));
        if is_program && !is_library {
            cmd.arg("--set-interpreter").arg(&ld_so);
        }
        run_ok(cmd.arg(file));
    }
    NixStyle { store, packages }
}
