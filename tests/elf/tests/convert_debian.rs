//! `elfpatch convert` on real software: Debian's python3, perl, curl, bash, ls and git with
//! their closures. Each converted program must give the same output as the original; then
//! the store is moved (ld-cas lives at a stable path outside it) and the programs must still
//! work, with no file of the store rewritten.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, init_store, stable_ld_cas};
use elf_tests::{built_binary, run, run_ok};

/// A program run: the program's name and its arguments.
const RUNS: &[(&str, &[&str])] = &[
    (
        "python3",
        &[
            "-c",
            "import ssl, sqlite3, ctypes, json, decimal, zlib; \
             print(ssl.OPENSSL_VERSION, sqlite3.sqlite_version, json.dumps({'d': str(decimal.Decimal(1) / 7)}), \
             zlib.crc32(b'ld-cas'), ctypes.CDLL(None).getpid() > 0)",
        ],
    ),
    ("perl", &["-MPOSIX", "-e", "print POSIX::floor(7.5), ' ', POSIX::strftime('%Y', gmtime(0)), qq{\\n}"]),
    ("curl", &["--version"]),
    ("bash", &["-c", "ls / | sort | head -5; echo $((6 * 7))"]),
    ("ls", &["-1", "/usr/share/doc/bash"]),
    ("git", &["--version"]),
];

fn which(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// Every file of `dir`, relative path → (bytes, modification time).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, (fs::read(e.path()).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    out
}

fn run_all(bin: &Path, cwd: &Path) -> Vec<String> {
    RUNS.iter()
        .map(|(name, args)| {
            let out = run(Command::new(bin.join(name)).args(*args).current_dir(cwd));
            assert!(
                out.status.success(),
                "{name} {args:?} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

#[test]
fn debian_programs_convert_run_and_move() {
    let tmp = tempfile::tempdir().unwrap();
    let interp = stable_ld_cas(tmp.path());
    let store = tmp.path().join("store");
    init_store(&store);
    let programs: Vec<PathBuf> = RUNS.iter().map(|(name, _)| which(name)).collect();
    convert(&store, &["--interp", interp.to_str().unwrap()], &programs);

    let expected = run_all(Path::new("/usr/bin"), tmp.path());
    assert_eq!(run_all(&store.join("bin"), tmp.path()), expected);

    // git init works in a fresh directory.
    let repo = tmp.path().join("repo");
    fs::create_dir(&repo).unwrap();
    run_ok(
        Command::new(store.join("bin/git"))
            .args(["init", "-q"])
            .current_dir(&repo),
    );
    assert!(repo.join(".git/HEAD").is_file());

    // Every converted program names its libraries by URI only (but the interpreter).
    for (name, _) in RUNS {
        let dynamic = run_ok(
            Command::new("readelf")
                .arg("-dW")
                .arg(store.join("bin").join(name)),
        );
        for line in dynamic.lines().filter(|l| l.contains("(NEEDED)")) {
            assert!(
                line.contains("uri:blake3:") || line.contains("ld-linux"),
                "{name}: {line}"
            );
        }
    }

    let before = snapshot(&store);
    let moved = tmp.path().join("elsewhere/store2");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&store, &moved).unwrap();
    assert_eq!(run_all(&moved.join("bin"), tmp.path()), expected);
    let after = snapshot(&moved);
    assert!(before == after, "moving the store rewrote files");
    run_ok(
        Command::new(built_binary("elfpatch"))
            .args(["store", "verify", "--store"])
            .arg(&moved),
    );
}
