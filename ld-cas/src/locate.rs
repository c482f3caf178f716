//! Where the program's store is: `LD_CAS_STORE`, the store its merged interpreter lies
//! in, `DT_LDCAS_STORE` (relative to the program's own directory) or the default; its
//! table, opened; and the one line that says why when it cannot be used.

use crate::audit::{self, trace};
use crate::cas::layout::TABLE_FILE;
use crate::launch::{refused, unusable};
use crate::out::{cstr, die, Out};
use crate::path::{dirname, PathBuf};
use crate::startup::{Stack, AT_EXECFN};
use crate::store::{self, OpenError, Source};
use crate::sys;
use crate::trust::Trust;

// Cold (`link/layout.ld`): pages past ld-cas's one hot writable page, untouched when unused.
#[link_section = ".ldcas.cold"]
static mut EXE: PathBuf = PathBuf::new();
/// A store path that had to be built (recorded relative to the program's directory); it
/// lives for good, since the name service may use it after the hand-over.
#[link_section = ".ldcas.cold"]
static mut STORE: PathBuf = PathBuf::new();

/// Where the program's store is to be found, and how to report it.
pub(crate) struct StoreQuery<'a> {
    /// The program, for messages.
    pub(crate) name: &'static [u8],
    /// Its directory, when known (run as a command).
    pub(crate) dir: Option<&'a [u8]>,
    /// Its `DT_LDCAS_STORE`.
    pub(crate) recorded: Option<&'static [u8]>,
    /// The store its merged interpreter lies in, when the program says that is its store.
    pub(crate) of_interpreter: Option<&'static [u8]>,
    /// Its `DT_LDCAS_TABLE` (empty: the store itself).
    pub(crate) table_dir: &'a [u8],
    /// Trace it (`LD_CAS_DEBUG`).
    pub(crate) debug: bool,
}

/// What [`StoreQuery::open`] opened besides the table it gave the resolver.
pub(crate) struct OpenedStore {
    /// Secure mode: the store directory, open.
    pub store_dir: Option<sys::Fd>,
    /// Whether the table lies in the room given (which lasts only until the hand-over).
    pub table_in_room: bool,
}

impl StoreQuery<'_> {
    /// Finds the store (into `r.store`) and its table (into `r.table`), or ends the process
    /// with one line. A small table is read into `room` (see [`store::open_table`]).
    pub(crate) fn open(
        &self,
        stack: &Stack,
        r: &mut audit::Resolver,
        scratch: &mut PathBuf,
        trust: Option<&Trust>,
        room: &'static mut [u8; store::TABLE_ROOM],
    ) -> OpenedStore {
        let secure = trust.is_some();
        let env = if secure {
            None
        } else {
            stack.env(b"LD_CAS_STORE").filter(|e| !e.is_empty())
        };
        let located = match (env, self.of_interpreter) {
            (None, Some(s)) => Ok(store::Located {
                path: s,
                source: Source::Interpreter,
            }),
            _ => {
                let pdir: &[u8] = match (env, self.recorded, self.dir) {
                    (None, Some(rec), None) if !rec.starts_with(b"/") => {
                        exe_dir(stack, self.name, secure)
                    }
                    (_, _, Some(d)) => d,
                    _ => b"",
                };
                // SAFETY: single-threaded before the hand-over; borrowed once.
                let built = unsafe { &mut *core::ptr::addr_of_mut!(STORE) };
                store::locate(built, env, self.recorded, pdir)
            }
        };
        let (store, source) = match located {
            Ok(l) => (l.path, l.source),
            Err(why) => unusable(self.name, "the store's path", why),
        };
        r.store = store;
        if self.debug {
            trace(|o| {
                o.str("store ")
                    .bytes(r.store)
                    .str(" (")
                    .str(source.describe())
                    .str(")");
            });
        }
        match store::open_table(r.store, self.table_dir, scratch, trust, Some(room)) {
            Ok(t) => {
                r.table = Some(t.table);
                OpenedStore {
                    store_dir: t.store_dir,
                    table_in_room: t.in_room,
                }
            }
            Err(e) => store_error(self.name, r.store, source, scratch, e),
        }
    }
}

/// The directory of the running program: from `/proc/self/exe` (one `readlink`, with every
/// symbolic link on the way resolved, so a program reached through a link farm still finds
/// the store beside its real file); when `/proc` is not mounted, from the path given to
/// `execve` (`AT_EXECFN`) if that is not a symbolic link, made absolute (the program may
/// change its working directory before a later `dlopen`). Under `AT_SECURE` the caller
/// chooses `AT_EXECFN`, so only `/proc/self/exe` is trusted.
fn exe_dir(stack: &Stack, name: &[u8], secure: bool) -> &'static [u8] {
    // SAFETY: single-threaded before the hand-over.
    let exe = unsafe { &mut *core::ptr::addr_of_mut!(EXE) };
    if exe.fill(|buf| sys::readlink(sys::cpath!("/proc/self/exe"), buf).ok())
        && exe.bytes().starts_with(b"/")
    {
        return dirname(exe.bytes());
    }
    let execfn = stack.aux(AT_EXECFN);
    if !secure && execfn != 0 {
        // SAFETY: AT_EXECFN is a NUL-terminated string on the initial stack.
        let path = unsafe { cstr(execfn as *const u8) };
        exe.clear();
        if exe.push(path) && sys::is_symlink(exe.c()) == Ok(false) {
            if path.starts_with(b"/") {
                return dirname(path);
            }
            if exe.fill(|buf| sys::getcwd(buf).ok()) && exe.push(b"/") && exe.push(path) {
                return dirname(exe.bytes());
            }
        }
    }
    // Never the working directory: fail closed.
    die(127, |o| {
        o.bytes(name).str(
            ": cannot find the program's own directory, where its store is recorded relative to: \
             /proc/self/exe is unreadable or 1023 bytes or longer",
        );
        if secure {
            o.str(" (and a set-user-ID/set-group-ID program trusts nothing else)");
        }
    })
}

fn store_error(
    name: &[u8],
    store: &[u8],
    source: Source,
    scratch: &mut PathBuf,
    e: OpenError,
) -> ! {
    let mut missing_dir = false;
    if let OpenError::Open(sys::Errno::ENOENT) = e {
        scratch.clear();
        scratch.push(store);
        missing_dir = sys::access_read(scratch.c()).is_err();
    }
    die(127, |o: &mut Out| {
        o.bytes(name).str(": ");
        match e {
            _ if missing_dir => {
                o.str("the store ")
                    .bytes(store)
                    .str(" (")
                    .str(source.describe())
                    .str(") does not exist");
            }
            OpenError::Open(e) | OpenError::Map(e) => {
                o.str("cannot read the lookup table ")
                    .bytes(store)
                    .str("/")
                    .str(TABLE_FILE)
                    .str(": ")
                    .str(e.describe());
            }
            OpenError::NotFile(k) => {
                o.str("cannot read the lookup table ")
                    .bytes(store)
                    .str("/")
                    .str(TABLE_FILE)
                    .str(": it is ")
                    .str(k)
                    .str(", not a regular file");
            }
            OpenError::Corrupt(t) => {
                o.str("the lookup table ")
                    .bytes(store)
                    .str("/")
                    .str(TABLE_FILE);
                let _ = core::fmt::write(o, format_args!(" is corrupt: {}", t));
            }
            OpenError::Refused(w) => {
                o.str("cannot use the store ").bytes(store).str(": ");
                refused(o, scratch, w);
            }
        }
    })
}
