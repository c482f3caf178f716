//! Mapping an ELF file's `PT_LOAD` segments the way the kernel does for an interpreter:
//! used for the real ld.so, and for the program when ld-cas is run as a command.

use crate::elf::{self, Phdr, ET_DYN, PT_INTERP, PT_LOAD, PT_PHDR};
use crate::sys::{
    self, CPath, Errno, Fd, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE,
};

/// Where a mapped ELF object landed.
#[derive(Clone, Copy, Debug)]
pub struct Mapped {
    /// Load bias: run-time address minus link-time address.
    pub bias: usize,
    /// Run-time entry point.
    pub entry: usize,
    /// Run-time address of the program headers.
    pub phdr: usize,
    /// Number of program headers.
    pub phnum: usize,
}

/// What is being mapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A program (ld-cas run as a command).
    Program,
    /// The real loader: it must be position-independent (`ET_DYN`) and have no
    /// `PT_INTERP` of its own (a program, or glibc's libc.so.6, which names ld.so, would
    /// crash when entered as a loader).
    Loader,
}

/// Why an ELF file could not be mapped.
#[derive(Clone, Copy, Debug)]
pub enum MapError {
    /// `open` failed.
    Open(Errno),
    /// Reading the headers failed.
    Read(Errno),
    /// Not an ELF file ld-cas can load on this machine.
    NotElf,
    /// `mmap` failed.
    Map(Errno),
    /// Not a regular file (what it is).
    NotFile(&'static str),
    /// An ELF file, but not a program interpreter.
    NotLoader,
    /// The file's size differs from the table's (recorded, actual).
    Size(u64, u64),
}

impl MapError {
    /// Writes the description (with the sizes, for [`MapError::Size`]).
    pub fn write(&self, o: &mut crate::out::Out) {
        match *self {
            MapError::Size(want, got) => {
                let _ = core::fmt::write(
                    o,
                    format_args!(
                        "it is {got} bytes long, but the lookup table records {want} (a damaged store)"
                    ),
                );
            }
            MapError::NotFile(k) => {
                o.str("it is ").str(k).str(", not a regular file");
            }
            _ => {
                o.str(self.describe());
            }
        }
    }

    /// One-phrase description.
    pub fn describe(&self) -> &'static str {
        match self {
            MapError::Size(..) => "its size is not the one the lookup table records",
            MapError::Open(e) | MapError::Read(e) | MapError::Map(e) => e.describe(),
            MapError::NotElf => "not a loadable ELF file for this machine",
            MapError::NotFile(k) => k,
            MapError::NotLoader => {
                "not a program interpreter (ld.so): it is a program or a library with a PT_INTERP of its own, or not position-independent"
            }
        }
    }
}

/// Bytes read at the start of the file: the ELF header and, normally, the program headers
/// (tools like patchelf add headers, so this is generous).
const HEAD: usize = 1024;
const MAX_PHDRS: usize = 32;

/// The `mmap` protection of a segment.
pub fn prot(p: &Phdr) -> usize {
    let mut prot = 0;
    if p.p_flags & 4 != 0 {
        prot |= PROT_READ;
    }
    if p.p_flags & 2 != 0 {
        prot |= PROT_WRITE;
    }
    if p.p_flags & 1 != 0 {
        prot |= PROT_EXEC;
    }
    prot
}

/// Opens `path` (without waiting: a FIFO is refused, not read) and maps
/// its segments; `ET_DYN` objects go where the kernel finds room, `ET_EXEC` ones at their
/// fixed addresses. Returns the mapping and the file's size.
pub fn map_path(
    path: CPath<'_>,
    machine: u16,
    page: usize,
    role: Role,
) -> Result<(Mapped, u64), MapError> {
    let fd = sys::open(path).map_err(MapError::Open)?;
    let st = sys::fstat(&fd).map_err(MapError::Read)?;
    if st.kind() != sys::S_IFREG {
        return Err(MapError::NotFile(st.describe_kind()));
    }
    Ok((map_fd(&fd, machine, page, role)?, st.size))
}

/// Maps the segments of the ELF file open as `fd`.
pub fn map_fd(fd: &Fd, machine: u16, page: usize, role: Role) -> Result<Mapped, MapError> {
    // One read for the ELF header and (nearly always) the program headers.
    let mut head = [0u8; HEAD];
    let n = sys::pread(fd, &mut head, 0).map_err(MapError::Read)?;
    let h = elf::header(&head[..n], machine).ok_or(MapError::NotElf)?;
    let phnum = h.e_phnum as usize;
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(MapError::NotElf);
    }
    let mut ph = [Phdr::default(); MAX_PHDRS];
    let end = (h.e_phoff as usize).saturating_add(phnum * 56);
    if end > n {
        // Program headers further in (e.g. moved by an editor): read them separately.
        let mut more = [0u8; MAX_PHDRS * 56];
        let want = &mut more[..phnum * 56];
        if sys::pread(fd, want, h.e_phoff).map_err(MapError::Read)? != want.len() {
            return Err(MapError::NotElf);
        }
        let at0 = elf::Header { e_phoff: 0, ..h };
        for (i, slot) in ph.iter_mut().enumerate().take(phnum) {
            *slot = elf::phdr(want, &at0, i).ok_or(MapError::NotElf)?;
        }
    } else {
        for (i, slot) in ph.iter_mut().enumerate().take(phnum) {
            *slot = elf::phdr(&head[..n], &h, i).ok_or(MapError::NotElf)?;
        }
    }
    let ph = &ph[..phnum];
    if role == Role::Loader && (h.e_type != ET_DYN || ph.iter().any(|p| p.p_type == PT_INTERP)) {
        return Err(MapError::NotLoader);
    }
    let mask = page - 1;
    let (mut lo, mut hi, mut align) = (u64::MAX, 0u64, page as u64);
    let mut first: Option<&Phdr> = None;
    for p in ph.iter().filter(|p| p.p_type == PT_LOAD) {
        if p.p_filesz > p.p_memsz || p.p_offset & mask as u64 != p.p_vaddr & mask as u64 {
            return Err(MapError::NotElf);
        }
        if p.p_vaddr & !(mask as u64) < lo {
            first = Some(p);
        }
        lo = lo.min(p.p_vaddr & !(mask as u64));
        hi = hi.max(p.p_vaddr.checked_add(p.p_memsz).ok_or(MapError::NotElf)?);
        if p.p_align.is_power_of_two() {
            align = align.max(p.p_align.min(1 << 30));
        }
    }
    let first = match first {
        Some(f) if lo < hi => f,
        _ => return Err(MapError::NotElf),
    };
    // What is read or entered after the mapping must lie in it: the program headers in a
    // file-backed part of a segment, the entry point in an executable one.
    // (The loop above checked that no segment's end overflows.)
    let inside = |v: u64, len: u64, exec: bool| {
        ph.iter().filter(|p| p.p_type == PT_LOAD).any(|p| {
            let end = if exec { p.p_memsz } else { p.p_filesz };
            v >= p.p_vaddr
                && len <= end
                && v - p.p_vaddr <= end - len
                && (!exec || p.p_flags & 1 != 0)
        })
    };
    if let Some(p) = ph.iter().find(|p| p.p_type == PT_PHDR) {
        if !inside(p.p_vaddr, phnum as u64 * 56, false) {
            return Err(MapError::NotElf);
        }
    }
    if !inside(h.e_entry, 1, true) {
        return Err(MapError::NotElf);
    }
    let span = ((hi - lo) as usize + mask) & !mask;
    let bias = if h.e_type != ET_DYN {
        0
    } else if align as usize <= page && first.p_filesz > 0 {
        // Like the kernel and ld.so: map the lowest segment with the whole span, which
        // reserves room for the others; they are mapped over it below.
        // SAFETY: a fresh mapping chosen by the kernel.
        let at = unsafe {
            sys::mmap(
                0,
                span,
                prot(first),
                MAP_PRIVATE,
                fd.raw(),
                first.p_offset & !(mask as u64),
            )
        }
        .map_err(MapError::Map)?;
        at.wrapping_sub(lo as usize)
    } else {
        // SAFETY: a fresh inaccessible reservation chosen by the kernel, trimmed to an
        // aligned window; we own all of it.
        unsafe {
            let a = align as usize;
            let r = sys::mmap(0, span + a, 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                .map_err(MapError::Map)?;
            let start = (r + a - 1) & !(a - 1);
            if start > r {
                let _ = sys::munmap(r, start - r);
            }
            let _ = sys::munmap(start + span, r + a - start);
            start.wrapping_sub(lo as usize)
        }
    };
    for p in ph.iter().filter(|p| p.p_type == PT_LOAD) {
        let vstart = bias + (p.p_vaddr as usize & !mask);
        let fend = bias + (p.p_vaddr + p.p_filesz) as usize;
        let mend = bias + (p.p_vaddr + p.p_memsz) as usize;
        let prot = prot(p);
        let flen = (fend - vstart + mask) & !mask;
        // SAFETY: the range lies in our reservation (or at the fixed addresses of an
        // ET_EXEC program, which nothing else occupies in a fresh process).
        unsafe {
            let done = h.e_type == ET_DYN && align as usize <= page && core::ptr::eq(p, first);
            if p.p_filesz > 0 && !done {
                sys::mmap(
                    vstart,
                    flen,
                    prot,
                    MAP_PRIVATE | MAP_FIXED,
                    fd.raw(),
                    p.p_offset & !(mask as u64),
                )
                .map_err(MapError::Map)?;
            }
            if p.p_memsz > p.p_filesz {
                // Zero the rest of the last file page, then map anonymous pages for the rest.
                let zstart = if p.p_filesz > 0 { fend } else { vstart };
                let zpage_end = (zstart + mask) & !mask;
                if p.p_filesz > 0 && zpage_end > fend && prot & PROT_WRITE != 0 {
                    core::ptr::write_bytes(fend as *mut u8, 0, zpage_end - fend);
                }
                let astart = if p.p_filesz > 0 { zpage_end } else { vstart };
                if mend > astart {
                    let alen = (mend - astart + mask) & !mask;
                    sys::mmap(
                        astart,
                        alen,
                        prot,
                        MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                    .map_err(MapError::Map)?;
                }
            }
        }
    }
    let phdr = match ph.iter().find(|p| p.p_type == PT_PHDR) {
        Some(p) => bias + p.p_vaddr as usize,
        None => ph
            .iter()
            .find(|p| {
                p.p_type == PT_LOAD
                    && p.p_offset <= h.e_phoff
                    && h.e_phoff < p.p_offset + p.p_filesz
            })
            .map(|p| bias + (p.p_vaddr + h.e_phoff - p.p_offset) as usize)
            .ok_or(MapError::NotElf)?,
    };
    Ok(Mapped {
        bias,
        entry: bias.wrapping_add(h.e_entry as usize),
        phdr,
        phnum,
    })
}
