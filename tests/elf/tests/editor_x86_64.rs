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
