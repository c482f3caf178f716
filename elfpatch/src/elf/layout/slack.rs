//! Slack: the zero bytes a linker leaves after a non-writable `PT_LOAD`, up to the page
//! where the next segment starts. The pieces that move but need no writable segment (the
//! interpreter string and `.dynstr`) go there when they fit, and that segment grows over
//! them: the file keeps its segments, so ld.so maps it with no more mmaps than before.
//!
//! The program header table never goes there (it stays where strip and objcopy expect
//! it), nor `.dynamic` (ld.so writes into it). Slack holds no mark: a later edit sees an
//! ordinary segment whose last bytes happen to be `.dynstr`. When that table grows again
//! and its old copy is not kept, the new one starts where the old one did, so successive
//! edits do not use up the slack with copies.

use super::super::codec::Phdr;
use super::super::consts::*;
use super::super::parse::{Elf, StrTab};
use super::place::At;

/// A kept `PT_LOAD` that grows over the slack after it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slack {
    /// The load as kept, before it grows.
    pub(super) load: Phdr,
    /// The load grown over the pieces.
    pub(super) grown: Phdr,
    /// Where the moved pieces start (the load's old end, or the old string table's start
    /// when it is overwritten), in the file and in memory.
    pub(super) start: At,
}

/// What is looked for.
#[derive(Clone, Debug)]
pub(super) struct Need {
    /// Bytes of the pieces.
    pub(super) size: u64,
    /// Where the file is cut for what is appended: slack must end before.
    pub(super) limit: u64,
    /// The string table, when its old copy may be overwritten (it moves and is not kept):
    /// when it ends a load, the pieces may start where it does.
    pub(super) reusable: Option<StrTab>,
}

/// A half-open range of file offsets or addresses.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn new(start: u64, len: u64) -> Option<Span> {
        Some(Span {
            start,
            end: start.checked_add(len)?,
        })
    }

    /// True when the `len` bytes at `start` share a byte with this range.
    fn meets(&self, start: u64, len: u64) -> bool {
        len > 0 && start < self.end && start.saturating_add(len) > self.start
    }
}

/// The flag bits that say how a segment is mapped.
fn access(p: &Phdr) -> u32 {
    p.p_flags & (PF_R | PF_W | PF_X)
}

/// Slack for `need` right after one of the `kept` loads, or `None`.
///
/// Only read-only loads are grown when the file has one. A read-and-execute load is
/// grown only in a file without read-only loads (linked with `-z noseparate-code`, where
/// the linker itself maps `.dynstr` with the code): a file that separates code from data
/// keeps strings out of its executable pages, and so does this.
pub(super) fn find(elf: &Elf, kept: &[Phdr], need: &Need) -> Option<Slack> {
    if need.size == 0 {
        return None;
    }
    let loads: Vec<&Phdr> = kept
        .iter()
        .filter(|p| p.p_type == PT_LOAD && (p.p_memsz > 0 || p.p_filesz > 0))
        .collect();
    let wanted = if loads.iter().any(|p| access(p) == PF_R) {
        PF_R
    } else {
        PF_R | PF_X
    };
    let mut candidates: Vec<&Phdr> = loads
        .iter()
        .copied()
        .filter(|p| access(p) == wanted)
        .collect();
    candidates.sort_by_key(|p| p.p_vaddr);
    candidates
        .into_iter()
        .find_map(|p| fits(elf, kept, &loads, p, need))
}

/// Where the pieces start after `load`: where the reusable string table starts when it
/// ends the load, else the load's end.
fn start_in(load: &Phdr, need: &Need) -> Option<At> {
    let end = At {
        offset: load.p_offset.checked_add(load.p_filesz)?,
        vaddr: load.p_vaddr.checked_add(load.p_memsz)?,
    };
    let reused = need.reusable.as_ref().filter(|r| {
        r.offset >= load.p_offset
            && r.offset.checked_add(r.size) == Some(end.offset)
            && r.vaddr.checked_add(r.size) == Some(end.vaddr)
    });
    Some(reused.map_or(end, |r| At {
        offset: r.offset,
        vaddr: r.vaddr,
    }))
}

/// The slack after `load` when the pieces fit there: all its bytes in the file, the
/// bytes after it zeros below the limit, and nothing else (section, segment, header
/// table) in the grown part, in the file or in memory, nor where the pieces overwrite the
/// reusable string table but that table.
fn fits(elf: &Elf, kept: &[Phdr], loads: &[&Phdr], load: &Phdr, need: &Need) -> Option<Slack> {
    if load.p_filesz != load.p_memsz || load.p_filesz == 0 {
        return None;
    }
    let start = start_in(load, need)?;
    let end = At {
        offset: start.offset.checked_add(need.size)?,
        vaddr: start.vaddr.checked_add(need.size)?,
    };
    let old_end = load.file_end();
    if end.offset <= old_end {
        return None;
    }
    let file = Span::new(old_end, end.offset - old_end)?;
    let mem = Span::new(load.mem_end(), end.offset - old_end)?;
    let reused = Span::new(start.offset, old_end - start.offset)?;
    let zeros = file.end <= need.limit
        && usize::try_from(file.end)
            .ok()
            .and_then(|end| elf.data.get(file.start as usize..end))
            .is_some_and(|b| b.iter().all(|&x| x == 0));
    let clear = zeros
        && apart_from_loads(loads, load, file, mem)
        && apart_from_tables(elf, file)
        && apart_from_sections(elf, file, mem)
        && apart_from_segments(kept, load, file, mem)
        && only_the_table_in(elf, kept, reused);
    let mut grown = *load;
    grown.p_filesz = end.offset - load.p_offset;
    grown.p_memsz = grown.p_filesz;
    clear.then_some(Slack {
        load: *load,
        grown,
        start,
    })
}

/// Nothing but the string table (its section, which starts where the table does) has
/// bytes in `reused`, the part of the load the pieces overwrite.
fn only_the_table_in(elf: &Elf, kept: &[Phdr], reused: Span) -> bool {
    let sections = elf.sections.iter().all(|s| {
        let h = &s.hdr;
        h.sh_type == SHT_NOBITS
            || !reused.meets(h.sh_offset, h.sh_size)
            || h.sh_offset == reused.start && h.sh_type == SHT_STRTAB
    });
    sections
        && kept
            .iter()
            .filter(|q| q.p_type != PT_LOAD)
            .all(|q| !reused.meets(q.p_offset, q.p_filesz))
}

/// No other load maps the grown part: the inputs' loads are sorted and disjoint, so this
/// keeps it below the next one in the file and in memory.
fn apart_from_loads(loads: &[&Phdr], load: &Phdr, file: Span, mem: Span) -> bool {
    loads
        .iter()
        .filter(|q| !std::ptr::eq(**q, load))
        .all(|q| !file.meets(q.p_offset, q.p_filesz) && !mem.meets(q.p_vaddr, q.p_memsz))
}

/// The program and section header tables are not in the grown part.
fn apart_from_tables(elf: &Elf, file: Span) -> bool {
    let c = elf.codec;
    !file.meets(elf.phoff, elf.phdrs.len() as u64 * c.phdr_size())
        && !file.meets(elf.shoff, elf.shnum.saturating_mul(c.shdr_size()))
}

/// No section has bytes in the grown part of the file, nor (when allocated) addresses in
/// its part of memory; `.tbss` takes no address space and is not counted.
fn apart_from_sections(elf: &Elf, file: Span, mem: Span) -> bool {
    elf.sections.iter().all(|s| {
        let h = &s.hdr;
        let nobits = h.sh_type == SHT_NOBITS;
        let in_file = !nobits && file.meets(h.sh_offset, h.sh_size);
        let takes_memory = h.sh_flags & SHF_ALLOC != 0 && !(nobits && h.sh_flags & SHF_TLS != 0);
        let in_mem = takes_memory && mem.meets(h.sh_addr, h.sh_size);
        !in_file && !in_mem
    })
}

/// No segment but loads covers the grown part, and no `PT_GNU_RELRO` ends where the load
/// ends (ld.so makes its pages read-only; a load it ends at is left alone, to be sure the
/// protected range keeps its meaning).
fn apart_from_segments(kept: &[Phdr], load: &Phdr, file: Span, mem: Span) -> bool {
    let relro_ends_it = |q: &Phdr| q.p_type == PT_GNU_RELRO && q.mem_end() == load.mem_end();
    kept.iter().filter(|q| q.p_type != PT_LOAD).all(|q| {
        let covers = file.meets(q.p_offset, q.p_filesz) || mem.meets(q.p_vaddr, q.p_memsz);
        !covers && !relro_ends_it(q)
    })
}
