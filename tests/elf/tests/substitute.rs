//! `elfpatch substitute`: a library 1.0 replaced by a compatible 1.1 under a program and a
//! library that depend on it, without rebuilding; back again, byte for byte; incompatible
//! 2.0 builds refused with the symbol named and the store unchanged.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elf_tests::conversion::{convert, elfpatch, init_store};
use elf_tests::{compile, fixture_dir, run, run_ok};

mod convert_common;
use convert_common::snapshot;

fn src(name: &str) -> PathBuf {
    fixture_dir().join("substitute").join(name)
}

/// Builds `dir/libfoo.so.1` with the defines `defs` and version script `map`.
fn libfoo(dir: &Path, defs: &[&str], map: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let out = dir.join("libfoo.so.1");
    let script = format!("-Wl,--version-script={}", src(map).display());
    // With debug information, so that abidiff sees types.
    let mut args = vec![
        "-g",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libfoo.so.1",
        script.as_str(),
    ];
    args.extend_from_slice(defs);
    compile("gcc", &[&src("foo.c")], &out, &args);
    out
}

struct Fixture {
    program: PathBuf,
    v1_1: PathBuf,
    no_value: PathBuf,
    no_version: PathBuf,
    big_data: PathBuf,
    no_keep: PathBuf,
}

fn fixture(dir: &Path) -> Fixture {
    let v1 = dir.join("foo-1.0");
    libfoo(&v1, &[], "foo_1.map");
    let bar = dir.join("bar");
    fs::create_dir_all(&bar).unwrap();
    let l_foo = format!("-L{}", v1.display());
    let r_foo = format!("-Wl,-rpath,{}", v1.display());
    compile(
        "gcc",
        &[&src("bar.c")],
        &bar.join("libbar.so.1"),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libbar.so.1",
            &l_foo,
            &r_foo,
            "-l:libfoo.so.1",
        ],
    );
    let program = dir.join("app");
    let l_bar = format!("-L{}", bar.display());
    let r_bar = format!("-Wl,-rpath,{}", bar.display());
    compile(
        "gcc",
        &[&src("main.c")],
        &program,
        &[
            "-no-pie",
            &l_foo,
            &r_foo,
            &l_bar,
            &r_bar,
            "-l:libbar.so.1",
            "-l:libfoo.so.1",
        ],
    );
    Fixture {
        program,
        v1_1: libfoo(&dir.join("foo-1.1"), &["-DFIXED"], "foo_1_1.map"),
        no_value: libfoo(&dir.join("foo-2.0-a"), &["-DNO_VALUE"], "foo_1.map"),
        no_version: libfoo(&dir.join("foo-2.0-b"), &[], "foo_2.map"),
        big_data: libfoo(&dir.join("foo-2.0-c"), &["-DBIG_DATA"], "foo_1.map"),
        no_keep: libfoo(&dir.join("foo-2.0-d"), &["-DNO_KEEP"], "foo_1.map"),
    }
}

fn substitute(store: &Path, old: &str, new: &Path) -> Output {
    run(elfpatch()
        .args(["substitute", "--json", "--store"])
        .arg(store)
        .arg(old)
        .arg(new))
}

fn uri_of(report: &serde_json::Value, soname: &str) -> String {
    report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["soname"] == soname)
        .unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// abidiff's verdict on OLD → NEW: its exit status has bit 2 for an ABI change and bit 3
/// for an incompatible one.
fn abidiff(old: &Path, new: &Path) -> i32 {
    elf_tests::require_tool("abidiff");
    run(Command::new("abidiff").arg(old).arg(new))
        .status
        .code()
        .expect("abidiff exits")
}

#[test]
fn verdicts_against_abidiff() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture(&tmp.path().join("fx"));
    let v1 = tmp.path().join("fx/foo-1.0/libfoo.so.1");
    // Agreement: 1.1 only adds (compatible); a used function or a version node removed
    // is incompatible for both.
    assert_eq!(abidiff(&v1, &fx.v1_1), 4);
    assert_eq!(abidiff(&v1, &fx.no_value), 12);
    assert_eq!(abidiff(&v1, &fx.no_version), 12);
    // Where they differ, by design: abidiff judges the library alone, substitute judges
    // what the dependents use. A grown array is only "changed" for abidiff, but the
    // program copies it (R_X86_64_COPY), so its copy would be too small: refused. A
    // removed function is incompatible for abidiff, but no dependent calls it: accepted.
    assert_eq!(abidiff(&v1, &fx.big_data), 4);
    assert_eq!(abidiff(&v1, &fx.no_keep), 12);
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], std::slice::from_ref(&fx.program));
    let foo = uri_of(&report, "libfoo.so.1");
    let dry = |new: &Path| {
        run(elfpatch()
            .args(["substitute", "--dry-run", "--store"])
            .arg(&store)
            .arg(&foo)
            .arg(new))
        .status
        .code()
    };
    assert_eq!(dry(&fx.v1_1), Some(0));
    assert_eq!(dry(&fx.no_value), Some(1));
    assert_eq!(dry(&fx.no_version), Some(1));
    assert_eq!(dry(&fx.big_data), Some(1));
    assert_eq!(dry(&fx.no_keep), Some(0));
}

#[test]
fn compatible_versions_substitute_and_back_incompatible_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture(&tmp.path().join("fx"));
    assert_eq!(
        run_ok(&mut Command::new(&fx.program)),
        "foo 10 bar 11 data 5\n"
    );
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], std::slice::from_ref(&fx.program));
    let foo_1_0 = uri_of(&report, "libfoo.so.1");
    let bar_before = uri_of(&report, "libbar.so.1");
    let app = store.join("bin/app");
    let app_before = fs::read(&app).unwrap();
    let kept_copy = tmp.path().join("app-with-1.0");
    fs::copy(&app, &kept_copy).unwrap();
    let before = snapshot(&store);

    // Incompatible builds are refused, naming what is missing; nothing changes.
    for (lib, expected) in [
        (&fx.no_value, "foo_value@FOO_1.0 is not defined"),
        (&fx.no_version, "the version node FOO_1.0 is missing"),
        (
            &fx.big_data,
            "foo_data@FOO_1.0, which the dependent copies, changes size (16 to 32 bytes)",
        ),
    ] {
        let out = substitute(&store, &foo_1_0, lib);
        assert_eq!(out.status.code(), Some(1), "{lib:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{lib:?}: {err}");
        assert!(snapshot(&store) == before, "{lib:?} changed the store");
    }

    // 1.1: the program and libbar are rewritten and show the fix.
    let out = substitute(&store, &foo_1_0, &fx.v1_1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let foo_1_1 = plan["new"].as_str().unwrap().to_owned();
    let rewritten = plan["rewritten"].as_array().unwrap();
    let bar_after = rewritten
        .iter()
        .find(|r| r["old_uri"] == bar_before.as_str())
        .expect("libbar was rewritten")["new_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(bar_after, bar_before);
    assert_eq!(
        run_ok(Command::new(&app).env_clear()),
        "foo 11 bar 12 data 5\n"
    );
    // The old objects stay: a program naming them still runs with 1.0 until gc.
    assert_eq!(
        run_ok(
            Command::new(&kept_copy)
                .env_clear()
                .env("LD_CAS_STORE", &store)
        ),
        "foo 10 bar 11 data 5\n"
    );
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    let listed = run_ok(elfpatch().args(["store", "list", "--store"]).arg(&store));
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&foo_1_1) && l.ends_with(&format!("replaces {foo_1_0}"))),
        "{listed}"
    );

    let listed = run_ok(
        Command::new(elf_tests::built_binary("ld-cas"))
            .arg("--list")
            .arg(&app),
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains(&foo_1_1) && l.ends_with(&format!("(replaces {foo_1_0})"))),
        "{listed}"
    );

    // Back to 1.0: the original URIs and bytes.
    let out = substitute(&store, &foo_1_1, Path::new(&foo_1_0));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(back["rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["new_uri"] == bar_before.as_str()));
    assert_eq!(fs::read(&app).unwrap(), app_before);
    assert_eq!(
        run_ok(Command::new(&app).env_clear()),
        "foo 10 bar 11 data 5\n"
    );
}

/// The libzstd that pillow 13.0.0's manylinux wheel vendors (zstd 1.5.7, built by the
/// wheel's makers, its soname renamed by auditwheel), extracted into `dir`.
fn wheel_libzstd(dir: &Path) -> PathBuf {
    elf_tests::require_tool("python3");
    run_ok(
        Command::new("python3")
            .args(["-m", "pip", "download", "-q", "--disable-pip-version-check"])
            .args([
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                "manylinux_2_28_x86_64",
            ])
            .args(["--python-version", "3.11", "pillow==13.0.0", "-d"])
            .arg(dir),
    );
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, zipfile, glob, os\n\
         w = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], 'pillow-*.whl'))[0])\n\
         n = [x for x in w.namelist() if '/libzstd-' in x][0]\n\
         print(w.extract(n, sys.argv[1]))",
            )
            .arg(dir),
    );
    PathBuf::from(out.trim())
}

#[test]
fn a_real_newer_libzstd_replaces_debians_under_curl() {
    let tmp = tempfile::tempdir().unwrap();
    let zstd_1_5_7 = wheel_libzstd(tmp.path());
    let debian = fs::canonicalize("/lib/x86_64-linux-gnu/libzstd.so.1").unwrap();
    let store = tmp.path().join("store");
    init_store(&store);
    convert(&store, &[], &[PathBuf::from("/usr/bin/curl")]);
    let curl = store.join("bin/curl");
    let version = || run_ok(Command::new(&curl).arg("--version").env_clear());
    let before = version();
    assert!(before.contains(" zstd/1.5.4 "), "{before}");
    let curl_before = fs::read(&curl).unwrap();
    // auditwheel renamed its soname: refused unless accepted.
    let out = substitute(&store, debian.to_str().unwrap(), &zstd_1_5_7);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the soname changes"));
    let out = run(elfpatch()
        .args(["substitute", "--json", "--allow-soname-change", "--store"])
        .arg(&store)
        .arg(&debian)
        .arg(&zstd_1_5_7));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = version();
    assert_eq!(after, before.replace(" zstd/1.5.4 ", " zstd/1.5.7 "));
    // Back: the same program, byte for byte.
    let new = report["new"].as_str().unwrap();
    let old = report["old"].as_str().unwrap();
    let out = run(elfpatch()
        .args(["substitute", "--allow-soname-change", "--store"])
        .arg(&store)
        .args([new, old]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&curl).unwrap(), curl_before);
    assert_eq!(version(), before);
}

#[test]
fn a_dependent_at_home_in_a_tree_gets_the_new_version_there() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture(&tmp.path().join("fx"));
    let tree = tmp.path().join("pkg");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("lib")).unwrap();
    fs::copy(
        tmp.path().join("fx/bar/libbar.so.1"),
        tree.join("lib/libbar.so.1"),
    )
    .unwrap();
    run_ok(
        Command::new("patchelf")
            .arg("--set-rpath")
            .arg(format!(
                "$ORIGIN/../lib:{}",
                tmp.path().join("fx/foo-1.0").display()
            ))
            .arg(&fx.program)
            .arg("--output")
            .arg(tree.join("bin/app")),
    );
    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], std::slice::from_ref(&tree));
    let foo = uri_of(&report, "libfoo.so.1");
    let home = store.join("bin/pkg/lib/libbar.so.1");
    let bar_before = fs::read(&home).unwrap();
    let out = substitute(&store, &foo, &fx.v1_1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app = store.join("bin/pkg/bin/app");
    assert_eq!(
        run_ok(Command::new(&app).env_clear()),
        "foo 11 bar 12 data 5\n"
    );
    // The tree holds the new libbar; the old one moved to objects/, still listed.
    assert_ne!(fs::read(&home).unwrap(), bar_before);
    let moved = elf_tests::conversion::object_files(&store)
        .into_iter()
        .find(|p| p.ends_with("libbar.so.1"))
        .expect("the old libbar in objects/");
    assert_eq!(fs::read(&moved).unwrap(), bar_before);
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
}
