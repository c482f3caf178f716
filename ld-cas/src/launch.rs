//! The hand-over: find the store and the real loader, install the name service, fix the
//! auxiliary vector and jump into ld.so on the original stack.

use crate::arch;
use crate::arena;
use crate::audit::{self, trace, InstallError};
use crate::cas::{Hash, Kind, URI_PREFIX};
use crate::elf::PT_INTERP;
use crate::elf::{
    self, Dyn, Phdr, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NEEDED, DT_NULL, DT_SONAME, DT_STRSZ,
    DT_STRTAB, DT_VERNEED, DT_VERNEEDNUM, PT_DYNAMIC, PT_PHDR,
};
use crate::loadmap;
use crate::out::{cstr, die, Out};
use crate::path::{dirname, PathBuf};
use crate::startup::{Stack, AT_BASE, AT_EXECFN, AT_PAGESZ, AT_PHDR, AT_PHNUM, AT_SECURE};
use crate::store::{self, OpenError, Source};
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// The program as mapped in memory (by the kernel, or by ld-cas when run as a command).
pub struct Program {
    /// Load bias.
    pub bias: usize,
    /// Its dynamic section, writable, up to the end of `PT_DYNAMIC`.
    pub dynamic: &'static mut [Dyn],
    /// Run-time address of its string table.
    pub strtab: usize,
    /// Its string table.
    pub strings: &'static [u8],
    /// Its program headers.
    pub phdrs: &'static [Phdr],
    /// Its `PT_INTERP` string (empty if none).
    pub interp: &'static [u8],
}

impl Program {
    /// Reads the program whose headers are at `phdr`.
    ///
    /// # Safety
    /// `phdr`/`phnum` must describe a mapped program image.
    pub unsafe fn from_phdrs(phdr: usize, phnum: usize, bias: Option<usize>) -> Program {
        // SAFETY: per the contract (a null address gives no headers).
        let ph: &'static [Phdr] = if phdr == 0 {
            &[]
        } else {
            core::slice::from_raw_parts(phdr as *const Phdr, phnum)
        };
        let bias = bias.unwrap_or_else(|| {
            ph.iter()
                .find(|p| p.p_type == PT_PHDR)
                .map(|p| phdr.wrapping_sub(p.p_vaddr as usize))
                .unwrap_or(0)
        });
        let dynamic: &'static mut [Dyn] = match ph.iter().find(|p| p.p_type == PT_DYNAMIC) {
            // SAFETY: PT_DYNAMIC lies in a writable PT_LOAD of the mapped image.
            Some(p) => core::slice::from_raw_parts_mut(
                bias.wrapping_add(p.p_vaddr as usize) as *mut Dyn,
                (p.p_memsz / 16) as usize,
            ),
            None => &mut [],
        };
        let mut strtab = 0;
        let mut strsz = 0;
        for d in dynamic.iter().take_while(|d| d.d_tag != DT_NULL) {
            match d.d_tag {
                DT_STRTAB => strtab = bias.wrapping_add(d.d_val as usize),
                DT_STRSZ => strsz = d.d_val as usize,
                _ => {}
            }
        }
        let strings: &'static [u8] = if strtab == 0 {
            &[]
        } else {
            // SAFETY: DT_STRTAB/DT_STRSZ describe the mapped string table.
            core::slice::from_raw_parts(strtab as *const u8, strsz)
        };
        Program {
            bias,
            dynamic,
            strtab,
            strings,
            phdrs: ph,
            interp: match ph.iter().find(|p| p.p_type == PT_INTERP) {
                // SAFETY: PT_INTERP is a NUL-terminated string in the mapped image.
                Some(p) => cstr(bias.wrapping_add(p.p_vaddr as usize) as *const u8),
                None => &[],
            },
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Dyn> {
        self.dynamic.iter().take_while(|d| d.d_tag != DT_NULL)
    }

    /// The string value of the first entry tagged `tag`.
    pub fn tag_str(&self, tag: i64) -> Option<&'static [u8]> {
        let strings = self.strings;
        self.entries()
            .find(|d| d.d_tag == tag)
            .map(|d| elf::str_at(strings, d.d_val))
    }

    /// Whether any `DT_NEEDED` is a content address.
    pub fn has_uri_needed(&self) -> bool {
        let strings = self.strings;
        self.entries()
            .any(|d| d.d_tag == DT_NEEDED && elf::str_at(strings, d.d_val).starts_with(URI_PREFIX))
    }
}

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
    // The caller's environment never chooses a library for a setuid program.
    r.overrides = match stack.env(b"LD_CAS_OVERRIDE") {
        Some(list) if !secure => list,
        _ => &[],
    };

    if uses_uri || loader_uri.is_some() {
        let env = if secure {
            None
        } else {
            stack.env(b"LD_CAS_STORE").filter(|e| !e.is_empty())
        };
        let recorded = prog.tag_str(DT_LDCAS_STORE);
        let pdir: &[u8] = match (env, recorded, dir) {
            (None, Some(rec), None) if !rec.starts_with(b"/") => exe_dir(&stack, secure),
            (_, _, Some(d)) => d,
            _ => b"",
        };
        let source = store::locate(&mut r.store, env, recorded, pdir);
        if r.store.overflowed() {
            too_long(name, "the store's path");
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
        r.table = match store::open_table(r.store.bytes(), scratch) {
            Ok(t) => t,
            Err(e) => store_error(name, r.store.bytes(), source, scratch, e),
        };
    }

    loader_path.clear();
    match loader_uri {
        Some(uri) => {
            let entry = match Hash::parse_uri(uri)
                .ok()
                .map(|h| store::lookup(r.table, &h))
            {
                Some(Ok(Some(e))) if e.kind == Kind::Interpreter || e.kind == Kind::Library => e,
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
        }
        None => {
            loader_path.push(&arch::DEFAULT_LOADER[..arch::DEFAULT_LOADER.len() - 1]);
        }
    }
    if loader_path.overflowed() {
        too_long(name, "the loader's path");
    }
    if debug {
        trace(|o| {
            o.str("loader ").bytes(loader_path.bytes());
        });
    }
    let ld = match loadmap::map_path(loader_path.c(), arch::EM_MACHINE, page) {
        Ok(m) => m,
        Err(e) => die(127, |o| {
            o.bytes(name)
                .str(": cannot load the loader ")
                .bytes(loader_path.bytes());
            if let Some(u) = loader_uri {
                o.str(" (").bytes(u).str(")");
            }
            o.str(": ").str(e.describe());
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
    if uses_uri && (secure || !glibc) {
        let why = if secure {
            "it runs set-user-ID or set-group-ID, and glibc ignores audit modules named by path then"
        } else {
            "its loader is not glibc's ld.so and has no audit interface"
        };
        direct_needed(prog, name, why);
    } else if uses_uri {
        let strtab = prog.strtab;
        // SAFETY: the program's dynamic section has not been read by ld.so yet.
        if let Err(e) = unsafe { audit::install(prog.dynamic, strtab, me) } {
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
    stack.set_aux(AT_BASE, ld.bias);
    // SAFETY: the stack is the process's initial stack, edited consistently; ld.so is mapped.
    unsafe { arch::jump(stack.sp, ld.entry) }
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
fn direct_needed(prog: Program, name: &[u8], why: &str) {
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
        let path = match audit::resolve(r, needed, name) {
            Some(audit::Found::Path(p)) => p,
            _ => continue,
        };
        // SAFETY: `resolve` returns a NUL-terminated copy that lives for good.
        let file = unsafe { cstr(path) };
        if let Some(inner) = nested_uri(file) {
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
        p.p_type == elf::PT_LOAD && addr >= start && addr < start + p.p_memsz as usize
    });
    let seg = match seg {
        Some(s) => s,
        None => return,
    };
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
            // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
            let file = (vn + 4) as *mut u32;
            if let Some(m) = moved.iter().find(|m| m.0 == *file as u64) {
                *file = m.1 as u32;
            }
            let next = *((vn + 12) as *const u32) as usize;
            if next == 0 {
                break;
            }
            vn += next;
        }
        let _ = sys::mprotect(start, len, prot);
    }
}

/// The first `uri:` name the ELF file at `path` needs, if any.
fn nested_uri(path: &[u8]) -> Option<&'static [u8]> {
    let mut p = PathBuf::new();
    p.push(path);
    let fd = sys::open(p.c()).ok()?;
    let len = sys::file_size(&fd).ok()?;
    let bytes = sys::map_file(&fd, len as usize).ok()?;
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
fn exe_dir(stack: &Stack, secure: bool) -> &'static [u8] {
    // SAFETY: single-threaded before the hand-over.
    let exe = unsafe { &mut *core::ptr::addr_of_mut!(EXE) };
    if exe.fill(|buf| sys::readlink(b"/proc/self/exe\0", buf).ok()) {
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
    b"."
}

fn too_long(name: &[u8], what: &str) -> ! {
    die(127, |o| {
        o.bytes(name).str(": ").str(what);
        let _ = core::fmt::write(
            o,
            format_args!(" is longer than {} bytes", crate::path::PATH_MAX - 1),
        );
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
            OpenError::Corrupt(t) => {
                let _ = core::fmt::write(o, format_args!("the lookup table "));
                o.bytes(store);
                let _ = core::fmt::write(o, format_args!("/table is corrupt: {}", t));
            }
        }
    })
}
