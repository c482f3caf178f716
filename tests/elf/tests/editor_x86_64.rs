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
