//! Trees copied faithfully: times of files and directories kept (Python's `.pyc` files
//! stay valid), a symbolic link to a program outside the tree replaced by that program
//! converted (a default venv), a warning when nothing converted can load the tree's
//! libraries, and outputs that would overwrite their inputs refused. A real venv with a
//! PyPI wheel that vendors its own libraries (pillow) converts and saves a JPEG.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::conversion::{convert, elfpatch, init_store, needed};
use elf_tests::{compile, require_tool, run, run_ok};

mod convert_common;
use convert_common::src;

/// Every file, directory and link under `dir` (relative) with its modification time.
fn mtimes(dir: &Path) -> Vec<(PathBuf, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            out.push((rel, meta.mtime(), meta.mtime_nsec()));
        }
    }
    out.sort();
    out
}

#[test]
fn trees_keep_times_and_bring_in_programs_they_link_to() {
    let tmp = tempfile::tempdir().unwrap();
    // A program outside the tree, and a tree whose bin/ links to it (as a venv's
    // bin/python3 links to /usr/bin/python3.11), with old times everywhere.
    let outside = tmp.path().join("usr/bin/greeter");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    // Linked against libm so that it has a library to name by URI besides libc.
    compile(
        "gcc",
        &[&src("greet_main.c"), &src("greet.c")],
        &outside,
        &["-DWORD=\"outside\"", "-Wl,--no-as-needed", "-lm"],
    );
    let tree = tmp.path().join("venv");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::create_dir_all(tree.join("lib/site")).unwrap();
    fs::write(tree.join("lib/site/mod.py"), "x = 1\n").unwrap();
    fs::write(tree.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("bin/greeter3")).unwrap();
    std::os::unix::fs::symlink("greeter3", tree.join("bin/greeter")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", tree.join("bin/dangling")).unwrap();
    run_ok(
        Command::new("touch")
            .args(["-h", "-d", "2001-02-03 04:05:06.789"])
            .arg(tree.join("lib/site/mod.py"))
            .arg(tree.join("lib/site"))
            .arg(tree.join("bin/dangling"))
            .arg(tree.join("pyvenv.cfg")),
    );
    let expected = run_ok(&mut Command::new(&outside));

    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], std::slice::from_ref(&tree));
    let converted = store.join("bin/venv");
    // Both links that lead outside became the converted program (one file); the dangling
    // one is kept as it is.
    assert_eq!(report["programs"], 2, "{report}");
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("greeter3") && notes.contains("replaced"),
        "{report}"
    );
    for name in ["greeter", "greeter3"] {
        let p = converted.join("bin").join(name);
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert!(needed(&p).iter().all(|n| n.starts_with("uri:blake3:")));
        assert_eq!(run_ok(Command::new(&p).env_clear()), expected);
    }
    assert_eq!(
        fs::read_link(converted.join("bin/dangling")).unwrap(),
        Path::new("/nonexistent/dangling")
    );
    // Every non-ELF file, link and directory keeps its times.
    let before: Vec<_> = mtimes(&tree)
        .into_iter()
        .filter(|(p, ..)| !p.to_string_lossy().starts_with("bin/greeter"))
        .collect();
    let after: Vec<_> = mtimes(&converted)
        .into_iter()
        .filter(|(p, ..)| !p.to_string_lossy().starts_with("bin/greeter"))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        fs::metadata(converted.join("lib/site")).unwrap().mtime(),
        fs::metadata(tree.join("lib/site")).unwrap().mtime()
    );
}

#[test]
fn libraries_without_a_program_warn_and_inputs_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("libs");
    fs::create_dir_all(&tree).unwrap();
    compile(
        "gcc",
        &[&src("ctx_base.c")],
        &tree.join("libbase.so"),
        &["-shared", "-fPIC", "-Wl,-soname,libbase.so", "-lm"],
    );
    let store = tmp.path().join("store");
    init_store(&store);
    let out = run(elfpatch()
        .args(["convert", "--store"])
        .arg(&store)
        .arg(&tree));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: no program was converted"),
        "{stderr}"
    );

    // A program converted onto itself, and a tree into a directory inside it, are refused
    // and left as they were.
    let prog = tmp.path().join("prog");
    compile(
        "gcc",
        &[&src("greet_main.c"), &src("greet.c")],
        &prog,
        &["-DWORD=\"w\""],
    );
    let before = fs::read(&prog).unwrap();
    let out = run(elfpatch()
        .args(["convert", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(tmp.path())
        .arg(&prog));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("would be overwritten"), "{stderr}");
    assert_eq!(fs::read(&prog).unwrap(), before);
    let out = run(elfpatch()
        .args(["convert", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(tmp.path())
        .arg(&tree));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("overwrite its input"));
}

const PILLOW: &str = "pillow==13.0.0";

const SAVE_JPEG: &str = "from PIL import Image\n\
import io, sys\n\
im = Image.new('RGB', (64, 48), (200, 30, 90))\n\
buf = io.BytesIO()\n\
im.save(buf, 'JPEG', quality=90)\n\
back = Image.open(io.BytesIO(buf.getvalue()))\n\
print('jpeg', buf.getvalue()[:3].hex(), back.size, back.mode, sys.prefix == sys.base_prefix)\n";

#[test]
fn a_default_venv_with_pillow_converts_and_saves_a_jpeg() {
    require_tool("python3");
    let tmp = tempfile::tempdir().unwrap();
    let venv = tmp.path().join("venv");
    run_ok(
        Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv),
    );
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", PILLOW])
            .env("PIP_NO_CACHE_DIR", "1"),
    );
    assert!(fs::symlink_metadata(venv.join("bin/python3"))
        .unwrap()
        .file_type()
        .is_symlink());
    let script = tmp.path().join("save.py");
    fs::write(&script, SAVE_JPEG).unwrap();
    let expected = run_ok(Command::new(venv.join("bin/python3")).arg(&script));
    assert!(
        expected.starts_with("jpeg ffd8ff (64, 48) RGB False"),
        "{expected}"
    );

    let store = tmp.path().join("store");
    init_store(&store);
    let report = convert(&store, &[], std::slice::from_ref(&venv));
    assert!(report["programs"].as_u64().unwrap() >= 1, "{report}");
    let python = store.join("bin/venv/bin/python3");
    assert!(needed(&python).iter().all(|n| n.starts_with("uri:blake3:")));
    let imaging = fs::read_dir(store.join("bin/venv/lib/python3.11/site-packages/PIL"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("_imaging.cpython"))
        .unwrap();
    assert!(needed(&imaging)
        .iter()
        .all(|n| n.starts_with("uri:blake3:")));
    assert_eq!(
        run_ok(Command::new(&python).arg(&script).env_clear()),
        expected
    );
    // The wheel's vendored libraries are listed at their place in the venv.
    let listed = run_ok(elfpatch().args(["store", "list", "--store"]).arg(&store));
    assert!(
        listed
            .lines()
            .any(|l| l.contains("/bin/venv/lib/python3.11/site-packages/pillow.libs/")),
        "{listed}"
    );
}
