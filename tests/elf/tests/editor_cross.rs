//! The other machines the issue lists, as programs that run: i386 and 32-bit arm (ELF32),
//! ppc64le and riscv64, and s390x (big endian), each patched with every option and run
//! under qemu-user with its Debian cross sysroot. Needs the cross compilers and libcs:
//! gcc-{i686-linux-gnu,arm-linux-gnueabihf,powerpc64le-linux-gnu,riscv64-linux-gnu,
//! s390x-linux-gnu} and libc6-dev-{i386,armhf,ppc64el,riscv64,s390x}-cross.

mod editor_common;

use editor_common::*;

#[test]
fn i386_pie() {
    ops::exercise_all(&Fixture::build(i386("i386-pie", &["-fPIE", "-pie"])));
}

#[test]
fn i386_nopie_relro_now() {
    ops::exercise_all(&Fixture::build(i386(
        "i386-nopie",
        &["-no-pie", "-Wl,-z,relro,-z,now"],
    )));
}

#[test]
fn armhf_pie() {
    ops::exercise_all(&Fixture::build(armhf("armhf-pie", &["-fPIE", "-pie"])));
}

#[test]
fn armhf_two_hundred_edits() {
    ops::many_edits(&Fixture::build(armhf("armhf", &[])));
}

#[test]
fn ppc64le() {
    ops::exercise_all(&Fixture::build(cross(
        "ppc64le",
        "powerpc64le-linux-gnu",
        "qemu-ppc64le",
        "ld64.so.2",
    )));
}

#[test]
fn riscv64() {
    ops::exercise_all(&Fixture::build(cross(
        "riscv64",
        "riscv64-linux-gnu",
        "qemu-riscv64",
        "ld-linux-riscv64-lp64d.so.1",
    )));
}

/// Big endian, 64-bit.
#[test]
fn s390x() {
    ops::exercise_all(&Fixture::build(cross(
        "s390x",
        "s390x-linux-gnu",
        "qemu-s390x",
        "ld64.so.1",
    )));
}

/// The resolution cache note in ELF32 and in big-endian files.
#[test]
fn resolution_cache_i386_and_s390x() {
    ops::resolution_cache(&Fixture::build(i386("i386-ldcache", &["-fPIE", "-pie"])));
    ops::resolution_cache(&Fixture::build(cross(
        "s390x-ldcache",
        "s390x-linux-gnu",
        "qemu-s390x",
        "ld64.so.1",
    )));
}
