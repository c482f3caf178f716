//! ELF32 and ELF64, little and big endian, the machines the issue lists (x86_64, aarch64,
//! i386, arm, riscv64, ppc64le) and big-endian ones (ppc, ppc64, s390x): the editor on
//! synthetic dynamically linked files, with and without section headers. Every output
//! must pass the verify pass and readelf, read back the new values, and align its new
//! segments to the target's maximum page size.

mod editor_common;

use editor_common::synth::{build, with_and_without_sections, Target};
use editor_common::*;
use elfpatch::elf::{max_page_size, verify, Edit, Elf, DT_LDCAS_LOADER, DT_LDCAS_STORE};

const TARGETS: &[(&str, bool, bool, u16)] = &[
    ("x86_64", true, false, 62),
    ("aarch64", true, false, 183),
    ("i386", false, false, 3),
    ("arm", false, false, 40),
    ("riscv64", true, false, 243),
    ("ppc64le", true, false, 21),
    ("ppc64", true, true, 21),
    ("ppc", false, true, 20),
    ("s390x", true, true, 22),
];

fn targets() -> Vec<Target> {
    with_and_without_sections(TARGETS)
}

fn readelf_ok(bytes: &[u8], what: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("f");
    std::fs::write(&f, bytes).expect("write");
    readelf_clean(&f);
    let d = readelf("-d", &f);
    assert!(d.contains("NEEDED"), "{what}: readelf -d:\n{d}");
}

#[test]
fn every_class_endianness_and_machine() {
    for t in targets() {
        let what = format!(
            "{} ({}sections)",
            t.name,
            if t.with_sections { "" } else { "no " }
        );
        let input = build(t);
        verify(&input).unwrap_or_else(|e| panic!("{what}: synthetic input fails verify: {e}"));
        readelf_ok(&input, &what);
        let elf = Elf::parse(&input).expect("parse");
        assert_eq!(
            elf.needed(),
            vec![&b"libfoo.so.1"[..], b"libc.so.6"],
            "{what}"
        );
        assert_eq!(elf.interpreter(), Some(&b"/lib/ld.so.1"[..]), "{what}");

        let interp = format!("/nix/store/{}-glibc/lib/ld.so.1", "q".repeat(32));
        let mut e = Edit::new();
        e.set_interpreter(interp.clone())
            .replace_needed("libfoo.so.1", uri(7))
            .add_needed("libextra.so")
            .set_runpath(format!("/opt/{}", "r".repeat(90)))
            .set_soname(uri(8))
            .set_dynamic_tag(DT_LDCAS_LOADER, uri(9))
            .set_dynamic_tag(DT_LDCAS_STORE, "../store");
        let out = e
            .apply(&input)
            .unwrap_or_else(|err| panic!("{what}: {err}"));
        verify(&out).unwrap_or_else(|err| panic!("{what}: output fails verify: {err}"));
        readelf_ok(&out, &what);
        let o = Elf::parse(&out).expect("reparse");
        let want_needed = [
            b"libextra.so".to_vec(),
            uri(7).into_bytes(),
            b"libc.so.6".to_vec(),
        ];
        assert_eq!(
            o.needed().iter().map(|n| n.to_vec()).collect::<Vec<_>>(),
            want_needed,
            "{what}"
        );
        assert_eq!(o.interpreter(), Some(interp.as_bytes()), "{what}");
        assert_eq!(o.soname(), Some(uri(8).as_bytes()), "{what}");
        assert_eq!(
            o.dynamic_string(DT_LDCAS_LOADER),
            Some(uri(9).as_bytes()),
            "{what}"
        );
        assert_eq!(
            o.dynamic_string(DT_LDCAS_STORE),
            Some(&b"../store"[..]),
            "{what}"
        );
        assert!(
            o.runpath().is_some_and(|r| r.starts_with(b"/opt/rrr")),
            "{what}"
        );
        assert!(
            !out.windows(12).any(|w| w == b"libfoo.so.1\0"),
            "{what}: old name not scrubbed"
        );
        // New segments take the machine's page size, or the input's largest PT_LOAD
        // alignment when that is larger (so every load of the file agrees, as patchelf).
        let page = elf
            .program_headers()
            .iter()
            .filter(|p| p.p_type == 1)
            .map(|p| p.p_align)
            .fold(max_page_size(t.machine), u64::max);
        let loads: Vec<_> = o
            .program_headers()
            .iter()
            .filter(|p| p.p_type == 1)
            .collect();
        assert_eq!(loads.len(), 4, "{what}: two segments added");
        for l in &loads[2..] {
            assert_eq!(l.p_align, page, "{what}");
            assert_eq!(l.p_offset % page, l.p_vaddr % page, "{what}");
        }

        // Successive edits reuse the appended region.
        let mut cur = out;
        for i in 0..20u8 {
            let mut e = Edit::new();
            e.replace_needed(
                String::from_utf8_lossy(Elf::parse(&cur).expect("parse").needed()[1]).into_owned(),
                uri(i),
            )
            .set_interpreter(format!("{interp}{i}"));
            cur = e
                .apply(&cur)
                .unwrap_or_else(|err| panic!("{what}: edit {i}: {err}"));
        }
        readelf_ok(&cur, &what);
        let o = Elf::parse(&cur).expect("reparse");
        assert_eq!(
            o.program_headers().iter().filter(|p| p.p_type == 1).count(),
            4,
            "{what}"
        );
    }
}
