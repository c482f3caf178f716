//! The parts of the content-address core (`resolver_core`) ld-cas uses: the URI grammar,
//! the table reader and the store's layout.

pub use resolver_core::layout;
pub use resolver_core::table::{Entry, Kind, Table, TableError};
pub use resolver_core::uri::{Hash, HEX_LEN, URI_LEN, URI_PREFIX};
