//! `--print-*` output matches Debian's patchelf on every ELF file of the corpus (and on the
//! fixtures): where patchelf succeeds, elfpatch prints exactly the same; where patchelf
//! reports that there is nothing to print (no interpreter), elfpatch fails too.

mod editor_common;

use std::path::Path;
use std::process::Command;

use editor_common::*;

const PRINTS: &[&str] = &[
    "--print-interpreter",
    "--print-soname",
    "--print-rpath",
    "--print-needed",
];

/// Compares one file; returns a description of each difference.
fn compare(file: &Path) -> Vec<String> {
    let mut diffs = Vec::new();
    if debug_info_only(file) {
        return diffs;
    }
    for opt in PRINTS {
        let theirs = elf_tests::run(Command::new("patchelf").arg(opt).arg(file));
        let Some(code) = theirs.status.code() else {
            continue; // patchelf crashed on this file (it does on debug-info files): nothing to match
        };
        let ours = elfpatch(&[opt, file.to_str().expect("utf-8 path")]);
        if code == 0 {
            if !ours.status.success() || ours.stdout != theirs.stdout {
                diffs.push(format!(
                    "{} {opt}: patchelf printed {:?}, elfpatch {:?} ({})",
                    file.display(),
                    String::from_utf8_lossy(&theirs.stdout),
                    String::from_utf8_lossy(&ours.stdout),
                    String::from_utf8_lossy(&ours.stderr).trim()
                ));
            }
        } else if *opt == "--print-interpreter" && ours.status.success() && !ours.stdout.is_empty()
        {
            diffs.push(format!(
                "{} {opt}: patchelf failed, elfpatch printed {:?}",
                file.display(),
                String::from_utf8_lossy(&ours.stdout)
            ));
        }
    }
    diffs
}

/// A separate debug-info file keeps the program headers of its binary but not the bytes
/// they describe; patchelf prints whatever lies at those offsets (or crashes). elfpatch
/// reports no interpreter and no dynamic section: nothing to match there.
fn debug_info_only(file: &Path) -> bool {
    let Ok(bytes) = std::fs::read(file) else {
        return false;
    };
    let Ok(elf) = elfpatch::elf::Elf::parse(&bytes) else {
        return false;
    };
    let has_dyn_phdr = elf.program_headers().iter().any(|p| p.p_type == 2);
    has_dyn_phdr && !elf.is_dynamic()
}

#[test]
fn print_options_match_patchelf_on_the_corpus() {
    elf_tests::require_tool("patchelf");
    let files = corpus::files();
    let results = corpus::par_map(&files, compare);
    let diffs: Vec<&String> = results.iter().flatten().collect();
    println!(
        "print parity: {} files x {} options, {} differences",
        files.len(),
        PRINTS.len(),
        diffs.len()
    );
    for d in diffs.iter().take(30) {
        println!("  {d}");
    }
    assert!(diffs.is_empty());
}

#[test]
fn print_options_match_patchelf_on_fixtures() {
    elf_tests::require_tool("patchelf");
    let fx = Fixture::build(x86_64("pie", &["-fPIE", "-pie"]));
    for f in [&fx.prog, &fx.lib] {
        assert!(compare(f).is_empty(), "{:?}", compare(f));
    }
    // After an edit, both tools still read the same thing.
    let p = fx.copy(&fx.prog, "edited");
    patch(
        &p,
        &[
            "--set-interpreter",
            &fx.long_interp(),
            "--replace-needed",
            "libgreet.so.1",
            &uri(3),
            "--set-rpath",
            "/a:/b",
        ],
    );
    assert!(compare(&p).is_empty(), "{:?}", compare(&p));
}
