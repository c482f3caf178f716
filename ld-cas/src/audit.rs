//! The hand-over's name service. glibc's ld.so asks an audit module (`la_objsearch`) for
//! every name before it searches. ld-cas is its own audit module: it exports the `la_*`
//! entry points, and a `DT_AUDIT` entry written into the program's dynamic section (in
//! memory) names ld-cas's own file. ld.so then maps a second copy of ld-cas in the audit
//! namespace; that copy only forwards, through a `DT_LDCAS_HOOK` entry of the program's
//! dynamic section, to the callbacks of the first copy, which stays mapped after the
//! hand-over together with the lookup table.
//!
//! Nothing is added to the environment and no file or descriptor is created; a `uri:` name
//! costs no file-system look-up at all: it is answered from the table with the object's
//! real path, so `$ORIGIN` is the object's own directory.

use core::ptr::addr_of_mut;

use crate::arena;
use crate::cas::{Entry, Hash, Table, URI_LEN, URI_PREFIX};
use crate::elf::{Dyn, DT_AUDIT, DT_LDCAS_HOOK, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NULL};
use crate::out::{cstr, die, Out, STDERR};
use crate::path::PathBuf;
use crate::store;
use crate::sys;

/// `LA_SER_ORIG`: the name as it was asked for, before any search.
const LA_SER_ORIG: u32 = 1;

/// What the callbacks need once ld.so runs.
pub struct Resolver {
    /// The lookup table, mapped and parsed (its header checked once), when opened.
    pub table: Option<Table<'static>>,
    /// The store directory: a string of the program, its environment or its interpreter's
    /// path, or a path built once ([`crate::store::locate`]), so that this state stays a few
    /// words in ld-cas's one hot writable page.
    pub store: &'static [u8],
    /// The program, for messages.
    pub program: &'static [u8],
    /// Trace each resolution to stderr (`LD_CAS_DEBUG`).
    pub debug: bool,
    /// `LD_CAS_OVERRIDE` (`SONAME=PATH[:SONAME=PATH...]`), empty under `AT_SECURE`.
    pub overrides: &'static [u8],
    /// Check each object's file (one `stat`: a regular file of the recorded size) before
    /// handing its path to ld.so, so that a FIFO cannot make ld.so wait for ever and a
    /// damaged store is reported by name. Off under `AT_SECURE`, where the objects are
    /// opened and checked one component at a time instead (see `crate::trust`).
    pub check_files: bool,
    /// The store directory, open, while the hand-over checks the files of many names: each
    /// `stat` then walks the path inside the store only. Closed before the hand-over ends.
    pub store_dir: Option<sys::Fd>,
    /// Set once start-up loading is over: a missing object then fails `dlopen` instead of
    /// ending the process.
    running: bool,
}

static mut STATE: Resolver = Resolver {
    table: None,
    store: &[],
    program: &[],
    debug: false,
    overrides: &[],
    check_files: false,
    store_dir: None,
    running: false,
};

/// The resolver state.
///
/// # Safety
/// Only one reference may be live: ld-cas is single-threaded before the hand-over, and
/// ld.so calls the audit callbacks under its loader lock, one at a time.
#[allow(unused_unsafe)]
pub unsafe fn state() -> &'static mut Resolver {
    // SAFETY: per the function's contract.
    &mut *addr_of_mut!(STATE)
}

/// Outcome of resolving one `uri:` name.
pub enum Found {
    /// The object.
    Path(Object),
    /// Not a `uri:` name: ld.so searches it as usual.
    Plain,
}

/// Where a `uri:` name's object is.
pub struct Object {
    /// The object's path (store + store-relative path, NUL-terminated, kept for good).
    pub path: *const u8,
    /// Its table entry (`None` for an `LD_CAS_OVERRIDE` path).
    pub entry: Option<Entry<'static>>,
    /// How many names (hard links) its file has, when the file was checked.
    pub links: Option<u32>,
}

/// Resolves `name` against the table. On failure prints one line and either exits 127
/// (while the program starts) or returns `None` (a later `dlopen`, which then fails).
pub fn resolve(r: &mut Resolver, name: &[u8], requester: &[u8]) -> Option<Found> {
    // SAFETY: resolutions are serialized (see `state`).
    resolve_with(r, name, requester, &mut |parts| unsafe {
        arena::keep(parts)
    })
}

/// [`resolve`], the path made by `keep`: it copies the parts it is given, and a NUL, into
/// memory that lives for good, and returns the copy with its NUL.
pub fn resolve_with(
    r: &mut Resolver,
    name: &[u8],
    requester: &[u8],
    keep: &mut dyn FnMut(&[&[u8]]) -> &'static [u8],
) -> Option<Found> {
    if !name.starts_with(URI_PREFIX) {
        if r.debug {
            trace(|o| {
                o.str("searching plain name ").bytes(name).str(" as usual");
            });
        }
        return Some(Found::Plain);
    }
    let fail = |r: &Resolver, why: &dyn Fn(&mut Out)| -> Option<Found> {
        let print = |o: &mut Out| {
            o.bytes(r.program).str(": cannot load ").bytes(name);
            if !requester.is_empty() && requester != r.program {
                o.str(" (needed by ").bytes(requester).str(")");
            }
            o.str(": ");
            why(o);
            o.str("; store ").bytes(r.store);
        };
        if r.running {
            // A failing dlopen: dlerror() tells the program; trace only when asked.
            if r.debug {
                trace(print);
            }
            return None;
        }
        die(127, print)
    };
    let hash = match Hash::parse_uri(name) {
        Ok(h) if name.len() == URI_LEN => h,
        _ => {
            return fail(r, &|o| {
                o.str("malformed content address");
            })
        }
    };
    let entry = match store::lookup(r.table.as_ref(), &hash) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return fail(r, &|o| {
                o.str("not in the lookup table");
            })
        }
        Err(e) => {
            return fail(r, &|o| {
                let _ = core::fmt::write(o, format_args!("the lookup table {}", e));
            })
        }
    };
    let replacement = override_for(r.overrides, entry.soname);
    let in_store = [r.store, b"/", entry.path];
    let parts: &[&[u8]] = match &replacement {
        Some(p) => core::slice::from_ref(p),
        None => &in_store,
    };
    // SAFETY: `keep` copied the parts and a NUL; no part holds a NUL (the store's path and
    // an override come from NUL-terminated strings, the reader checked the entry's path).
    let kept = keep(parts);
    let path = unsafe { sys::CPath::new_unchecked(kept) };
    let file = path.bytes();
    let mut links = None;
    if r.check_files {
        // One `stat` (no open): a regular file of the size the table records (an
        // `LD_CAS_OVERRIDE` file: of any size). ld.so would wait for ever on a FIFO and
        // map whatever else is there.
        // Relative to the store directory when it is open: the part of `kept` past the
        // store's path and its `/` is the entry's path and the NUL.
        let (dir, checked) = match (&r.store_dir, &replacement) {
            // SAFETY: as above, a suffix of `kept` up to its NUL.
            (Some(dir), None) => (sys::Dir::Fd(dir), unsafe {
                sys::CPath::new_unchecked(&kept[r.store.len() + 1..])
            }),
            _ => (sys::Dir::Cwd, path),
        };
        match sys::stat_at(dir, checked, 0) {
            Ok(st)
                if st.kind() == sys::S_IFREG
                    && (replacement.is_some() || st.size == entry.size) =>
            {
                links = Some(st.links)
            }
            Ok(st) if st.kind() != sys::S_IFREG => {
                return fail(r, &|o| {
                    o.bytes(file)
                        .str(" is ")
                        .str(st.describe_kind())
                        .str(", not a regular file");
                })
            }
            Ok(st) => {
                return fail(r, &|o| {
                    o.bytes(file);
                    let _ = core::fmt::write(
                        o,
                        format_args!(
                            " is {} bytes long, but the lookup table records {} (a damaged store)",
                            st.size, entry.size
                        ),
                    );
                })
            }
            Err(e) => {
                return fail(r, &|o| {
                    o.bytes(file).str(": ").str(e.describe());
                })
            }
        }
    }
    if r.debug {
        trace(|o| {
            o.bytes(name).str(" (").bytes(entry.soname).str(") => ");
            o.bytes(file);
            if replacement.is_some() {
                o.str(" (LD_CAS_OVERRIDE)");
            }
        });
    }
    Some(Found::Path(Object {
        path: kept.as_ptr(),
        entry: if replacement.is_some() {
            None
        } else {
            Some(entry)
        },
        links,
    }))
}

/// The path `LD_CAS_OVERRIDE` gives for `soname`: the list is `SONAME=PATH` entries
/// separated by `:`; the first entry for the soname wins; an empty soname never matches.
pub fn override_for(list: &'static [u8], soname: &[u8]) -> Option<&'static [u8]> {
    if soname.is_empty() {
        return None;
    }
    list.split(|&b| b == b':').find_map(|item| {
        let eq = item.iter().position(|&b| b == b'=')?;
        let (name, path) = (&item[..eq], &item[eq + 1..]);
        (name == soname && !path.is_empty()).then_some(path)
    })
}

/// Prints one `ld-cas: ` trace line on stderr.
pub fn trace(f: impl FnOnce(&mut Out)) {
    let mut o = Out::new(STDERR);
    o.str("ld-cas: ");
    f(&mut o);
    o.str("\n");
}

/// The first copy's callbacks, reached by the audit copy through `DT_LDCAS_HOOK`.
#[repr(C)]
pub struct Hooks {
    magic: u64,
    objsearch: extern "C" fn(*const u8, *const usize) -> *const u8,
    preinit: extern "C" fn(),
    activity: extern "C" fn(),
}

const HOOK_MAGIC: u64 = 0x6b6f_6f68_7361_636d;

static HOOKS: Hooks = Hooks {
    magic: HOOK_MAGIC,
    objsearch,
    preinit,
    activity: _dl_debug_state,
};

/// The debugger's hook, named as in glibc's ld.so. A debugger finds the dynamic linker
/// through the program's `PT_INTERP`, which names ld-cas, and sets its shared-library
/// event breakpoint on this symbol of that file, in the first copy (the one the kernel
/// mapped). ld.so calls `la_activity` whenever it adds or removes objects, exactly where
/// it calls its own `_dl_debug_state`; the audit copy forwards that here. So gdb learns of
/// every library, `dlopen`ed ones included, and reads the list from `r_debug` as usual.
#[no_mangle]
#[inline(never)]
pub extern "C" fn _dl_debug_state() {
    // Something the optimizer keeps, so that the function is not folded into another.
    // SAFETY: reading our own static.
    unsafe { core::ptr::read_volatile(&HOOK_MAGIC) };
}

/// In the audit copy: whether the program (the first object `la_objopen` sees) was seen.
#[link_section = ".data"]
static mut SEEN_MAIN: bool = false;

/// In the audit copy: the first copy's hooks, once found.
#[link_section = ".data"]
static mut FOUND: *const Hooks = core::ptr::null();

/// Resolves a name for ld.so (runs in the first copy). `requester` is the requesting
/// object's `struct link_map` (glibc's default audit cookie) or null.
extern "C" fn objsearch(name: *const u8, requester: *const usize) -> *const u8 {
    // SAFETY: ld.so passes a NUL-terminated name; a non-null cookie is a link_map whose
    // second word is its NUL-terminated `l_name`. Callbacks run one at a time.
    let (n, req, r) = unsafe {
        let req = if requester.is_null() || *requester.add(1) == 0 {
            &[][..]
        } else {
            cstr(*requester.add(1) as *const u8)
        };
        (cstr(name), req, state())
    };
    let req = if req.is_empty() { r.program } else { req };
    match resolve(r, n, req) {
        Some(Found::Path(object)) => object.path,
        Some(Found::Plain) => name,
        None => core::ptr::null(),
    }
}

/// Start-up loading is over (runs in the first copy).
extern "C" fn preinit() {
    // SAFETY: callbacks run one at a time.
    unsafe { state() }.running = true;
}

/// The hooks of the first copy, if the audit copy has found them.
#[allow(unused_unsafe)]
fn found() -> Option<&'static Hooks> {
    // SAFETY: FOUND is written once, by `la_objopen`, under ld.so's loader lock, and then
    // points into the first copy's image, which is never unmapped.
    unsafe {
        let h = *addr_of_mut!(FOUND);
        if h.is_null() {
            None
        } else {
            Some(&*h)
        }
    }
}

/// Audit interface: accept ld.so's version.
#[no_mangle]
pub extern "C" fn la_version(version: u32) -> u32 {
    version
}

/// Audit interface: called for every object ld.so maps. On the main program (the first
/// one, namespace 0) the audit copy finds the first copy's hooks in its dynamic section.
///
/// # Safety
/// Called by ld.so with a valid `struct link_map`.
#[no_mangle]
pub unsafe extern "C" fn la_objopen(map: *const usize, lmid: isize, _cookie: *mut usize) -> u32 {
    // Only the first object of the main namespace, the program, may name the hooks: a
    // library carrying the tag is ignored.
    if lmid != 0 || map.is_null() || *addr_of_mut!(SEEN_MAIN) {
        return 0;
    }
    *addr_of_mut!(SEEN_MAIN) = true;
    // SAFETY: link_map starts { l_addr, l_name, l_ld, ... }; l_ld is the object's dynamic
    // section, DT_NULL-terminated.
    let mut d = *map.add(2) as *const Dyn;
    while !d.is_null() && (*d).d_tag != DT_NULL {
        if (*d).d_tag == DT_LDCAS_HOOK {
            let h = (*d).d_val as usize as *const Hooks;
            if !h.is_null() && (*h).magic == HOOK_MAGIC {
                *addr_of_mut!(FOUND) = h;
            }
            break;
        }
        d = d.add(1);
    }
    0
}

/// Audit interface: maps a name before ld.so searches for it.
///
/// # Safety
/// Called by ld.so with a NUL-terminated name and its cookie.
#[no_mangle]
pub unsafe extern "C" fn la_objsearch(
    name: *const u8,
    cookie: *const usize,
    flag: u32,
) -> *const u8 {
    match found() {
        Some(h) if flag == LA_SER_ORIG && !name.is_null() => {
            let requester = if cookie.is_null() {
                core::ptr::null()
            } else {
                *cookie as *const usize
            };
            (h.objsearch)(name, requester)
        }
        _ => name,
    }
}

/// Audit interface: ld.so is adding or removing objects (or is done): tell the debugger.
#[no_mangle]
pub extern "C" fn la_activity(_cookie: *mut usize, _flag: u32) {
    if let Some(h) = found() {
        (h.activity)();
    }
}

/// Audit interface: start-up loading is over; later failures only fail `dlopen`.
#[no_mangle]
pub extern "C" fn la_preinit(_cookie: *mut usize) {
    if let Some(h) = found() {
        (h.preinit)();
    }
}

/// Why the name service could not be installed.
pub enum InstallError {
    /// The program's dynamic section has no free slots for `DT_AUDIT` and the hook.
    NoSlot,
    /// The audit list would be too long.
    TooLong,
}

/// Points a `DT_AUDIT` entry of the program's in-memory dynamic section at `me` (ld-cas's
/// own path) and a `DT_LDCAS_HOOK` entry at the hooks. `strtab` is the run-time address of
/// the program's string table. Uses the slots of `DT_LDCAS_STORE`/`DT_LDCAS_LOADER` (read
/// already) or spare `DT_NULL` entries.
///
/// # Safety
/// `dynamic` must be the program's writable dynamic section, not yet read by ld.so.
pub unsafe fn install(
    dynamic: &mut [Dyn],
    strtab: usize,
    strings: &[u8],
    me: &[u8],
) -> Result<(), InstallError> {
    // The audit list: the program's own DT_AUDIT list, then ld-cas.
    let mut p = PathBuf::new();
    let existing = dynamic
        .iter()
        .take_while(|d| d.d_tag != DT_NULL)
        .position(|d| d.d_tag == DT_AUDIT);
    if let Some(i) = existing {
        // In bounds: the program's string offsets were checked (`Program::check`).
        p.push(crate::elf::str_at(strings, dynamic[i].d_val));
        p.push(b":");
    }
    // ld.so knows the program's PT_INTERP string (our path) as one of its own names and
    // would hand out itself for it: name the same file differently, `DIR/./ld-cas`.
    let base = me
        .iter()
        .rposition(|&c| c == b'/')
        .map(|i| i + 1)
        .unwrap_or(0);
    if !(p.push(&me[..base]) && p.push(b"./") && p.push(&me[base..])) {
        return Err(InstallError::TooLong);
    }
    // SAFETY (keep): single-threaded before the hand-over. The string must outlive
    // ld-cas's stack: it goes in the arena, which is never freed.
    let kept = arena::keep(&[p.bytes()]);
    let value = (kept.as_ptr() as u64).wrapping_sub(strtab as u64);

    let end = dynamic
        .iter()
        .position(|d| d.d_tag == DT_NULL)
        .unwrap_or(dynamic.len());
    let mut free = [usize::MAX; 2];
    let mut n = 0;
    for (i, d) in dynamic[..end].iter().enumerate() {
        if n < 2 && (d.d_tag == DT_LDCAS_STORE || d.d_tag == DT_LDCAS_LOADER) {
            free[n] = i;
            n += 1;
        }
    }
    // Spare DT_NULLs after the terminator's first one (one must stay a terminator).
    let mut spare = end;
    while n < 2 && spare + 1 < dynamic.len() && dynamic[spare + 1].d_tag == DT_NULL {
        free[n] = spare;
        n += 1;
        spare += 1;
    }
    let audit_slot = existing.unwrap_or(free[0]);
    let hook_slot = if existing.is_some() { free[0] } else { free[1] };
    if audit_slot == usize::MAX || hook_slot == usize::MAX {
        return Err(InstallError::NoSlot);
    }
    dynamic[audit_slot] = Dyn {
        d_tag: DT_AUDIT,
        d_val: value,
    };
    dynamic[hook_slot] = Dyn {
        d_tag: DT_LDCAS_HOOK,
        d_val: &HOOKS as *const Hooks as u64,
    };
    Ok(())
}
