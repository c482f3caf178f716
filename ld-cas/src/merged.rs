//! ld-cas merged into a copy of ld.so: one interpreter file for the kernel to map.
//!
//! `elfpatch` builds `STORE/interp/<loader hex>/<loader file name>`: the store's ld.so
//! unchanged, then a read-only segment holding a new program-header table and a
//! [`Descriptor`], then ld-cas's whole file as further `PT_LOAD`s; the entry point is
//! ld-cas's. The kernel maps it as the program's interpreter (`AT_BASE` = its base), ld-cas
//! runs, prepares the names and enters ld.so's own entry point with the stack untouched.
//! ld.so is then exactly the file a debugger reads from `PT_INTERP`, and nothing needs to
//! be opened or mapped for it.

use crate::elf::{self, Phdr, PT_PHDR};

/// The program-header type of the segment that locates the [`Descriptor`].
pub const PT_LDCAS_MERGED: u32 = 0x6c64_6301;
/// The descriptor's magic.
pub const MAGIC: [u8; 8] = *b"LDCASMRG";

/// What `elfpatch` records in a merged interpreter (64 bytes, little-endian).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Descriptor {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Layout version: 1.
    pub version: u32,
    /// Zero.
    pub reserved: u32,
    /// ld.so's entry point (link-time address).
    pub loader_entry: u64,
    /// Where ld-cas's image starts (link-time address).
    pub ldcas_start: u64,
    /// The BLAKE3 hash of the ld.so merged in (its URI in the store).
    pub loader_hash: [u8; 32],
}

/// A merged interpreter, as mapped.
#[derive(Clone, Copy)]
pub struct Merged {
    /// Its load bias (ld.so's base).
    pub base: usize,
    /// ld.so's run-time entry point.
    pub entry: usize,
    /// Run-time address of its program headers.
    pub phdr: usize,
    /// Their number.
    pub phnum: usize,
    /// The hash of the ld.so merged in.
    pub loader_hash: [u8; 32],
}

/// Finds the descriptor among `phdrs`, the program headers of an image mapped with load
/// bias `base`, if it is a merged interpreter whose ld-cas image starts at `own_base`.
///
/// # Safety
/// `phdrs` must be the headers of a mapped image whose `PT_LOAD` segments are mapped as
/// they say, at `base`.
unsafe fn from_phdrs(phdrs: &'static [Phdr], base: usize, own_base: usize) -> Option<Merged> {
    let p = phdrs.iter().find(|p| p.p_type == PT_LDCAS_MERGED)?;
    let size = core::mem::size_of::<Descriptor>();
    if (p.p_memsz as usize) < size || p.p_vaddr & 7 != 0 {
        return None;
    }
    let at = base.checked_add(p.p_vaddr as usize)?;
    let inside = phdrs.iter().any(|l| {
        l.p_type == elf::PT_LOAD
            && l.p_vaddr <= p.p_vaddr
            && p.p_vaddr + size as u64 <= l.p_vaddr + l.p_filesz
    });
    if !inside {
        return None;
    }
    // SAFETY: the descriptor lies inside a mapped PT_LOAD and is aligned (checked above).
    let d = *(at as *const Descriptor);
    if d.magic != MAGIC || d.version != 1 || base.wrapping_add(d.ldcas_start as usize) != own_base {
        return None;
    }
    Some(Merged {
        base,
        entry: base.wrapping_add(d.loader_entry as usize),
        phdr: phdrs.as_ptr() as usize,
        phnum: phdrs.len(),
        loader_hash: d.loader_hash,
    })
}

/// Run as an interpreter: whether the image the kernel mapped at `at_base` is a merged
/// interpreter holding the ld-cas that runs at `own_base`.
///
/// # Safety
/// `at_base` must be the `AT_BASE` the kernel gave.
pub unsafe fn as_interpreter(at_base: usize, own_base: usize) -> Option<Merged> {
    if at_base == own_base {
        return None;
    }
    // SAFETY: the kernel mapped the interpreter's first segment, with its ELF header, at
    // AT_BASE.
    let ehdr = core::slice::from_raw_parts(at_base as *const u8, 64);
    let h = elf::header(ehdr, crate::arch::EM_MACHINE)?;
    let phdr = at_base.checked_add(h.e_phoff as usize)?;
    if phdr & 7 != 0 {
        return None;
    }
    // SAFETY: a merged interpreter's program headers lie in its mapped segments (a
    // descriptor is only believed once found inside one).
    let phdrs = core::slice::from_raw_parts(phdr as *const Phdr, h.e_phnum as usize);
    // SAFETY: per the contract.
    from_phdrs(phdrs, at_base, own_base)
}

/// Run as a command: whether the image the kernel mapped as the program (`AT_PHDR`,
/// `AT_PHNUM`) is a merged interpreter holding the ld-cas that runs at `own_base`.
///
/// # Safety
/// `phdr`/`phnum` must be the `AT_PHDR`/`AT_PHNUM` the kernel gave.
pub unsafe fn as_command(phdr: usize, phnum: usize, own_base: usize) -> Option<Merged> {
    if phdr == 0 || phdr & 7 != 0 {
        return None;
    }
    // SAFETY: the kernel's program headers of the mapped image.
    let phdrs = core::slice::from_raw_parts(phdr as *const Phdr, phnum);
    let own = phdrs.iter().find(|p| p.p_type == PT_PHDR)?;
    let base = phdr.wrapping_sub(own.p_vaddr as usize);
    // SAFETY: per the contract.
    from_phdrs(phdrs, base, own_base)
}
