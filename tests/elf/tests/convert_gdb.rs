//! gdb on a converted threaded program: libc is a loose library, stored under its own file
//! name (`objects/<hex>/libc.so.6`), so gdb recognises it, enables libthread_db, lists the
//! threads and reads a `__thread` variable.

use std::process::Command;

use elf_tests::conversion::{convert, init_store, needed};
use elf_tests::{compile, require_tool, run, run_ok};

mod convert_common;
use convert_common::src;

#[test]
fn gdb_enables_libthread_db_on_a_converted_threaded_program() {
    require_tool("gdb");
    let tmp = tempfile::tempdir().unwrap();
    let prog = tmp.path().join("threads");
    compile(
        "gcc",
        &[&src("threads_tls.c")],
        &prog,
        &["-g", "-O0", "-pthread"],
    );
    let expected = run_ok(&mut Command::new(&prog));
    assert_eq!(expected, "work 42 tlsv 7\n");
    let store = tmp.path().join("store");
    init_store(&store);
    convert(&store, &[], std::slice::from_ref(&prog));
    let converted = store.join("bin/threads");
    assert!(needed(&converted)
        .iter()
        .all(|n| n.starts_with("uri:blake3:")));
    assert_eq!(run_ok(Command::new(&converted).env_clear()), expected);

    let out = run(Command::new("gdb")
        .args(["-nx", "-batch", "-ex", "break work", "-ex", "run"])
        .args(["-ex", "info threads", "-ex", "print tlsv", "-ex", "kill"])
        .arg(&converted));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Thread debugging using libthread_db enabled"),
        "{text}"
    );
    assert!(text.contains("Breakpoint 1, work (v=41)"), "{text}");
    let threads = text
        .lines()
        .filter(|l| l.contains("Thread 0x") && l.contains("(LWP "))
        .count();
    assert!(threads >= 2, "{text}");
    assert!(text.contains("$1 = 7"), "{text}");
}
