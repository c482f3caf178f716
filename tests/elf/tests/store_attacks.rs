//! The store's commands fail closed: attacks and failures of issue 11 on `relocate`, `gc`
//! and `verify`, each reproduced as reported, next to the legitimate case.
//!
//! - A planted root must not make `relocate` rewrite a program of another store.
//! - `gc` must stop, removing nothing, at a root or object it cannot read, and must not take
//!   a root it cannot look at for a stale one.
//! - `verify` must name the files of `objects/` the table does not list (what a writer that
//!   hit a full disk leaves) and objects reached outside the store through links.
//! - Converting again writes nothing, not even a temporary file.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use elf_tests::attacker::{give_to_attacker, setpriv_args};
use elf_tests::conversion::{convert, init_store, object_files};
use elf_tests::{run, run_ok};

mod convert_common;
use convert_common::{fixtures_and_store, Fixtures};

/// `elfpatch ARGS...` under `timeout`: a hang is a failure too.
fn elfpatch_timed() -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"])
        .arg(elf_tests::built_binary("elfpatch"));
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `elfpatch ARGS` run as the attacker, under `timeout`.
fn elfpatch_as_attacker(args: &[&str], store: &Path) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"]);
    setpriv_args(&mut cmd)
        .arg(elf_tests::built_binary("elfpatch"))
        .args(args)
        .arg("--store")
        .arg(store);
    run(&mut cmd)
}

#[test]
fn relocate_leaves_planted_and_foreign_roots_alone() {
    let (tmp, fx, mine) = fixtures_and_store("mine");
    // A program converted elsewhere for another store, which still exists.
    let theirs = tmp.path().join("theirs");
    init_store(&theirs);
    let out = tmp.path().join("out");
    convert(
        &theirs,
        &["--out", out.to_str().unwrap()],
        &[fx.path("prog-a")],
    );
    let program = out.join("prog-a");
    let before = fs::read(&program).unwrap();
    // Planted in this store's roots: relocate refuses it and fails, the program unchanged.
    fs::create_dir_all(mine.join("roots")).unwrap();
    std::os::unix::fs::symlink(&program, mine.join("roots/0000000000000000-prog-a")).unwrap();
    let res = run(elfpatch_timed().args(["relocate", "--store"]).arg(&mine));
    assert_eq!(res.status.code(), Some(1), "{res:?}");
    assert!(
        stderr(&res).contains("belongs to the store at"),
        "{}",
        stderr(&res)
    );
    assert_eq!(fs::read(&program).unwrap(), before);
    fs::remove_file(mine.join("roots/0000000000000000-prog-a")).unwrap();

    // Its own store relocates it after a move (the legitimate case)...
    let moved = tmp.path().join("theirs-moved");
    fs::rename(&theirs, &moved).unwrap();
    run_ok(elfpatch_timed().args(["relocate", "--store"]).arg(&moved));
    assert_eq!(
        run_ok(&mut Command::new(&program)),
        "greet: alpha\nmain: done\n"
    );
    // ...but not through a root link someone else made, or a roots/ anyone may write.
    let link = fs::read_dir(moved.join("roots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    run_ok(Command::new("chown").args(["-h", "65534"]).arg(&link));
    let res = run(elfpatch_timed().args(["relocate", "--store"]).arg(&moved));
    assert_eq!(res.status.code(), Some(1));
    assert!(
        stderr(&res).contains("owned by uid 65534"),
        "{}",
        stderr(&res)
    );
    run_ok(Command::new("chown").args(["-h", "0"]).arg(&link));
    run_ok(Command::new("chmod").arg("777").arg(moved.join("roots")));
    let res = run(elfpatch_timed().args(["relocate", "--store"]).arg(&moved));
    assert_eq!(res.status.code(), Some(1));
    assert!(
        stderr(&res).contains("writable by others"),
        "{}",
        stderr(&res)
    );
}

#[test]
fn gc_stops_at_what_it_cannot_read_and_removes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fixtures::build(&tmp.path().join("fx"));
    let store = tmp.path().join("store");
    init_store(&store);
    // A tree converted outside the store, registered as a root.
    let tree = tmp.path().join("pkg");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::copy(fx.path("prog-a"), tree.join("bin/prog-a")).unwrap();
    let out = tmp.path().join("out");
    convert(&store, &["--out", out.to_str().unwrap()], &[tree]);
    give_to_attacker(&store);
    give_to_attacker(&out);
    let objects = object_files(&store);
    // The legitimate case: the attacker's own gc keeps everything.
    let res = elfpatch_as_attacker(&["store", "gc", "--json"], &store);
    assert!(res.status.success(), "{}", stderr(&res));
    assert_eq!(object_files(&store), objects);

    // A directory of the root the collector cannot read: it stops, removing nothing
    // (before: the root counted as referencing nothing, and its libraries went).
    let bin = out.join("pkg/bin");
    run_ok(Command::new("chown").arg("0:0").arg(&bin));
    run_ok(Command::new("chmod").arg("700").arg(&bin));
    let res = elfpatch_as_attacker(&["store", "gc"], &store);
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    assert!(stderr(&res).contains("cannot"), "{}", stderr(&res));
    assert_eq!(object_files(&store), objects);

    // The root's target itself cannot be looked at: not stale, an error.
    run_ok(Command::new("chmod").arg("755").arg(&bin));
    run_ok(Command::new("chown").arg("0:0").arg(&out));
    run_ok(Command::new("chmod").arg("700").arg(&out));
    let res = elfpatch_as_attacker(&["store", "gc"], &store);
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    assert!(
        stderr(&res).contains("cannot check the registered root"),
        "{}",
        stderr(&res)
    );
    assert_eq!(object_files(&store), objects);
    assert_eq!(fs::read_dir(store.join("roots")).unwrap().count(), 1);
}

#[test]
fn verify_names_unlisted_and_escaping_objects() {
    let (tmp, fx, store) = fixtures_and_store("store");
    convert(&store, &[], &[fx.path("prog-a")]);
    run_ok(
        elfpatch_timed()
            .args(["store", "verify", "--store"])
            .arg(&store),
    );
    // What a writer killed by a full disk leaves: an object that no table lists.
    let stray = store.join("objects/0123/libstray.so");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"half an object").unwrap();
    let res = run(elfpatch_timed()
        .args(["store", "verify", "--store"])
        .arg(&store));
    assert_eq!(res.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&res.stdout), stderr(&res));
    assert!(
        text.contains("libstray.so") && text.contains("does not list"),
        "{text}"
    );
    run_ok(
        elfpatch_timed()
            .args(["store", "gc", "--store"])
            .arg(&store),
    );
    assert!(!stray.exists());
    run_ok(
        elfpatch_timed()
            .args(["store", "verify", "--store"])
            .arg(&store),
    );

    // An object's directory replaced by a link to a correct copy outside the store.
    let greet = object_files(&store)
        .into_iter()
        .find(|p| p.ends_with("libgreet.so.1"))
        .unwrap();
    let dir = greet.parent().unwrap().to_path_buf();
    let outside = tmp.path().join("outside");
    run_ok(Command::new("cp").arg("-a").arg(&dir).arg(&outside));
    fs::remove_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&outside, &dir).unwrap();
    let res = run(elfpatch_timed()
        .args(["store", "verify", "--store"])
        .arg(&store));
    assert_eq!(res.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&res.stdout), stderr(&res));
    assert!(text.contains("leads outside the store"), "{text}");
}

#[test]
fn converting_again_writes_not_even_a_temporary_file() {
    let (_tmp, fx, store) = fixtures_and_store("store");
    convert(&store, &[], &[fx.path("prog-a")]);
    let stamp = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    let objects = stamp(&store.join("objects"));
    let report = convert(&store, &[], &[fx.path("prog-a")]);
    assert_eq!(report["bytes_written"], 0, "{report}");
    assert_eq!(stamp(&store.join("objects")), objects);
}

#[test]
fn table_paths_that_leave_the_store_are_refused_by_every_command() {
    let (tmp, fx, store) = fixtures_and_store("store");
    convert(&store, &[], &[fx.path("prog-a")]);
    let outside = tmp.path().join("victim.so");
    fs::write(&outside, b"someone else's file").unwrap();
    let mut entries = resolver::store::Store::open(&store)
        .unwrap()
        .entries()
        .unwrap();
    let escaping = [
        b"../victim.so".to_vec(),
        outside.as_os_str().as_encoded_bytes().to_vec(),
    ];
    for (i, path) in escaping.iter().enumerate() {
        let evil = resolver::uri::Hash([0xe0 + i as u8; 32]);
        entries.push(resolver::table::write::NewEntry {
            hash: evil,
            path: path.clone(),
            soname: b"libevil.so".to_vec(),
            size: 19,
            kind: resolver::table::Kind::Library,
        });
        let table = resolver::table::write::build(entries.clone(), 99).unwrap();
        let table_path = store.join("table");
        fs::set_permissions(
            &table_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        fs::write(&table_path, table).unwrap();
        let uri = evil.to_string();
        for args in [
            vec!["store", "gc"],
            vec!["store", "verify"],
            vec!["store", "list"],
            vec!["store", "resolve", uri.as_str()],
        ] {
            let out = run(elfpatch_timed()
                .args(&args[..2])
                .arg("--store")
                .arg(&store)
                .args(&args[2..]));
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
            assert_eq!(out.status.code(), Some(1), "{args:?} {path:?}: {text}");
            assert!(text.contains("path field"), "{args:?} {path:?}: {text}");
        }
        let out = run(elfpatch_timed()
            .args(["convert", "--store"])
            .arg(&store)
            .arg(fx.path("prog-b")));
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("path field"), "{}", stderr(&out));
        assert_eq!(fs::read(&outside).unwrap(), b"someone else's file");
        entries.pop();
    }
}
