//! elfpatch: rewrites ELF binaries so that they name their libraries by content, does every
//! edit patchelf does (with patchelf's command line), and manages ld-cas stores.
//!
//! The binary's entry point is `main.rs`; this library holds everything it does so the
//! end-to-end tests and benches can call it too.

pub mod cli;
pub mod convert;
pub mod elf;
pub mod inspect;
pub mod merged;
pub mod patchelf_cli;
pub mod relocate;
pub mod substitute;
