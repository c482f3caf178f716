//! The content-address model of ld-cas.
//!
//! A library is named by the BLAKE3 hash of its bytes, written as a URI
//! (`uri:blake3:<64 lowercase hex>`, see `docs/uri.md`). A *store* keeps such objects and
//! one immutable *lookup table* (`docs/table-format.md`) that maps a hash to the object's
//! store-relative path.
//!
//! Without the default `std` feature this crate is `no_std`, allocation-free and has no
//! dependencies: only [`uri`] and [`table`]'s reader are compiled, and they build with
//! Rust 1.63 so the interpreter can embed them on every target.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]

pub mod refs;
pub mod table;
pub mod uri;

#[cfg(feature = "std")]
pub mod atomic;
#[cfg(feature = "std")]
pub mod cycle_rule;
#[cfg(feature = "std")]
pub mod cycles;
#[cfg(feature = "std")]
pub mod hash;
#[cfg(feature = "std")]
pub mod store;
