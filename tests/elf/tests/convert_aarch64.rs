//! A foreign-architecture closure: an aarch64 C program and its libraries, found under
//! `--sysroot /usr/aarch64-linux-gnu` exactly as the aarch64 ld.so would find them, convert
//! into a store and run under `qemu-aarch64` through the aarch64 ld-cas (built with Debian's
//! rustc 1.63 by `ld-cas/scripts/build-rustc-1.63.sh`, `elf_tests::arch`), before and after
//! the store moves. No `-L` is given to qemu: the loader and every library come from the
//! store.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::needed as needed_names;
use elf_tests::{built_binary, compile, fixture_dir, require_tool, run_ok};

const SYSROOT: &str = "/usr/aarch64-linux-gnu";

fn machine(file: &Path) -> String {
    let out = run_ok(Command::new("readelf").arg("-hW").arg(file));
    out.lines()
        .find(|l| l.trim_start().starts_with("Machine:"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn aarch64_closure_converts_with_sysroot() {
    require_tool("aarch64-linux-gnu-gcc");
    require_tool("qemu-aarch64");
    let tmp = tempfile::tempdir().unwrap();
    let lib_dir = tmp.path().join("lib");
    fs::create_dir_all(&lib_dir).unwrap();
    let src = fixture_dir().join("convert");
    compile(
        "aarch64-linux-gnu-gcc",
        &[&src.join("greet.c")],
        &lib_dir.join("libgreet.so.1"),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libgreet.so.1",
            "-DWORD=\"aarch64\"",
        ],
    );
    let program = tmp.path().join("prog");
    compile(
        "aarch64-linux-gnu-gcc",
        &[&src.join("greet_main.c")],
        &program,
        &[
            &format!("-L{}", lib_dir.display()),
            "-l:libgreet.so.1",
            "-Wl,-rpath,$ORIGIN/lib",
            "-lm",
        ],
    );
    let original = run_ok(
        Command::new("qemu-aarch64")
            .args(["-L", SYSROOT])
            .arg(&program),
    );
    assert_eq!(original, "greet: aarch64\nmain: done\n");

    let store = tmp.path().join("store");
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["store", "init", "--store"])
            .arg(&store),
    );
    let out = run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["convert", "--json", "--sysroot", SYSROOT, "--store"])
            .arg(&store)
            .arg(&program),
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let converted = store.join("bin/prog");
    let needed = needed_names(&converted);
    assert!(
        needed.iter().all(|n| n.starts_with("uri:blake3:")),
        "{needed:?}"
    );
    // libgreet (through $ORIGIN) and libc (from the sysroot), all aarch64.
    let sonames: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["soname"].as_str().unwrap())
        .collect();
    for expected in ["libgreet.so.1", "libc.so.6"] {
        assert!(
            sonames.contains(&expected),
            "{expected} missing from {sonames:?}"
        );
    }
    for o in report["objects"].as_array().unwrap() {
        let source = o["source"].as_str().unwrap();
        assert!(
            source.starts_with(SYSROOT) || source.starts_with(tmp.path().to_str().unwrap()),
            "{source} is not from the sysroot or the program's $ORIGIN"
        );
        let path = run_ok(
            Command::new(built_binary("elfpatch"))
                .args(["store", "resolve", "--store"])
                .arg(&store)
                .arg(o["uri"].as_str().unwrap()),
        );
        assert_eq!(machine(Path::new(path.trim())), "AArch64");
    }
    // The aarch64 ld.so is stored as the program's loader, and the default interpreter is
    // the aarch64 ld-cas of the store.
    let list = run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["store", "list", "--json", "--store"])
            .arg(&store),
    );
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["kind"] == "interpreter" && o["soname"] == "ld-linux-aarch64.so.1"));
    let interp = run_ok(
        Command::new(built_binary("elfpatch"))
            .arg("--print-interpreter")
            .arg(&converted),
    );
    assert_eq!(
        interp.trim(),
        store
            .canonicalize()
            .unwrap()
            .join("ld-cas-aarch64")
            .to_str()
            .unwrap()
    );
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["store", "verify", "--store"])
            .arg(&store),
    );

    // Until an aarch64 ld-cas is installed, the conversion warns that the programs cannot
    // start; `store init --ld-cas` installs one under the aarch64 name.
    assert_eq!(
        report["missing_interpreters"][0].as_str(),
        store
            .canonicalize()
            .unwrap()
            .join("ld-cas-aarch64")
            .to_str()
    );
    let built = elf_tests::arch::Arch::Aarch64.ld_cas();
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["store", "init", "--store"])
            .arg(&store)
            .arg("--ld-cas")
            .arg(&built),
    );
    assert_eq!(
        fs::read(store.join("ld-cas-aarch64")).unwrap(),
        fs::read(&built).unwrap()
    );
    // What a start writes of the aarch64 ld-cas (GNU ld's layout: `.dynamic`, `.got`, then
    // `.ldcas.data`, link/layout.ld) lies in two 4 KiB pages, the cold buffers after it.
    let hot = elf_tests::section_of(&built, ".dynamic").addr;
    let data = elf_tests::section_of(&built, ".ldcas.data");
    let hot_end = data.addr + data.size;
    assert!(
        hot_end.div_ceil(4096) - hot / 4096 <= 2,
        "{hot:#x}..{hot_end:#x}"
    );
    assert!(elf_tests::section_of(&built, ".ldcas.cold").addr >= hot_end);

    // The aarch64 ld-cas runs it: the same output, from the store, then from a moved store.
    let qemu = |program: &Path| run_ok(Command::new("qemu-aarch64").arg(program));
    assert_eq!(qemu(&converted), original);
    let traced = Command::new("qemu-aarch64")
        .arg(&converted)
        .env("LD_CAS_DEBUG", "1")
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&traced.stderr);
    assert!(
        trace.contains("(libgreet.so.1) =>") && trace.contains("(libc.so.6) =>"),
        "{trace}"
    );
    let listed = run_ok(
        Command::new("qemu-aarch64")
            .arg(store.join("ld-cas-aarch64"))
            .arg("--list")
            .arg(&converted),
    );
    assert!(listed.contains("libgreet.so.1"), "{listed}");
    run_ok(
        Command::new("qemu-aarch64")
            .arg(store.join("ld-cas-aarch64"))
            .arg("--verify")
            .arg(&converted),
    );
    // The interpreter path is absolute (in the store by default): after the move,
    // `elfpatch relocate` points it at the new place; everything else follows by itself.
    let moved = tmp.path().join("moved");
    fs::rename(&store, &moved).unwrap();
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["relocate", "--store"])
            .arg(&moved),
    );
    assert_eq!(qemu(&moved.join("bin/prog")), original);

    // Converted once the store has its aarch64 ld-cas, the program's interpreter is that
    // ld-cas merged into the store's aarch64 ld.so, and it runs under qemu too.
    let program2 = tmp.path().join("prog2");
    fs::copy(&program, &program2).unwrap();
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["convert", "--sysroot", SYSROOT, "--store"])
            .arg(&moved)
            .arg(&program2),
    );
    let merged = run_ok(
        Command::new(built_binary("elfpatch"))
            .arg("--print-interpreter")
            .arg(moved.join("bin/prog2")),
    );
    let merged = PathBuf::from(merged.trim());
    assert!(
        merged.starts_with(moved.canonicalize().unwrap().join("interp")),
        "{}",
        merged.display()
    );
    assert_eq!(merged.file_name().unwrap(), "ld-linux-aarch64.so.1");
    assert_eq!(qemu(&moved.join("bin/prog2")), original);

    // A copy that lost the index's hard links is refused: the aarch64 ld-cas reads the
    // objects' link counts (`st_nlink` of the generic `struct stat`) as the x86_64 one does.
    let copied = tmp.path().join("copied");
    run_ok(Command::new("cp").arg("-r").arg(&moved).arg(&copied));
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["relocate", "--store"])
            .arg(&copied),
    );
    let out = Command::new("qemu-aarch64")
        .arg(copied.join("bin/prog2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(err.contains("the store's index holds a copy of"), "{err}");
}
