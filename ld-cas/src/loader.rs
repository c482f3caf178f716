//! The program's loader: the ld.so of the merged interpreter, or the one its table entry
//! names (the system's for a program without one), which ld-cas then maps itself; and the
//! name ld.so is shown for it.

use crate::arch;
use crate::arena;
use crate::audit::{self, trace};
use crate::cas::{layout, Entry, Hash, Kind};
use crate::elf::{Phdr, PT_INTERP, PT_PHDR};
use crate::launch::{open_trusted, refused, unusable, Start};
use crate::loadmap::{self, MapError, Role};
use crate::locate::OpenedStore;
use crate::merged::Merged;
use crate::out::{die, Out};
use crate::path::PathBuf;
use crate::program::Program;
use crate::startup::{Stack, AT_PHDR};
use crate::store;
use crate::sys;
use crate::trust::Trust;

// Cold (`link/layout.ld`), past ld-cas's one hot writable page: a merged interpreter's
// common start-up never builds the loader's path.
#[link_section = ".ldcas.cold"]
static mut LOADER: PathBuf = PathBuf::new();

/// The buffer the loader's path is built in.
///
/// # Safety
/// Only one reference may be live (ld-cas is single-threaded before the hand-over).
pub(crate) unsafe fn path_buffer() -> &'static mut PathBuf {
    // SAFETY: per the function's contract.
    &mut *core::ptr::addr_of_mut!(LOADER)
}

/// The program's loader, mapped: the ld.so of the merged interpreter when that is the
/// program's, else the one the table names (or the system's), mapped by ld-cas.
pub(crate) fn map(
    s: &Start<'_>,
    merged: Option<&Merged>,
    r: &audit::Resolver,
    loader_path: &mut PathBuf,
    scratch: &mut PathBuf,
    opened: &OpenedStore,
) -> loadmap::Mapped {
    // Its path in the store is needed only to map it, or to say which it is.
    let entry = if merged.is_none() || s.debug {
        loader_path_of(s.name, s.loader_uri, r, loader_path)
    } else {
        None
    };
    if s.debug {
        trace(|o| {
            o.str("loader ").bytes(loader_path.bytes());
        });
    }
    match merged {
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
                program: s.name,
                uri: s.loader_uri,
                entry,
                path: loader_path,
            };
            let store_dir = opened.store_dir.as_ref();
            loader.map(s.trust.as_ref(), store_dir, scratch, s.page)
        }
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
                        .bytes(r.store)
                        .str("/")
                        .str(layout::TABLE_FILE);
                    let _ = core::fmt::write(o, format_args!(" {}", e));
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

/// Gives ld.so its real path as its name. ld.so names itself after the program's
/// `PT_INTERP`, which is ld-cas: in its list of loaded objects (what debuggers and
/// `dl_iterate_phdr` read) ld.so would appear as ld-cas's file, whose symbols are not
/// ld.so's. ld.so reads the program headers from `AT_PHDR`, so it is handed a copy in
/// which `PT_INTERP` points at the loader's path (and `PT_PHDR` at the copy, so the load
/// bias ld.so derives from it stays the same). The program's own headers and files are
/// untouched; no system call is made. Programs without `PT_PHDR` keep their headers.
pub(crate) fn name_it(stack: &mut Stack, prog: &Program, loader: &[u8]) {
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
