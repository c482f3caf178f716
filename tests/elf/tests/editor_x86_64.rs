//! elfpatch on x86_64 fixtures built every way the issue lists: each patchelf option is
//! applied, the result verified, run and compared with the unpatched run.

mod editor_common;

use editor_common::*;

fn flavour(name: &str) -> Flavour {
    let (n, f) = X86_64
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .expect("known flavour");
    x86_64(n, f)
}

macro_rules! flavour_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            let fx = Fixture::build(flavour($name));
            ops::exercise_all(&fx);
        }
    )*};
}

flavour_tests! {
    pie => "pie",
    nopie => "nopie",
    relro_now => "relro-now",
    hash_gnu => "hash-gnu",
    hash_sysv => "hash-sysv",
    separate_code => "separate-code",
    noseparate_code => "noseparate-code",
    lld => "lld",
    lld_nopie_sysv => "lld-nopie-sysv",
}

#[test]
fn two_hundred_edits_pie() {
    ops::many_edits(&Fixture::build(flavour("pie")));
}

#[test]
fn two_hundred_edits_nopie() {
    ops::many_edits(&Fixture::build(flavour("nopie")));
}

/// Through a symlink named `patchelf`, the binary is patchelf: `--version`, `--help`,
/// and an edit.
#[test]
fn invoked_as_patchelf() {
    let fx = Fixture::build(flavour("pie"));
    let link = fx.path("patchelf");
    std::os::unix::fs::symlink(elf_tests::built_binary("elfpatch"), &link).expect("symlink");
    let v = elf_tests::run_ok(std::process::Command::new(&link).arg("--version"));
    assert!(v.starts_with("patchelf 0.19"), "{v}");
    let h = elf_tests::run_ok(std::process::Command::new(&link).arg("--help"));
    assert!(
        h.contains("--set-interpreter") && h.contains("--rename-dynamic-symbols"),
        "{h}"
    );
    let p = fx.copy(&fx.prog, "via-patchelf");
    elf_tests::run_ok(
        std::process::Command::new(&link)
            .args(["--set-rpath", "$ORIGIN:/x"])
            .arg(&p),
    );
    check_file(&p);
    assert_eq!(print("rpath", &p), "$ORIGIN:/x");
    fx.assert_runs(&p, &[]);
    let bad = elf_tests::run(std::process::Command::new(&link).arg("--no-such-option"));
    assert_eq!(bad.status.code(), Some(1));
}

/// `--output` naming a FIFO (as `--output /dev/null` names a device) writes the edited
/// file into it: the FIFO stays a FIFO, the reader gets the whole edited file.
#[test]
fn output_to_a_fifo_writes_into_it() {
    use std::os::unix::fs::FileTypeExt;
    let fx = Fixture::build(flavour("pie"));
    let fifo = fx.path("out.fifo");
    elf_tests::run_ok(std::process::Command::new("mkfifo").arg(&fifo));
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
    };
    let prog = fx.prog.to_str().expect("utf-8 path");
    let out = fifo.to_str().expect("utf-8 path");
    elfpatch_ok(&["--set-rpath", "/opt/fifo", "--output", out, prog]);
    let bytes = reader.join().expect("reader thread");
    assert!(std::fs::metadata(&fifo)
        .expect("stat")
        .file_type()
        .is_fifo());
    let copy = fx.path("from-fifo");
    std::fs::write(&copy, &bytes).expect("write");
    assert_eq!(print("rpath", &copy), "/opt/fifo");
}

/// A library whose `.dynstr` is the last section the edit moves to make room for the
/// program headers (no symbol versions, so no version tables after it): the old
/// `.dynstr`, zeroed, ends the moved block. Editing the result again the same way gives
/// the same bytes: the region is rebuilt where it was, not over those zeros. (A
/// conversion that meets an already converted library relies on this: its URI is the
/// hash of the bytes.)
#[test]
fn an_edit_repeated_gives_the_same_bytes_when_dynstr_ended_the_moved_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("plain.c");
    // Two symbols of long names: `.dynsym` ends before the room the table needs, `.dynstr`
    // after it, and `.rela.dyn` (the pointer) follows.
    let long = "n".repeat(150);
    let text = format!(
        "int f_{long}(void) {{ return 1; }}\nint g_{long}(void) {{ return 2; }}\n\
         int x; int *p = &x;\n"
    );
    std::fs::write(&src, text).expect("write");
    let lib = dir.path().join("libplain.so");
    elf_tests::compile(
        "gcc",
        &[&src],
        &lib,
        &["-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libplain.so"],
    );
    let lib = lib.to_str().expect("utf-8 path");
    let rpath = format!("/nix/store/{}-b/lib", "z".repeat(32));
    let edit = ["--add-needed", "libc.so.6", "--set-rpath", &rpath];
    patch(std::path::Path::new(lib), &edit);
    let once = std::fs::read(lib).expect("read");
    patch(std::path::Path::new(lib), &edit);
    assert!(
        std::fs::read(lib).expect("read") == once,
        "a repeated edit changed the file"
    );
}

/// The program headers of `file` of type `kind` (`readelf -lW`'s name), as text.
fn headers_of(file: &std::path::Path, kind: &str) -> Vec<String> {
    readelf("-lW", file)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(kind))
        .map(str::to_owned)
        .collect()
}

/// The loader fixtures' `hello`, built by gcc (GNU ld: `.note.gnu.property` mapped by a
/// `PT_NOTE` and by `PT_GNU_PROPERTY`) in a directory of its own, and its output.
struct Hello {
    dir: tempfile::TempDir,
    prog: std::path::PathBuf,
    original: String,
}

impl Hello {
    fn build() -> Hello {
        let dir = tempfile::tempdir().expect("tempdir");
        let prog = dir.path().join("hello");
        elf_tests::compile(
            "gcc",
            &[&elf_tests::fixture_dir().join("loader/hello.c")],
            &prog,
            &[],
        );
        let original = elf_tests::run_ok(std::process::Command::new(&prog).arg("x"));
        Hello {
            dir,
            prog,
            original,
        }
    }

    /// A copy of the program named `name`, edited with `args`.
    fn edited(&self, name: &str, args: &[&str]) -> std::path::PathBuf {
        let copy = self.dir.path().join(name);
        std::fs::copy(&self.prog, &copy).expect("copy");
        patch(&copy, args);
        copy
    }

    /// `copy` runs as the program does (its own path aside).
    fn assert_runs_alike(&self, copy: &std::path::Path) {
        let out = elf_tests::run_ok(std::process::Command::new(copy).arg("x"));
        assert_eq!(
            out.replace(copy.to_str().expect("utf-8"), "P"),
            self.original
                .replace(self.prog.to_str().expect("utf-8"), "P")
        );
    }
}

/// `--add-needed` arguments for five libraries every glibc system has: more entries than
/// the fixtures' `.dynamic` holds.
const FIVE_MORE_NEEDED: [&str; 10] = [
    "--add-needed",
    "libm.so.6",
    "--add-needed",
    "libdl.so.2",
    "--add-needed",
    "libpthread.so.0",
    "--add-needed",
    "librt.so.1",
    "--add-needed",
    "libutil.so.1",
];

/// GNU ld maps `.note.gnu.property` twice, by a `PT_NOTE` and by `PT_GNU_PROPERTY`. When an
/// edit needs one program header more than the table holds (a `.dynamic` that moves to a
/// segment of its own), that `PT_NOTE` gives its slot: the table stays where it is and no
/// segment is added to hold it. The other notes (build ID, ABI tag) keep their header; an
/// edit that needs no slot keeps every header.
#[test]
fn the_note_that_repeats_gnu_property_gives_its_slot_to_a_moved_dynamic() {
    let hello = Hello::build();
    let prog = &hello.prog;
    let property = headers_of(prog, "GNU_PROPERTY");
    let notes = headers_of(prog, "NOTE");
    assert_eq!(property.len(), 1, "{}", readelf("-lW", prog));
    let offset = |h: &str| h.split_whitespace().nth(1).map(str::to_owned);
    assert!(notes.iter().any(|n| offset(n) == offset(&property[0])));

    // One more entry fits the section: nothing moves, every header stays.
    let small = hello.edited("small", &["--add-needed", "libm.so.6"]);
    assert_eq!(headers_of(&small, "NOTE"), notes);

    // Five more do not: `.dynamic` moves to a new segment, the only one added.
    let moved = hello.edited("moved", &FIVE_MORE_NEEDED);
    let loads = |f: &std::path::Path| headers_of(f, "LOAD").len();
    assert_eq!(loads(&moved), loads(prog) + 1, "{}", readelf("-lW", &moved));
    assert_eq!(headers_of(&moved, "PHDR"), headers_of(prog, "PHDR"));
    assert_eq!(headers_of(&moved, "GNU_PROPERTY"), property);
    let kept: Vec<String> = notes
        .iter()
        .filter(|n| offset(n) != offset(&property[0]))
        .cloned()
        .collect();
    assert_eq!(headers_of(&moved, "NOTE"), kept);
    hello.assert_runs_alike(&moved);
}

/// When `.dynamic` must move and the strings (or the interpreter) do not fit the slack of
/// a segment, both go into one new read-write segment, the strings before `.dynamic`: one
/// segment more, not two. Edited again the same way, the file is the same.
#[test]
fn strings_that_move_with_a_moved_dynamic_share_its_segment() {
    let hello = Hello::build();
    // A run path longer than any slack, and five more entries than `.dynamic` holds.
    let rpath = format!("/nix/store/{}-none/lib", "r".repeat(4000));
    let mut args = vec!["--set-rpath", rpath.as_str()];
    args.extend(FIVE_MORE_NEEDED);
    let moved = hello.edited("moved", &args);
    let (before, after) = (headers_of(&hello.prog, "LOAD"), headers_of(&moved, "LOAD"));
    assert_eq!(after.len(), before.len() + 1, "{}", readelf("-lW", &moved));
    let new = after.last().expect("a load");
    assert!(new.contains(" RW "), "{new}");
    // `.dynstr` and `.dynamic` both lie in it.
    let field = |i: usize| {
        let hex = new.split_whitespace().nth(i).expect("field");
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).expect("hex")
    };
    let (start, size) = (field(2), field(5));
    for name in [".dynstr", ".dynamic"] {
        let vaddr = elf_tests::section_of(&moved, name).addr;
        assert!(
            vaddr >= start && vaddr < start + size,
            "{name} at {vaddr:#x}"
        );
    }
    hello.assert_runs_alike(&moved);
    let once = std::fs::read(&moved).expect("read");
    patch(&moved, &args);
    assert!(
        std::fs::read(&moved).expect("read") == once,
        "a repeated edit changed the file"
    );
}
