//! The two attacks on dependency cycles that version 1 of the cycle rule let through, as
//! an attacker with write access to a store would perform them on a converted ring
//! (`libring_a` ↔ `libring_b`): both verifiers, `elfpatch store verify` and
//! `ld-cas --verify`, must now catch them.
//!
//! 1. Swap the references inside the cycle (each member names itself instead of the other).
//! 2. Inject a new member between them, with its URI computed by version 1 of the rule.
//!
//! Each attack is first checked to be one that version 1 accepted (every member's bytes
//! still hash, modulo the cycle, to the URI it is listed under), so the test shows the
//! finding as reported and the fix.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::convert;
use elf_tests::{built_binary, run, run_ok};
use resolver::hash::hash_modulo_cycle;
use resolver::store::{Content, NewObject, Store};
use resolver::table::Kind;
use resolver::uri::Hash;

mod convert_common;
use convert_common::fixtures_and_store;

/// The converted ring's objects: soname → (URI, path).
fn ring(store: &Path) -> BTreeMap<String, (Hash, PathBuf)> {
    let mut out = BTreeMap::new();
    for e in Store::open(store).unwrap().entries().unwrap() {
        let soname = String::from_utf8_lossy(&e.soname).into_owned();
        if soname.starts_with("libring_") {
            let path = store.join(String::from_utf8_lossy(&e.path).as_ref());
            out.insert(soname, (e.hash, path));
        }
    }
    out
}

/// Replaces every occurrence of `from`'s URI by `to`'s in the file at `path`.
fn retarget(path: &Path, from: &Hash, to: &Hash) {
    let mut bytes = fs::read(path).unwrap();
    let (from, to) = (from.to_uri_bytes(), to.to_uri_bytes());
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + pos..at + pos + to.len()].copy_from_slice(&to);
        at += pos + to.len();
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Both verifiers on the store and its converted ring program: (store verify's exit
/// code and output, ld-cas --verify's).
fn verifiers(store: &Path) -> ((Option<i32>, String), (Option<i32>, String)) {
    let text = |out: std::process::Output| {
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    // Under `timeout`: a hang is a failure too.
    let timed = |binary: &str| {
        let mut cmd = Command::new("timeout");
        cmd.args(["-k", "5", "60"]).arg(built_binary(binary));
        cmd
    };
    let store_verify = text(run(timed("elfpatch")
        .args(["store", "verify", "--store"])
        .arg(store)));
    let ld_cas_verify = text(run(timed("ld-cas")
        .arg("--verify")
        .arg(store.join("bin/prog-ring"))));
    (store_verify, ld_cas_verify)
}

fn assert_caught(store: &Path, attack: &str) {
    let ((code, out), (ld_code, ld_out)) = verifiers(store);
    assert_eq!(code, Some(1), "{attack}: store verify accepted it:\n{out}");
    assert!(out.contains("libring_"), "{attack}: {out}");
    assert_eq!(
        ld_code,
        Some(1),
        "{attack}: ld-cas --verify accepted it:\n{ld_out}"
    );
    assert!(ld_out.contains("MISMATCH"), "{attack}: {ld_out}");
}

#[test]
fn swapped_and_injected_cycle_members_are_caught() {
    let (tmp, fx, store) = fixtures_and_store("store");
    convert(&store, &[], &[fx.path("prog-ring")]);
    assert_eq!(
        run_ok(Command::new(store.join("bin/prog-ring")).env_clear()),
        "ring: a=1 b=2\n"
    );
    let ((code, out), (ld_code, ld_out)) = verifiers(&store);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(ld_code, Some(0), "{ld_out}");
    let clean = tmp.path().join("clean");
    run_ok(Command::new("cp").arg("-a").arg(&store).arg(&clean));
    let objects = ring(&store);
    let (a, a_path) = objects["libring_a.so"].clone();
    let (b, b_path) = objects["libring_b.so"].clone();

    // Version 1 addressed a member by its bytes with the cycle's references blanked.
    let v1 = |path: &Path, cycle: &[Hash]| hash_modulo_cycle(&fs::read(path).unwrap(), cycle);
    let (a_v1, b_v1) = (v1(&a_path, &[a, b]), v1(&b_path, &[a, b]));

    // Attack 1: each member names itself instead of the other. Version 1 saw nothing.
    retarget(&a_path, &b, &a);
    retarget(&b_path, &a, &b);
    assert_eq!(
        v1(&a_path, &[a]),
        a_v1,
        "version 1 of the rule noticed the swap"
    );
    assert_eq!(
        v1(&b_path, &[b]),
        b_v1,
        "version 1 of the rule noticed the swap"
    );
    assert_caught(&store, "swapped references");

    // Attack 2, on a clean copy: D, a changed copy of B, goes between B and A
    // (A -> B -> D -> A); D's URI is computed by version 1 of the rule.
    fs::remove_dir_all(&store).unwrap();
    fs::rename(&clean, &store).unwrap();
    let mut d_bytes = fs::read(&b_path).unwrap();
    let marker = b"GCC: (";
    let at = d_bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("a .comment to change");
    d_bytes[at] = b'E';
    let d = hash_modulo_cycle(&d_bytes, &[a, b]);
    retarget(&b_path, &a, &d);
    assert_eq!(
        v1(&b_path, &[a, b, d]),
        b_v1,
        "version 1 of the rule noticed the injection"
    );
    Store::open(&store)
        .unwrap()
        .add(&[NewObject {
            content: Content::Bytes {
                bytes: &d_bytes,
                hash: d,
            },
            name: "libring_b.so".into(),
            soname: b"libring_b.so".to_vec(),
            kind: Kind::Library,
        }])
        .unwrap();
    assert_caught(&store, "injected member");
}
