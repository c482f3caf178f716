//! The hand-over's name service. glibc's ld.so asks an audit module (`la_objsearch`) for
//! every name before it searches; ld-cas gives it a tiny libc-free module (built from
//! `audit/audit.c`) through a `DT_AUDIT` entry written into the program's own dynamic
//! section in memory. The module forwards to the callbacks below, which live in ld-cas's
//! image: it stays mapped after the hand-over, and so does the mapped lookup table.
//!
//! Nothing is added to the environment, no file is created (the module is served from a
//! close-on-exec memfd, closed again before the program's constructors run), and a `uri:`
//! name costs no file-system look-up at all: it is answered from the table with the
//! object's real path, so `$ORIGIN` is the object's own directory.

use core::ptr::addr_of_mut;

use crate::cas::{Hash, URI_LEN, URI_PREFIX};
use crate::elf::{Dyn, DT_AUDIT, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NULL};
use crate::out::{cstr, die, Out, STDERR};
use crate::path::PathBuf;
use crate::store;
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, MFD_CLOEXEC, PROT_READ, PROT_WRITE};

/// The audit module, as built by `build.rs`.
static MODULE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/audit.so"));

/// The magic words that mark `ldcas_hook` in the module's data (see `audit/audit.c`).
const MAGIC: [u64; 2] = [0x6f6f_682d_7361_636c, 0x3176_312d_6b6f_6f68];

/// `LA_SER_ORIG`: the name as it was asked for, before any search.
const LA_SER_ORIG: u32 = 1;

/// What the callbacks need once ld.so runs.
pub struct Resolver {
    /// The mapped, checked lookup table.
    pub table: &'static [u8],
    /// The store directory.
    pub store: PathBuf,
    /// The program, for messages.
    pub program: &'static [u8],
    /// Trace each resolution to stderr (`LD_CAS_DEBUG`).
    pub debug: bool,
    /// Set once start-up loading is over: a missing object then fails `dlopen` instead of
    /// ending the process.
    running: bool,
    /// The module's memfd plus one (0: none), so the state starts all-zero.
    memfd_plus_one: i32,
}

static mut STATE: Resolver = Resolver {
    table: &[],
    store: PathBuf::new(),
    program: &[],
    debug: false,
    running: false,
    memfd_plus_one: 0,
};

static mut ARENA: [u8; 16384] = [0; 16384];
static mut ARENA_POS: usize = 0;
static mut ARENA_END: usize = 0;

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

/// Copies `parts` (and a NUL) into memory that lives for the rest of the process.
///
/// # Safety
/// Callers are serialized (see [`state`]).
#[allow(unused_unsafe)]
unsafe fn keep(parts: &[&[u8]]) -> *const u8 {
    let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + 1;
    // SAFETY: the arena statics are only touched here, by serialized callers.
    let (pos, end) = unsafe { (&mut *addr_of_mut!(ARENA_POS), &mut *addr_of_mut!(ARENA_END)) };
    if *end - *pos < len {
        let (start, size) = if *end == 0 {
            // SAFETY: taking the address of the arena does not access it.
            (unsafe { addr_of_mut!(ARENA) as usize }, 16384)
        } else {
            let size = (len + 0xffff) & !0xffff;
            // SAFETY: a fresh anonymous mapping that we own.
            match unsafe {
                sys::mmap(
                    0,
                    size,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                    -1,
                    0,
                )
            } {
                Ok(a) => (a, size),
                Err(_) => die(127, |o| {
                    o.str("out of memory");
                }),
            }
        };
        if size < len {
            die(127, |o| {
                o.str("out of memory");
            });
        }
        *pos = start;
        *end = start + size;
    }
    let p = *pos as *mut u8;
    let mut at = 0;
    for part in parts {
        // SAFETY: the arena has `len` free bytes at `p`.
        unsafe { core::ptr::copy_nonoverlapping(part.as_ptr(), p.add(at), part.len()) };
        at += part.len();
    }
    // SAFETY: as above; the terminator is the last of the `len` bytes.
    unsafe { *p.add(at) = 0 };
    *pos += len;
    p
}

/// Outcome of resolving one `uri:` name.
pub enum Found {
    /// The object's path (store + store-relative path, NUL-terminated, kept for good).
    Path(*const u8),
    /// Not a `uri:` name: ld.so searches it as usual.
    Plain,
}

/// Resolves `name` against the table. On failure prints one line and either exits 127
/// (while the program starts) or returns `None` (a later `dlopen`, which then fails).
pub fn resolve(r: &mut Resolver, name: &[u8], requester: &[u8]) -> Option<Found> {
    if !name.starts_with(URI_PREFIX) {
        if r.debug {
            trace(|o| {
                o.str("searching plain name ").bytes(name).str(" as usual");
            });
        }
        return Some(Found::Plain);
    }
    let fail = |r: &Resolver, soname: &[u8], why: &str| -> Option<Found> {
        let print = |o: &mut Out| {
            o.bytes(r.program).str(": cannot load ").bytes(name);
            if !soname.is_empty() {
                o.str(" (").bytes(soname).str(")");
            }
            if !requester.is_empty() {
                o.str(" needed by ").bytes(requester);
            }
            o.str(": ")
                .str(why)
                .str(" in the store ")
                .bytes(r.store.bytes());
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
        _ => return fail(r, b"", "malformed content address"),
    };
    let entry = match store::lookup(r.table, &hash) {
        Ok(Some(e)) => e,
        Ok(None) => return fail(r, b"", "not found (soname unknown)"),
        Err(_) => return fail(r, b"", "corrupt table entry"),
    };
    // SAFETY: resolutions are serialized (see `state`).
    let path = unsafe { keep(&[r.store.bytes(), b"/", entry.path]) };
    if !r.running {
        // SAFETY: `keep` returned a NUL-terminated copy.
        let c = unsafe { core::slice::from_raw_parts(path, r.store.len() + entry.path.len() + 2) };
        if let Err(e) = sys::access_read(c) {
            return fail(r, entry.soname, e.describe());
        }
    }
    if r.debug {
        trace(|o| {
            o.bytes(name).str(" (").bytes(entry.soname).str(") => ");
            // SAFETY: NUL-terminated copy made above.
            o.bytes(unsafe { cstr(path) });
        });
    }
    Some(Found::Path(path))
}

/// Prints one `ld-cas: ` trace line on stderr.
pub fn trace(f: impl FnOnce(&mut Out)) {
    let mut o = Out::new(STDERR);
    o.str("ld-cas: ");
    f(&mut o);
    o.str("\n");
}

/// `la_objsearch`, forwarded by the module. `requester` is the requesting object's
/// `struct link_map` (glibc's default audit cookie) or null.
extern "C" fn objsearch(name: *const u8, flag: u32, requester: *const usize) -> *const u8 {
    if flag != LA_SER_ORIG || name.is_null() {
        return name;
    }
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
        Some(Found::Path(p)) => p,
        Some(Found::Plain) => name,
        None => core::ptr::null(),
    }
}

/// `la_preinit`: start-up loading is over. Closes the module's memfd so the program never
/// sees it.
extern "C" fn preinit() {
    // SAFETY: callbacks run one at a time.
    let r = unsafe { state() };
    r.running = true;
    if r.memfd_plus_one > 0 {
        sys::close_raw(r.memfd_plus_one - 1);
        r.memfd_plus_one = 0;
    }
}

static mut AUDIT_PATH: [u8; 512] = [0; 512];

/// Why the module could not be installed.
pub enum InstallError {
    /// `memfd_create` or writing the module failed.
    Memfd(sys::Errno),
    /// The program's dynamic section has no free slot for `DT_AUDIT`.
    NoSlot,
    /// The module was built without its hook (a build error).
    NoHook,
}

/// Serves the module from a memfd and points a `DT_AUDIT` entry of the program's in-memory
/// dynamic section at it. `strtab` is the run-time address of the program's string table.
///
/// # Safety
/// `dynamic` must be the program's writable dynamic section, not yet read by ld.so.
pub unsafe fn install(dynamic: &mut [Dyn], strtab: usize) -> Result<(), InstallError> {
    let hook = MODULE
        .windows(16)
        .position(|w| w[..8] == MAGIC[0].to_le_bytes() && w[8..] == MAGIC[1].to_le_bytes())
        .ok_or(InstallError::NoHook)?;
    let fd = sys::memfd_create(b"ld-cas-audit\0", MFD_CLOEXEC).map_err(InstallError::Memfd)?;
    let mut fns = [0u8; 16];
    fns[..8].copy_from_slice(&(objsearch as *const () as usize as u64).to_le_bytes());
    fns[8..].copy_from_slice(&(preinit as *const () as usize as u64).to_le_bytes());
    sys::write_all(fd.0, &MODULE[..hook + 16]);
    sys::write_all(fd.0, &fns);
    sys::write_all(fd.0, &MODULE[hook + 32..]);
    if sys::file_size(&fd).map_err(InstallError::Memfd)? != MODULE.len() as u64 {
        return Err(InstallError::Memfd(sys::Errno(5)));
    }

    // "/proc/self/fd/N", after the program's own DT_AUDIT list if it has one.
    let mut p = PathBuf::new();
    let existing = dynamic.iter().position(|d| d.d_tag == DT_AUDIT);
    if let Some(i) = existing {
        p.push(cstr(
            (strtab as u64).wrapping_add(dynamic[i].d_val) as usize as *const u8,
        ));
        p.push(b":");
    }
    p.push(b"/proc/self/fd/");
    let mut digits = [0u8; 10];
    let (mut n, mut i) = (fd.0 as u32, digits.len());
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    p.push(&digits[i..]);
    // SAFETY: AUDIT_PATH is written once, here, before ld.so runs; it outlives the process's
    // use of it.
    let buf = &mut *addr_of_mut!(AUDIT_PATH);
    if p.c().len() > buf.len() {
        return Err(InstallError::NoSlot);
    }
    buf[..p.c().len()].copy_from_slice(p.c());
    let value = (buf.as_ptr() as u64).wrapping_sub(strtab as u64);

    let slot = match existing {
        Some(i) => Some(i),
        None => dynamic
            .iter()
            .position(|d| d.d_tag == DT_LDCAS_STORE || d.d_tag == DT_LDCAS_LOADER)
            .or_else(|| {
                let end = dynamic.iter().position(|d| d.d_tag == DT_NULL)?;
                if end + 1 < dynamic.len() {
                    Some(end)
                } else {
                    None
                }
            }),
    };
    let i = slot.ok_or(InstallError::NoSlot)?;
    dynamic[i] = Dyn {
        d_tag: DT_AUDIT,
        d_val: value,
    };
    state().memfd_plus_one = fd.into_raw() + 1;
    Ok(())
}
