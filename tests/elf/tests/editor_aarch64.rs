//! elfpatch on aarch64 fixtures (64 KiB maximum page size), run under qemu-aarch64.

mod editor_common;

use editor_common::*;

#[test]
fn aarch64_pie() {
    let fx = Fixture::build(aarch64("aarch64-pie", &["-fPIE", "-pie"]));
    ops::exercise_all(&fx);
    assert_new_loads_aligned(&fx);
}

#[test]
fn aarch64_nopie_relro_now() {
    let fx = Fixture::build(aarch64(
        "aarch64-nopie",
        &["-no-pie", "-Wl,-z,relro,-z,now"],
    ));
    ops::exercise_all(&fx);
}

#[test]
fn aarch64_two_hundred_edits() {
    ops::many_edits(&Fixture::build(aarch64("aarch64-pie", &[])));
}

/// The segments elfpatch adds are aligned to 64 KiB whatever the host's page size.
fn assert_new_loads_aligned(fx: &Fixture) {
    let p = fx.copy(&fx.prog, "align");
    patch(
        &p,
        &[
            "--set-interpreter",
            &fx.long_interp(),
            "--add-needed",
            "libextra.so",
        ],
    );
    let bytes = std::fs::read(&p).expect("read");
    let elf = elfpatch::elf::Elf::parse(&bytes).expect("parse");
    let loads: Vec<_> = elf
        .program_headers()
        .iter()
        .filter(|p| p.p_type == 1)
        .collect();
    for l in &loads {
        assert!(
            l.p_align >= 0x10000,
            "PT_LOAD at {:#x} aligned to {:#x}",
            l.p_vaddr,
            l.p_align
        );
        assert_eq!(l.p_offset % 0x10000, l.p_vaddr % 0x10000);
    }
    fx.assert_runs(&p, &[]);
}
