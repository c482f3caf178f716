//! Debuggers, when ld-cas is the interpreter file: gdb reads `PT_INTERP` (ld-cas) at exec
//! and breaks on that file's `_dl_debug_state`, the function ld.so calls whenever it adds
//! or removes objects. ld-cas exports one ([`crate::audit::_dl_debug_state`]); ld.so's own
//! is made to branch there, in ld.so's private copy of the page, so gdb sees every library
//! event (start-up and `dlopen`) and reads the list from `r_debug` as usual. A merged
//! interpreter needs none of this: there, `PT_INTERP` is ld.so.

use crate::audit;
use crate::elf::{DT_NULL, PT_LOAD};
use crate::loadmap::{self, Mapped};
use crate::program::{segment_of, Program};
use crate::sys::{self, PROT_WRITE};

const DT_HASH: i64 = 4;
const DT_SYMTAB: i64 = 6;
/// Size of an `Elf64_Sym`.
const SYM_SIZE: usize = 24;

/// The run-time address of ld.so's `_dl_debug_state`, found through its `DT_HASH` (whose
/// chain count is the number of dynamic symbols), every read checked to lie in a mapped
/// segment.
fn debug_state(ld: &Mapped) -> Option<usize> {
    // SAFETY: the loader was mapped with these headers at this bias.
    let prog = unsafe { Program::from_phdrs(ld.phdr, ld.phnum, Some(ld.bias)) };
    let (mut hash, mut symtab) = (0usize, 0usize);
    for d in prog.dynamic.iter().take_while(|d| d.d_tag != DT_NULL) {
        match d.d_tag {
            DT_HASH => hash = ld.bias.wrapping_add(d.d_val as usize),
            DT_SYMTAB => symtab = ld.bias.wrapping_add(d.d_val as usize),
            _ => {}
        }
    }
    segment_of(prog.phdrs, ld.bias, hash, 8)?;
    // SAFETY: the two words of the hash table's header lie in a mapped segment.
    let count = unsafe { *((hash + 4) as *const u32) } as usize;
    segment_of(prog.phdrs, ld.bias, symtab, count.checked_mul(SYM_SIZE)?)?;
    (0..count).find_map(|i| {
        let sym = symtab + i * SYM_SIZE;
        // SAFETY: inside the symbol table checked above; st_name (u32) at 0, st_value
        // (u64) at 8.
        let (name, value) = unsafe { (*(sym as *const u32), *((sym + 8) as *const u64)) };
        let s = prog.strings.get(name as usize..)?;
        (s.starts_with(b"_dl_debug_state\0") && value != 0).then(|| ld.bias + value as usize)
    })
}

/// The branch instruction from `at` to `to`, when it reaches.
fn branch(at: usize, to: usize) -> Option<([u8; 5], usize)> {
    let rel = (to as i64).wrapping_sub(at as i64);
    if cfg!(target_arch = "x86_64") {
        // jmp rel32, relative to the next instruction.
        let rel = i32::try_from(rel - 5).ok()?.to_le_bytes();
        Some(([0xe9, rel[0], rel[1], rel[2], rel[3]], 5))
    } else {
        // b imm26 (words), within 128 MiB.
        if rel % 4 != 0 || !(-(1 << 27)..(1 << 27)).contains(&rel) {
            return None;
        }
        let word = (0x1400_0000u32 | ((rel >> 2) as u32 & 0x03ff_ffff)).to_le_bytes();
        Some(([word[0], word[1], word[2], word[3], 0], 4))
    }
}

/// Makes ld.so's `_dl_debug_state` branch to ld-cas's. Does nothing when it cannot (no
/// `DT_HASH`, out of reach): debuggers then miss library events, nothing else changes.
pub fn forward_debug_state(ld: &Mapped, page: usize) {
    let at = match debug_state(ld) {
        Some(a) => a,
        None => return,
    };
    let (code, len) = match branch(at, audit::_dl_debug_state as *const () as usize) {
        Some(b) => b,
        None => return,
    };
    // SAFETY: the loader was mapped with these headers at this bias.
    let phdrs = unsafe { Program::from_phdrs(ld.phdr, ld.phnum, Some(ld.bias)) }.phdrs;
    let seg = phdrs.iter().find(|p| {
        let start = ld.bias.wrapping_add(p.p_vaddr as usize);
        p.p_type == PT_LOAD && at >= start && at + len <= start + p.p_filesz as usize
    });
    let seg = match seg {
        Some(s) => s,
        None => return,
    };
    let start = at & !(page - 1);
    let end = (at + len + page - 1) & !(page - 1);
    let prot = loadmap::prot(seg);
    // SAFETY: the pages hold ld.so's code, privately mapped; nothing runs them before the
    // hand-over, and their protection is restored.
    unsafe {
        if sys::mprotect(start, end - start, prot | PROT_WRITE).is_err() {
            return;
        }
        core::ptr::copy_nonoverlapping(code.as_ptr(), at as *mut u8, len);
        let _ = sys::mprotect(start, end - start, prot);
    }
}
