//! One anonymous mapping, within 4 GiB above the program's string table, for what ld-cas
//! builds for ld.so: the libraries' absolute paths (`vn_file` is a 32-bit offset from the
//! string table), the copy of `.gnu.version_r` that names them, and a small lookup table
//! read into memory. One `mmap` instead of one per part (and no `mprotect` of the
//! program's own pages): system calls that change the address space are the expensive
//! ones. It is never unmapped, so what it holds lives as long as the process.

use crate::elf;
use crate::program::Program;
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// Its size: address space only; pages are touched as they are used.
const SIZE: usize = 1 << 19;

/// A position in the mapping, from [`Near::mark`].
#[derive(Clone, Copy)]
pub struct Mark(usize);

/// A bump allocator over the mapping.
pub struct Near {
    base: usize,
    used: usize,
}

impl Near {
    /// Maps it for `prog`, or `None` when no such mapping can be had.
    pub fn map(prog: &Program) -> Option<Near> {
        let end = prog
            .phdrs
            .iter()
            .filter(|p| p.p_type == elf::PT_LOAD)
            .map(|p| prog.bias.wrapping_add((p.p_vaddr + p.p_memsz) as usize))
            .max()
            .unwrap_or(prog.strtab);
        // A 64 KiB-aligned hint 1 GiB above the program (clear of its heap's start), then
        // others within reach when something already lies there.
        for above in [1usize << 30, 1 << 31, 1 << 29, 3 << 30] {
            let hint = end.checked_add(above)? & !0xffff;
            // SAFETY: a fresh anonymous mapping (the address is only a hint).
            let base = unsafe {
                sys::mmap(
                    hint,
                    SIZE,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                    -1,
                    0,
                )
            }
            .ok()?;
            let reach = base
                .checked_sub(prog.strtab)
                .and_then(|d| d.checked_add(SIZE));
            if matches!(reach, Some(r) if r <= u32::MAX as usize) {
                return Some(Near { base, used: 0 });
            }
            // SAFETY: our own fresh mapping, not handed out.
            let _ = unsafe { sys::munmap(base, SIZE) };
        }
        None
    }

    /// `size` bytes aligned to `align` (a power of two), zeroed, for good; `None` when full.
    pub fn alloc(&mut self, size: usize, align: usize) -> Option<&'static mut [u8]> {
        let at = self.used.checked_add(align - 1)? & !(align - 1);
        let end = at.checked_add(size)?;
        if end > SIZE {
            return None;
        }
        self.used = end;
        // SAFETY: `[base + at, base + end)` lies in our mapping, is handed out once, and the
        // mapping is never unmapped (fresh anonymous pages are zero).
        Some(unsafe { core::slice::from_raw_parts_mut((self.base + at) as *mut u8, size) })
    }

    /// Where the next allocation starts, for [`Near::give_back`].
    pub fn mark(&self) -> Mark {
        Mark(self.used)
    }

    /// Gives back what was allocated since `mark` but for its first `kept` bytes (the
    /// allocation made right after the mark, of alignment at most 8): they stay handed
    /// out, the rest is handed out again. The caller wrote at most its first `written`
    /// bytes, which are zeroed again past `kept` (untouched pages stay untouched).
    pub fn give_back(&mut self, mark: Mark, kept: usize, written: usize) {
        let start = (mark.0 + 7) & !7;
        let end = (start + kept).min(self.used);
        let dirty = (start + written).min(self.used);
        if dirty > end {
            // SAFETY: `[base + end, base + dirty)` lies in our mapping, in the allocation
            // the caller gives back and no longer uses past `kept`.
            unsafe { core::ptr::write_bytes((self.base + end) as *mut u8, 0, dirty - end) };
        }
        self.used = end;
    }

    /// The address the next allocation aligned to `align` starts at.
    pub fn next(&self, align: usize) -> usize {
        self.base + ((self.used + align - 1) & !(align - 1))
    }

    /// The address one past the last byte handed out.
    pub fn end(&self) -> usize {
        self.base + self.used
    }

    /// `parts` joined and NUL-terminated, for good, aligned to `align`: the bytes with
    /// their terminator; `None` when full.
    pub fn alloc_joined(&mut self, parts: &[&[u8]], align: usize) -> Option<&'static [u8]> {
        let bytes = self.alloc(joined_len(parts) + 1, align)?;
        // The byte after the parts stays the zero of a fresh allocation.
        copy_parts(bytes, parts);
        Some(bytes)
    }
}

/// The length of `parts` joined.
pub fn joined_len(parts: &[&[u8]]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

/// Copies `parts` one after the other to the start of `dst` (which holds them).
pub fn copy_parts(dst: &mut [u8], parts: &[&[u8]]) {
    let mut at = 0;
    for part in parts {
        dst[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
}
