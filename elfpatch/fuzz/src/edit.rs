//! Fuzz target: elfpatch's parse → edit → verify path on arbitrary bytes. Parsing must
//! refuse or succeed, never panic; every edit that succeeds has passed the editor's verify
//! pass against its input, and the result must parse again and carry the edit.
#![no_main]

#[path = "../../../resolver/fuzz/targets/driver.rs"]
#[macro_use]
mod driver;

use elfpatch::elf::{Edit, Elf};

fuzz_target!(|bytes| {
    let Ok(elf) = Elf::parse(bytes) else {
        return 0;
    };
    let _ = (
        elf.interpreter(),
        elf.needed(),
        elf.soname(),
        elf.runpath(),
        elf.rpath(),
    );
    let first_needed = elf
        .needed()
        .first()
        .map(|n| String::from_utf8_lossy(n).into_owned());
    let mut edits = vec![
        {
            let mut e = Edit::new();
            e.set_interpreter("/nix/store/00000000000000000000000000000000-ld-cas/ld-cas");
            e
        },
        {
            let mut e = Edit::new();
            e.set_runpath("$ORIGIN/../lib:/a/much/longer/run/path/than/before");
            e
        },
        {
            let mut e = Edit::new();
            e.add_needed("libadded.so.1").set_soname("libfuzz.so.9");
            e
        },
    ];
    if let Some(old) = first_needed {
        let mut e = Edit::new();
        e.replace_needed(
            old,
            "uri:blake3:0000000000000000000000000000000000000000000000000000000000000000",
        );
        edits.push(e);
    }
    for edit in &edits {
        if let Ok(out) = edit.apply(bytes) {
            assert!(Elf::parse(&out).is_ok(), "an edit's output does not parse");
        }
    }
});
