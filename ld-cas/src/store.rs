//! Finding the store and mapping its lookup table.

use crate::cas::layout::{self, TABLE_FILE};
use crate::cas::{Entry, Hash, Table, TableError, HEX_LEN};
use crate::near;
use crate::path::PathBuf;
use crate::sys::{self, Errno, Fd};
use crate::trust::{self, Trust, WalkError, Want};

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
    /// The store the program's merged interpreter lies in (`LDCAS_FLAG_STORE_OF_INTERP`).
    Interpreter,
}

impl Source {
    /// Phrase for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Source::Env => "from LD_CAS_STORE",
            Source::Recorded => "recorded in the program",
            Source::Default => "the default store",
            Source::Interpreter => "the one its interpreter lies in",
        }
    }
}

/// The store directory [`locate`] chose, and where it came from.
#[derive(Clone, Copy)]
pub struct Located<'a> {
    /// Its path (no terminator).
    pub path: &'a [u8],
    /// Where it came from.
    pub source: Source,
}

/// Chooses the store directory: `env` (already dropped by the caller under `AT_SECURE`),
/// else `recorded` (relative to `program_dir` when relative), else [`DEFAULT_STORE`].
/// The path is the given string itself when it can be; only a relative `recorded` store is
/// built, into `built`. `Err` says why that path is unusable (too long).
pub fn locate<'a>(
    built: &'a mut PathBuf,
    env: Option<&'a [u8]>,
    recorded: Option<&'a [u8]>,
    program_dir: &[u8],
) -> Result<Located<'a>, &'static str> {
    if let Some(e) = env.filter(|e| !e.is_empty()) {
        return Ok(Located {
            path: e,
            source: Source::Env,
        });
    }
    match recorded.filter(|r| !r.is_empty()) {
        Some(r) if r[0] == b'/' => Ok(Located {
            path: r,
            source: Source::Recorded,
        }),
        Some(r) => {
            built.clear();
            if built.push(program_dir) && built.push(b"/") && built.push(r) {
                Ok(Located {
                    path: built.bytes(),
                    source: Source::Recorded,
                })
            } else {
                Err(built.why())
            }
        }
        None => Ok(Located {
            path: DEFAULT_STORE,
            source: Source::Default,
        }),
    }
}

/// The store a merged interpreter at `interp` lies in: `STORE` of an absolute
/// `STORE/interp/<64 hex digits>/<file>` (`/` for a store at the root), else `None`.
pub fn of_interpreter(interp: &[u8]) -> Option<&[u8]> {
    let (rest, file) = split_last(interp)?;
    // The directories are known by their length: no search for their `/`.
    let (rest, hex) = rest.split_at(rest.len().checked_sub(HEX_LEN)?);
    let store = rest.strip_suffix(b"/interp/")?;
    if !interp.starts_with(b"/") || file.is_empty() || Hash::parse_hex(hex).is_err() {
        return None;
    }
    Some(if store.is_empty() { b"/" } else { store })
}

/// `path` split at its last `/`: what precedes it and what follows it.
fn split_last(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = path.iter().rposition(|&b| b == b'/')?;
    Some((&path[..at], &path[at + 1..]))
}

/// Why the table could not be used.
#[derive(Clone, Copy, Debug)]
pub enum OpenError {
    /// `open` of `STORE/table` failed.
    Open(Errno),
    /// `fstat` or `mmap` failed.
    Map(Errno),
    /// `STORE/table` is not a regular file (what it is).
    NotFile(&'static str),
    /// The table is corrupt.
    Corrupt(TableError),
    /// Secure mode: the store, its table or its `objects/` fails the trust rule; the
    /// scratch path names the component at fault.
    Refused(WalkError),
}

/// A table opened by [`open_table`]: parsed, so that a look-up checks only the entry it
/// finds.
pub struct OpenedTable {
    /// The table.
    pub table: Table<'static>,
    /// Whether it was read into the room given (else it is mapped, for good).
    pub in_room: bool,
    /// Secure mode: the store directory, open.
    pub store_dir: Option<Fd>,
}

/// Opens `STORE/TABLE_DIR/table` (`table_dir` empty: `STORE/table`) with one `open`
/// (`O_NONBLOCK`: a FIFO cannot make it wait) and checks its header. A small table is read
/// into `room` with one `pread` (and no `fstat` when the read is whole); a larger one, or
/// one that is not read whole, is checked with one `fstat` (it must be a regular file) and
/// mapped. The path is built in `room` too, else in `scratch`.
///
/// With `trust` (secure mode) the store is walked from `/` one component at a time and
/// the store directory, the table's directory, the table, the index beside it and the
/// store's `objects/` directory must pass the trust rule ([`crate::trust`]); the store
/// directory is then returned open, for the loader and the libraries to be opened from
/// it. On [`OpenError::Refused`] `scratch` holds the path at fault.
pub fn open_table(
    store: &[u8],
    table_dir: &[u8],
    scratch: &mut PathBuf,
    trust: Option<&Trust>,
    mut room: Option<&'static mut [u8; TABLE_ROOM]>,
) -> Result<OpenedTable, OpenError> {
    let (fd, st, store_dir) = match trust {
        None => {
            let sep: &[u8] = if table_dir.is_empty() { b"" } else { b"/" };
            let parts: [&[u8]; 5] = [store, sep, table_dir, b"/", TABLE_FILE.as_bytes()];
            let fd = match room.as_deref_mut() {
                Some(r) => open_built(r, &parts),
                None => {
                    scratch.clear();
                    for part in parts {
                        scratch.push(part);
                    }
                    sys::open(scratch.c())
                }
            }
            .map_err(OpenError::Open)?;
            if let Some(table) = room.take().and_then(|r| read_small(&fd, r)) {
                return Ok(OpenedTable {
                    table,
                    in_room: true,
                    store_dir: None,
                });
            }
            let st = sys::fstat(&fd).map_err(OpenError::Map)?;
            (fd, st, None)
        }
        Some(t) => {
            let (fd, st, dir) = open_trusted_table(store, table_dir, scratch, t)?;
            (fd, st, Some(dir))
        }
    };
    if st.kind() != sys::S_IFREG {
        return Err(OpenError::NotFile(st.describe_kind()));
    }
    let size = st.size as usize;
    let (bytes, in_room): (&'static [u8], bool) = match room {
        // A short read (the file shrank meanwhile) leaves a prefix the reader refuses.
        Some(r) if size <= SMALL_TABLE => {
            let n = sys::pread_full(&fd, &mut r[..size]).map_err(OpenError::Map)?;
            let r: &'static [u8] = r;
            (&r[..n], true)
        }
        _ => (sys::map_file(&fd, size).map_err(OpenError::Map)?, false),
    };
    let table = Table::parse(bytes).map_err(OpenError::Corrupt)?;
    Ok(OpenedTable {
        table,
        in_room,
        store_dir,
    })
}

/// Opens the path made of `parts`, built in `room` only for the call: the table then goes
/// where its path was.
fn open_built(room: &mut [u8], parts: &[&[u8]]) -> Result<Fd, Errno> {
    let len = near::joined_len(parts);
    let path = room.get_mut(..len + 1).ok_or(Errno::ENAMETOOLONG)?;
    near::copy_parts(path, parts);
    path[len] = 0;
    // A part holding a NUL is refused here.
    sys::CPath::new(path)
        .ok_or(Errno::ENAMETOOLONG)
        .and_then(sys::open)
}

/// The largest table read into memory rather than mapped: one page. A table read costs
/// one `pread` and lands in pages ld-cas touches anyway; a mapped one costs an `fstat` and
/// an `mmap`, but the kernel maps up to 16 of its cached pages per fault. With a 42 KiB
/// table (272 entries) mapping it saved 6 faults and about 23 µs per start of a trivial
/// program, 9 faults and about 35 µs with 20 libraries, against reading it.
pub const SMALL_TABLE: usize = 4 << 10;

/// The room a small table is read into: one byte more, to tell a larger table.
pub const TABLE_ROOM: usize = SMALL_TABLE + 1;

/// A small table read whole with one `pread` and no `fstat`: a read shorter than the room
/// ended at the end of the file, and the reader accepts it. Anything else (a larger
/// table, not a regular file, an error, a table the reader refuses) is `None`, and the
/// caller takes the long way, which checks the file and says what is wrong.
fn read_small(fd: &Fd, room: &'static mut [u8; TABLE_ROOM]) -> Option<Table<'static>> {
    let n = sys::pread(fd, room, 0).ok().filter(|&n| n <= SMALL_TABLE)?;
    let bytes: &'static [u8] = room;
    Table::parse(&bytes[..n]).ok()
}

/// Secure mode: walks to the store, its `objects/`, the table's directory, its index and
/// the table by the trust rule. Returns the table, open, its `fstat`, and the store
/// directory, open.
fn open_trusted_table(
    store: &[u8],
    table_dir: &[u8],
    scratch: &mut PathBuf,
    t: &Trust,
) -> Result<(Fd, sys::Stat, Fd), OpenError> {
    let refused = |e: WalkError| match e {
        WalkError::Sys(e) => OpenError::Open(e),
        e => OpenError::Refused(e),
    };
    // A directory that may be missing (an empty store has no `objects/`; a store written
    // before the index was introduced has no `index/`).
    let optional = |r: Result<(Fd, sys::Stat), WalkError>| match r {
        Ok(_) | Err(WalkError::Sys(Errno::ENOENT)) => Ok(()),
        Err(e) => Err(OpenError::Refused(e)),
    };
    let (dir, _) = trust::walk(None, store, Want::Dir, t, true, scratch).map_err(refused)?;
    optional(trust::walk(
        Some(&dir),
        layout::OBJECTS_DIR.as_bytes(),
        Want::Dir,
        t,
        false,
        scratch,
    ))?;
    let tdir = if table_dir.is_empty() {
        None
    } else {
        let (d, _) =
            trust::walk(Some(&dir), table_dir, Want::Dir, t, false, scratch).map_err(refused)?;
        Some(d)
    };
    let at = tdir.as_ref().unwrap_or(&dir);
    optional(trust::walk(
        Some(at),
        layout::INDEX_DIR.as_bytes(),
        Want::Dir,
        t,
        false,
        scratch,
    ))?;
    let (fd, st) = trust::walk(
        Some(at),
        TABLE_FILE.as_bytes(),
        Want::File,
        t,
        false,
        scratch,
    )
    .map_err(|e| match e {
        WalkError::Sys(e) => OpenError::Open(e),
        WalkError::Kind(k) => OpenError::NotFile(k),
        e => OpenError::Refused(e),
    })?;
    Ok((fd, st, dir))
}

/// Looks `hash` up in the table (parsed, its header checked, by [`open_table`]), checking
/// the entry found: its check value, and that its path stays inside the store
/// (`Table::lookup_checked`). With no table opened, the reader's error for an empty file.
pub fn lookup(
    table: Option<&Table<'static>>,
    hash: &Hash,
) -> Result<Option<Entry<'static>>, TableError> {
    match table {
        Some(t) => t.lookup_checked(hash),
        None => Err(TableError::TooShort { len: 0 }),
    }
}
