//! Unit tests of ld-cas's pure code (ld-cas is a freestanding binary with no test harness
//! of its own): its modules compiled here as plain modules, their `#[cfg(test)]` tests run
//! with the standard harness.

// `elf.rs` names the tags as `resolver_core::tags`, which `resolver` re-exports.
extern crate resolver as resolver_core;

// The ELF reading: string look-ups.
#[path = "../../../ld-cas/src/elf.rs"]
#[allow(dead_code)]
mod elf;

// The byte comparisons (not exported here, where libc's serve).
#[path = "../../../ld-cas/src/mem.rs"]
mod mem;
