//! Mapping an ELF file's `PT_LOAD` segments the way the kernel does for an interpreter:
//! used for the real ld.so, and for the program when ld-cas is run as a command.

use crate::elf::{self, Phdr, ET_DYN, PT_LOAD, PT_PHDR};
use crate::sys::{
    self, Errno, Fd, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE,
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
}

impl MapError {
    /// One-phrase description.
    pub fn describe(&self) -> &'static str {
        match self {
            MapError::Open(e) | MapError::Read(e) | MapError::Map(e) => e.describe(),
            MapError::NotElf => "not a loadable ELF file for this machine",
        }
    }
}

/// Bytes read at the start of the file: the ELF header and, normally, the program headers
/// (tools like patchelf add headers, so this is generous).
const HEAD: usize = 4096;
const MAX_PHDRS: usize = 64;

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

/// Opens the NUL-terminated `path` and maps its segments; `ET_DYN` objects go where the
/// kernel finds room, `ET_EXEC` ones at their fixed addresses.
pub fn map_path(path: &[u8], machine: u16, page: usize) -> Result<Mapped, MapError> {
    let fd = sys::open(path).map_err(MapError::Open)?;
    map_fd(&fd, machine, page)
}

/// Maps the segments of the ELF file open as `fd`.
pub fn map_fd(fd: &Fd, machine: u16, page: usize) -> Result<Mapped, MapError> {
    let mut head = [0u8; HEAD];
    let n = sys::pread(fd, &mut head, 0).map_err(MapError::Read)?;
    let head = &head[..n];
    let h = elf::header(head, machine).ok_or(MapError::NotElf)?;
    let phnum = h.e_phnum as usize;
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(MapError::NotElf);
    }
    let mut ph = [Phdr::default(); MAX_PHDRS];
    for (i, slot) in ph.iter_mut().enumerate().take(phnum) {
        *slot = elf::phdr(head, &h, i).ok_or(MapError::NotElf)?;
    }
    let ph = &ph[..phnum];
    let mask = page - 1;
    let (mut lo, mut hi, mut align) = (u64::MAX, 0u64, page as u64);
    for p in ph.iter().filter(|p| p.p_type == PT_LOAD) {
        if p.p_filesz > p.p_memsz || p.p_offset & mask as u64 != p.p_vaddr & mask as u64 {
            return Err(MapError::NotElf);
        }
        lo = lo.min(p.p_vaddr & !(mask as u64));
        hi = hi.max(p.p_vaddr.checked_add(p.p_memsz).ok_or(MapError::NotElf)?);
        if p.p_align.is_power_of_two() {
            align = align.max(p.p_align.min(1 << 30));
        }
    }
    if lo >= hi {
        return Err(MapError::NotElf);
    }
    let span = ((hi - lo) as usize + mask) & !mask;
    let bias = if h.e_type == ET_DYN {
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
    } else {
        0
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
            if p.p_filesz > 0 {
                sys::mmap(
                    vstart,
                    flen,
                    prot,
                    MAP_PRIVATE | MAP_FIXED,
                    fd.0,
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
