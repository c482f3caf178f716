//! The hand-over: find the store and the real loader, install the name service, fix the
//! auxiliary vector and jump into ld.so on the original stack.

use core::cell::Cell;

use crate::arch;
use crate::arena;
use crate::audit::{self, trace, InstallError};
use crate::cas::{Entry, Hash, Kind, Table};
use crate::debugger;
use crate::elf::PT_INTERP;
use crate::elf::{
    Phdr, DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE, DT_SONAME,
    LDCAS_FLAG_INDEX_FIRST, LDCAS_FLAG_NAME_SERVICE, LDCAS_FLAG_STORE_OF_INTERP, PT_PHDR,
};
use crate::loadmap::{self, MapError, Role};
use crate::locate::StoreQuery;
use crate::merged::{self, Merged};
use crate::names;
use crate::near::Near;
use crate::out::{cstr, die, Out};
use crate::path::{dirname, PathBuf};
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

// Zeroed (`.bss`), past ld-cas's one hot writable page: a merged interpreter's common
// start-up builds its paths in the near mapping and touches neither.
static mut SCRATCH: PathBuf = PathBuf::new();
static mut LOADER: PathBuf = PathBuf::new();

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
    let secure = stack.aux(AT_SECURE) != 0;
    let debug = debug_enabled(&stack);
    let page = startup::page_size(&stack);
    refuse_malformed(&prog, name);
    let trust = if secure {
        Some(Trust::of(&stack))
    } else {
        None
    };
    let uses_uri = prog.has_uri_needed();
    let loader_uri = prog.tag_str(DT_LDCAS_LOADER);
    let table_dir = prog.tag_str(DT_LDCAS_TABLE).unwrap_or(b"");
    let flags = prog.tag_val(DT_LDCAS_FLAGS).unwrap_or(0);
    // SAFETY: single-threaded before the hand-over; each static is borrowed once.
    let (r, scratch, loader_path) = unsafe {
        (
            audit::state(),
            &mut *core::ptr::addr_of_mut!(SCRATCH),
            &mut *core::ptr::addr_of_mut!(LOADER),
        )
    };
    r.program = name;
    r.debug = debug;
    r.check_files = !secure;
    // The caller's environment never chooses a library for a setuid program.
    r.overrides = match stack.env(b"LD_CAS_OVERRIDE") {
        Some(list) if !secure => list,
        _ => &[],
    };
    if secure {
        // Ignored above, and removed, as glibc removes its own unsafe variables: a child
        // the program runs (after `setuid(0)`, say) must not be given them either.
        stack.remove_env(b"LD_CAS_");
    }

    // Secure mode: the store directory, open, every object is opened from.
    let mut store_dir: Option<sys::Fd> = None;
    // A small table is read here, into this frame: ld-cas's reads of it all come before
    // the hand-over, and this function never returns (it ends in the jump into ld.so).
    // The name service, which reads the table after the hand-over, is given a copy.
    let mut room = [0u8; store::TABLE_ROOM];
    let mut table_in_room = false;
    if uses_uri || loader_uri.is_some() {
        let at = StoreQuery {
            name,
            dir,
            recorded: prog.tag_str(DT_LDCAS_STORE),
            // The kernel ran `PT_INTERP` (not so when ld-cas runs as a command).
            of_interpreter: match (&merged, dir) {
                (Some(_), None) if flags & LDCAS_FLAG_STORE_OF_INTERP != 0 => {
                    store::of_interpreter(prog.interp)
                }
                _ => None,
            },
            table_dir,
            debug,
        };
        // SAFETY: the frame holding `room` outlives every use of the table read into it
        // (see above): `r.table` is cleared or replaced by a copy before the hand-over.
        let room = unsafe { &mut *core::ptr::addr_of_mut!(room) };
        let opened = at.open(&stack, r, scratch, trust.as_ref(), Some(room));
        store_dir = opened.store_dir;
        table_in_room = opened.table_in_room;
    }

    // The ld.so merged into the interpreter file serves when it is the program's loader.
    let merged = merged.filter(|m| match loader_uri {
        Some(u) => matches!(Hash::parse_uri(u), Ok(h) if h.0 == m.loader_hash),
        None => true,
    });
    // Its path in the store is needed only to map it, or to say which it is.
    let loader_entry = if merged.is_none() || debug {
        loader_path_of(name, loader_uri, r, loader_path)
    } else {
        None
    };
    if debug {
        trace(|o| {
            o.str("loader ").bytes(loader_path.bytes());
        });
    }
    let ld = match &merged {
        // Mapped by the kernel with ld-cas: the program's interpreter file, which the
        // kernel trusts as it trusts `PT_INTERP`.
        Some(m) => loadmap::Mapped {
            bias: m.base,
            entry: m.entry,
            phdr: m.phdr,
            phnum: m.phnum,
        },
        None => {
            let loader = Loader {
                program: name,
                uri: loader_uri,
                entry: loader_entry,
                path: loader_path,
            };
            loader.map(trust.as_ref(), store_dir.as_ref(), scratch, page)
        }
    };

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
    let name_service = !secure
        && (debug || !r.overrides.is_empty() || flags & LDCAS_FLAG_NAME_SERVICE != 0)
        && glibc();
    if merged.is_none() {
        if loader_uri.is_some() {
            name_the_loader(&mut stack, &prog, loader_path.bytes());
        }
        if !(uses_uri && name_service) && glibc() {
            debugger::forward_debug_state(&ld, page);
        }
    }
    if uses_uri && !prog.dynamic_writable {
        die(127, |o| {
            o.bytes(name)
                .str(": cannot run it: its dynamic section is not in a writable segment");
        });
    }
    if uses_uri {
        // Only glibc leaves the rest of the program's last page alone (see `near`).
        let mut near = Near::new(&prog, page, glibc(), name);
        if name_service {
            if table_in_room {
                keep_table(r, &mut near, name);
                table_in_room = false;
            }
            install_name_service(&mut prog, name, me, merged.is_some());
        } else {
            let cx = names::Context {
                name,
                index: names::IndexPath {
                    store: r.store,
                    table_dir,
                },
                index_first: flags & LDCAS_FLAG_INDEX_FIRST != 0,
                secure: trust.as_ref().map(|t| (t, store_dir.as_ref())),
            };
            names::hand_names(&mut prog, &mut near, &cx);
        }
    }
    if table_in_room {
        // Nothing reads it after the hand-over; the room is then ld.so's stack.
        r.table = None;
    }
    // No descriptor of ld-cas's is left to the program.
    drop(store_dir);
    stack.set_aux(AT_BASE, ld.bias);
    // SAFETY: the stack is the process's initial stack, edited consistently; ld.so is mapped.
    unsafe { arch::jump(stack.sp, ld.entry) }
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

/// Builds the path of the program's loader into `path`: the table's entry for its
/// `DT_LDCAS_LOADER` (returned), or the system's ld.so for a program without one.
fn loader_path_of(
    name: &[u8],
    uri: Option<&[u8]>,
    r: &audit::Resolver,
    path: &mut PathBuf,
) -> Option<Entry<'static>> {
    path.clear();
    let mut found = None;
    match uri {
        Some(uri) => {
            let entry = match Hash::parse_uri(uri).map(|h| store::lookup(r.table.as_ref(), &h)) {
                Ok(Ok(Some(e))) if e.kind == Kind::Interpreter || e.kind == Kind::Library => e,
                Ok(Err(e)) => die(127, |o| {
                    o.bytes(name)
                        .str(": its loader ")
                        .bytes(uri)
                        .str(": the lookup table ")
                        .bytes(r.store);
                    let _ = core::fmt::write(o, format_args!("/table {}", e));
                }),
                _ => die(127, |o| {
                    o.bytes(name)
                        .str(": its loader ")
                        .bytes(uri)
                        .str(" is not in the store ")
                        .bytes(r.store);
                }),
            };
            path.push(r.store);
            path.push(b"/");
            path.push(entry.path);
            found = Some(entry);
        }
        None => {
            path.push(&arch::DEFAULT_LOADER[..arch::DEFAULT_LOADER.len() - 1]);
        }
    }
    if path.overflowed() {
        unusable(name, "the loader's path", path.why());
    }
    found
}

/// The loader ld-cas maps itself (not merged into the interpreter file).
struct Loader<'a> {
    /// The program, for messages.
    program: &'a [u8],
    /// Its `DT_LDCAS_LOADER`.
    uri: Option<&'a [u8]>,
    /// Its table entry.
    entry: Option<Entry<'static>>,
    /// Its path.
    path: &'a PathBuf,
}

impl Loader<'_> {
    /// Maps it, in secure mode opened one component at a time by the trust rule (from the
    /// store directory `store_dir`); ends the process with one line when it cannot.
    fn map(
        &self,
        trust: Option<&Trust>,
        store_dir: Option<&sys::Fd>,
        scratch: &mut PathBuf,
        page: usize,
    ) -> loadmap::Mapped {
        let fail = |o: &mut Out| {
            o.bytes(self.program)
                .str(": cannot load the loader ")
                .bytes(self.path.bytes());
            if let Some(u) = self.uri {
                o.str(" (").bytes(u).str(")");
            }
            o.str(": ");
        };
        let mapped = match trust {
            Some(t) => {
                let (fd, _) = match self.entry {
                    Some(e) => open_trusted(store_dir, e.path, Some(e.size), t, scratch),
                    None => open_trusted(None, self.path.bytes(), None, t, scratch),
                }
                .unwrap_or_else(|e| {
                    die(127, |o| {
                        fail(o);
                        refused(o, scratch, e);
                    })
                });
                loadmap::map_fd(&fd, arch::EM_MACHINE, page, Role::Loader)
            }
            None => loadmap::map_path(self.path.c(), arch::EM_MACHINE, page, Role::Loader)
                .and_then(|(m, size)| match self.entry {
                    Some(e) if e.size != size => Err(MapError::Size(e.size, size)),
                    _ => Ok(m),
                }),
        };
        mapped.unwrap_or_else(|e| {
            die(127, |o| {
                fail(o);
                e.write(o);
            })
        })
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

/// Gives ld.so its real path as its name. ld.so names itself after the program's
/// `PT_INTERP`, which is ld-cas: in its list of loaded objects (what debuggers and
/// `dl_iterate_phdr` read) ld.so would appear as ld-cas's file, whose symbols are not
/// ld.so's. ld.so reads the program headers from `AT_PHDR`, so it is handed a copy in
/// which `PT_INTERP` points at the loader's path (and `PT_PHDR` at the copy, so the load
/// bias ld.so derives from it stays the same). The program's own headers and files are
/// untouched; no system call is made. Programs without `PT_PHDR` keep their headers.
fn name_the_loader(stack: &mut Stack, prog: &Program, loader: &[u8]) {
    let phdrs = prog.phdrs;
    if !phdrs.iter().any(|p| p.p_type == PT_PHDR) || !phdrs.iter().any(|p| p.p_type == PT_INTERP) {
        return;
    }
    let size = core::mem::size_of_val(phdrs);
    // SAFETY: single-threaded before the hand-over; both blocks live for good.
    let (copy, path) = unsafe {
        (
            arena::alloc(size, core::mem::align_of::<Phdr>()) as *mut Phdr,
            arena::keep(&[loader]),
        )
    };
    for (i, p) in phdrs.iter().enumerate() {
        let mut p = *p;
        match p.p_type {
            PT_PHDR => p.p_vaddr = (copy as u64).wrapping_sub(prog.bias as u64),
            PT_INTERP => {
                p.p_vaddr = (path.as_ptr() as u64).wrapping_sub(prog.bias as u64);
                p.p_filesz = loader.len() as u64 + 1;
                p.p_memsz = p.p_filesz;
            }
            _ => {}
        }
        // SAFETY: `copy` has room for `phdrs.len()` headers, suitably aligned.
        unsafe { copy.add(i).write(p) };
    }
    stack.set_aux(AT_PHDR, copy as usize);
}

/// Ends the process with one line: `name: what why`.
pub(crate) fn unusable(name: &[u8], what: &str, why: &str) -> ! {
    die(127, |o| {
        o.bytes(name).str(": ").str(what).str(" ").str(why);
    })
}
