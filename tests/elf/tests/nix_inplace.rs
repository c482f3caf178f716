//! Real Nix builds (Debian's nix-bin, offline, no sandbox, a private store) of a
//! nixpkgs-shaped closure (`fixtures/nix/chain.nix`: glibc, a chain of three library
//! packages, a program with `out` and `lib` outputs), converted in their own fixup phases
//! by `nix/setup-hook.sh`, against the same closure built without it. The converted program
//! prints what the original prints; Nix sees the same references; the store verifies,
//! `nix-build --check` reproduces the outputs, garbage collection keeps what the program
//! needs; the closure copied to another directory runs there, where the original fails;
//! every library has the same URI in its own build, in a later build that converts it for
//! itself, and in `elfpatch convert` of the finished closure.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, elfpatch, init_store, stable_ld_cas};
use elf_tests::{built_binary, fixture_dir, require_tool, run, run_ok, workspace_root};

/// A private Nix store under a temporary directory (`NIX_STORE_DIR` and friends): the tests
/// never touch `/nix`, and each has its own.
struct Nix {
    root: PathBuf,
    interp: PathBuf,
}

impl Nix {
    fn new(dir: &Path) -> Nix {
        for tool in ["nix-build", "nix-store", "nix-collect-garbage"] {
            require_tool(tool);
        }
        let root = dir.join("nix");
        fs::create_dir_all(root.join("etc")).unwrap();
        Nix {
            root,
            interp: stable_ld_cas(dir),
        }
    }

    fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("NIX_STORE_DIR", self.store_dir())
            .env("NIX_STATE_DIR", self.root.join("var"))
            .env("NIX_LOG_DIR", self.root.join("log"))
            .env("NIX_CONF_DIR", self.root.join("etc"));
        c
    }

    /// `nix-build` of `chain.nix` (attribute `attr`, "" for the program) with the hook
    /// switches for the program (`hook`) and the libraries (`libs_hook`): files whose
    /// existence turns the hook on ("" never); extra args appended.
    fn build(&self, attr: &str, hook: &str, libs_hook: &str, extra: &[&str]) -> Command {
        let mut c = self.cmd("nix-build");
        c.arg(fixture_dir().join("nix/chain.nix"))
            .args(["--option", "sandbox", "false"])
            .args(["--option", "substituters", ""])
            .args(["--option", "build-users-group", ""])
            .arg("--argstr")
            .arg("elfpatch")
            .arg(built_binary("elfpatch"))
            .arg("--argstr")
            .arg("ldcas")
            .arg(&self.interp)
            .arg("--argstr")
            .arg("setupHook")
            .arg(workspace_root().join("nix/setup-hook.sh"))
            .arg("--argstr")
            .arg("src")
            .arg(fixture_dir().join("nix"))
            .args(["--argstr", "hook", hook])
            .args(["--argstr", "libsHook", libs_hook])
            .args(extra);
        if !attr.is_empty() {
            c.args(["-A", attr]);
        }
        c
    }

    /// Builds and returns the output path (the first line nix-build prints).
    fn path(&self, attr: &str, hook: &str, libs_hook: &str, extra: &[&str]) -> PathBuf {
        let out = run_ok(&mut self.build(attr, hook, libs_hook, extra));
        PathBuf::from(
            out.lines()
                .next()
                .expect("nix-build prints the output path"),
        )
    }

    /// `nix-store -q FLAG PATH`, one path a line.
    fn query(&self, flag: &str, path: &Path) -> Vec<PathBuf> {
        run_ok(self.cmd("nix-store").args(["-q", flag]).arg(path))
            .lines()
            .map(PathBuf::from)
            .collect()
    }
}

/// A store path's name without its hash.
fn name(path: &Path) -> String {
    let n = path.file_name().unwrap().to_string_lossy();
    n[33..].to_owned()
}

/// `nix-store -q --references` as names without hashes, sorted.
fn reference_names(nix: &Nix, path: &Path) -> Vec<String> {
    let mut names: Vec<String> = nix
        .query("--references", path)
        .iter()
        .map(|p| name(p))
        .collect();
    names.sort();
    names
}

/// The URI of every library an output's index lists, by file name (`libb.so` → URI).
fn index_uris(output: &Path) -> BTreeMap<String, String> {
    let index = output.join("nix-support/ld-cas/index");
    let mut out = BTreeMap::new();
    for e in fs::read_dir(&index).unwrap() {
        let e = e.unwrap();
        let uri = e.file_name().to_string_lossy().into_owned();
        if !uri.starts_with("uri:") {
            continue;
        }
        let target = fs::read_link(e.path()).unwrap();
        let file = target.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(file, uri);
    }
    out
}

fn chain(program: &Path) -> std::process::Output {
    run(Command::new(program.join("bin/chain")).env_clear())
}

#[test]
fn nix_outputs_converted_in_place_keep_references_and_move() {
    let tmp = tempfile::tempdir().unwrap();
    let nix = Nix::new(tmp.path());
    let on = tmp.path().join("hook-on");
    fs::write(&on, "").unwrap();
    let on = on.to_str().unwrap();

    // The original closure, and the same built with the hook in every fixup phase.
    let plain = nix.path("", "", "", &["--no-out-link"]);
    let expected = chain(&plain);
    assert!(expected.status.success(), "{expected:?}");
    assert_eq!(
        String::from_utf8_lossy(&expected.stdout),
        "chain: a=123 tool=1123\n"
    );
    let root = tmp.path().join("result");
    let converted = nix.path("", on, on, &["-o", root.to_str().unwrap()]);
    let got = chain(&converted);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, expected.stdout);

    // ld-cas is the interpreter; the program names its libraries by URI.
    let needed = elf_tests::conversion::needed(&converted.join("bin/chain"));
    assert!(
        needed.iter().all(|n| n.starts_with("uri:blake3:")),
        "{needed:?}"
    );

    // Nix sees the same runtime references, for the program and for every library output.
    for attr in ["", "lib", "liba", "libb", "libc3"] {
        let p = nix.path(attr, "", "", &["--no-out-link"]);
        let c = nix.path(attr, on, on, &["--no-out-link"]);
        assert_eq!(
            reference_names(&nix, &c),
            reference_names(&nix, &p),
            "references of {attr:?}"
        );
    }
    // Two outputs, no cycle: `lib` does not refer to `out`.
    let lib = nix.path("lib", on, on, &["--no-out-link"]);
    assert!(!nix.query("--references", &lib).contains(&converted));

    // The store verifies, and the converted builds are reproducible bit for bit.
    let verify = run(nix.cmd("nix-store").args(["--verify", "--check-contents"]));
    let verify_err = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success()
            && !verify_err.contains("modified")
            && !verify_err.contains("error"),
        "{verify_err}"
    );
    run_ok(&mut nix.build("", on, on, &["--check", "--no-out-link"]));
    run_ok(&mut nix.build("liba", on, on, &["--check", "--no-out-link"]));

    // Garbage collection: the original builds go, the converted closure stays and runs.
    let gc = run_ok(&mut nix.cmd("nix-collect-garbage"));
    assert!(!plain.exists(), "the original was collected: {gc}");
    let got = chain(&converted);
    assert_eq!(
        got.stdout,
        expected.stdout,
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );

    // Copied with its closure to another directory, the store made unreachable: the
    // converted program runs there, the original (built again and copied too) does not.
    let plain = nix.path("", "", "", &["--no-out-link"]);
    let elsewhere = tmp.path().join("elsewhere/store");
    fs::create_dir_all(&elsewhere).unwrap();
    let mut paths = nix.query("-R", &converted);
    paths.extend(nix.query("-R", &plain));
    paths.sort();
    paths.dedup();
    run_ok(Command::new("cp").arg("-a").args(&paths).arg(&elsewhere));
    let gone = nix.root.join("store.gone");
    fs::rename(nix.store_dir(), &gone).unwrap();
    let moved = chain(&elsewhere.join(converted.file_name().unwrap()));
    // Its interpreter (the old store's ld.so) is gone: the kernel cannot even start it.
    let moved_plain = Command::new(elsewhere.join(plain.file_name().unwrap()).join("bin/chain"))
        .env_clear()
        .output();
    fs::rename(&gone, nix.store_dir()).unwrap();
    assert_eq!(
        moved.stdout,
        expected.stdout,
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(
        moved_plain.as_ref().map_or(true, |o| !o.status.success()),
        "{moved_plain:?}"
    );

    // Same URIs for the same library (one derivation, one store path): converted for
    // itself by a later build that needs it (a copy in that build's output), by
    // `elfpatch convert` of the finished closure, and in its own build.
    let switch = tmp.path().join("libs-hook");
    let switch = switch.to_str().unwrap();
    let later = nix.path("", on, switch, &["--no-out-link"]);
    assert_eq!(chain(&later).stdout, expected.stdout);
    assert!(
        later.join("nix-support/ld-cas/objects").is_dir(),
        "the later build holds converted copies"
    );
    let later_uris = index_uris(&later);
    let finished = nix.path("", switch, switch, &["--no-out-link"]);
    let store = tmp.path().join("cas");
    init_store(&store);
    let report = convert(
        &store,
        &["--interp", nix.interp.to_str().unwrap()],
        std::slice::from_ref(&finished),
    );
    let objects: BTreeMap<String, String> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let source = PathBuf::from(o["source"].as_str().unwrap());
            (
                source.file_name().unwrap().to_string_lossy().into_owned(),
                o["uri"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for lib in ["liba.so", "libb.so", "libc3.so", "libc.so.6"] {
        assert!(objects.contains_key(lib), "{lib} missing: {objects:?}");
        assert_eq!(later_uris.get(lib), objects.get(lib), "{lib}");
    }
    // The program converted from the finished closure runs from its tree in the store.
    let tree = store.join("bin").join(finished.file_name().unwrap());
    let from_tree = chain(&tree);
    assert_eq!(
        from_tree.stdout,
        expected.stdout,
        "{}",
        String::from_utf8_lossy(&from_tree.stderr)
    );
    // Every store path of the closure landed as a package tree.
    for sp in nix.query("-R", &finished) {
        let tree = store.join("bin").join(sp.file_name().unwrap());
        assert!(
            tree.is_dir(),
            "{} is not a tree of the store",
            tree.display()
        );
    }
    // The same derivations built again with the hook on: the same store paths, now
    // converted in their own builds, with the same URIs.
    let libs_before = nix.query("-R", &nix.path("liba", "", switch, &["--no-out-link"]));
    run_ok(&mut nix.cmd("nix-collect-garbage"));
    fs::write(switch, "").unwrap();
    let own = nix.path("", switch, switch, &["--no-out-link"]);
    assert_eq!(own, finished);
    let libs_after = nix.query("-R", &nix.path("liba", "", switch, &["--no-out-link"]));
    assert_eq!(libs_after, libs_before, "the same store paths");
    assert_eq!(chain(&own).stdout, expected.stdout);
    let own_uris = index_uris(&own);
    for lib in ["liba.so", "libb.so", "libc3.so", "libc.so.6"] {
        assert_eq!(own_uris.get(lib), objects.get(lib), "{lib}: {own_uris:?}");
    }

    // The hook's conversion is idempotent: converting a copy again changes nothing.
    let again = run_ok(
        elfpatch()
            .args(["convert", "--in-place", "--json", "--interp"])
            .arg(&nix.interp)
            .arg(elsewhere.join(converted.file_name().unwrap()))
            .arg(elsewhere.join(lib.file_name().unwrap())),
    );
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["rewritten"].as_array().unwrap().len(), 0, "{again}");
}

#[test]
fn in_place_refuses_an_output_outside_a_store_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(elfpatch()
        .args([
            "convert",
            "--in-place",
            "--interp",
            "/usr/local/libexec/ld-cas",
        ])
        .arg(tmp.path().join("missing")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the output"), "{err}");
    let out = run(elfpatch().args(["convert", "--in-place"]).arg(tmp.path()));
    assert!(!out.status.success());
}
