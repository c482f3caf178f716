//! `elfpatch store ...` end to end: the commands as a user runs them, moving a store,
//! writers killed at random moments, and concurrent writers.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use elf_tests::{built_binary, run, run_ok};

fn elfpatch() -> Command {
    Command::new(built_binary("elfpatch"))
}

/// `n` distinct small ELF files (copies of `/bin/true` with a distinct tail) in `dir`.
fn distinct_elf_files(dir: &Path, prefix: &str, n: usize) -> Vec<PathBuf> {
    let base = fs::read("/bin/true").expect("/bin/true is readable");
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{prefix}{i}.so"));
            let mut bytes = base.clone();
            bytes.extend_from_slice(format!("{prefix}-{i}").as_bytes());
            fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn init(store: &Path) {
    run_ok(elfpatch().args(["store", "init", "--store"]).arg(store));
}

/// The URIs listed by `store list --json`, which also checks the table fully.
fn listed_uris(store: &Path) -> BTreeSet<String> {
    let json = run_ok(
        elfpatch()
            .args(["store", "list", "--json", "--store"])
            .arg(store),
    );
    let items: serde_json::Value = serde_json::from_str(&json).expect("list --json prints JSON");
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|o| o["uri"].as_str().expect("uri is a string").to_owned())
        .collect()
}

/// `URI<TAB>FILE` lines to URIs.
fn printed_uris(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| l.split('\t').next())
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn commands_work_and_survive_a_move() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    init(&store);
    let libz = Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1");
    let ld = Path::new("/lib64/ld-linux-x86-64.so.2");
    let out = run_ok(
        elfpatch()
            .args(["store", "add", "--store"])
            .arg(&store)
            .arg(libz)
            .arg(ld),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let (libz_uri, file) = lines[0].split_once('\t').unwrap();
    assert_eq!(file, libz.to_str().unwrap());
    // The URI is the b3sum of the file.
    elf_tests::require_tool("b3sum");
    let b3 = run_ok(Command::new("b3sum").arg("--no-names").arg(libz));
    assert_eq!(libz_uri, format!("uri:blake3:{}", b3.trim()));

    // Adding again changes nothing and prints the same URI.
    let again = run_ok(
        elfpatch()
            .args(["store", "add", "--store"])
            .arg(&store)
            .arg(libz),
    );
    assert_eq!(printed_uris(&again), vec![libz_uri.to_owned()]);

    let json = run_ok(
        elfpatch()
            .args(["store", "list", "--json", "--store"])
            .arg(&store),
    );
    let items: serde_json::Value = serde_json::from_str(&json).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 2);
    let z = items.iter().find(|o| o["uri"] == libz_uri).unwrap();
    assert_eq!(z["soname"], "libz.so.1");
    assert_eq!(z["kind"], "library");
    assert_eq!(z["size"], fs::metadata(libz).unwrap().len());
    assert_eq!(
        fs::read(z["path"].as_str().unwrap()).unwrap(),
        fs::read(libz).unwrap()
    );
    let ld_item = items.iter().find(|o| o["uri"] != libz_uri).unwrap();
    assert_eq!(ld_item["kind"], "interpreter");

    // Move the store: resolve and verify work with no other step.
    let moved = tmp.path().join("elsewhere").join("store2");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    fs::rename(&store, &moved).unwrap();
    let resolved = run_ok(
        elfpatch()
            .args(["store", "resolve", "--store"])
            .arg(&moved)
            .arg(libz_uri),
    );
    let resolved = PathBuf::from(resolved.trim());
    assert!(
        resolved.starts_with(moved.canonicalize().unwrap()),
        "{resolved:?}"
    );
    assert_eq!(fs::read(&resolved).unwrap(), fs::read(libz).unwrap());
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&moved));

    // An unknown URI: named, exit 1.
    let unknown = format!("uri:blake3:{}", "0".repeat(64));
    let out = run(elfpatch()
        .args(["store", "resolve", "--store"])
        .arg(&moved)
        .arg(&unknown));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&unknown));

    // A malformed URI: the byte and what was expected.
    let out = run(elfpatch()
        .args(["store", "resolve", "--store"])
        .arg(&moved)
        .arg("uri:blake3:XYZ"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'X' at byte 11"));

    // A damaged object is reported by URI and path.
    let path = resolved;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&path, perms).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let out = run(elfpatch().args(["store", "verify", "--store"]).arg(&moved));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(libz_uri) && err.contains("has changed"),
        "{err}"
    );
    fs::remove_file(&path).unwrap();
    let out = run(elfpatch().args(["store", "verify", "--store"]).arg(&moved));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn bad_input_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let not_store = tmp.path().join("nothing");
    let out = run(elfpatch()
        .args(["store", "list", "--store"])
        .arg(&not_store));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing"));

    let store = tmp.path().join("store");
    init(&store);
    let text = tmp.path().join("notes.txt");
    fs::write(&text, "hello").unwrap();
    let out = run(elfpatch()
        .args(["store", "add", "--store"])
        .arg(&store)
        .arg(&text));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt is not an ELF file"));
    assert!(listed_uris(&store).is_empty());

    // A damaged table: named, and add refuses to build on it.
    let table = store.join("table");
    let mut bytes = fs::read(&table).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::remove_file(&table).unwrap();
    fs::write(&table, &bytes).unwrap();
    let out = run(elfpatch()
        .args(["store", "add", "--store"])
        .arg(&store)
        .arg("/bin/true"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("table") && err.contains("damaged"), "{err}");
}

#[test]
fn killed_writers_never_lose_reported_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    init(&store);
    let files = distinct_elf_files(tmp.path(), "k", 120);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let rounds = 60;
    let mut killed = 0;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Each writer adds files one at a time in a shell loop, so some are reported
        // before the kill and the kill lands at a random point of some later add.
        let batch: Vec<&PathBuf> = files.iter().skip((round * 2) % 100).take(6).collect();
        let script = batch
            .iter()
            .map(|f| format!("\"$E\" store add --store \"$S\" {}", f.display()))
            .collect::<Vec<_>>()
            .join(" && ");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec 2>/dev/null; {script}"))
            .env("E", built_binary("elfpatch"))
            .env("S", &store)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(seed % 12_000));
        // Kill the whole process group member that is running: the shell and its child.
        let _ = Command::new("pkill")
            .args(["-9", "-P", &child.id().to_string()])
            .status();
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            killed += 1;
        }
        reported.extend(printed_uris(&String::from_utf8_lossy(&out.stdout)));

        let listed = listed_uris(&store);
        let lost: Vec<_> = reported.difference(&listed).collect();
        assert!(
            lost.is_empty(),
            "round {round}: reported entries lost: {lost:?}"
        );
    }
    assert!(
        !reported.is_empty(),
        "no writer ever finished: the kill timing is off"
    );
    assert!(
        killed >= rounds / 4,
        "only {killed} of {rounds} writers were killed: the kill timing is off"
    );
    // What killed writers leave is at most objects no table lists (which gc removes):
    // verify names them, and nothing else is wrong with the store.
    let out = run(elfpatch().args(["store", "verify", "--store"]).arg(&store));
    let err = String::from_utf8_lossy(&out.stderr);
    for line in err.lines().filter(|l| !l.contains(" problem(s) among ")) {
        assert!(line.contains("the table does not list it"), "{err}");
    }
}

#[test]
fn concurrent_writers_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    init(&store);
    let a = distinct_elf_files(tmp.path(), "a", 25);
    let b = distinct_elf_files(tmp.path(), "b", 25);
    for _ in 0..3 {
        let spawn = |files: &[PathBuf]| {
            files
                .iter()
                .map(|f| {
                    elfpatch()
                        .args(["store", "add", "--store"])
                        .arg(&store)
                        .arg(f)
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        // Interleave many single-file writers from two groups at once.
        let mut children = spawn(&a);
        children.extend(spawn(&b));
        let mut printed = BTreeSet::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            printed.extend(printed_uris(&String::from_utf8_lossy(&out.stdout)));
        }
        assert_eq!(printed.len(), 50);
        let listed = listed_uris(&store);
        assert!(
            printed.is_subset(&listed),
            "missing: {:?}",
            printed.difference(&listed).collect::<Vec<_>>()
        );
    }
    run_ok(elfpatch().args(["store", "verify", "--store"]).arg(&store));
}

#[test]
fn init_finds_ld_cas_where_it_is_installed_and_fails_without_one() {
    let tmp = tempfile::tempdir().unwrap();
    let ld_cas = fs::read(built_binary("ld-cas")).unwrap();
    // Installed as a Nix package lays it out: $out/bin/elfpatch, $out/libexec/ld-cas.
    let prefix = tmp.path().join("pkg");
    fs::create_dir_all(prefix.join("bin")).unwrap();
    fs::create_dir_all(prefix.join("libexec")).unwrap();
    let elfpatch_copy = prefix.join("bin/elfpatch");
    fs::copy(built_binary("elfpatch"), &elfpatch_copy).unwrap();
    fs::copy(built_binary("ld-cas"), prefix.join("libexec/ld-cas")).unwrap();
    let store = tmp.path().join("store");
    run_ok(
        Command::new(&elfpatch_copy)
            .args(["store", "init", "--store"])
            .arg(&store),
    );
    assert_eq!(fs::read(store.join("ld-cas")).unwrap(), ld_cas);
    // Initialising that store again needs none: it has one.
    fs::remove_file(prefix.join("libexec/ld-cas")).unwrap();
    run_ok(
        Command::new(&elfpatch_copy)
            .args(["store", "init", "--store"])
            .arg(&store),
    );
    // A new store with no ld-cas to install is refused, and not made.
    let empty = tmp.path().join("empty-store");
    let out = run(Command::new(&elfpatch_copy)
        .args(["store", "init", "--store"])
        .arg(&empty));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ld-cas to install"),
        "{out:?}"
    );
    assert!(!empty.exists());
    // Relocating a store with no converted program says so and fails.
    let out = run(elfpatch().args(["relocate", "--store"]).arg(&store));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to relocate"),
        "{out:?}"
    );
}
