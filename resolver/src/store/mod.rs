//! The store: a directory holding content-addressed objects and the lookup table.
//!
//! ```text
//! STORE/
//!   table                  the lookup table (docs/table-format.md), replaced atomically
//!   lock                   writers hold an exclusive lock on it
//!   objects/<hex>/<name>   read-only objects; <name> is the original file name, so tools
//!                          that match libraries by name (gdb's `/libc.`) still do
//!   ld-cas                 the interpreter converted programs name by default
//!   ld-cas-<arch>          the same for programs of another architecture
//!   bin/                   converted programs and trees (roots of `collect_garbage`)
//!   roots/<id>-<name>      links to converted programs and trees elsewhere (roots too)
//!   index/uri:blake3:<hex> links to the objects, derived from the table, where ld.so's own
//!                          search finds `uri:` names ([`index`])
//! ```
//!
//! Every path in the table is relative to the store root, so moving the store directory
//! keeps it valid. A library that belongs to a converted tree is listed at its place in
//! that tree (`bin/<tree>/...`, or `roots/<link>/...` for a tree outside the store), so it
//! keeps its home; loose libraries live in `objects/`. Writers take the lock, copy objects in (temporary file, fsync, rename),
//! then replace the table ([`batch`]). Readers take no lock: they map whichever table the
//! last rename installed.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

mod batch;
mod gc;
pub mod index;
mod roots;
mod verify;

pub use batch::{Batch, Committed};
pub use gc::{Collected, Removed};
pub use roots::{RegisteredRoot, ROOTS_DIR};

use crate::atomic;
use crate::hash::{self, Mapped};
use crate::table::write::{self as table_write, BuildError, NewEntry};
use crate::table::{Kind, Table, TableError};
use crate::uri::Hash;

/// File name of the lookup table inside a store.
pub use crate::layout::TABLE_FILE;
/// File name of the writers' lock inside a store.
pub const LOCK_FILE: &str = "lock";
/// Directory of the objects inside a store.
pub use crate::layout::OBJECTS_DIR;
/// File name of the store's own copy of the interpreter, for the host's architecture
/// (`ld-cas-<arch>` for another one), which converted programs name by default.
pub const LD_CAS_FILE: &str = "ld-cas";
/// Directory where converted programs and trees land by default.
pub const BIN_DIR: &str = "bin";

/// Longest object-name hint kept in a file name.
const MAX_NAME_HINT: usize = 80;

/// What went wrong with a store. Every variant names the path at fault.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{path}: {action}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The directory is not a store.
    #[error(
        "{0} is not an ld-cas store (no table; create one with `elfpatch store init --store {0}`)"
    )]
    NotAStore(PathBuf),
    /// The table exists but is damaged.
    #[error("{path} {problem}")]
    Table { path: PathBuf, problem: TableError },
    /// A new table could not be built.
    #[error("cannot build the table of {path}: {source}")]
    Build {
        path: PathBuf,
        #[source]
        source: BuildError,
    },
}

fn io_error<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// An opened store.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// The store's table, mapped.
pub struct TableMap {
    bytes: Mapped,
    path: PathBuf,
}

impl TableMap {
    /// The error for a damaged table.
    pub(super) fn damaged(&self, problem: TableError) -> StoreError {
        StoreError::Table {
            path: self.path.clone(),
            problem,
        }
    }

    /// The parsed table (header checked; see [`Table::verify`] for the rest).
    pub fn table(&self) -> Result<Table<'_>, StoreError> {
        Table::parse(&self.bytes).map_err(|problem| self.damaged(problem))
    }
}

/// An object to put into the store.
#[derive(Clone, Debug)]
pub struct NewObject<'a> {
    /// Where the bytes come from.
    pub content: Content<'a>,
    /// The readable part of the object's file name (usually the source's file name).
    pub name: String,
    /// Its `DT_SONAME`, empty when none.
    pub soname: Vec<u8>,
    /// What it is.
    pub kind: Kind,
}

/// Where an object's bytes come from.
#[derive(Clone, Debug)]
pub enum Content<'a> {
    /// A file, copied and hashed with plain BLAKE3.
    File(&'a Path),
    /// Bytes with an address the caller computed (with [`hash::hash_modulo_cycle`] for
    /// members of a dependency cycle).
    Bytes { bytes: &'a [u8], hash: Hash },
    /// A file the caller already wrote inside the store (a library at its place in a
    /// converted tree), listed where it lies instead of copied. The caller makes it durable
    /// before the batch is committed; `path` must lie inside the store root.
    Placed { path: &'a Path, hash: Hash },
}

/// An object that is in the store after [`Store::add`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    /// Its address.
    pub hash: Hash,
    /// Its absolute path.
    pub path: PathBuf,
    /// Whether it was already there.
    pub existed: bool,
}

/// A problem [`Store::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The table is damaged.
    DamagedTable(String),
    /// An object listed in the table is missing or unreadable.
    Missing {
        hash: Hash,
        path: PathBuf,
        error: String,
    },
    /// An object's bytes do not have the address it is listed under.
    Mismatch {
        hash: Hash,
        path: PathBuf,
        actual: Hash,
    },
    /// A member of a dependency cycle has the address version 1 of the cycle rule gave it,
    /// which did not pin the references inside the cycle: it cannot be trusted, and must
    /// be converted again.
    OldCycleRule { hash: Hash, path: PathBuf },
    /// A file in `objects/` that the table does not list (left by an interrupted writer:
    /// `store gc` removes it).
    Unlisted { path: PathBuf },
    /// A listed object that lies outside the store (and outside every registered root),
    /// reached through a symbolic link.
    OutsideStore {
        hash: Hash,
        path: PathBuf,
        real: PathBuf,
    },
    /// The index disagrees with the table at `path` (a writer interrupted between the
    /// table and the index, or a hand edit; the next write of the store repairs it).
    Index { path: PathBuf, problem: String },
    /// An object's size differs from the one recorded.
    SizeMismatch {
        hash: Hash,
        path: PathBuf,
        recorded: u64,
        actual: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::DamagedTable(e) => write!(f, "damaged table: {e}"),
            Problem::Missing { hash, path, error } => {
                write!(
                    f,
                    "{hash}: {} is missing or unreadable: {error}",
                    path.display()
                )
            }
            Problem::Mismatch { hash, path, actual } => {
                write!(
                    f,
                    "{hash}: {} has changed: its content address is now {actual}",
                    path.display()
                )
            }
            Problem::Unlisted { path } => write!(
                f,
                "{} is in objects/ but the table does not list it (left by an interrupted writer; elfpatch store gc removes it)",
                path.display()
            ),
            Problem::OutsideStore { hash, path, real } => write!(
                f,
                "{hash}: {} leads outside the store, to {}, through a symbolic link that no registered root accounts for",
                path.display(),
                real.display()
            ),
            Problem::OldCycleRule { hash, path } => write!(
                f,
                "{hash}: {} is a dependency-cycle member addressed by version 1 of the cycle rule, which does not pin the references inside its cycle, so it cannot be verified: convert the programs that need it again",
                path.display()
            ),
            Problem::Index { path, problem } => write!(
                f,
                "index entry {} {problem} (elfpatch store init, or the next write of the store, repairs it)",
                path.display()
            ),
            Problem::SizeMismatch {
                hash,
                path,
                recorded,
                actual,
            } => write!(
                f,
                "{hash}: {} is {actual} bytes, the table records {recorded}",
                path.display()
            ),
        }
    }
}

/// The writers' lock; released when dropped.
pub struct StoreLock {
    _file: File,
}

/// The path of object `hash` inside `objects/`: `<hex>/<name>`, the original file name
/// reduced to characters that are safe in a file name (`<hex>/object` when nothing of it
/// is left).
pub fn object_file_name(hash: &Hash, name: &str) -> PathBuf {
    let hex = String::from_utf8_lossy(&hash.to_hex_bytes()).into_owned();
    let file = safe_name(name);
    Path::new(&hex).join(if file.is_empty() { "object" } else { &file })
}

/// `name` reduced to characters that are safe in a file name, and at most
/// `MAX_NAME_HINT` of them; empty when nothing (or only dots) is left.
fn safe_name(name: &str) -> String {
    let hint: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_HINT)
        .collect();
    if hint.chars().all(|c| c == '.') {
        String::new()
    } else {
        hint
    }
}

/// `<id>-<name>`, the readable hint `name` reduced to characters that are safe in a file
/// name (just `<id>` when nothing of it is left).
fn hinted_name(id: &str, name: &str) -> String {
    let hint = safe_name(name);
    if hint.is_empty() {
        id.to_owned()
    } else {
        format!("{id}-{hint}")
    }
}

impl Store {
    /// Creates a store at `root` (and its parents), or checks the one already there.
    pub fn init(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root.join(OBJECTS_DIR))
            .map_err(io_error(root, "cannot create the store"))?;
        let store = Store::at(root)?;
        let _lock = store.lock()?;
        if !store.table_path().exists() {
            let empty = table_write::build(Vec::new(), 0).map_err(|source| StoreError::Build {
                path: store.table_path(),
                source,
            })?;
            store.replace_table(&empty)?;
        } else {
            // A store written before the index existed gets one (ld-cas needs it for the
            // names libraries need); an up-to-date index is left as it is.
            let map = store.map_table()?;
            store.sync_index(&map.bytes)?;
        }
        Ok(store)
    }

    /// Opens the store at `root`, which must have been created by [`Store::init`].
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store::at(root)?;
        if !store.table_path().is_file() {
            return Err(StoreError::NotAStore(root.to_path_buf()));
        }
        Ok(store)
    }

    fn at(root: &Path) -> Result<Store, StoreError> {
        let root = root
            .canonicalize()
            .map_err(io_error(root, "cannot open the store"))?;
        Ok(Store { root })
    }

    /// The store's absolute root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of the table file.
    pub fn table_path(&self) -> PathBuf {
        self.root.join(TABLE_FILE)
    }

    /// The absolute path of a store-relative path from the table.
    pub fn absolute(&self, relative: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join(std::ffi::OsStr::from_bytes(relative))
    }

    /// Takes the writers' lock, waiting for other writers.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "cannot open the lock file"))?;
        file.lock().map_err(io_error(&path, "cannot lock"))?;
        Ok(StoreLock { _file: file })
    }

    /// Maps the current table.
    pub fn map_table(&self) -> Result<TableMap, StoreError> {
        let path = self.table_path();
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotAStore(self.root.clone()),
            _ => StoreError::Io {
                path: path.clone(),
                action: "cannot open the table",
                source: e,
            },
        })?;
        let bytes = hash::map_file(&file).map_err(io_error(&path, "cannot map the table"))?;
        Ok(TableMap { bytes, path })
    }

    /// The absolute path of the object `hash`, if the table lists it.
    pub fn resolve(&self, hash: &Hash) -> Result<Option<PathBuf>, StoreError> {
        let map = self.map_table()?;
        let table = map.table()?;
        let found = table
            .lookup_checked(hash)
            .map_err(|problem| map.damaged(problem))?;
        Ok(found.map(|e| self.absolute(e.path)))
    }

    /// Every entry of the table, fully checked.
    pub fn entries(&self) -> Result<Vec<NewEntry>, StoreError> {
        self.snapshot().map(|(entries, _)| entries)
    }

    /// Every entry of the table, fully checked, and the table's generation.
    fn snapshot(&self) -> Result<(Vec<NewEntry>, u64), StoreError> {
        let map = self.map_table()?;
        let table = map.table()?;
        let entries = table_write::checked_entries(&table).map_err(|p| map.damaged(p))?;
        Ok((entries, table.generation()))
    }

    /// Builds a table of `entries` with `generation` and installs it durably, after the
    /// renames in `objects_dir` are durable. The caller holds the writers' lock.
    fn write_table(
        &self,
        objects_dir: &Path,
        entries: Vec<NewEntry>,
        generation: u64,
    ) -> Result<(), StoreError> {
        self.install_table(objects_dir, || table_write::build(entries, generation))
    }

    /// Installs the table `build` makes, durably, after the renames in `objects_dir` are
    /// durable. The caller holds the writers' lock.
    fn install_table(
        &self,
        objects_dir: &Path,
        build: impl FnOnce() -> Result<Vec<u8>, BuildError>,
    ) -> Result<(), StoreError> {
        atomic::sync_dir(objects_dir).map_err(io_error(objects_dir, "cannot sync"))?;
        let bytes = build().map_err(|source| StoreError::Build {
            path: self.table_path(),
            source,
        })?;
        self.replace_table(&bytes)
    }

    /// Replaces the table with `bytes`, durably, then brings the index in line with it.
    fn replace_table(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.table_path();
        atomic::replace_file(&path, bytes, Some(Permissions::from_mode(0o444)))
            .map_err(io_error(&path, "cannot write the table"))?;
        self.sync_index(bytes)
    }

    /// The index directory.
    pub fn index_path(&self) -> PathBuf {
        self.root.join(index::INDEX_DIR)
    }

    /// What the index of the table `bytes` holds.
    fn wanted_index(&self, bytes: &[u8]) -> Result<index::Wanted, StoreError> {
        let path = self.table_path();
        let damaged = |problem| StoreError::Table {
            path: path.clone(),
            problem,
        };
        let table = Table::parse(bytes).map_err(damaged)?;
        let entries = table_write::checked_entries(&table).map_err(damaged)?;
        Ok(index::wanted(
            Path::new(""),
            &entries,
            index::Links::HardForObjects,
        ))
    }

    /// Brings the index in line with the table `bytes` (the caller holds the lock).
    fn sync_index(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let want = self.wanted_index(bytes)?;
        let dir = self.index_path();
        index::sync(&dir, &want).map_err(io_error(&dir, "cannot update the index"))
    }
}
