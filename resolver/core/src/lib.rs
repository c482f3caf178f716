//! The dependency-free core of ld-cas's content-address model, shared by the interpreter
//! (`ld-cas`), the std crate `resolver` (which re-exports every module here) and the editor.
//!
//! Everything here is `#![no_std]`, allocates nothing, depends on nothing and builds with
//! Rust 1.63 (Debian's rustc, the only compiler of the aarch64 interpreter):
//!
//! - [`uri`]: the URI grammar, `uri:blake3:<64 lowercase hex>` (`docs/uri.md`);
//! - [`table`]: the lookup-table format and its zero-copy reader (`docs/table-format.md`);
//! - [`refs`]: the reference scanner (the URIs that occur in an object's bytes);
//! - [`cycle_rule`]: the cycle rule of `docs/uri.md` (the placeholder, the blanking of a
//!   cycle's references, the components of a reference graph, the members' addresses);
//! - [`blake3`]: a small portable BLAKE3 hasher, for code that cannot use the `blake3` crate;
//! - [`tags`]: the dynamic-section tags by which a converted program talks to ld-cas;
//! - [`layout`]: the store's directory names both sides use, and which index entries are
//!   hard links.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod blake3;
pub mod bytes;
pub mod cycle_rule;
pub mod layout;
pub mod refs;
pub mod table;
pub mod tags;
pub mod uri;
