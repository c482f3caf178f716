//! The store: a directory holding content-addressed objects and the lookup table.
//!
//! ```text
//! STORE/
//!   table                  the lookup table (docs/table-format.md), replaced atomically
//!   lock                   writers hold an exclusive lock on it
//!   objects/<hex>-<name>   read-only objects; <name> is a readable hint (the file name)
//!   ld-cas                 the interpreter converted programs name by default
//!   bin/                   converted programs and trees
//! ```
//!
//! Every path in the table is relative to the store root, so moving the store directory
//! keeps it valid. Writers take the lock, copy objects in (temporary file, fsync, rename),
//! then replace the table; an entry is reported added only once the table that holds it is
//! durable. Readers take no lock: they map whichever table the last rename installed.

use std::collections::HashMap;
use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::atomic;
use crate::cycles;
use crate::hash::{self, Mapped};
use crate::refs::references;
use crate::table::write::{self as table_write, BuildError, NewEntry};
use crate::table::{Kind, Table, TableError};
use crate::uri::Hash;

/// File name of the lookup table inside a store.
pub const TABLE_FILE: &str = "table";
/// File name of the writers' lock inside a store.
pub const LOCK_FILE: &str = "lock";
/// Directory of the objects inside a store.
pub const OBJECTS_DIR: &str = "objects";
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
    fn damaged(&self, problem: TableError) -> StoreError {
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

/// The object file name for `hash` with readable hint `name`: `<hex>-<name>`, the hint
/// reduced to characters that are safe in a file name.
pub fn object_file_name(hash: &Hash, name: &str) -> String {
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
    let hex = hash.to_hex_bytes();
    let hex = String::from_utf8_lossy(&hex);
    if hint.is_empty() || hint.chars().all(|c| c == '.') {
        hex.into_owned()
    } else {
        format!("{hex}-{hint}")
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
        let damaged = |problem| map.damaged(problem);
        table.verify().map_err(damaged)?;
        let entries = table
            .entries()
            .map(|e| e.map(NewEntry::from).map_err(damaged))
            .collect::<Result<_, _>>()?;
        Ok((entries, table.generation()))
    }

    fn replace_table(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.table_path();
        atomic::replace_file(&path, bytes, Some(Permissions::from_mode(0o444)))
            .map_err(io_error(&path, "cannot write the table"))
    }

    /// Copies `objects` into the store and lists them in a new table, under the writers'
    /// lock. When this returns, the objects and the table that lists them are durable.
    pub fn add(&self, objects: &[NewObject<'_>]) -> Result<Vec<Added>, StoreError> {
        let _lock = self.lock()?;
        let objects_dir = self.root.join(OBJECTS_DIR);
        fs::create_dir_all(&objects_dir).map_err(io_error(&objects_dir, "cannot create"))?;
        atomic::remove_stale_temporaries(&objects_dir)
            .and_then(|()| atomic::remove_stale_temporaries(&self.root))
            .map_err(io_error(&objects_dir, "cannot clean up"))?;

        let (mut entries, generation) = self.snapshot()?;
        let mut known: HashMap<Hash, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash, i))
            .collect();

        let mut added = Vec::with_capacity(objects.len());
        for object in objects {
            let (hash, path, existed, size) = self.put_object(object, &entries, &known)?;
            if !existed {
                let relative = path
                    .strip_prefix(&self.root)
                    .unwrap_or(&path)
                    .as_os_str()
                    .as_encoded_bytes()
                    .to_vec();
                known.insert(hash, entries.len());
                entries.push(NewEntry {
                    hash,
                    path: relative,
                    soname: object.soname.clone(),
                    size,
                    kind: object.kind,
                });
            }
            added.push(Added {
                hash,
                path,
                existed,
            });
        }
        if added.iter().all(|a| a.existed) {
            return Ok(added);
        }
        atomic::sync_dir(&objects_dir).map_err(io_error(&objects_dir, "cannot sync"))?;
        let bytes =
            table_write::build(entries, generation + 1).map_err(|source| StoreError::Build {
                path: self.table_path(),
                source,
            })?;
        self.replace_table(&bytes)?;
        Ok(added)
    }

    /// Writes one object under its address. Returns (hash, absolute path, existed, size).
    fn put_object(
        &self,
        object: &NewObject<'_>,
        entries: &[NewEntry],
        known: &HashMap<Hash, usize>,
    ) -> Result<(Hash, PathBuf, bool, u64), StoreError> {
        let objects_dir = self.root.join(OBJECTS_DIR);
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&objects_dir)
            .map_err(io_error(&objects_dir, "cannot create a temporary file"))?;
        let hash = match &object.content {
            Content::File(source) => {
                let mut from = File::open(source).map_err(io_error(source, "cannot open"))?;
                io::copy(&mut from, tmp.as_file_mut()).map_err(io_error(source, "cannot copy"))?;
                // Hash the copy, not the source: the source may change while we read it.
                hash::hash_file(tmp.path()).map_err(io_error(source, "cannot hash"))?
            }
            Content::Bytes { bytes, hash } => {
                io::Write::write_all(tmp.as_file_mut(), bytes)
                    .map_err(io_error(tmp.path(), "cannot write"))?;
                *hash
            }
        };
        if let Some(&i) = known.get(&hash) {
            let path = self.absolute(&entries[i].path);
            if path.is_file() {
                return Ok((hash, path, true, entries[i].size));
            }
        }
        let size = tmp
            .as_file()
            .metadata()
            .map_err(io_error(tmp.path(), "cannot stat"))?
            .len();
        tmp.as_file()
            .set_permissions(Permissions::from_mode(0o444))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_error(tmp.path(), "cannot write"))?;
        let path = objects_dir.join(object_file_name(&hash, &object.name));
        tmp.persist(&path).map_err(|e| StoreError::Io {
            path: path.clone(),
            action: "cannot install the object",
            source: e.error,
        })?;
        Ok((hash, path, false, size))
    }

    /// Rehashes every object against its address (by the cycle rule of `docs/uri.md`) and
    /// checks the table. Returns the problems found and the number of objects checked.
    pub fn verify(&self) -> Result<(Vec<Problem>, usize), StoreError> {
        let entries = match self.entries() {
            Ok(e) => e,
            Err(StoreError::Table { problem, .. }) => {
                return Ok((vec![Problem::DamagedTable(problem.to_string())], 0))
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        let index: HashMap<Hash, usize> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.hash, i))
            .collect();
        let mut maps: Vec<Option<Mapped>> = Vec::with_capacity(entries.len());
        for e in &entries {
            let path = self.absolute(&e.path);
            match File::open(&path).and_then(|f| hash::map_file(&f)) {
                Ok(m) => maps.push(Some(m)),
                Err(err) => {
                    problems.push(Problem::Missing {
                        hash: e.hash,
                        path,
                        error: err.to_string(),
                    });
                    maps.push(None);
                }
            }
        }
        let edges: Vec<Vec<usize>> = maps
            .iter()
            .map(|m| match m {
                Some(bytes) => references(bytes)
                    .filter_map(|(_, h)| index.get(&h).copied())
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        let cycles = cycles::cycle_members(&edges);
        let check = |i: usize| -> Vec<Problem> {
            let e = &entries[i];
            let Some(bytes) = &maps[i] else {
                return Vec::new();
            };
            let mut found = Vec::new();
            let path = self.absolute(&e.path);
            if bytes.len() as u64 != e.size {
                found.push(Problem::SizeMismatch {
                    hash: e.hash,
                    path: path.clone(),
                    recorded: e.size,
                    actual: bytes.len() as u64,
                });
            }
            let cycle: Vec<Hash> = cycles[i].iter().map(|&m| entries[m].hash).collect();
            let actual = hash::hash_modulo_cycle(bytes, &cycle);
            if actual != e.hash {
                found.push(Problem::Mismatch {
                    hash: e.hash,
                    path,
                    actual,
                });
            }
            found
        };
        // Many small objects hash faster side by side than one after the other (a large one
        // already uses every core by itself).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = entries.len().div_ceil(threads).max(1);
        let indices: Vec<usize> = (0..entries.len()).collect();
        let per_chunk: Vec<Vec<Problem>> = std::thread::scope(|scope| {
            let workers: Vec<_> = indices
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().flat_map(|&i| check(i)).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        problems.extend(per_chunk.into_iter().flatten());
        Ok((problems, entries.len()))
    }
}
