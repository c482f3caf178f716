//! The region an earlier edit appended: found, so that it is rebuilt instead of growing
//! the file by another one.

use super::super::codec::Shdr;
use super::super::consts::*;
use super::super::parse::Elf;
use super::super::sections;
use super::{DYNAMIC_ZERO_TAIL, MARK};

/// The program header table and the pieces that may move, as file ranges.
fn pieces(elf: &Elf) -> Vec<(u64, u64)> {
    let mut v = vec![(elf.phoff, elf.phdrs.len() as u64 * elf.codec.phdr_size())];
    for p in &elf.phdrs {
        if p.p_type == PT_INTERP || p.p_type == PT_DYNAMIC {
            v.push((p.p_offset, p.p_filesz));
        }
    }
    if let Some(s) = &elf.strtab {
        v.push((s.offset, s.size));
    }
    // The section name table and the resolution cache note move with the region too.
    if let Some(s) = shstrtab(elf) {
        v.push((s.sh_offset, s.sh_size));
    }
    if let Some((_, h)) = sections::ldcache_section(elf) {
        v.push((h.sh_offset, h.sh_size));
    }
    v
}

/// The section name table's header, when the file has one.
pub(in super::super) fn shstrtab(elf: &Elf) -> Option<Shdr> {
    (elf.shstrndx != 0)
        .then(|| elf.sections.get(elf.shstrndx as usize))
        .flatten()
        .map(|s| s.hdr)
}

/// True when the section header table ends at `end` and shares its bytes with no
/// segment or section: an edit may then drop it there and write it anew after what it
/// appends, keeping the table at the end of the file (where tools expect it).
pub(crate) fn table_is_last(elf: &Elf, end: u64) -> bool {
    let size = elf.shnum * elf.codec.shdr_size();
    let (start, stop) = (elf.shoff, elf.shoff.saturating_add(size));
    let apart = |o: u64, n: u64| n == 0 || o.saturating_add(n) <= start || o >= stop;
    elf.shnum > 0
        && stop == end
        && start >= elf.codec.ehdr_size()
        && elf.phdrs.iter().all(|p| apart(p.p_offset, p.p_filesz))
        && elf
            .sections
            .iter()
            .all(|s| s.hdr.sh_type == SHT_NOBITS || apart(s.hdr.sh_offset, s.hdr.sh_size))
}

/// The region appended by an earlier edit, as found in the file.
pub(super) struct Tail {
    /// Length of the file without the region.
    pub(super) start: u64,
    /// Indices of the region's program headers.
    pub(super) dropped: Vec<usize>,
    /// The read-only `PT_LOAD` whose end is the region's read-only part, its start the
    /// sections an earlier edit moved to make room for the program headers (see `room`):
    /// kept, cut at `start`.
    pub(super) continued: Option<usize>,
}

/// What a candidate `PT_LOAD` of the region is checked against.
struct Scan<'e, 'a> {
    elf: &'e Elf<'a>,
    pieces: Vec<(u64, u64)>,
    loads: Vec<usize>,
    /// The section header table follows the region (edits write it there).
    trailer: bool,
    end_of_region: u64,
    shdr_end: u64,
}

impl Scan<'_, '_> {
    fn zeros(&self, a: u64, b: u64) -> bool {
        b.saturating_sub(a) < 4096
            && self
                .elf
                .data
                .get(a as usize..b as usize)
                .is_some_and(|z| z.iter().all(|&x| x == 0))
    }

    fn is_piece(&self, off: u64) -> bool {
        self.pieces.iter().any(|&(o, _)| o == off)
    }

    /// True when `PT_LOAD` `i`, ending at or before `base`, holds nothing but pieces this
    /// module regenerates and the mark (`dropped`: the loads already found after it).
    fn is_region(&self, i: usize, base: u64, dropped: &[usize]) -> bool {
        let start = self.elf.phdrs[i].p_offset;
        self.is_appended(i, base, dropped) && self.is_region_part(start, i)
    }

    /// Where the region's part of the read-only `PT_LOAD` `i` starts when the load
    /// begins with sections that are no pieces (the block `room` moved, which the
    /// region continues), or `None`.
    ///
    /// The region starts at its first piece: the zeros between the last other section and
    /// it (a piece the moved block held, zeroed when it moved on) stay with the block, so
    /// an edit rebuilding the region puts it where it was, and an edit that changes
    /// nothing gives the same bytes.
    fn continued_region(&self, i: usize, base: u64, dropped: &[usize]) -> Option<u64> {
        let p = self.elf.phdrs[i];
        let others = self.end_of_others(p.p_offset, p.file_end());
        let mark = p.file_end().saturating_sub(MARK.len() as u64);
        let cut = self
            .pieces
            .iter()
            .filter(|&&(o, n)| n > 0 && o >= others && o < mark)
            .map(|&(o, _)| o)
            .min()
            .unwrap_or(others);
        let whole = |&(o, n): &(u64, u64)| o >= cut || o.saturating_add(n) <= cut;
        (p.p_flags == PF_R
            && cut > p.p_offset
            && self.pieces.iter().all(whole)
            && self.is_appended(i, base, dropped)
            && self.is_region_part(cut, i))
        .then_some(cut)
    }

    /// True when `PT_LOAD` `i`, ending at or before `base`, is the last of the file's
    /// loads and ends with the mark (`dropped`: the loads already found after it).
    fn is_appended(&self, i: usize, base: u64, dropped: &[usize]) -> bool {
        let elf = self.elf;
        let p = elf.phdrs[i];
        let (start, end) = (p.p_offset, p.file_end());
        let others_before = self
            .loads
            .iter()
            .filter(|&&j| j != i && !dropped.contains(&j))
            .all(|&j| elf.phdrs[j].file_end() <= start);
        end <= base
            && (!dropped.is_empty()
                || end <= self.end_of_region && self.zeros(end, self.end_of_region))
            && (p.p_memsz == p.p_filesz
                || p.p_flags & PF_W != 0 && p.p_memsz == p.p_filesz + DYNAMIC_ZERO_TAIL)
            && p.p_filesz > 0
            && (start >= self.shdr_end || self.trailer && end <= elf.shoff)
            && others_before
            && end >= start + MARK.len() as u64
            && elf.data.get((end as usize - MARK.len())..end as usize) == Some(&MARK[..])
    }

    /// True when the bytes of `PT_LOAD` `i` from `from` to its mark are zeros or pieces,
    /// and no other section or segment has bytes there.
    fn is_region_part(&self, from: u64, i: usize) -> bool {
        let end = self.elf.phdrs[i].file_end();
        self.holds_only_pieces(from, end)
            && (from..end - MARK.len() as u64).all(|b| {
                self.elf.data.get(b as usize) == Some(&0)
                    || self
                        .pieces
                        .iter()
                        .any(|&(o, n)| b >= o && b < o.saturating_add(n))
            })
    }

    /// The end of the last section or segment in `start..end` that is no piece, or
    /// `start`.
    fn end_of_others(&self, start: u64, end: u64) -> u64 {
        let elf = self.elf;
        let inside = |o: u64, n: u64| n > 0 && o < end && o.saturating_add(n) > start;
        let sections = elf
            .sections
            .iter()
            .map(|s| s.hdr)
            .filter(|h| h.sh_type != SHT_NOBITS && inside(h.sh_offset, h.sh_size))
            .filter(|h| !self.is_piece(h.sh_offset))
            .map(|h| h.sh_offset.saturating_add(h.sh_size));
        let segments = elf
            .phdrs
            .iter()
            .filter(|q| !matches!(q.p_type, PT_LOAD | PT_PHDR | PT_INTERP | PT_DYNAMIC))
            .filter(|q| inside(q.p_offset, q.p_filesz) && !self.is_piece(q.p_offset))
            .map(|q| q.file_end());
        sections.chain(segments).fold(start, u64::max)
    }

    /// No section or segment but the regenerated pieces has bytes in `start..end`.
    fn holds_only_pieces(&self, start: u64, end: u64) -> bool {
        let elf = self.elf;
        elf.sections.iter().all(|s| {
            let h = &s.hdr;
            h.sh_type == SHT_NOBITS
                || h.sh_size == 0
                || h.sh_offset.saturating_add(h.sh_size) <= start
                || h.sh_offset >= end
                || self.is_piece(h.sh_offset)
        }) && elf.phdrs.iter().all(|q| {
            matches!(q.p_type, PT_LOAD | PT_PHDR | PT_INTERP | PT_DYNAMIC)
                || q.p_type == PT_NOTE && self.is_piece(q.p_offset)
                || q.p_filesz == 0
                || q.file_end() <= start
                || q.p_offset >= end
        })
    }
}

/// Finds the region appended by an earlier edit: the last `PT_LOAD`s of the file that
/// hold nothing but pieces this module regenerates, or the end of the read-only one that
/// continues the block `room` moved.
pub(super) fn find_tail(elf: &Elf) -> Tail {
    let len = elf.data.len() as u64;
    let trailer = table_is_last(elf, len);
    let mut loads: Vec<usize> = (0..elf.phdrs.len())
        .filter(|&i| elf.phdrs[i].p_type == PT_LOAD)
        .collect();
    loads.sort_by_key(|&i| std::cmp::Reverse(elf.phdrs[i].p_offset));
    let scan = Scan {
        elf,
        pieces: pieces(elf),
        loads,
        trailer,
        end_of_region: if trailer { elf.shoff } else { len },
        shdr_end: elf.shoff + elf.shnum * elf.codec.shdr_size(),
    };
    let mut base = len;
    let mut dropped = Vec::new();
    let mut continued = None;
    for &i in scan.loads.iter().take(2) {
        if scan.is_region(i, base, &dropped) {
            dropped.push(i);
            base = elf.phdrs[i].p_offset;
        } else {
            if let Some(cut) = scan.continued_region(i, base, &dropped) {
                continued = Some(i);
                base = cut;
            }
            break;
        }
    }
    Tail {
        start: base,
        dropped,
        continued,
    }
}
