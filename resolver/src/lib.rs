//! The content-address model of ld-cas.
//!
//! A library is named by the BLAKE3 hash of its bytes, written as a URI
//! (`uri:blake3:<64 lowercase hex>`, see `docs/uri.md`). A *store* keeps such objects and
//! one immutable *lookup table* (`docs/table-format.md`) that maps a hash to the object's
//! store-relative path.
//!
//! What the interpreter shares (the URI grammar, the table reader, the reference scanner,
//! the cycle rule's allocation-free parts, the ELF tags) is the `no_std` crate
//! `resolver_core`, re-exported here under the same paths; this crate adds what needs std:
//! hashing with the `blake3` crate, the table writer, the store.
#![deny(unsafe_code)]

pub use resolver_core::{bytes, layout, refs, tags, uri};

pub mod atomic;
pub mod cycle_rule;
pub mod cycles;
pub mod hash;
pub mod store;
pub mod table;
