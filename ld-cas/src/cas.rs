//! The parts of the `resolver` crate ld-cas uses: the URI grammar and the table reader
//! (built `no_std`, allocation-free, Rust 1.63-compatible).

pub use crate::table::{Entry, Kind, Table, TableError};
pub use crate::uri::{Hash, URI_LEN, URI_PREFIX};
