//! The hand-over: find the store and the real loader, install the name service, fix the
//! auxiliary vector and jump into ld.so on the original stack.

use crate::arch;
use crate::arena;
use crate::audit::{self, trace, InstallError};
use crate::cas::{Hash, Kind, URI_PREFIX};
use crate::elf::PT_INTERP;
use crate::elf::{
    self, Phdr, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NEEDED, DT_NULL, DT_SONAME, DT_VERNEED,
    DT_VERNEEDNUM, PT_PHDR,
};
use crate::loadmap::{self, MapError, Role};
use crate::out::{cstr, die, Out};
use crate::path::{dirname, PathBuf};
use crate::startup::{Stack, AT_BASE, AT_EXECFN, AT_PAGESZ, AT_PHDR, AT_PHNUM, AT_SECURE};
use crate::store::{self, OpenError, Source};
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use crate::trust::{self, Trust, WalkError, Want};

pub use crate::program::Program;

/// Runs as the program's `PT_INTERP`: the kernel mapped the program.
pub fn interp(stack: Stack) -> ! {
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
    handover(stack, prog, name, None, me)
}

#[link_section = ".data"]
static mut SCRATCH: PathBuf = PathBuf::new();
#[link_section = ".data"]
static mut LOADER: PathBuf = PathBuf::new();
#[link_section = ".data"]
static mut EXE: PathBuf = PathBuf::new();

/// Whether `LD_CAS_DEBUG` asks for traces (never under `AT_SECURE`).
pub fn debug_enabled(stack: &Stack) -> bool {
    stack.aux(AT_SECURE) == 0
        && matches!(stack.env(b"LD_CAS_DEBUG"), Some(v) if !v.is_empty() && v != b"0")
}

/// Finds the store, the loader and the names, then jumps into the loader. `dir` is the
/// program's directory when known (run as a command), else it is found from `AT_EXECFN`
/// or `/proc/self/exe` if needed. `me` is ld-cas's own path (for `DT_AUDIT`).
pub fn handover(
    mut stack: Stack,
    prog: Program,
    name: &'static [u8],
    dir: Option<&[u8]>,
    me: &[u8],
) -> ! {
    let secure = stack.aux(AT_SECURE) != 0;
    let debug = debug_enabled(&stack);
    let page = match stack.aux(AT_PAGESZ) {
        0 => 4096,
        p => p,
    };
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
    let trust = if secure {
        Some(Trust::of(&stack))
    } else {
        None
    };
    let uses_uri = prog.has_uri_needed();
    let loader_uri = prog.tag_str(DT_LDCAS_LOADER);
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
    if uses_uri || loader_uri.is_some() {
        let env = if secure {
            None
        } else {
            stack.env(b"LD_CAS_STORE").filter(|e| !e.is_empty())
        };
        let recorded = prog.tag_str(DT_LDCAS_STORE);
        let pdir: &[u8] = match (env, recorded, dir) {
            (None, Some(rec), None) if !rec.starts_with(b"/") => exe_dir(&stack, name, secure),
            (_, _, Some(d)) => d,
            _ => b"",
        };
        let source = store::locate(&mut r.store, env, recorded, pdir);
        if r.store.overflowed() {
            unusable(name, "the store's path", r.store.why());
        }
        if debug {
            trace(|o| {
                o.str("store ")
                    .bytes(r.store.bytes())
                    .str(" (")
                    .str(source.describe())
                    .str(")");
            });
        }
        r.table = match store::open_table(r.store.bytes(), scratch, trust.as_ref()) {
            Ok((t, d)) => {
                store_dir = d;
                t
            }
            Err(e) => store_error(name, r.store.bytes(), source, scratch, e),
        };
    }

    loader_path.clear();
    let mut loader_entry = None;
    match loader_uri {
        Some(uri) => {
            let entry = match Hash::parse_uri(uri).map(|h| store::lookup(r.table, &h)) {
                Ok(Ok(Some(e))) if e.kind == Kind::Interpreter || e.kind == Kind::Library => e,
                Ok(Err(e)) => die(127, |o| {
                    o.bytes(name)
                        .str(": its loader ")
                        .bytes(uri)
                        .str(": the lookup table ")
                        .bytes(r.store.bytes());
                    let _ = core::fmt::write(o, format_args!("/table {}", e));
                }),
                _ => die(127, |o| {
                    o.bytes(name)
                        .str(": its loader ")
                        .bytes(uri)
                        .str(" is not in the store ")
                        .bytes(r.store.bytes());
                }),
            };
            loader_path.push(r.store.bytes());
            loader_path.push(b"/");
            loader_path.push(entry.path);
            loader_entry = Some(entry);
        }
        None => {
            loader_path.push(&arch::DEFAULT_LOADER[..arch::DEFAULT_LOADER.len() - 1]);
        }
    }
    if loader_path.overflowed() {
        unusable(name, "the loader's path", loader_path.why());
    }
    if debug {
        trace(|o| {
            o.str("loader ").bytes(loader_path.bytes());
        });
    }
    let loader_fail = |o: &mut Out| {
        o.bytes(name)
            .str(": cannot load the loader ")
            .bytes(loader_path.bytes());
        if let Some(u) = loader_uri {
            o.str(" (").bytes(u).str(")");
        }
        o.str(": ");
    };
    let ld = match &trust {
        // Secure mode: opened one component at a time from the store (or `/`), trusted.
        Some(t) => {
            let (fd, _) = match loader_entry {
                Some(e) => open_trusted(store_dir.as_ref(), e.path, Some(e.size), t, scratch),
                None => open_trusted(None, loader_path.bytes(), None, t, scratch),
            }
            .unwrap_or_else(|e| {
                die(127, |o| {
                    loader_fail(o);
                    refused(o, scratch, e);
                })
            });
            loadmap::map_fd(&fd, arch::EM_MACHINE, page, Role::Loader)
        }
        None => loadmap::map_path(loader_path.c(), arch::EM_MACHINE, page, Role::Loader).and_then(
            |(m, size)| match loader_entry {
                Some(e) if e.size != size => Err(MapError::Size(e.size, size)),
                _ => Ok(m),
            },
        ),
    };
    let ld = match ld {
        Ok(m) => m,
        Err(e) => die(127, |o| {
            loader_fail(o);
            e.write(o);
        }),
    };

    // SAFETY: the loader was just mapped with these headers at this bias.
    let glibc = matches!(
        unsafe { Program::from_phdrs(ld.phdr, ld.phnum, Some(ld.bias)) }.tag_str(DT_SONAME),
        Some(s) if s.starts_with(b"ld-linux")
    );
    if loader_uri.is_some() {
        name_the_loader(&mut stack, &prog, loader_path.bytes());
    }
    if uses_uri && !prog.dynamic_writable {
        die(127, |o| {
            o.bytes(name)
                .str(": cannot run it: its dynamic section is not in a writable segment");
        });
    }
    if uses_uri && (secure || !glibc) {
        let why = if secure {
            "it runs set-user-ID or set-group-ID, and glibc ignores audit modules named by path then"
        } else {
            "its loader is not glibc's ld.so and has no audit interface"
        };
        direct_needed(prog, name, why, store_dir.as_ref(), trust.as_ref());
    } else if uses_uri {
        let strtab = prog.strtab;
        let strings = prog.strings;
        // SAFETY: the program's dynamic section has not been read by ld.so yet.
        if let Err(e) = unsafe { audit::install(prog.dynamic, strtab, strings, me) } {
            die(127, |o| {
                o.bytes(name).str(": cannot install the name service: ");
                match e {
                    InstallError::NoSlot => o.str(
                        "no free slots in its dynamic section (convert it again with elfpatch)",
                    ),
                    InstallError::TooLong => o.str("its audit list is too long"),
                };
            });
        }
    }
    // No descriptor of ld-cas's is left to the program.
    drop(store_dir);
    stack.set_aux(AT_BASE, ld.bias);
    // SAFETY: the stack is the process's initial stack, edited consistently; ld.so is mapped.
    unsafe { arch::jump(stack.sp, ld.entry) }
}

/// Secure mode: opens the regular file `path` (relative to the store directory `dir`, or
/// absolute) by the trust rule and checks its size against the table's.
fn open_trusted(
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
fn refused(o: &mut Out, at: &PathBuf, e: WalkError) {
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
                p.p_vaddr = (path as u64).wrapping_sub(prog.bias as u64);
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

/// Without the name service (under `AT_SECURE` glibc ignores audit modules named by path;
/// musl has no audit interface), the program's own `uri:` entries (`DT_NEEDED` and the `vn_file` of `.gnu.version_r`, which must name the
/// same object) are pointed, in memory, at the objects' absolute paths in the recorded
/// store instead. The strings go in a page mapped above the program, within the 32-bit
/// reach of `vn_file`. An object that itself needs `uri:` names cannot be served this
/// way: the program then fails closed with a message.
fn direct_needed(
    prog: Program,
    name: &[u8],
    why: &str,
    store_dir: Option<&sys::Fd>,
    trust: Option<&Trust>,
) {
    let strtab = prog.strtab;
    let strings = prog.strings;
    let fail = |detail: &str| -> ! {
        die(127, |o| {
            o.bytes(name)
                .str(": ")
                .str(detail)
                .str(" (")
                .str(why)
                .str(")");
        })
    };
    let end = prog
        .phdrs
        .iter()
        .filter(|p| p.p_type == elf::PT_LOAD)
        .map(|p| prog.bias.wrapping_add((p.p_vaddr + p.p_memsz) as usize))
        .max()
        .unwrap_or(strtab);
    const NEAR: usize = 1 << 16;
    let hint = (end + (1 << 30)) & !0xffff;
    // SAFETY: a fresh anonymous mapping (the address is only a hint).
    let near = unsafe {
        sys::mmap(
            hint,
            NEAR,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .unwrap_or_else(|_| fail("cannot map memory for its library paths"));
    if near < strtab || near + NEAR - strtab > u32::MAX as usize {
        fail("no memory within reach of its string table for its library paths");
    }
    let mut used = 0;
    let mut moved = [(0u64, 0u64); 64];
    let mut nmoved = 0;
    // SAFETY: single-threaded before the hand-over.
    let r = unsafe { audit::state() };
    for d in prog.dynamic.iter_mut().take_while(|d| d.d_tag != DT_NULL) {
        if d.d_tag != DT_NEEDED {
            continue;
        }
        let needed = elf::str_at(strings, d.d_val);
        let (path, entry) = match audit::resolve(r, needed, name) {
            Some(audit::Found::Path(p, e)) => (p, e),
            _ => continue,
        };
        // SAFETY: `resolve` returns a NUL-terminated copy that lives for good.
        let file = unsafe { cstr(path) };
        let opened = match (trust, entry) {
            // Secure mode: the object is opened from the store directory one component at
            // a time, by the trust rule, and must have the recorded size.
            (Some(t), Some(e)) => {
                // SAFETY: single-threaded before the hand-over.
                let at = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
                match open_trusted(store_dir, e.path, Some(e.size), t, at) {
                    Ok((fd, _)) => fd,
                    Err(err) => die(127, |o| {
                        o.bytes(name).str(": cannot load ").bytes(needed).str(": ");
                        refused(o, at, err);
                    }),
                }
            }
            (Some(_), None) => fail("a library outside the store in secure mode"),
            (None, _) => {
                let mut p = PathBuf::new();
                p.push(file);
                match sys::open(p.c()) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                }
            }
        };
        if let Some(inner) = nested_uri(&opened) {
            die(127, |o| {
                o.bytes(name)
                    .str(": ")
                    .bytes(file)
                    .str(" needs ")
                    .bytes(inner);
                o.str(", but ")
                    .str(why)
                    .str(": only the program's own DT_NEEDED can then be content addresses");
            });
        }
        if used + file.len() + 1 > NEAR || nmoved == moved.len() {
            fail("too many content-addressed libraries");
        }
        // SAFETY: `near` is our fresh writable mapping of NEAR bytes; `used + len + 1` fits.
        unsafe {
            core::ptr::copy_nonoverlapping(file.as_ptr(), (near + used) as *mut u8, file.len());
            *((near + used + file.len()) as *mut u8) = 0;
        }
        let value = (near + used - strtab) as u64;
        moved[nmoved] = (d.d_val, value);
        nmoved += 1;
        d.d_val = value;
        used += file.len() + 1;
    }
    retarget_verneed(&prog, &moved[..nmoved]);
}

/// Points each `vn_file` that named a moved `DT_NEEDED` string at its new string.
fn retarget_verneed(prog: &Program, moved: &[(u64, u64)]) {
    let (mut addr, mut num) = (0usize, 0usize);
    for d in prog.dynamic.iter().take_while(|d| d.d_tag != DT_NULL) {
        match d.d_tag {
            DT_VERNEED => addr = prog.bias.wrapping_add(d.d_val as usize),
            DT_VERNEEDNUM => num = d.d_val as usize,
            _ => {}
        }
    }
    if addr == 0 || moved.is_empty() {
        return;
    }
    let seg = prog.phdrs.iter().find(|p| {
        let start = prog.bias.wrapping_add(p.p_vaddr as usize);
        p.p_type == elf::PT_LOAD && addr >= start && addr - start < p.p_memsz as usize
    });
    let seg = match seg {
        Some(s) => s,
        None => return,
    };
    // Every Elf64_Verneed read must lie in that segment.
    let seg_end = prog
        .bias
        .wrapping_add(seg.p_vaddr as usize)
        .wrapping_add(seg.p_memsz as usize);
    let start = prog.bias.wrapping_add(seg.p_vaddr as usize) & !0xfff;
    let len =
        (prog.bias.wrapping_add((seg.p_vaddr + seg.p_memsz) as usize) - start + 0xfff) & !0xfff;
    let prot = loadmap::prot(seg);
    // SAFETY: the range is the program's own segment; nothing else runs while it is
    // writable, and its protection is restored before the hand-over.
    unsafe {
        if sys::mprotect(start, len, prot | PROT_WRITE).is_err() {
            return;
        }
        let mut vn = addr;
        for _ in 0..num {
            if vn & 3 != 0 || vn >= seg_end || seg_end - vn < 16 {
                break;
            }
            // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
            let file = (vn + 4) as *mut u32;
            if let Some(m) = moved.iter().find(|m| m.0 == *file as u64) {
                *file = m.1 as u32;
            }
            let next = *((vn + 12) as *const u32) as usize;
            if next == 0 {
                break;
            }
            vn = match vn.checked_add(next) {
                Some(v) => v,
                None => break,
            };
        }
        let _ = sys::mprotect(start, len, prot);
    }
}

/// The first `uri:` name the ELF file open as `fd` needs, if any.
fn nested_uri(fd: &sys::Fd) -> Option<&'static [u8]> {
    let st = sys::fstat(fd).ok()?;
    if st.kind() != sys::S_IFREG {
        return None;
    }
    let bytes = sys::map_file(fd, st.size as usize).ok()?;
    let file = elf::File::parse(bytes, arch::EM_MACHINE)?;
    let found = file.needed().find(|n| n.starts_with(URI_PREFIX));
    found
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
    if exe.fill(|buf| sys::readlink(b"/proc/self/exe\0", buf).ok()) && exe.bytes().starts_with(b"/")
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

fn unusable(name: &[u8], what: &str, why: &str) -> ! {
    die(127, |o| {
        o.bytes(name).str(": ").str(what).str(" ").str(why);
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
                    .str("/table: ")
                    .str(e.describe());
            }
            OpenError::NotFile(k) => {
                o.str("cannot read the lookup table ")
                    .bytes(store)
                    .str("/table: it is ")
                    .str(k)
                    .str(", not a regular file");
            }
            OpenError::Corrupt(t) => {
                let _ = core::fmt::write(o, format_args!("the lookup table "));
                o.bytes(store);
                let _ = core::fmt::write(o, format_args!("/table is corrupt: {}", t));
            }
            OpenError::Refused(w) => {
                o.str("cannot use the store ").bytes(store).str(": ");
                refused(o, scratch, w);
            }
        }
    })
}
