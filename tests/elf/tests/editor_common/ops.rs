//! Every patchelf option applied to a built fixture, each result run and compared with
//! the unpatched run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Applies each option to a fresh copy of the fixture's program (or library) and runs it.
pub fn exercise_all(fx: &Fixture) {
    let prog = fx.prog.clone();
    let dir = fx.dir.path().to_path_buf();
    let ld_path = dir.display().to_string();
    let env_ld: [(&str, &str); 1] = [("LD_LIBRARY_PATH", ld_path.as_str())];

    // --set-interpreter with a longer path.
    let p = fx.copy(&prog, "interp");
    let interp = fx.long_interp();
    patch(&p, &["--set-interpreter", &interp]);
    assert_eq!(print("interpreter", &p), interp);
    fx.assert_runs(&p, &[]);
    // ... and a shorter one, in place.
    let short = fx.path("ld");
    let _ = std::os::unix::fs::symlink(fx.flavour.ld_so, &short);
    let p = fx.copy(&prog, "interp-short");
    patch(&p, &["--interpreter", s(&short)]);
    assert_eq!(print("interpreter", &p), s(&short));
    fx.assert_runs(&p, &[]);

    // --replace-needed with a 75-byte name, for our library and for libc (whose
    // .gnu.version_r entry must follow, or ld.so aborts).
    let p = fx.copy(&prog, "replace");
    fx.alias(&uri(1), &fx.lib);
    fx.alias(&uri(2), Path::new(fx.flavour.libc));
    patch(
        &p,
        &[
            "--replace-needed",
            "libgreet.so.1",
            &uri(1),
            "--replace-needed",
            "libc.so.6",
            &uri(2),
        ],
    );
    let needed = print("needed", &p);
    assert!(
        needed.contains(&uri(1)) && needed.contains(&uri(2)) && !needed.contains("libc.so.6"),
        "{needed}"
    );
    let versions = readelf("-V", &p);
    assert!(
        versions.contains(&format!("File: {}", uri(2))),
        "vn_file not rewritten:\n{versions}"
    );
    let bytes = std::fs::read(&p).expect("read");
    assert!(
        !contains(&bytes, b"libgreet.so.1\0"),
        "old name not scrubbed"
    );
    fx.assert_runs(&p, &[]);

    // Without section headers (cut off, as sstrip does) the editor works from the
    // program headers and PT_DYNAMIC.
    let p = fx.copy(&prog, "no-sections");
    drop_section_headers(&p);
    fx.assert_runs(&p, &[]);
    patch(
        &p,
        &[
            "--set-interpreter",
            &interp,
            "--replace-needed",
            "libgreet.so.1",
            &uri(1),
            "--add-rpath",
            "/opt/no-sections",
        ],
    );
    assert_eq!(print("interpreter", &p), interp);
    assert!(print("needed", &p).contains(&uri(1)));
    assert!(print("rpath", &p).ends_with(":/opt/no-sections"));
    fx.assert_runs(&p, &[]);

    // --no-clobber-old-sections: a piece that moves (the grown string table) leaves its
    // old bytes where they were, for programs that read them at their link-time place.
    let p = fx.copy(&prog, "no-clobber");
    patch(
        &p,
        &[
            "--no-clobber-old-sections",
            "--replace-needed",
            "libgreet.so.1",
            &uri(1),
        ],
    );
    let (at, size) = section_range(&prog, ".dynstr");
    assert_ne!(section_range(&p, ".dynstr").0, at, ".dynstr did not move");
    let (old, new) = (
        std::fs::read(&prog).expect("read"),
        std::fs::read(&p).expect("read"),
    );
    assert!(
        old[at..at + size] == new[at..at + size],
        "the old .dynstr was overwritten"
    );
    fx.assert_runs(&p, &[]);

    // --add-needed / --remove-needed.
    let p = fx.copy(&prog, "add-needed");
    patch(&p, &["--remove-needed", "libextra.so"]);
    assert!(!print("needed", &p).contains("libextra.so"));
    fx.assert_runs(&p, &[]);
    patch(&p, &["--add-needed", "libextra.so"]);
    assert!(print("needed", &p).starts_with("libextra.so"));
    fx.assert_runs(&p, &[]);

    // Search paths.
    let p = fx.copy(&prog, "rpath");
    let long = format!("$ORIGIN:/nonexistent/{}", "d".repeat(120));
    patch(&p, &["--set-rpath", &long]);
    assert_eq!(print("rpath", &p), long);
    assert!(readelf("-d", &p).contains("(RUNPATH)"));
    fx.assert_runs(&p, &[]);
    patch(&p, &["--add-rpath", "/opt/extra"]);
    assert_eq!(print("rpath", &p), format!("{long}:/opt/extra"));
    patch(
        &p,
        &["--set-rpath", &format!("/nonexistent:{}", dir.display())],
    );
    patch(&p, &["--shrink-rpath"]);
    assert_eq!(print("rpath", &p), dir.display().to_string());
    fx.assert_runs(&p, &[]);
    patch(
        &p,
        &["--shrink-rpath", "--allowed-rpath-prefixes", "/nowhere"],
    );
    assert_eq!(print("rpath", &p), "");
    patch(&p, &["--force-rpath", "--set-rpath", "$ORIGIN"]);
    assert!(readelf("-d", &p).contains("(RPATH)"));
    fx.assert_runs(&p, &[]);
    patch(&p, &["--remove-rpath"]);
    assert_eq!(print("rpath", &p), "");
    fx.assert_runs(&p, &env_ld);

    // --set-soname on the library; the program still runs with it.
    let sub = dir.join("soname");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let lib = sub.join("libgreet.so.1");
    std::fs::copy(&fx.lib, &lib).expect("copy");
    patch(
        &lib,
        &[
            "--set-soname",
            "libgreet-renamed-with-a-much-longer-name.so.1",
        ],
    );
    assert_eq!(
        print("soname", &lib),
        "libgreet-renamed-with-a-much-longer-name.so.1"
    );
    patch(&lib, &["--add-debug-tag"]);
    assert!(readelf("-d", &lib).contains("(DEBUG)"));
    let sub_s = sub.display().to_string();
    let lib_env = format!("{}:{}", sub_s, ld_path);
    fx.assert_runs(&fx.prog, &[("LD_LIBRARY_PATH", lib_env.as_str())]);

    // Flags and symbols.
    let p = fx.copy(&prog, "flags");
    patch(&p, &["--no-default-lib", "--add-debug-tag"]);
    let d = readelf("-d", &p);
    assert!(d.contains("NODEFLIB"), "{d}");
    // No default directories any more: libc must now come from LD_LIBRARY_PATH.
    let libc_dir = Path::new(fx.flavour.libc)
        .parent()
        .expect("libc dir")
        .display()
        .to_string();
    fx.assert_runs(&p, &[("LD_LIBRARY_PATH", libc_dir.as_str())]);
    let p = fx.copy(&prog, "symbols");
    patch(&p, &["--clear-symbol-version", "printf"]);
    let syms = readelf("--dyn-syms", &p);
    assert!(
        syms.lines().any(|l| l.ends_with(" printf")),
        "printf still versioned:\n{syms}"
    );
    fx.assert_runs(&p, &[]);
    patch(&p, &["--set-os-abi", "linux"]);
    assert_eq!(print("os-abi", &p), "Linux");
    fx.assert_runs(&p, &[]);
    patch(&p, &["--set-os-abi", "System V"]);
    assert_eq!(print("os-abi", &p), "System V");
    patch(&p, &["--set-execstack"]);
    assert_eq!(print("execstack", &p), "execstack: X");
    fx.assert_runs(&p, &[]);
    patch(&p, &["--clear-execstack"]);
    assert_eq!(print("execstack", &p), "execstack: -");
    fx.assert_runs(&p, &[]);

    // --rename-dynamic-symbols on the library and the program together.
    let sub = dir.join("renamed");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let lib = sub.join("libgreet.so.1");
    std::fs::copy(&fx.lib, &lib).expect("copy");
    let p = fx.copy(&prog, "renamed-prog");
    let map = fx.path("rename.map");
    std::fs::write(
        &map,
        "greet greet_with_a_longer_new_name\ngreet_count counted_greetings\n",
    )
    .expect("write");
    patch(&lib, &["--rename-dynamic-symbols", s(&map)]);
    patch(&p, &["--rename-dynamic-symbols", s(&map)]);
    let syms = readelf("--dyn-syms", &lib);
    assert!(
        syms.contains("greet_with_a_longer_new_name") && !syms.contains(" greet\n"),
        "{syms}"
    );
    let lib_env = format!("{}:{}", sub.display(), ld_path);
    fx.assert_runs(&p, &[("LD_LIBRARY_PATH", lib_env.as_str())]);

    // --output leaves the input alone; a no-op edit leaves the file byte-identical.
    let before = std::fs::read(&prog).expect("read");
    let out = fx.path("output");
    elfpatch_ok(&[
        "--set-rpath",
        "$ORIGIN:/elsewhere",
        "--output",
        s(&out),
        s(&prog),
    ]);
    assert_eq!(std::fs::read(&prog).expect("read"), before);
    check_file(&out);
    fx.assert_runs(&out, &[]);
    let mtime = std::fs::metadata(&prog)
        .and_then(|m| m.modified())
        .expect("mtime");
    elfpatch_ok(&["--set-rpath", "$ORIGIN", s(&prog)]);
    assert_eq!(
        std::fs::read(&prog).expect("read"),
        before,
        "no-op edit changed the file"
    );
    assert_eq!(
        std::fs::metadata(&prog)
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime
    );

    // Through a symlink: the target is edited, the link stays a link.
    let target = fx.copy(&prog, "link-target");
    let link = fx.path("link");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    patch(&link, &["--set-rpath", "$ORIGIN:/via/link"]);
    assert!(std::fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
    assert_eq!(print("rpath", &target), "$ORIGIN:/via/link");

    // The owner, group and mode (set-user-ID included) stay, as with an edit in place.
    let owned = fx.copy(&prog, "owned");
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534))
        .expect("chown to nobody (the tests run as root)");
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o4751)).expect("chmod");
    patch(&owned, &["--set-rpath", "$ORIGIN:/owned"]);
    let m = std::fs::metadata(&owned).expect("stat");
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (65534, 65534, 0o4751),
        "owner, group or mode not kept"
    );

    // Everything at once, two files at once, arguments from files.
    let a = fx.copy(&prog, "all-a");
    let b = fx.copy(&prog, "all-b");
    let argfile = fx.path("interp.txt");
    std::fs::write(&argfile, &interp).expect("write");
    let resp = fx.path("args.rsp");
    std::fs::write(
        &resp,
        format!(
            "--replace-needed libgreet.so.1 {}\n--add-rpath /opt/x\n",
            uri(1)
        ),
    )
    .expect("write");
    let at_interp = format!("@{}", argfile.display());
    let at_resp = format!("@{}", resp.display());
    elfpatch_ok(&[
        "--set-interpreter",
        &at_interp,
        &at_resp,
        "--add-needed",
        "libextra.so",
        "--add-debug-tag",
        s(&a),
        s(&b),
    ]);
    for f in [&a, &b] {
        check_file(f);
        assert_eq!(print("interpreter", f), interp);
        assert_eq!(print("rpath", f), "$ORIGIN:/opt/x");
        fx.assert_runs(f, &[]);
    }

    // The edited program survives strip, and can be edited again after it.
    elf_tests::require_tool(fx.flavour.strip);
    let stripped = fx.path("stripped");
    elf_tests::run_ok(
        std::process::Command::new(fx.flavour.strip)
            .arg(&a)
            .arg("-o")
            .arg(&stripped),
    );
    check_file(&stripped);
    fx.assert_runs(&stripped, &[]);
    patch(
        &stripped,
        &[
            "--replace-needed",
            &uri(1),
            "libgreet.so.1",
            "--set-interpreter",
            fx.flavour.ld_so,
        ],
    );
    fx.assert_runs(&stripped, &[]);
    elf_tests::run_ok(std::process::Command::new(fx.flavour.strip).arg(&stripped));
    fx.assert_runs(&stripped, &[]);
}

/// 200 successive edits of one file: the number of segments stays bounded, the file stays
/// valid and the program still runs.
pub fn many_edits(fx: &Fixture) {
    let p = fx.copy(&fx.prog, "many");
    let loads = |f: &Path| {
        readelf("-l", f)
            .lines()
            .filter(|l| l.trim_start().starts_with("LOAD"))
            .count()
    };
    let before = loads(&p);
    let interp = fx.long_interp();
    let mut current = "libgreet.so.1".to_string();
    for i in 0..200u32 {
        let next = if i == 199 {
            "libgreet.so.1".to_string()
        } else {
            uri((i % 250) as u8)
        };
        let rpath = format!("$ORIGIN:/r/{}", "p".repeat((i % 50) as usize));
        let mut args = vec![
            "--replace-needed",
            current.as_str(),
            next.as_str(),
            "--set-rpath",
            rpath.as_str(),
        ];
        if i % 3 == 0 {
            args.extend(["--set-interpreter", interp.as_str()]);
        }
        args.push(s(&p));
        elfpatch_ok(&args);
        current = next;
    }
    check_file(&p);
    let after = loads(&p);
    assert!(after <= before + 3, "{before} PT_LOADs became {after}");
    let size = std::fs::metadata(&p).expect("stat").len();
    let orig = std::fs::metadata(&fx.prog).expect("stat").len();
    assert!(
        size < orig + 3 * 64 * 1024,
        "file grew from {orig} to {size} bytes"
    );
    fx.assert_runs(&p, &[]);
}

fn contains(hay: &[u8], pat: &[u8]) -> bool {
    hay.windows(pat.len()).any(|w| w == pat)
}

/// `--build-resolution-cache` on the fixture's program: the note resolves both libraries
/// to the fixture directory, the program runs, and a `DT_NEEDED` edit removes the note.
pub fn resolution_cache(fx: &Fixture) {
    let p = fx.copy(&fx.prog, "ldcache");
    let dir = fx.dir.path().display().to_string();
    patch(&p, &["--set-rpath", &dir]);
    patch(&p, &["--build-resolution-cache"]);
    let bytes = std::fs::read(&p).expect("read");
    let elf = elfpatch::elf::Elf::parse(&bytes).expect("parse");
    let want = format!("libextra.so\0={dir}/libextra.so\0libgreet.so.1\0={dir}/libgreet.so.1\0\0");
    assert_eq!(
        elf.resolution_cache(),
        Some(Some(want.as_bytes())),
        "{}",
        fx.flavour.name
    );
    fx.assert_runs(&p, &[]);
    patch(&p, &["--remove-needed", "libextra.so"]);
    let bytes = std::fs::read(&p).expect("read");
    let elf = elfpatch::elf::Elf::parse(&bytes).expect("parse");
    assert_eq!(elf.resolution_cache(), None, "{}", fx.flavour.name);
    fx.assert_runs(&p, &[]);
}
