//! Errors of the ELF editing engine. Each one says what was wrong and where (a file
//! offset, a virtual address, a header index), so a refused input can be diagnosed.

use thiserror::Error;

/// Result alias of the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong while reading, editing or verifying an ELF file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not an ELF file at all.
    #[error("not an ELF file: {0}")]
    NotElf(String),
    /// The file is ELF but a header or table is inconsistent or truncated.
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// The file is well formed but the requested edit cannot be applied to it.
    #[error("cannot edit: {0}")]
    Unsupported(String),
    /// A piece the edit needs is absent (no `PT_INTERP`, no `PT_DYNAMIC`, no `DT_SONAME`...).
    #[error("{0}")]
    Missing(String),
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(String),
    /// The edited image failed the verify pass; nothing was written.
    #[error("verify failed: {0}")]
    Verify(String),
}

/// Shorthand for [`Error::Malformed`].
pub(crate) fn malformed(msg: impl Into<String>) -> Error {
    Error::Malformed(msg.into())
}
