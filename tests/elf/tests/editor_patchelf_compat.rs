//! Behaviours of patchelf 0.19 that its own test suite checks (the suite runs from
//! `scripts/test.sh`; these tests pin each one down on the editor's own x86_64 fixtures):
//! an empty interpreter is ignored, `@FILE` errors, segment alignment, the `X`-ed old run
//! path, empty `PT_LOAD`s, a `.dynamic` without `PT_DYNAMIC`, a freed `PT_NULL` slot, and
//! the resolution cache note (`--build-resolution-cache`).

mod editor_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use editor_common::*;

fn pie() -> Fixture {
    Fixture::build(x86_64("pie", &["-fPIE", "-pie"]))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn u64le(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn put32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of the program headers of an ELF64 little-endian file, with their types.
fn phdrs(b: &[u8]) -> Vec<(usize, u32)> {
    let (phoff, phnum) = (u64le(b, 32) as usize, u16::from_le_bytes([b[56], b[57]]));
    (0..phnum as usize)
        .map(|i| phoff + 56 * i)
        .map(|at| (at, u32::from_le_bytes(b[at..at + 4].try_into().expect("4"))))
        .collect()
}

/// The `Align` column of every `LOAD` line of `readelf -l`.
fn load_aligns(file: &Path) -> Vec<String> {
    readelf("-l", file)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

fn contains(hay: &[u8], pat: &[u8]) -> bool {
    hay.windows(pat.len()).any(|w| w == pat)
}

#[test]
fn an_empty_interpreter_is_ignored() {
    let fx = pie();
    let p = fx.copy(&fx.prog, "empty-interp");
    let before = print("interpreter", &p);
    patch(
        &p,
        &["--set-interpreter", "", "--set-rpath", "$ORIGIN:/opt/x"],
    );
    assert_eq!(print("interpreter", &p), before);
    assert_eq!(print("rpath", &p), "$ORIGIN:/opt/x");
    fx.assert_runs(&p, &[]);
}

#[test]
fn a_missing_argument_file_is_named() {
    let fx = pie();
    let missing = fx.path("no-such-args");
    let out = elfpatch(&[
        "--set-rpath",
        &format!("@{}", missing.display()),
        s(&fx.prog),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("getting info about '{}'", missing.display())),
        "{err}"
    );
}

/// A library linked for 2 MiB pages: the new segments take that alignment too, so every
/// load of the file agrees (as patchelf, and as a kernel with such pages needs).
#[test]
fn new_segments_follow_the_largest_load_alignment() {
    let fx = pie();
    let lib = fx.path("libbig.so");
    elf_tests::compile(
        "gcc",
        &[&elf_tests::fixture_dir().join("editor/extra.c")],
        &lib,
        &["-shared", "-fPIC", "-Wl,-z,max-page-size=0x200000"],
    );
    assert!(load_aligns(&lib).iter().all(|a| a == "0x200000"));
    // The run path alone fits in the slack after the first load, which grows over it.
    patch(&lib, &["--set-rpath", &"x".repeat(200)]);
    assert_eq!(load_aligns(&lib).len(), 4);
    // `.dynamic` has no room for five more entries: it moves to a new writable segment.
    let mut args = Vec::new();
    for n in ["liba.so", "libb.so", "libc1.so", "libd.so", "libe.so"] {
        args.extend(["--add-needed", n]);
    }
    patch(&lib, &args);
    let aligns = load_aligns(&lib);
    assert!(aligns.len() > 4, "no segment was added: {aligns:?}");
    assert!(aligns.iter().all(|a| a == "0x200000"), "{aligns:?}");
}

/// A run path replaced by a longer one leaves its bytes as `X`s, as patchelf does (Nix's
/// reference scanner reads them as a reference that is gone).
#[test]
fn an_old_run_path_is_overwritten_with_x() {
    let fx = pie();
    let p = fx.copy(&fx.prog, "x-ed");
    let first = format!("$ORIGIN:/opt/{}", "a".repeat(60));
    let second = format!("$ORIGIN:/opt/{}", "b".repeat(90));
    patch(&p, &["--set-rpath", &first]);
    patch(&p, &["--set-rpath", &second]);
    let bytes = std::fs::read(&p).expect("read");
    assert!(
        !contains(&bytes, "a".repeat(60).as_bytes()),
        "old run path left"
    );
    assert!(contains(&bytes, &[b'X'; 60]), "no X-ed run path");
    assert_eq!(print("rpath", &p), second);
    fx.assert_runs(&p, &[]);
}

/// A `PT_LOAD` of no bytes whose offset and address disagree (linker scripts leave such
/// segments) maps nothing: the file is read and edited, not refused.
#[test]
fn an_empty_load_is_no_obstacle() {
    let fx = pie();
    let p = fx.copy(&fx.prog, "empty-load");
    let mut b = std::fs::read(&p).expect("read");
    let (at, _) = *phdrs(&b)
        .iter()
        .find(|(_, t)| *t == 0x6474_e551)
        .expect("PT_GNU_STACK");
    put32(&mut b, at, 1); // PT_LOAD, at offset 0 and address 0, of no bytes
    b[at + 8..at + 16].copy_from_slice(&0x20cu64.to_le_bytes());
    b[at + 48..at + 56].copy_from_slice(&0x1000u64.to_le_bytes());
    std::fs::write(&p, &b).expect("write");
    assert_eq!(print("rpath", &p), "$ORIGIN");
    let interp = fx.long_interp();
    patch(&p, &["--set-interpreter", &interp]);
    assert_eq!(print("interpreter", &p), interp);
}

/// A `PT_NULL` entry makes room for the new segment without changing the header count:
/// the table is still rewritten (it once was not, leaving `.dynstr` unmapped).
#[test]
fn a_free_null_slot_takes_the_new_segment() {
    let fx = pie();
    let p = fx.copy(&fx.prog, "null-slot");
    let mut b = std::fs::read(&p).expect("read");
    let (at, _) = *phdrs(&b).iter().find(|(_, t)| *t == 4).expect("PT_NOTE");
    put32(&mut b, at, 0);
    std::fs::write(&p, &b).expect("write");
    let long = format!("$ORIGIN:/opt/{}", "n".repeat(150));
    patch(&p, &["--set-rpath", &long]);
    assert_eq!(print("rpath", &p), long);
    fx.assert_runs(&p, &[]);
}

/// A library whose `PT_DYNAMIC` is gone (linker scripts can do that) is edited through
/// its `.dynamic` section header, as patchelf does.
#[test]
fn dynamic_found_through_its_section() {
    let fx = pie();
    let lib = fx.copy(&fx.lib, "libnodyn.so");
    let mut b = std::fs::read(&lib).expect("read");
    let (at, _) = *phdrs(&b).iter().find(|(_, t)| *t == 2).expect("PT_DYNAMIC");
    put32(&mut b, at, 0x6fff_0000); // a type nobody reads
    std::fs::write(&lib, &b).expect("write");
    patch(&lib, &["--set-rpath", "/opt/nodyn"]);
    assert_eq!(print("rpath", &lib), "/opt/nodyn");
}

/// `readelf -p .note.nixos.ldcache` of `file`, or `None` without the section.
fn cache_strings(file: &Path) -> Option<String> {
    readelf("-S", file)
        .contains(".note.nixos.ldcache")
        .then(|| {
            elf_tests::run_ok(
                Command::new("readelf")
                    .args(["-p", ".note.nixos.ldcache"])
                    .arg(file),
            )
        })
}

/// The descriptor of the note, read by the editor.
fn descriptor(file: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(file).expect("read");
    let elf = elfpatch::elf::Elf::parse(&bytes).expect("parse");
    elf.resolution_cache()
        .map(|d| d.expect("a well-formed note").to_vec())
}

fn cached(fx: &Fixture, name: &str, rpath: &str) -> PathBuf {
    let p = fx.copy(&fx.prog, name);
    patch(&p, &["--set-rpath", rpath]);
    patch(&p, &["--build-resolution-cache"]);
    p
}

#[test]
fn resolution_cache_is_written_and_read() {
    let fx = pie();
    let dir = fx.dir.path().display().to_string();
    let p = cached(&fx, "cached", &format!("/nonexistent:{dir}:$ORIGIN"));
    // Sorted by name; a directory holding the library adds `=path`, `$ORIGIN` a hint.
    let want = format!(
        "libc.so.6\0?$ORIGIN\0libextra.so\0={dir}/libextra.so:?$ORIGIN\0\
         libgreet.so.1\0={dir}/libgreet.so.1:?$ORIGIN\0\0"
    );
    assert_eq!(descriptor(&p), Some(want.into_bytes()));
    let notes = readelf("-n", &p);
    assert!(
        notes.contains("NixOS") && notes.contains("0x63a86cb6"),
        "{notes}"
    );
    let sections = readelf("-S", &p);
    let line = sections
        .lines()
        .find(|l| l.contains(".note.nixos.ldcache"))
        .expect("the note's section");
    assert!(line.contains("NOTE") && line.contains(" A "), "{line}");
    assert!(readelf("-l", &p).contains("NOTE"));
    fx.assert_runs(&p, &[]);
    // The section header table still ends the file.
    let b = std::fs::read(&p).expect("read");
    let shoff = u64le(&b, 40);
    let shnum = u64::from(u16::from_le_bytes([b[60], b[61]]));
    assert_eq!(shoff + 64 * shnum, b.len() as u64);

    // Building again changes nothing.
    patch(&p, &["--build-resolution-cache"]);
    assert_eq!(std::fs::read(&p).expect("read"), b);

    // A later edit of the run path removes the note, and its bytes.
    patch(&p, &["--set-rpath", "/opt/elsewhere"]);
    assert!(cache_strings(&p).is_none());
    let b = std::fs::read(&p).expect("read");
    assert!(!contains(&b, format!("={dir}/libgreet.so.1").as_bytes()));
    fx.assert_runs(&p, &[("LD_LIBRARY_PATH", &dir)]);
}

#[test]
fn resolution_cache_follows_dependency_edits_only() {
    let fx = pie();
    let dir = fx.dir.path().display().to_string();
    for (args, kept) in [
        (&["--add-needed", "libm.so.6"][..], false),
        (&["--remove-needed", "libextra.so"], false),
        (&["--replace-needed", "libextra.so", "libother.so"], false),
        (&["--add-rpath", "/opt/more"], false),
        (&["--remove-rpath"], false),
        (&["--remove-needed", "libabsent.so"], true),
        (&["--replace-needed", "libabsent.so", "libx.so"], true),
        (&["--set-interpreter", "/lib64/ld-linux-x86-64.so.2"], true),
    ] {
        let p = cached(&fx, "edited", &dir);
        patch(&p, args);
        assert_eq!(descriptor(&p).is_some(), kept, "{args:?}");
    }
    // A kept note moves with the region an edit rebuilds.
    let p = cached(&fx, "moved", &dir);
    let before = descriptor(&p);
    let interp = fx.long_interp();
    patch(&p, &["--set-interpreter", &interp]);
    assert_eq!(descriptor(&p), before);
    fx.assert_runs(&p, &[]);
}

#[test]
fn resolution_cache_refusals_and_warnings() {
    let fx = pie();
    let dir = fx.dir.path().display().to_string();
    // Nothing to resolve: a warning, and the file is left as it was.
    let p = fx.copy(&fx.prog, "no-rpath");
    patch(&p, &["--remove-rpath"]);
    let before = std::fs::read(&p).expect("read");
    let out = elfpatch(&["--build-resolution-cache", s(&p)]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no DT_NEEDED entries or run path"));
    assert_eq!(std::fs::read(&p).expect("read"), before);
    // With --force-rpath: refused.
    let out = elfpatch(&["--force-rpath", "--build-resolution-cache", s(&p)]);
    assert!(!out.status.success());
    // A note that no longer matches: refused, the file unchanged.
    let p = cached(&fx, "stale", &dir);
    let mut b = std::fs::read(&p).expect("read");
    // Rename the run path's directory in .dynstr, behind the note's back.
    let at = b
        .windows(dir.len())
        .position(|w| w == dir.as_bytes())
        .expect("run path in .dynstr");
    let last = at + dir.len() - 1;
    b[last] = if b[last] == b'X' { b'Y' } else { b'X' };
    std::fs::write(&p, &b).expect("write");
    let out = elfpatch(&["--build-resolution-cache", s(&p)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already present"),
        "{err}"
    );
    assert!(!err.contains("No such file"), "{err}");
    assert_eq!(std::fs::read(&p).expect("read"), b);
}

/// A note that is not the last section (objcopy puts it before `.shstrtab` and the
/// symbol tables) is removed with the sections after it renumbered, symbols included.
#[test]
fn resolution_cache_removal_renumbers_sections() {
    let fx = pie();
    let p = fx.path("relocs");
    elf_tests::compile(
        "gcc",
        &[&elf_tests::fixture_dir().join("editor/main.c")],
        &p,
        &[
            "-fPIE",
            "-pie",
            "-Wl,--emit-relocs",
            "-Wl,--no-as-needed",
            s(&fx.lib),
            &format!("-L{}", fx.dir.path().display()),
        ],
    );
    let section_symbols = |f: &Path| {
        let mut v: Vec<String> = readelf("-s", f)
            .lines()
            .filter(|l| l.contains(" SECTION "))
            .map(|l| l.split_whitespace().skip(6).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    };
    let expected = section_symbols(&p);
    assert!(expected.len() > 5, "no section symbols: {expected:?}");
    let desc = fx.path("desc");
    std::fs::write(&desc, b"stale").expect("write");
    elf_tests::run_ok(
        Command::new("objcopy")
            .arg(format!(
                "--add-section=.note.nixos.ldcache={}",
                desc.display()
            ))
            .arg(&p),
    );
    assert!(cache_strings(&p).is_some());
    patch(&p, &["--set-rpath", "/opt/renumbered"]);
    assert!(cache_strings(&p).is_none());
    // readelf names a section symbol by its st_shndx: the names stay the same only if
    // the indices were renumbered with the sections.
    let names: Vec<String> = expected
        .iter()
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        .collect();
    let after: Vec<String> = section_symbols(&p)
        .iter()
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        .collect();
    assert_eq!(after, names);
    fx.assert_runs(
        &p,
        &[("LD_LIBRARY_PATH", &fx.dir.path().display().to_string())],
    );
}

/// `ET_EXEC` with the section header table at the end: after an edit that needs room for
/// program headers (sections move) and a grown string table, the table still ends the
/// file (patchelf's suite pads it to a page there), and the program runs.
#[test]
fn the_section_header_table_stays_at_the_end() {
    let fx = Fixture::build(x86_64("nopie", &["-fno-pie", "-no-pie"]));
    let p = fx.copy(&fx.prog, "sht-last");
    patch(&p, &["--set-rpath", &format!("/opt/{}", "t".repeat(100))]);
    let b = std::fs::read(&p).expect("read");
    let shoff = u64le(&b, 40);
    let shnum = u64::from(u16::from_le_bytes([b[60], b[61]]));
    assert_eq!(shoff + 64 * shnum, b.len() as u64);
    fx.assert_runs(
        &p,
        &[("LD_LIBRARY_PATH", &fx.dir.path().display().to_string())],
    );
}
