//! A Nix-style store (one directory per package, RUNPATHs and `PT_INTERP` pointing into
//! it; python3 as a package with its standard library and `lib-dynload/`) is converted
//! package by package (in two argument orders, giving byte-identical stores), run, moved,
//! and run again. Python's extension modules are converted
//! in the tree and `dlopen`ed by path, so they must resolve their own `uri:` needs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, init_store, needed, stable_ld_cas};
use elf_tests::nixstyle::generate;
use elf_tests::{run, run_ok};

mod convert_common;
use convert_common::assert_same_files;

const IMPORTS: &str = "import ssl, sqlite3, ctypes, json, decimal, zlib, _ssl, sys; \
print(ssl.OPENSSL_VERSION, sqlite3.sqlite_version, zlib.crc32(b'nix'), decimal.Decimal(1) / 8); \
print('prefix-is-package', sys.prefix.endswith('python3-3.11')); \
print('ssl-module-in-prefix', _ssl.__file__.startswith(sys.prefix))";

fn python(package: &Path) -> String {
    let out = run(Command::new(package.join("bin/python3"))
        .args(["-I", "-c", IMPORTS])
        .env_clear());
    assert!(
        out.status.success(),
        "{} failed: {}",
        package.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn nix_style_store_converts_runs_and_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let nix = generate(&tmp.path().join("nixroot"), &["curl"]);
    let python_pkg = nix.package("python3").to_path_buf();
    let expected = python(&python_pkg);
    assert!(expected.contains("prefix-is-package True"), "{expected}");
    assert!(expected.contains("ssl-module-in-prefix True"), "{expected}");
    let curl_expected = run_ok(Command::new(nix.package("curl").join("bin/curl")).arg("--version"));

    let interp = stable_ld_cas(tmp.path());
    let store = tmp.path().join("cas");
    init_store(&store);
    let packages: Vec<PathBuf> = nix.packages.values().cloned().collect();
    convert(&store, &["--interp", interp.to_str().unwrap()], &packages);
    let converted = |root: &Path, pkg: &Path| root.join("bin").join(pkg.file_name().unwrap());
    // The other argument order gives a byte-identical store.
    let reversed_store = tmp.path().join("cas-reversed");
    init_store(&reversed_store);
    let reversed: Vec<PathBuf> = packages.iter().rev().cloned().collect();
    convert(
        &reversed_store,
        &["--interp", interp.to_str().unwrap()],
        &reversed,
    );
    assert_same_files(&store, &reversed_store);

    // The converted extension modules name their libraries by URI.
    let module = fs::read_dir(converted(&store, &python_pkg).join("lib/python3.11/lib-dynload"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_ssl."))
        .unwrap();
    let needed = needed(&module);
    assert!(
        needed.iter().all(|n| n.starts_with("uri:blake3:")),
        "{needed:?}"
    );

    assert_eq!(python(&converted(&store, &python_pkg)), expected);
    let curl = converted(&store, nix.package("curl")).join("bin/curl");
    assert_eq!(run_ok(Command::new(&curl).arg("--version")), curl_expected);

    // Remove the Nix-style store: nothing may still come from it.
    fs::remove_dir_all(tmp.path().join("nixroot")).unwrap();
    let moved = tmp.path().join("moved/cas2");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&store, &moved).unwrap();
    assert_eq!(python(&converted(&moved, &python_pkg)), expected);
    let curl = converted(&moved, nix.package("curl")).join("bin/curl");
    assert_eq!(run_ok(Command::new(&curl).arg("--version")), curl_expected);
}
