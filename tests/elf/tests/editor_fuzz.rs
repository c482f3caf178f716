//! Random damage to the headers and tables of a real program: the engine (parse, edit,
//! verify) must return an error or a verified result, never panic. Deterministic (a fixed
//! seed), so a failure reproduces.

mod editor_common;

use editor_common::*;
use elfpatch::elf::{verify, Edit, Elf};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Byte ranges worth damaging: the ELF header, the program headers, the dynamic section,
/// the dynamic string table's first bytes, the section headers.
fn targets(data: &[u8]) -> Vec<(u64, u64)> {
    let elf = Elf::parse(data).expect("fixture parses");
    let mut v = vec![(0, 64)];
    for p in elf.program_headers() {
        if p.p_type == 2 {
            v.push((p.p_offset, p.p_filesz));
        }
    }
    let phoff = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes"));
    v.push((phoff, 56 * elf.program_headers().len() as u64));
    let shoff = u64::from_le_bytes(data[40..48].try_into().expect("8 bytes"));
    v.push((shoff, data.len() as u64 - shoff));
    v
}

#[test]
fn damaged_inputs_never_panic() {
    let fx = Fixture::build(x86_64("pie", &["-fPIE", "-pie"]));
    let good = std::fs::read(&fx.prog).expect("read");
    let ranges = targets(&good);
    // EDITOR_FUZZ_SEED / EDITOR_FUZZ_ROUNDS explore further than the default run.
    let seed = std::env::var("EDITOR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x1d_ca5);
    let rounds: u32 = std::env::var("EDITOR_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Lcg(seed);
    let mut edit = Edit::new();
    edit.set_interpreter(format!("/{}", "i".repeat(100)))
        .replace_needed("libgreet.so.1", uri(1))
        .replace_needed("libc.so.6", uri(2))
        .add_needed("libx.so")
        .set_runpath("/r")
        .clear_symbol_version("printf");
    let mut edit2 = Edit::new();
    edit2
        .rename_dynamic_symbol("greet", "greet_renamed")
        .rename_dynamic_symbol("printf", "printf_renamed")
        .remove_needed("libextra.so")
        .set_soname("x")
        .set_execstack(true);
    let (mut ok, mut refused) = (0, 0);
    let whole = [(0u64, good.len() as u64)];
    for iter in 0..rounds {
        let mut bad = good.clone();
        let (edit, ranges) = if iter % 2 == 0 {
            (&edit, &ranges[..])
        } else {
            (&edit2, &whole[..])
        };
        for _ in 0..1 + rng.below(4) {
            let (start, len) = ranges[rng.below(ranges.len() as u64) as usize];
            let at = (start + rng.below(len)) as usize;
            if at < bad.len() {
                bad[at] = match rng.below(4) {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
            }
        }
        let result = std::panic::catch_unwind(|| edit.apply(&bad));
        match result {
            Err(_) => panic!("the engine panicked on a damaged input"),
            Ok(Ok(out)) => {
                if out != bad {
                    verify(&out).unwrap_or_else(|e| {
                        // The input may fail checks of its own; only new failures count.
                        elfpatch::elf::verify_edit(&bad, &out)
                            .unwrap_or_else(|_| panic!("unverified output: {e}"))
                    });
                }
                ok += 1;
            }
            Ok(Err(_)) => refused += 1,
        }
    }
    println!("damaged inputs: {ok} edited, {refused} refused");
    assert!(ok > 0 && refused > 0);
}
