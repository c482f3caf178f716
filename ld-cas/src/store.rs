//! Finding the store and mapping its lookup table.

use crate::cas::{Entry, Hash, Table, TableError};
use crate::path::PathBuf;
use crate::sys::{self, Errno};

/// The store used when neither the environment nor the program names one.
pub const DEFAULT_STORE: &[u8] = b"/var/lib/ld-cas/store";

/// Where the store location came from (for messages and traces).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// `LD_CAS_STORE`.
    Env,
    /// The program's `DT_LDCAS_STORE`.
    Recorded,
    /// [`DEFAULT_STORE`].
    Default,
}

impl Source {
    /// Phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Env => "from LD_CAS_STORE",
            Source::Recorded => "recorded in the program",
            Source::Default => "the default store",
        }
    }
}

/// Chooses the store directory: `env` (already dropped by the caller under `AT_SECURE`),
/// else `recorded` (relative to `program_dir` when relative), else [`DEFAULT_STORE`].
pub fn locate(
    out: &mut PathBuf,
    env: Option<&[u8]>,
    recorded: Option<&[u8]>,
    program_dir: &[u8],
) -> Source {
    out.clear();
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        out.push(e);
        return Source::Env;
    }
    if let Some(r) = recorded.filter(|r| !r.is_empty()) {
        if r[0] != b'/' {
            out.push(program_dir);
            out.push(b"/");
        }
        out.push(r);
        return Source::Recorded;
    }
    out.push(DEFAULT_STORE);
    Source::Default
}

/// Why the table could not be used.
#[derive(Clone, Copy, Debug)]
pub enum OpenError {
    /// `open` of `STORE/table` failed.
    Open(Errno),
    /// `fstat` or `mmap` failed.
    Map(Errno),
    /// The table is corrupt.
    Corrupt(TableError),
}

/// Maps `STORE/table` with one `open`, one `fstat` and one `mmap`, and checks its header.
/// `scratch` is used to build the path.
pub fn open_table(store: &[u8], scratch: &mut PathBuf) -> Result<&'static [u8], OpenError> {
    scratch.clear();
    scratch.push(store);
    scratch.push(b"/table");
    let fd = sys::open(scratch.c()).map_err(OpenError::Open)?;
    let len = sys::file_size(&fd).map_err(OpenError::Map)?;
    let bytes = sys::map_file(&fd, len as usize).map_err(OpenError::Map)?;
    Table::parse(bytes).map_err(OpenError::Corrupt)?;
    Ok(bytes)
}

/// Looks `hash` up in the (already checked) table `bytes`.
pub fn lookup(bytes: &'static [u8], hash: &Hash) -> Result<Option<Entry<'static>>, TableError> {
    Table::parse(bytes)?.lookup(hash)
}
