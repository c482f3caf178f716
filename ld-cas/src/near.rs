//! Memory within 4 GiB above the program's string table for what ld-cas builds for
//! ld.so: the libraries' absolute paths (`vn_file` is a 32-bit offset from the string
//! table), the copy of `.gnu.version_r` that names them, the index's search path, and a
//! copy of the lookup table when the name service will read it after the hand-over.
//!
//! It starts as the rest of the program's last writable page, past its `.bss`: the kernel
//! zeroed that page at `execve`, so it costs neither a system call nor a fault, and under
//! glibc nothing else ever uses it (glibc's ld.so starts its own allocations the same way,
//! in the rest of its own last page). musl's loader gives that room to its `malloc`, so
//! for it, and when the room is full, one anonymous mapping is made and what was built so
//! far is copied to the same positions there: what was handed out stays where it is,
//! valid, and positions ([`Near::position`]) keep naming the same bytes. One `mmap`
//! at most (and no `mprotect` of the program's own pages): system calls that change the
//! address space are the expensive ones. Nothing is ever unmapped, so what it holds lives
//! as long as the process.

use crate::elf;
use crate::out::die;
use crate::program::Program;
use crate::sys::{self, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};

/// The mapping's size: address space only; pages are touched as they are used.
const SIZE: usize = 1 << 19;

/// A bump allocator over the room, then over the mapping.
pub struct Near {
    /// Where position 0 is.
    base: usize,
    /// Bytes handed out.
    used: usize,
    /// Bytes the current room holds.
    size: usize,
    /// What the mapping must reach, until it is made.
    unmapped: Option<Reach>,
    /// The program, for the message when no mapping can be had.
    name: &'static [u8],
}

/// Where the mapping may lie: above the program's end, within 4 GiB of its string table.
#[derive(Clone, Copy)]
struct Reach {
    end: usize,
    strtab: usize,
}

impl Near {
    /// Memory for `prog` (`name` for messages): its last page's rest when `tail` (the
    /// loader is glibc's) and that rest is usable, else nothing until the first
    /// allocation maps. `page` is the kernel's page size.
    pub fn new(prog: &Program, page: usize, tail: bool, name: &'static [u8]) -> Near {
        let end = prog
            .phdrs
            .iter()
            .filter(|p| p.p_type == elf::PT_LOAD)
            .map(|p| prog.bias.wrapping_add((p.p_vaddr + p.p_memsz) as usize))
            .max()
            .unwrap_or(prog.strtab);
        let room = if tail {
            last_page_rest(prog, page)
        } else {
            None
        };
        let (base, size) = room.unwrap_or((end, 0));
        Near {
            base,
            used: 0,
            size,
            unmapped: Some(Reach {
                end,
                strtab: prog.strtab,
            }),
            name,
        }
    }

    /// `size` bytes aligned to `align` (a power of two, at most 8), zeroed, for good;
    /// `None` when full.
    pub fn alloc(&mut self, size: usize, align: usize) -> Option<&'static mut [u8]> {
        let at = self.used.checked_add(align - 1)? & !(align - 1);
        let end = at.checked_add(size)?;
        if end > self.size {
            if end > SIZE || self.unmapped.is_none() {
                return None;
            }
            self.map();
        }
        self.used = end;
        // SAFETY: `[base + at, base + end)` lies in the current room, is handed out once,
        // and the room is never unmapped nor used by anything else.
        let bytes = unsafe { core::slice::from_raw_parts_mut((self.base + at) as *mut u8, size) };
        if self.unmapped.is_some() {
            // The kernel zeroes the whole page, but the ELF rules promise zeroes only up to
            // `.bss`'s end (another loader, valgrind's say, may leave file bytes past it):
            // zeroed as it is handed out, so only what is used is written. A fresh mapping
            // is zero.
            bytes.fill(0);
        }
        Some(bytes)
    }

    /// Moves to the mapping, with what was built so far copied to the same positions.
    fn map(&mut self) {
        let reach = match self.unmapped.take() {
            Some(r) => r,
            None => return,
        };
        let base = map_within(reach).unwrap_or_else(|| {
            die(127, |o| {
                o.bytes(self.name).str(
                    ": cannot map memory within reach of its string table for its library paths",
                );
            })
        });
        // SAFETY: `[self.base, + used)` was handed out from the room, which stays mapped;
        // the fresh mapping holds at least `SIZE >= used` bytes; they do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base as *const u8, base as *mut u8, self.used)
        };
        self.base = base;
        self.size = SIZE;
    }

    /// The position the next allocation starts at, before alignment.
    pub fn position(&self) -> usize {
        self.used
    }

    /// Where position `at` (below [`Near::position`]) lies now.
    pub fn address(&self, at: usize) -> usize {
        self.base + at
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

/// The rest of the program's last writable page, past the end of its `.bss`: where it
/// starts (8-aligned) and how long it is, or `None` when it cannot be used. It must be
/// the end of the highest segment, one with a `.bss` (the kernel then zeroed the page, so
/// it is in memory already), and within reach of the string table.
fn last_page_rest(prog: &Program, page: usize) -> Option<(usize, usize)> {
    let end_of = |p: &elf::Phdr| prog.bias.wrapping_add((p.p_vaddr + p.p_memsz) as usize);
    let loads = || prog.phdrs.iter().filter(|p| p.p_type == elf::PT_LOAD);
    let last = loads().max_by_key(|p| end_of(p))?;
    if last.p_flags & elf::PF_W == 0 || last.p_memsz <= last.p_filesz {
        return None;
    }
    let start = end_of(last).checked_add(7)? & !7;
    let stop = end_of(last).checked_add(page - 1)? & !(page - 1);
    // A segment starting in the page would be mapped over it.
    let shared = loads().any(|p| {
        let at = prog.bias.wrapping_add(p.p_vaddr as usize);
        at >= end_of(last) && at < stop
    });
    let reach = stop.checked_sub(prog.strtab)?;
    if shared || start >= stop || start < prog.strtab || reach > u32::MAX as usize {
        return None;
    }
    Some((start, stop - start))
}

/// One anonymous mapping of `SIZE` bytes above the program, all of it within 4 GiB above
/// its string table, or `None`.
fn map_within(reach: Reach) -> Option<usize> {
    // A 64 KiB-aligned hint 1 GiB above the program (clear of its heap's start), then
    // others within reach when something already lies there.
    for above in [1usize << 30, 1 << 31, 1 << 29, 3 << 30] {
        let hint = reach.end.checked_add(above)? & !0xffff;
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
        let fits = base
            .checked_sub(reach.strtab)
            .and_then(|d| d.checked_add(SIZE));
        if matches!(fits, Some(r) if r <= u32::MAX as usize) {
            return Some(base);
        }
        // SAFETY: our own fresh mapping, not handed out.
        let _ = unsafe { sys::munmap(base, SIZE) };
    }
    None
}
