//! The corpus test: every ELF file of the machine gets every `DT_NEEDED` replaced by a
//! 75-byte name and (when it has one) a long interpreter. Each output must pass the verify
//! pass and `readelf -ldW` without new warnings; files the editor refuses must be refused
//! with a reason. The tally is printed. Each output is written through the command line's
//! write path and compared with the library's.

mod editor_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use editor_common::*;
use elfpatch::elf::{self, Edit, Elf};

enum Outcome {
    Patched,
    Unchanged,
    Refused(String),
    Corrupted(String),
}

fn readelf_warnings(file: &Path) -> Vec<String> {
    let out = elf_tests::run(Command::new("readelf").args(["-ldW"]).arg(file));
    let mut w: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        w.push(format!("readelf exit {}", out.status));
    }
    w
}

fn one(path: &Path, tmp: &Path, interp: &str) -> Outcome {
    let Ok(data) = std::fs::read(path) else {
        return Outcome::Refused("unreadable".into());
    };
    let parsed = match Elf::parse(&data) {
        Ok(e) => e,
        Err(e) => return Outcome::Refused(format!("parse: {e}")),
    };
    let mut edit = Edit::new();
    let needed: Vec<String> = parsed
        .needed()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let mut want = Vec::new();
    for (i, n) in needed.iter().enumerate() {
        let u = uri(i as u8);
        edit.replace_needed(n.clone(), u.clone());
        want.push(u);
    }
    let has_interp = parsed.interpreter().is_some();
    if has_interp {
        edit.set_interpreter(interp);
    }
    let res = std::panic::catch_unwind(|| edit.apply(&data));
    let out = match res {
        Err(_) => return Outcome::Corrupted("the editor panicked".into()),
        Ok(Err(e)) => return Outcome::Refused(e.to_string()),
        Ok(Ok(o)) => o,
    };
    if out == data {
        return Outcome::Unchanged;
    }
    if let Err(e) = elf::verify_edit(&data, &out) {
        return Outcome::Corrupted(e.to_string());
    }
    let Ok(re) = Elf::parse(&out) else {
        return Outcome::Corrupted("output does not parse".into());
    };
    let got: Vec<String> = re
        .needed()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    if got != want {
        return Outcome::Corrupted(format!("needed {got:?}, wanted {want:?}"));
    }
    if has_interp && re.interpreter() != Some(interp.as_bytes()) {
        return Outcome::Corrupted("interpreter not set".into());
    }
    let name = path.to_string_lossy().replace('/', "_");
    let out_path = tmp.join(name);
    // The command line's write path (the input mapped, the output written from its runs,
    // room for program headers made in a copy-on-write mapping) gives the bytes `apply`
    // gave.
    let written = elf::read_file(path).and_then(|input| {
        let parsed = input.parse()?;
        elf::write_edit(&input, &parsed, &edit, &out_path, false)
    });
    if let Err(e) = written {
        return Outcome::Corrupted(format!("write path: {e}"));
    }
    if std::fs::read(&out_path).ok().as_ref() != Some(&out) {
        return Outcome::Corrupted("the write path's output differs from apply's".into());
    }
    let after = readelf_warnings(&out_path);
    let _ = std::fs::remove_file(&out_path);
    if !after.is_empty() {
        let before = readelf_warnings(path);
        let new: Vec<&String> = after.iter().filter(|w| !before.contains(w)).collect();
        if !new.is_empty() {
            return Outcome::Corrupted(format!(
                "readelf: {}",
                new.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
    }
    Outcome::Patched
}

#[test]
fn corpus_replace_needed_and_interpreter() {
    elf_tests::require_tool("readelf");
    let files = corpus::files();
    assert!(
        !files.is_empty(),
        "no ELF file found under /usr/bin and /usr/lib"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let interp = format!(
        "/nix/store/{}-glibc-2.40/lib/ld-linux-x86-64.so.2",
        "z".repeat(32)
    );
    let results = corpus::par_map(&files, |p| one(p, tmp.path(), &interp));
    let (mut patched, mut unchanged) = (0, 0);
    let mut refused: BTreeMap<String, Vec<&Path>> = BTreeMap::new();
    let mut corrupted = Vec::new();
    for (p, r) in files.iter().zip(&results) {
        match r {
            Outcome::Patched => patched += 1,
            Outcome::Unchanged => unchanged += 1,
            Outcome::Refused(why) => refused.entry(why.clone()).or_default().push(p),
            Outcome::Corrupted(why) => corrupted.push(format!("{}: {why}", p.display())),
        }
    }
    let nrefused: usize = refused.values().map(Vec::len).sum();
    println!(
        "corpus: {} ELF files: {patched} patched, {unchanged} unchanged (nothing to edit), {nrefused} refused, {} corrupted",
        files.len(),
        corrupted.len()
    );
    for (why, ps) in &refused {
        println!("  refused ({}): {why} (e.g. {})", ps.len(), ps[0].display());
    }
    for c in corrupted.iter().take(50) {
        println!("  CORRUPTED {c}");
    }
    assert!(
        corrupted.is_empty(),
        "{} corrupted outputs",
        corrupted.len()
    );
    assert_eq!(nrefused, 0, "refused inputs (see above)");
    // Most files have an interpreter or a DT_NEEDED to rename: an editor that quietly
    // left them alone would pass the checks above.
    assert!(
        patched > unchanged,
        "only {patched} of {} files were patched",
        files.len()
    );
    // And at least half of all files: an editor that refused or skipped most of them
    // (say, every 32-bit or every stripped file) fails here too.
    assert!(
        2 * patched >= files.len(),
        "only {patched} of {} files were patched",
        files.len()
    );
}
