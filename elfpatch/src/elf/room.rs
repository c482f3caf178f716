//! Room for more program headers where they are.
//!
//! `strip` and `objcopy` (BFD) always write the program header table right after the ELF
//! header, so a file whose table was moved to its end does not survive them. Before
//! moving the table, the editor therefore tries to make it grow in place: the sections
//! right after it (`.interp`, notes, `.gnu.hash`, `.dynsym`, `.dynstr`, version tables,
//! dynamic relocations: things only program headers, dynamic tags and section headers
//! point at, never code) move as one block, layout unchanged, to a new read-only
//! `PT_LOAD` at the end of the file, and everything that pointed into the block follows.

use super::codec::{align_up, Phdr};
use super::consts::*;
use super::error::{malformed, Result};
use super::image::Image;
use super::parse::Elf;
use super::sections;

/// Program headers that fit after the table without touching anything: the zero bytes
/// up to the next section or segment piece. Zero without section headers (what lies
/// there is then unknown).
pub(crate) fn slack_entries(elf: &Elf) -> usize {
    if elf.sections.is_empty() {
        return 0;
    }
    let ps = elf.codec.phdr_size();
    let end = elf.phoff + elf.phdrs.len() as u64 * ps;
    let Some(first) = elf
        .phdrs
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_offset <= elf.phoff && end <= p.file_end())
    else {
        return 0;
    };
    let mut limit = first.file_end();
    for s in &elf.sections {
        let h = &s.hdr;
        if h.sh_type != 0
            && h.sh_type != SHT_NOBITS
            && h.sh_size > 0
            && h.sh_offset.saturating_add(h.sh_size) > end
        {
            limit = limit.min(h.sh_offset.max(end));
        }
    }
    for p in &elf.phdrs {
        if !matches!(p.p_type, PT_LOAD | PT_PHDR) && p.p_filesz > 0 && p.file_end() > end {
            limit = limit.min(p.p_offset.max(end));
        }
    }
    if elf.shoff >= end {
        limit = limit.min(elf.shoff);
    }
    let zeros = elf
        .data
        .get(end as usize..limit as usize)
        .map_or(0, |b| b.iter().take_while(|&&x| x == 0).count() as u64);
    (zeros / ps) as usize
}

fn movable(elf: &Elf, s: &super::parse::Section) -> bool {
    let h = &s.hdr;
    let dyn_range = |tag: u64, size_tag: u64| {
        elf.dyn_val(tag)
            .zip(elf.dyn_val(size_tag))
            .is_some_and(|(a, n)| h.sh_addr >= a && h.sh_addr + h.sh_size <= a + n)
    };
    match h.sh_type {
        SHT_NOTE | SHT_HASH | SHT_GNU_HASH | SHT_DYNSYM | SHT_GNU_VERSYM | SHT_GNU_VERNEED
        | SHT_GNU_VERDEF => true,
        SHT_STRTAB => elf.strtab.as_ref().is_some_and(|t| t.vaddr == h.sh_addr),
        SHT_RELA => dyn_range(DT_RELA, DT_RELASZ) || dyn_range(DT_JMPREL, DT_PLTRELSZ),
        SHT_REL => dyn_range(DT_REL, DT_RELSZ) || dyn_range(DT_JMPREL, DT_PLTRELSZ),
        SHT_RELR => dyn_range(DT_RELR, DT_RELRSZ),
        SHT_PROGBITS => s.name == b".interp",
        _ => false,
    }
}

/// The sections after the program header table that move to make room: the file range
/// `b0..run_end`, mapped at `vaddr - offset` = `bias`.
struct Block {
    b0: u64,
    run_end: u64,
    bias: u64,
    /// Where the grown table and its spare entries end.
    target: u64,
}

/// Finds the block of sections after the program header table that can move as one (only
/// program headers, dynamic tags and section headers point at them) and frees room for
/// `want` more entries, or `None`.
fn find_block(elf: &Elf, want: usize) -> Option<Block> {
    let ps = elf.codec.phdr_size();
    let tbl_end = elf.phoff + elf.phdrs.len() as u64 * ps;
    let l0 = elf
        .phdrs
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_offset <= elf.phoff && tbl_end <= p.file_end())
        .copied()?;
    let target = tbl_end + (want as u64 + 1) * ps;
    let mut secs: Vec<&super::parse::Section> = elf
        .sections
        .iter()
        .filter(|s| s.hdr.sh_type != SHT_NOBITS && s.hdr.sh_size > 0 && s.hdr.sh_offset >= tbl_end)
        .filter(|s| s.hdr.sh_flags & SHF_ALLOC != 0 && s.hdr.sh_offset < l0.file_end())
        .collect();
    secs.sort_by_key(|s| s.hdr.sh_offset);
    let b0 = secs.first()?.hdr.sh_offset;
    let mut run_end = b0;
    for s in &secs {
        if run_end >= target && s.hdr.sh_offset >= run_end {
            break;
        }
        if !movable(elf, s) {
            return None;
        }
        run_end = run_end.max(s.hdr.sh_offset + s.hdr.sh_size);
    }
    // Segments that describe part of the block move with it; any other kind stops us,
    // and so does one that reaches past the block.
    for p in &elf.phdrs {
        let overlaps = p.p_filesz > 0 && p.p_offset < run_end && p.file_end() > b0;
        if !overlaps || matches!(p.p_type, PT_LOAD | PT_PHDR) {
            continue;
        }
        if !matches!(p.p_type, PT_NOTE | PT_GNU_PROPERTY | PT_INTERP)
            || p.p_offset < b0
            || p.file_end() > run_end
        {
            return None;
        }
    }
    if run_end < target || run_end > l0.file_end() {
        return None;
    }
    let bias = l0.p_vaddr.wrapping_sub(l0.p_offset);
    if secs
        .iter()
        .filter(|s| s.hdr.sh_offset < run_end)
        .any(|s| s.hdr.sh_addr.wrapping_sub(s.hdr.sh_offset) != bias)
    {
        return None;
    }
    Some(Block {
        b0,
        run_end,
        bias,
        target,
    })
}

/// Room made for more program headers.
pub(crate) struct Room {
    /// The writes that move the block and grow the table.
    pub(crate) image: Image,
    /// The index of the block's new `PT_LOAD` in the grown table: the last of the file's
    /// segments, which a layout of the output may continue.
    pub(crate) load: usize,
}

/// The writes that give the file room for `want` more program headers after the table,
/// or `None` when the sections there cannot move. With `keep_old`, the moved block's old
/// bytes stay where the table does not need them.
pub(crate) fn make_room(elf: &Elf, page: u64, want: usize, keep_old: bool) -> Result<Option<Room>> {
    if elf.sections.is_empty() || elf.phnum_extended {
        return Ok(None);
    }
    let Some(block) = find_block(elf, want) else {
        return Ok(None);
    };
    let to = Destination::of(elf, &block, page)?;
    let (b0, run_end) = (block.b0, block.run_end);
    let mut img = Image {
        base_len: to.base_len,
        len: to.offset + (run_end - b0),
        writes: Vec::new(),
    };
    // The old block is zeroed (it holds names Nix scans for), or with `keep_old` only
    // where the grown table and its spare entries go.
    let cleared = if keep_old {
        block.target.min(run_end) - b0
    } else {
        run_end - b0
    };
    img.writes.push((b0, vec![0; cleared as usize]));
    img.writes
        .push((to.offset, elf.data[b0 as usize..run_end as usize].to_vec()));
    let shift = Shift {
        block: b0..run_end,
        addrs: to.a0..to.a0 + (run_end - b0),
        doff: to.offset.wrapping_sub(b0),
        dv: to.vaddr.wrapping_sub(to.a0),
    };
    let c = elf.codec;
    let grown = grown_table(elf, &mut img, &shift, &to, page)?;
    let mut ehdr = elf
        .data
        .get(..c.ehdr_size() as usize)
        .ok_or_else(|| malformed("file header truncated"))?
        .to_vec();
    c.put_phnum(&mut ehdr, grown.count as u16)?;
    follow_block(elf, &mut img, &mut ehdr, &shift, to.sht_last)?;
    img.writes.push((0, ehdr));
    Ok(Some(Room {
        image: img,
        load: grown.load,
    }))
}

/// Where the block goes: after the file (or before a section header table that ends it)
/// and after the highest segment, at the same offsets within a page.
struct Destination {
    /// The block's old address.
    a0: u64,
    offset: u64,
    vaddr: u64,
    /// The input's bytes kept: all of them, or all but the section header table.
    base_len: u64,
    /// The section header table ends the file and is written again after the block.
    sht_last: bool,
}

impl Destination {
    fn of(elf: &Elf, block: &Block, page: u64) -> Result<Destination> {
        let a0 = block.b0.wrapping_add(block.bias);
        let top = elf
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.mem_end())
            .max()
            .unwrap_or(0);
        let ovf = || malformed("new segment would overflow the address space");
        // A section header table that ends the file is dropped there and written after
        // the block, so that it still ends the file.
        let data_len = elf.data.len() as u64;
        let sht_last = super::layout::table_is_last(elf, data_len);
        let base_len = if sht_last { elf.shoff } else { data_len };
        Ok(Destination {
            a0,
            offset: align_up(base_len, page).ok_or_else(ovf)? + block.b0 % page,
            vaddr: align_up(top, page).ok_or_else(ovf)? + a0 % page,
            base_len,
            sht_last,
        })
    }
}

/// The grown program header table.
struct Grown {
    /// Its number of entries.
    count: u64,
    /// The index of the block's `PT_LOAD`.
    load: usize,
}

/// Writes the program header table with the segments that were in the block moved and a
/// new read-only `PT_LOAD` for it.
fn grown_table(
    elf: &Elf,
    img: &mut Image,
    shift: &Shift,
    to: &Destination,
    page: u64,
) -> Result<Grown> {
    let c = elf.codec;
    let ps = c.phdr_size();
    let len = shift.block.end - shift.block.start;
    let mut phdrs: Vec<Phdr> = elf.phdrs.clone();
    for p in phdrs.iter_mut() {
        let moves = !matches!(p.p_type, PT_LOAD | PT_PHDR) && p.p_filesz > 0;
        if moves && shift.block.contains(&p.p_offset) {
            p.p_offset = p.p_offset.wrapping_add(shift.doff);
            p.p_vaddr = p.p_vaddr.wrapping_add(shift.dv);
            p.p_paddr = p.p_vaddr;
        }
    }
    let last_load = phdrs
        .iter()
        .rposition(|p| p.p_type == PT_LOAD)
        .map_or(phdrs.len(), |i| i + 1);
    phdrs.insert(
        last_load,
        Phdr {
            p_type: PT_LOAD,
            p_flags: PF_R,
            p_offset: to.offset,
            p_vaddr: to.vaddr,
            p_paddr: to.vaddr,
            p_filesz: len,
            p_memsz: len,
            p_align: page,
        },
    );
    let n = phdrs.len() as u64;
    for p in phdrs.iter_mut().filter(|p| p.p_type == PT_PHDR) {
        p.p_filesz = n * ps;
        p.p_memsz = n * ps;
    }
    let mut table = vec![0u8; (n * ps) as usize];
    for (k, p) in phdrs.iter().enumerate() {
        c.write_phdr(&mut table, k as u64 * ps, p)?;
    }
    img.writes.push((elf.phoff, table));
    Ok(Grown {
        count: n,
        load: last_load,
    })
}

/// How the moved block moved: its old file range and addresses, and by how much.
struct Shift {
    block: std::ops::Range<u64>,
    addrs: std::ops::Range<u64>,
    doff: u64,
    dv: u64,
}

/// Points the dynamic tags and section headers that pointed into the moved block at its
/// new place; with `sht_last`, writes the section header table after the block (and
/// `ehdr` at it).
fn follow_block(
    elf: &Elf,
    img: &mut Image,
    ehdr: &mut [u8],
    shift: &Shift,
    sht_last: bool,
) -> Result<()> {
    let c = elf.codec;
    if let Some(d) = &elf.dynamic {
        for (k, &(tag, val)) in d.entries.iter().enumerate() {
            let addr_tag = ADDRESS_TAGS.iter().any(|t| t.0 == tag)
                || (0x6fff_fe00..=0x6fff_feff).contains(&tag);
            if addr_tag && shift.addrs.contains(&val) {
                let mut e = vec![0u8; c.dyn_size() as usize];
                c.write_dyn(&mut e, 0, tag, val.wrapping_add(shift.dv))?;
                img.writes.push((d.offset + k as u64 * c.dyn_size(), e));
            }
        }
    }
    let moved = |h: &super::codec::Shdr| {
        let mut nh = *h;
        if h.sh_type != SHT_NOBITS && h.sh_size > 0 && shift.block.contains(&h.sh_offset) {
            nh.sh_offset = h.sh_offset.wrapping_add(shift.doff);
            nh.sh_addr = h.sh_addr.wrapping_add(shift.dv);
        }
        nh
    };
    if sht_last {
        let at = sections::table_at(img.len)?;
        let mut table = Vec::new();
        for s in &elf.sections {
            table.extend(sections::encode_shdr(c, &moved(&s.hdr))?);
        }
        img.len = at + table.len() as u64;
        img.writes.push((at, table));
        sections::put_section_fields(c, ehdr, at, elf.shnum, elf.shstrndx)?;
    } else {
        for s in elf.sections.iter().filter(|s| moved(&s.hdr) != s.hdr) {
            img.writes
                .push((s.at, sections::encode_shdr(c, &moved(&s.hdr))?));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{inputs, parsed};
    use super::super::Elf;
    use super::make_room;
    use object::elf::{PF_R, PT_INTERP, PT_LOAD};

    const PAGE: u64 = 0x10000;

    #[test]
    fn the_block_after_the_table_moves_to_a_new_load() {
        // The 32-bit files' block (.interp to .dynsym, 84 bytes) holds one more 32-byte
        // entry and the spare one.
        for (t, input) in inputs()
            .into_iter()
            .filter(|(t, _)| t.with_sections && !t.is64)
        {
            let elf = Elf::parse(&input).expect("parse");
            let img = make_room(&elf, PAGE, 1, false)
                .expect("make_room")
                .unwrap_or_else(|| panic!("{}: no room made", t.name))
                .image;
            let out = img.materialize(&input);
            let (before, after) = (parsed(&input), parsed(&out));
            assert_eq!(after.segs.len(), before.segs.len() + 1, "{}", t.name);
            let new = after
                .loads()
                .into_iter()
                .find(|l| !before.loads().contains(l))
                .expect("a new PT_LOAD");
            assert_eq!((new.p_type, new.flags), (PT_LOAD, PF_R), "{}", t.name);
            // What was after the table (.interp onwards) is now in the new segment, the
            // same bytes, and the old place is zeroed for the grown table.
            let interp = after.seg(PT_INTERP).expect("PT_INTERP");
            assert!(interp.offset >= new.offset, "{}", t.name);
            assert_eq!(after.interp, before.interp, "{}", t.name);
            assert_eq!(after.needed, before.needed, "{}", t.name);
            assert_eq!(after.dynstr, before.dynstr, "{}", t.name);
            // The grown table takes the block's old place; the rest of it is zeroed.
            let table_end = elf.phoff as usize + after.segs.len() * 32;
            let old_end = before.loads()[0].filesz as usize;
            assert!(
                out[table_end..old_end].iter().all(|&b| b == 0),
                "{}",
                t.name
            );
            // Room for one more entry after the table without touching anything.
            let out_elf = Elf::parse(&out).expect("parse output");
            assert!(super::slack_entries(&out_elf) >= 1, "{}", t.name);
        }
    }

    #[test]
    fn nothing_moves_without_section_headers_or_room_in_the_block() {
        // Without section headers what follows the table is unknown; the 64-bit files'
        // block (88 bytes) is smaller than two 56-byte entries.
        for (t, input) in inputs() {
            let elf = Elf::parse(&input).expect("parse");
            if t.with_sections && !t.is64 {
                continue;
            }
            let room = make_room(&elf, PAGE, 1, false).expect("make_room");
            assert!(room.is_none(), "{}", t.name);
            if !t.with_sections {
                assert_eq!(super::slack_entries(&elf), 0, "{}", t.name);
            }
        }
    }
}
