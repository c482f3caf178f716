//! The hand-over: find the store and the real loader, install the name service, fix the
//! auxiliary vector and jump into ld.so on the original stack.

use core::cell::Cell;

use crate::arch;
use crate::audit::{self, InstallError};
use crate::cas::{Hash, Table};
use crate::debugger;
use crate::elf::{
    DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE, DT_SONAME,
    LDCAS_FLAG_INDEX_FIRST, LDCAS_FLAG_NAME_SERVICE, LDCAS_FLAG_STORE_OF_INTERP,
};
use crate::loader;
use crate::locate::{OpenedStore, StoreQuery};
use crate::merged::{self, Merged};
use crate::names;
use crate::near::Near;
use crate::out::{cstr, die, Out};
use crate::path::{dirname, PathBuf};
use crate::phase::{self, Phase};
use crate::startup::{self, Stack, AT_BASE, AT_EXECFN, AT_PHDR, AT_PHNUM, AT_SECURE};
use crate::store;
use crate::sys;
use crate::trust::{self, Trust, WalkError, Want};

pub use crate::program::Program;

/// Runs as the program's `PT_INTERP`: the kernel mapped the program, and ld-cas, alone or
/// merged into ld.so ([`merged`]); `own_base` is where ld-cas's image starts.
pub fn interp(stack: Stack, own_base: usize) -> ! {
    // SAFETY: AT_PHDR/AT_PHNUM come from the kernel and describe the mapped program.
    let prog = unsafe { Program::from_phdrs(stack.aux(AT_PHDR), stack.aux(AT_PHNUM), None) };
    let execfn = stack.aux(AT_EXECFN);
    let name: &'static [u8] = if execfn == 0 {
        b"the program"
    } else {
        // SAFETY: AT_EXECFN is a NUL-terminated string on the initial stack.
        unsafe { cstr(execfn as *const u8) }
    };
    let me = prog.interp;
    // SAFETY: AT_BASE comes from the kernel.
    let merged = unsafe { merged::as_interpreter(stack.aux(AT_BASE), own_base) };
    handover(stack, prog, name, None, me, merged)
}

// Cold (`link/layout.ld`), past ld-cas's one hot writable page: a merged interpreter's
// common start-up builds its paths in the program's page or the near mapping and never
// touches it.
#[link_section = ".ldcas.cold"]
static mut SCRATCH: PathBuf = PathBuf::new();

/// The scratch path used for messages about the file at fault.
///
/// # Safety
/// Only one reference may be live (ld-cas is single-threaded before the hand-over).
pub unsafe fn scratch() -> &'static mut PathBuf {
    // SAFETY: per the function's contract.
    &mut *core::ptr::addr_of_mut!(SCRATCH)
}

/// Whether `LD_CAS_DEBUG` asks for traces (never under `AT_SECURE`).
pub fn debug_enabled(stack: &Stack) -> bool {
    stack.aux(AT_SECURE) == 0
        && matches!(stack.env(b"LD_CAS_DEBUG"), Some(v) if !v.is_empty() && v != b"0")
}

/// What the hand-over reads of the program and of its start before it does anything.
pub(crate) struct Start<'a> {
    /// The program, for messages.
    pub(crate) name: &'static [u8],
    /// Its directory, when known (run as a command).
    pub(crate) dir: Option<&'a [u8]>,
    /// Under `AT_SECURE`: the trust rule the store must pass.
    pub(crate) trust: Option<Trust>,
    /// Traces are asked for (`LD_CAS_DEBUG`).
    pub(crate) debug: bool,
    /// The kernel's page size.
    pub(crate) page: usize,
    /// How many of its `DT_NEEDED` entries are `uri:` names.
    pub(crate) uri_names: usize,
    /// Its `DT_LDCAS_LOADER`.
    pub(crate) loader_uri: Option<&'static [u8]>,
    /// Its `DT_LDCAS_TABLE` (empty: the store itself).
    pub(crate) table_dir: &'static [u8],
    /// Its `DT_LDCAS_FLAGS`.
    pub(crate) flags: u64,
}

impl<'a> Start<'a> {
    /// Reads it, or ends the process with one line when the program cannot be run.
    fn of(stack: &Stack, prog: &Program, name: &'static [u8], dir: Option<&'a [u8]>) -> Self {
        let secure = stack.aux(AT_SECURE) != 0;
        let page = startup::page_size(stack);
        refuse_malformed(prog, name);
        Start {
            name,
            dir,
            trust: if secure { Some(Trust::of(stack)) } else { None },
            debug: debug_enabled(stack),
            page,
            uri_names: prog.uri_needed_count(),
            loader_uri: prog.tag_str(DT_LDCAS_LOADER),
            table_dir: prog.tag_str(DT_LDCAS_TABLE).unwrap_or(b""),
            flags: prog.tag_val(DT_LDCAS_FLAGS).unwrap_or(0),
        }
    }

    pub(crate) fn secure(&self) -> bool {
        self.trust.is_some()
    }

    /// It names libraries by `uri:`.
    pub(crate) fn uses_uri(&self) -> bool {
        self.uri_names > 0
    }
}

/// Finds the store, the loader and the names, then jumps into the loader. `dir` is the
/// program's directory when known (run as a command), else it is found from `AT_EXECFN`
/// or `/proc/self/exe` if needed. `me` is the path of the interpreter file (ld-cas's, or
/// the merged interpreter's, `merged`, beside which the audit module lies).
pub fn handover(
    mut stack: Stack,
    mut prog: Program,
    name: &'static [u8],
    dir: Option<&[u8]>,
    me: &[u8],
    merged: Option<Merged>,
) -> ! {
    let s = Start::of(&stack, &prog, name, dir);
    // SAFETY: single-threaded before the hand-over; each static is borrowed once.
    let (r, scratch) = unsafe { (audit::state(), &mut *core::ptr::addr_of_mut!(SCRATCH)) };
    // SAFETY: as above.
    let loader_path = unsafe { loader::path_buffer() };
    configure(&s, &mut stack, r);
    // A small table is read here, into this frame: ld-cas's reads of it all come before
    // the hand-over, and this function never returns (it ends in the jump into ld.so).
    // The name service, which reads the table after the hand-over, is given a copy.
    let mut room = [0u8; store::TABLE_ROOM];
    // SAFETY: the frame holding `room` outlives every use of the table read into it
    // (see above): `r.table` is cleared or replaced by a copy before the hand-over.
    let room = unsafe { &mut *core::ptr::addr_of_mut!(room) };
    phase::reached(Phase::Started);
    let opened = open_store(&s, &stack, &prog, merged.as_ref(), r, scratch, room);
    phase::reached(Phase::TableRead);
    // The ld.so merged into the interpreter file serves when it is the program's loader.
    let merged = merged.filter(|m| match s.loader_uri {
        Some(u) => matches!(Hash::parse_uri(u), Ok(h) if h.0 == m.loader_hash),
        None => true,
    });
    let ld = loader::map(&s, merged.as_ref(), r, loader_path, scratch, &opened);
    phase::reached(Phase::LoaderMapped);

    // Whether the loader is glibc's ld.so, from its `DT_SONAME`: read only when it decides
    // something, and once.
    let is_glibc = Cell::new(None);
    let glibc = || {
        *is_glibc.get().get_or_insert_with(|| {
            matches!(
                // SAFETY: the loader was just mapped with these headers at this bias.
                unsafe { Program::from_phdrs(ld.phdr, ld.phnum, Some(ld.bias)) }
                    .tag_str(DT_SONAME),
                Some(s) if s.starts_with(b"ld-linux")
            )
        })
    };
    // The name service only where ld.so's own search cannot serve: a replacement of a
    // library (`LD_CAS_OVERRIDE`: the index would find the original for a library's own
    // names), traces (`LD_CAS_DEBUG`), or an object that may be loaded with a
    // `DT_RUNPATH` and `uri:` names (`elfpatch` flags the program). glibc ignores audit
    // modules named by path under `AT_SECURE`, and musl has none.
    let name_service = !s.secure()
        && (s.debug || !r.overrides.is_empty() || s.flags & LDCAS_FLAG_NAME_SERVICE != 0)
        && glibc();
    if merged.is_none() {
        if s.loader_uri.is_some() {
            loader::name_it(&mut stack, &prog, loader_path.bytes());
        }
        if !(s.uses_uri() && name_service) && glibc() {
            debugger::forward_debug_state(&ld, s.page);
        }
    }
    let mut table_in_room = opened.table_in_room;
    if s.uses_uri() {
        let names = Names {
            me,
            merged: merged.is_some(),
            name_service,
            glibc: glibc(),
            store_dir: opened.store_dir.as_ref(),
        };
        table_in_room = names.hand(&s, &mut prog, r, table_in_room);
    }
    if table_in_room {
        // Nothing reads it after the hand-over; the room is then ld.so's stack.
        r.table = None;
    }
    // No descriptor of ld-cas's is left to the program.
    drop(opened);
    stack.set_aux(AT_BASE, ld.bias);
    phase::reached(Phase::NamesHanded);
    // SAFETY: the stack is the process's initial stack, edited consistently; ld.so is mapped.
    unsafe { arch::jump(stack.sp, ld.entry) }
}

/// Sets up the resolver for the program: its name, traces, whether files are checked, and
/// the overrides the caller's environment asks for (never for a setuid program, whose
/// environment loses every `LD_CAS_` variable).
fn configure(s: &Start, stack: &mut Stack, r: &mut audit::Resolver) {
    r.program = s.name;
    r.debug = s.debug;
    r.check_files = !s.secure();
    // The caller's environment never chooses a library for a setuid program.
    r.overrides = match stack.env(b"LD_CAS_OVERRIDE") {
        Some(list) if !s.secure() => list,
        _ => &[],
    };
    if s.secure() {
        // Ignored above, and removed, as glibc removes its own unsafe variables: a child
        // the program runs (after `setuid(0)`, say) must not be given them either.
        stack.remove_env(b"LD_CAS_");
    }
}

/// Finds the store and reads its table (a small one into `room`), when the program needs
/// it: for its `uri:` names or its loader.
fn open_store(
    s: &Start,
    stack: &Stack,
    prog: &Program,
    merged: Option<&Merged>,
    r: &mut audit::Resolver,
    scratch: &mut PathBuf,
    room: &'static mut [u8; store::TABLE_ROOM],
) -> OpenedStore {
    if !s.uses_uri() && s.loader_uri.is_none() {
        return OpenedStore {
            store_dir: None,
            table_in_room: false,
        };
    }
    let at = StoreQuery {
        name: s.name,
        dir: s.dir,
        recorded: prog.tag_str(DT_LDCAS_STORE),
        // The kernel ran `PT_INTERP` (not so when ld-cas runs as a command).
        of_interpreter: match (merged, s.dir) {
            (Some(_), None) if s.flags & LDCAS_FLAG_STORE_OF_INTERP != 0 => {
                store::of_interpreter(prog.interp)
            }
            _ => None,
        },
        table_dir: s.table_dir,
        debug: s.debug,
    };
    at.open(stack, r, scratch, s.trust.as_ref(), room)
}

/// How the program's `uri:` names reach ld.so: what the hand-over decided.
struct Names<'a> {
    /// The interpreter file's path (the audit module lies beside it).
    me: &'a [u8],
    /// The interpreter file is a merged one, whose ld.so serves.
    merged: bool,
    /// The audit module names the libraries (else ld.so's own search, through the index).
    name_service: bool,
    /// The loader is glibc's ld.so.
    glibc: bool,
    /// Secure mode: the store directory, open.
    store_dir: Option<&'a sys::Fd>,
}

impl Names<'_> {
    /// Points the program's `uri:` names at the store in memory, or installs the name
    /// service. Returns whether the table still lies in the hand-over's frame only.
    fn hand(
        &self,
        s: &Start,
        prog: &mut Program,
        r: &mut audit::Resolver,
        table_in_room: bool,
    ) -> bool {
        if !prog.dynamic_writable {
            die(127, |o| {
                o.bytes(s.name)
                    .str(": cannot run it: its dynamic section is not in a writable segment");
            });
        }
        // Only glibc leaves the rest of the program's last page alone (see `near`).
        let mut near = Near::new(prog, s.page, self.glibc, s.name);
        if self.name_service {
            if table_in_room {
                keep_table(r, &mut near, s.name);
            }
            install_name_service(prog, s.name, self.me, self.merged);
            return false;
        }
        let cx = names::Context {
            name: s.name,
            index: names::IndexPath {
                store: r.store,
                table_dir: s.table_dir,
            },
            index_first: s.flags & LDCAS_FLAG_INDEX_FIRST != 0,
            secure: s.trust.as_ref().map(|t| (t, self.store_dir)),
        };
        if !s.secure() && s.uri_names >= STORE_DIR_FROM {
            r.store_dir = open_store_dir(r.store, &mut near);
        }
        names::hand_names(prog, &mut near, &cx);
        // No descriptor of ld-cas's is left to the program.
        r.store_dir = None;
        table_in_room
    }
}

/// The number of the program's `uri:` names from which each library's `stat` is made
/// relative to the store directory, opened for it. A `stat` walks every component of its
/// path (2.4 µs a `stat` of a store object here), relative to the store only those inside
/// it (about 2.0 µs); opening and closing the directory costs about two `stat`s' worth.
const STORE_DIR_FROM: usize = 6;

/// The store directory, opened to name files relative to it (`O_PATH`: nothing is read),
/// or `None` if it cannot be (each file is then checked by its full path, which reports
/// the problem).
fn open_store_dir(store: &[u8], near: &mut Near) -> Option<sys::Fd> {
    let path = sys::CPath::new(near.alloc_joined(&[store], 1)?)?;
    sys::openat(sys::Dir::Cwd, path, sys::O_PATH | sys::O_DIRECTORY).ok()
}

/// Gives the name service, which reads the table after the hand-over, a copy of the table
/// read into the hand-over's frame.
fn keep_table(r: &mut audit::Resolver, near: &mut Near, name: &[u8]) {
    let copy = r.table.as_ref().and_then(|t| {
        let bytes = t.bytes();
        let room = near.alloc(bytes.len(), 8)?;
        room.copy_from_slice(bytes);
        let room: &'static [u8] = room;
        Table::parse(room).ok()
    });
    if copy.is_none() {
        die(127, |o| {
            o.bytes(name)
                .str(": cannot keep the lookup table for the name service");
        });
    }
    r.table = copy;
}

/// Ends the process with one line when the program's headers cannot be used.
fn refuse_malformed(prog: &Program, name: &[u8]) {
    if let Some(problem) = prog.problem {
        die(127, |o| {
            o.bytes(name).str(": cannot run it: ").str(problem);
        });
    }
    if let Some(tag) = prog.bad_tag {
        die(127, |o| {
            o.bytes(name)
                .str(": cannot run it: ")
                .str(tag)
                .str(" points outside its string table (DT_STRSZ)");
        });
    }
}

/// Makes ld-cas the program's audit module (the name service). `me` is the interpreter
/// file's path; a merged interpreter is ld.so, and the audit module the ld-cas beside it.
fn install_name_service(prog: &mut Program, name: &[u8], me: &[u8], merged: bool) {
    let strtab = prog.strtab;
    let strings = prog.strings;
    let mut module = PathBuf::new();
    let me = if merged {
        module.push(dirname(me));
        module.push(b"/ld-cas");
        module.bytes()
    } else {
        me
    };
    // SAFETY: the program's dynamic section has not been read by ld.so yet.
    if let Err(e) = unsafe { audit::install(prog.dynamic, strtab, strings, me) } {
        die(127, |o| {
            o.bytes(name).str(": cannot install the name service: ");
            match e {
                InstallError::NoSlot => {
                    o.str("no free slots in its dynamic section (convert it again with elfpatch)")
                }
                InstallError::TooLong => o.str("its audit list is too long"),
            };
        });
    }
}

/// Secure mode: opens the regular file `path` (relative to the store directory `dir`, or
/// absolute) by the trust rule and checks its size against the table's.
pub fn open_trusted(
    dir: Option<&sys::Fd>,
    path: &[u8],
    size: Option<u64>,
    trust: &Trust,
    at: &mut PathBuf,
) -> Result<(sys::Fd, sys::Stat), WalkError> {
    let (fd, st) = trust::walk(dir, path, Want::File, trust, dir.is_none(), at)?;
    match size {
        Some(want) if want != st.size => Err(WalkError::Size { want, got: st.size }),
        _ => Ok((fd, st)),
    }
}

/// Writes why a file was refused in secure mode: the path at fault and the reason.
pub fn refused(o: &mut Out, at: &PathBuf, e: WalkError) {
    match e {
        WalkError::Sys(_) => {
            o.bytes(at.bytes()).str(": ");
        }
        WalkError::Size { .. } | WalkError::Kind(_) => {
            o.bytes(at.bytes()).str(" ");
        }
        _ => {
            o.str("refused for a set-user-ID/set-group-ID program: ")
                .bytes(at.bytes())
                .str(" ");
        }
    }
    e.describe(o);
}

/// Ends the process with one line: `name: what why`.
pub(crate) fn unusable(name: &[u8], what: &str, why: &str) -> ! {
    die(127, |o| {
        o.bytes(name).str(": ").str(what).str(" ").str(why);
    })
}
