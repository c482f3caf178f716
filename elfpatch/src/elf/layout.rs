//! Layout: where the edited pieces go in the output file.
//!
//! Original bytes stay where they are. What no longer fits in its old place (the
//! interpreter string, `.dynstr`, `.dynamic`, the program header table) goes to a region
//! appended at the end of the file and mapped by at most two new `PT_LOAD`s: one read-only
//! (program headers, interpreter, strings) and one read-write (`.dynamic`, which ld.so
//! writes `DT_DEBUG` into). A region made by an earlier edit is recognised and rebuilt, so
//! any number of successive edits adds at most two segments.

use super::codec::{align_up, Phdr, Shdr};
use super::consts::*;
use super::edit::Logical;
use super::error::{malformed, Error, Result};
use super::image::Image;
use super::parse::Elf;
use super::sections;

mod notes;
use notes::{names_work, note_work, NamesWork, NoteWork};

/// Ends every segment this module appends, so a later edit can tell that region from a
/// segment a linker made (which it must never drop) and rebuild it.
const MARK: &[u8; 16] = b"\0elfpatch:region";

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
fn shstrtab(elf: &Elf) -> Option<Shdr> {
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

/// Finds the region appended by an earlier edit: the last `PT_LOAD`s of the file that
/// hold nothing but pieces this module regenerates. Returns the length of the file
/// without that region and the indices of its program headers.
fn find_tail(elf: &Elf) -> (u64, Vec<usize>) {
    let len = elf.data.len() as u64;
    let shdr_end = elf.shoff + elf.shnum * elf.codec.shdr_size();
    // The section header table may follow the region (edits write it there).
    let trailer = table_is_last(elf, len);
    let end_of_region = if trailer { elf.shoff } else { len };
    let zeros = |a: u64, b: u64| {
        b.saturating_sub(a) < 4096
            && elf
                .data
                .get(a as usize..b as usize)
                .is_some_and(|z| z.iter().all(|&x| x == 0))
    };
    let pcs = pieces(elf);
    let mut loads: Vec<usize> = (0..elf.phdrs.len())
        .filter(|&i| elf.phdrs[i].p_type == PT_LOAD)
        .collect();
    loads.sort_by_key(|&i| std::cmp::Reverse(elf.phdrs[i].p_offset));
    let mut base = len;
    let mut dropped = Vec::new();
    for &i in loads.iter().take(2) {
        let p = elf.phdrs[i];
        let (start, end) = (p.p_offset, p.file_end());
        let others_before = loads
            .iter()
            .filter(|&&j| j != i && !dropped.contains(&j))
            .all(|&j| elf.phdrs[j].file_end() <= start);
        let ok = end <= base
            && (!dropped.is_empty() || end <= end_of_region && zeros(end, end_of_region))
            && p.p_filesz == p.p_memsz
            && p.p_filesz > 0
            && (start >= shdr_end || trailer && end <= elf.shoff)
            && others_before
            && elf.sections.iter().all(|s| {
                let h = &s.hdr;
                h.sh_type == SHT_NOBITS
                    || h.sh_size == 0
                    || h.sh_offset.saturating_add(h.sh_size) <= start
                    || h.sh_offset >= end
                    || pcs.iter().any(|&(o, _)| o == h.sh_offset)
            })
            && elf.phdrs.iter().all(|q| {
                matches!(q.p_type, PT_LOAD | PT_PHDR | PT_INTERP | PT_DYNAMIC)
                    || q.p_type == PT_NOTE && pcs.iter().any(|&(o, _)| o == q.p_offset)
                    || q.p_filesz == 0
                    || q.file_end() <= start
                    || q.p_offset >= end
            })
            && end >= start + MARK.len() as u64
            && elf.data.get((end as usize - MARK.len())..end as usize) == Some(&MARK[..])
            && (start..end - MARK.len() as u64).all(|b| {
                elf.data.get(b as usize) == Some(&0)
                    || pcs.iter().any(|&(o, n)| b >= o && b < o.saturating_add(n))
            });
        if !ok {
            break;
        }
        dropped.push(i);
        base = start;
    }
    (base, dropped)
}

/// Produces the edited image of `elf` with the logical content `lg`.
/// Keeping a program's `vaddr - offset` for the new region means padding the file up to
/// the end of its address space; past this much padding (a huge `.bss`) the region is
/// placed right after the file instead (kernels since 5.18 find the headers either way).
const MAX_PADDING: u64 = 64 << 20;

/// The address of the new region when it keeps the first segment's `vaddr - offset`
/// (`bias`), or `None` when that needs more than [`MAX_PADDING`] of file padding.
fn padded(v_base: u64, bias: u64, cursor: u64, page: u64) -> Option<u64> {
    let want = align_up(v_base.max(cursor.checked_add(bias)?), page)?;
    let off = want.checked_sub(bias)?;
    (off.checked_add(page)?.checked_add(1 << 32).is_some() && off - cursor <= MAX_PADDING)
        .then_some(want)
}

/// Produces the edited image, or `None` when the program header table would have to move
/// and `may_move_phdrs` is false (the caller then first tries to make room in place).
pub(crate) fn build(
    elf: &Elf,
    lg: &Logical,
    page: u64,
    may_move_phdrs: bool,
) -> Result<Option<Image>> {
    let c = elf.codec;
    let phsize = c.phdr_size();
    let (mut base_len, dropped) = find_tail(elf);
    let tail_start = base_len;
    let in_tail = |off: u64| off >= tail_start;
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP).copied();
    let interp: Option<Vec<u8>> = match (&lg.interp, old_interp) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(p)) if in_tail(p.p_offset) => Some(
            elf.data
                .get(p.p_offset as usize..p.file_end() as usize)
                .ok_or_else(|| malformed("PT_INTERP past end of file"))?
                .to_vec(),
        ),
        _ => None,
    };
    let interp_move = match (&interp, old_interp) {
        (Some(v), Some(p)) => v.len() as u64 > p.p_filesz || in_tail(p.p_offset),
        _ => false,
    };
    let str_move = match &elf.strtab {
        Some(s) => lg.strings.len() as u64 > s.size || in_tail(s.offset),
        None => false,
    };
    let dyn_move = match &elf.dynamic {
        Some(d) => lg.entries.len() as u64 + 1 > d.capacity || in_tail(d.offset),
        None => false,
    };
    // The program headers that stay, and whether the table must move.
    let mut kept: Vec<Phdr> = elf
        .phdrs
        .iter()
        .enumerate()
        .filter(|(i, _)| !dropped.contains(i))
        .map(|(_, p)| *p)
        .collect();
    let add_stack = lg.gnu_stack.is_some() && !kept.iter().any(|p| p.p_type == PT_GNU_STACK);
    let note = note_work(elf, &lg.note, tail_start)?;
    if let Some((_, h)) = note.remove {
        // Its PT_NOTE, and the PT_LOAD patchelf maps exactly the note with.
        kept.retain(|p| {
            !(matches!(p.p_type, PT_LOAD | PT_NOTE)
                && p.p_offset == h.sh_offset
                && p.p_filesz == h.sh_size)
        });
    }
    let names = names_work(elf, &note, tail_start)?;
    let slots = if in_tail(elf.phoff) {
        0
    } else {
        elf.phdrs.len() + super::room::slack_entries(elf)
    };
    let count_for = |kept: &[Phdr], r: bool| {
        kept.len() + add_stack as usize + note.add as usize + r as usize + dyn_move as usize
    };
    let mut ph_move = in_tail(elf.phoff);
    let r_wanted = interp_move || str_move || note.place.is_some() || names.place.is_some();
    if count_for(&kept, r_wanted || ph_move) > slots {
        kept.retain(|p| p.p_type != PT_NULL);
        if count_for(&kept, r_wanted) > slots {
            if !may_move_phdrs && !ph_move && !elf.sections.is_empty() {
                return Ok(None);
            }
            ph_move = true;
        }
    }
    let r_needed = r_wanted || ph_move;
    let count = count_for(&kept, r_needed) as u64;
    // A new segment may take the slot of a dropped PT_NULL, leaving the count as it was.
    let table_changes = count != elf.phdrs.len() as u64
        || r_needed
        || ph_move
        || interp_move
        || dyn_move
        || lg.gnu_stack.is_some()
        || lg.interp.is_some()
        || note.add
        || note.remove.is_some()
        || !dropped.is_empty();
    if elf.phnum_extended && table_changes {
        return Err(Error::Unsupported(
            "program header count uses the PN_XNUM extension".into(),
        ));
    }
    if count >= 0xffff {
        return Err(Error::Unsupported("too many program headers".into()));
    }

    // The section header table: dropped from the end of the file when something is
    // appended there, and then written anew after it.
    let sections_change = note.add || note.remove.is_some();
    if (r_needed || dyn_move || sections_change)
        && base_len == elf.data.len() as u64
        && table_is_last(elf, base_len)
    {
        base_len = elf.shoff;
    }
    let sht_rewrite = elf.shnum > 0 && (sections_change || elf.shoff >= base_len);
    let shnum_out = elf.sections.len() + note.add as usize - note.remove.is_some() as usize;

    let moves = Moves {
        region: r_needed,
        phdrs: ph_move,
        interp: interp_move,
        strings: str_move,
        dynamic: dyn_move,
    };
    let (new_loads, at, marks) = place_region(
        elf, lg, &kept, page, base_len, moves, count, &interp, &names, &note,
    )?;
    let mut final_len = new_loads
        .iter()
        .map(|p| p.file_end())
        .max()
        .unwrap_or(base_len)
        .max(base_len);
    let sht_at = if sht_rewrite {
        let at = sections::table_at(final_len)?;
        final_len = at + shnum_out as u64 * c.shdr_size();
        Some(at)
    } else {
        None
    };

    let phdrs = program_headers(
        elf, lg, kept, &new_loads, add_stack, &note, &at, count, &interp,
    );

    // Assemble: a list of writes over the kept prefix of the input.
    let mut img = Image {
        base_len,
        len: final_len,
        writes: Vec::new(),
    };
    region_writes(elf, lg, &mut img, &at, &interp, &names, &note, marks)?;
    let mut ehdr = elf
        .data
        .get(..c.ehdr_size() as usize)
        .ok_or_else(|| malformed("file header truncated"))?
        .to_vec();
    if table_changes {
        let phoff = at.ph.map_or(elf.phoff, |(o, _)| o);
        if at.ph.is_none() {
            img.zero(elf.phoff, elf.phdrs.len() as u64 * phsize);
        }
        let mut table = vec![0u8; (count * phsize) as usize];
        for (k, p) in phdrs.iter().enumerate() {
            c.write_phdr(&mut table, k as u64 * phsize, p)?;
        }
        img.put(phoff, table)?;
        c.put_phdr_fields(&mut ehdr, phoff, count as u16)?;
    }
    section_writes(
        elf, lg, &mut img, &mut ehdr, &phdrs, &at, &names, &note, sht_at,
    )?;
    if ehdr != elf.data[..ehdr.len()] {
        img.put(0, ehdr)?;
    }
    Ok(Some(img))
}

/// What moves to the appended region.
#[derive(Clone, Copy, Debug)]
struct Moves {
    /// The read-only segment is needed (for any of the pieces below but `.dynamic`).
    region: bool,
    phdrs: bool,
    interp: bool,
    strings: bool,
    dynamic: bool,
}

/// Places the appended region after `base_len`: its segments, where each moving piece
/// goes, and where the marks that identify the region go.
#[allow(clippy::too_many_arguments)]
fn place_region(
    elf: &Elf,
    lg: &Logical,
    kept: &[Phdr],
    page: u64,
    base_len: u64,
    m: Moves,
    count: u64,
    interp: &Option<Vec<u8>>,
    names: &NamesWork,
    note: &NoteWork,
) -> Result<(Vec<Phdr>, Placed, Vec<u64>)> {
    let c = elf.codec;
    let phsize = c.phdr_size();
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    let (r_needed, ph_move, interp_move, str_move, dyn_move) =
        (m.region, m.phdrs, m.interp, m.strings, m.dynamic);
    // Segments of no bytes map nothing, whatever their offset and address.
    let loads: Vec<&Phdr> = kept
        .iter()
        .filter(|p| p.p_type == PT_LOAD && (p.p_memsz > 0 || p.p_filesz > 0))
        .collect();
    let top = loads.iter().map(|p| p.mem_end()).max().unwrap_or(0);
    let v_base = align_up(top, page).ok_or_else(|| malformed("segment end overflows"))?;
    let ovf = || Error::Unsupported("new region would overflow the address space".into());
    let mut cursor = align_up(base_len, 16).ok_or_else(ovf)?;
    let mut new_loads: Vec<Phdr> = Vec::new();
    let mut at = Placed {
        dyn_entries: lg.entries.len() as u64 + 1,
        ..Placed::default()
    };
    let mut v_next = v_base;
    let mut marks: Vec<u64> = Vec::new();
    let add = |a: u64, b: u64| a.checked_add(b).ok_or_else(ovf);
    if r_needed {
        let exe = elf.e_type == ET_EXEC || old_interp.is_some();
        let first = loads.iter().min_by_key(|p| p.p_vaddr);
        let bias0 = first.and_then(|p| p.p_vaddr.checked_sub(p.p_offset));
        let mut o_r = cursor;
        let v_r = match bias0 {
            // Programs: keep `vaddr - offset` of the new region equal to the first
            // segment's, so every kernel (old ones compute AT_PHDR as load address +
            // e_phoff) and qemu-user agree on where the program headers are.
            Some(b)
                if ph_move && exe && b % page == 0 && padded(v_base, b, o_r, page).is_some() =>
            {
                let want = padded(v_base, b, o_r, page).ok_or_else(ovf)?;
                o_r = want - b;
                want
            }
            _ => add(v_base, o_r % page)?,
        };
        let mut size = 0u64;
        if ph_move {
            at.ph = Some((o_r, v_r));
            size = count * phsize;
        }
        if interp_move {
            at.interp = Some((o_r + size, add(v_r, size)?));
            size += interp.as_ref().map_or(0, |v| v.len() as u64);
        }
        if str_move {
            at.strings = Some((o_r + size, add(v_r, size)?));
            size += lg.strings.len() as u64;
        }
        if let Some(b) = &names.place {
            at.names = Some(o_r + size);
            size += b.len() as u64;
        }
        if let Some(b) = &note.place {
            size = align_up(size, 8).ok_or_else(ovf)?;
            at.note = Some((o_r + size, add(v_r, size)?));
            size += b.len() as u64;
        }
        marks.push(o_r + size);
        size += MARK.len() as u64;
        new_loads.push(Phdr {
            p_type: PT_LOAD,
            p_flags: PF_R,
            p_offset: o_r,
            p_vaddr: v_r,
            p_paddr: v_r,
            p_filesz: size,
            p_memsz: size,
            p_align: page,
        });
        cursor = align_up(o_r + size, 16).ok_or_else(ovf)?;
        v_next = align_up(add(add(v_r, size)?, page)?, page).ok_or_else(ovf)? - page;
    }
    let dyn_bytes = at.dyn_entries;
    if dyn_move {
        let o_w = cursor;
        let v_w = add(v_next, o_w % page)?;
        add(v_w, dyn_bytes * c.dyn_size() + page)?;
        at.dynamic = Some((o_w, v_w));
        marks.push(o_w + dyn_bytes * c.dyn_size());
        let size = dyn_bytes * c.dyn_size() + MARK.len() as u64;
        new_loads.push(Phdr {
            p_type: PT_LOAD,
            p_flags: PF_R | PF_W,
            p_offset: o_w,
            p_vaddr: v_w,
            p_paddr: v_w,
            p_filesz: size,
            p_memsz: size,
            p_align: page,
        });
    }
    Ok((new_loads, at, marks))
}

/// Where the pieces that move went: file offset and address of each, and how many
/// dynamic entries the new `.dynamic` holds.
#[derive(Clone, Copy, Debug, Default)]
struct Placed {
    ph: Option<(u64, u64)>,
    interp: Option<(u64, u64)>,
    strings: Option<(u64, u64)>,
    /// The section name table (not loaded: an offset only).
    names: Option<u64>,
    note: Option<(u64, u64)>,
    dynamic: Option<(u64, u64)>,
    dyn_entries: u64,
}

/// The output's program headers: the kept ones pointing at the moved pieces, the new
/// segments after the last `PT_LOAD`, then a new `PT_GNU_STACK` or `PT_NOTE`.
#[allow(clippy::too_many_arguments)]
fn program_headers(
    elf: &Elf,
    lg: &Logical,
    kept: Vec<Phdr>,
    new_loads: &[Phdr],
    add_stack: bool,
    note: &NoteWork,
    at: &Placed,
    count: u64,
    interp: &Option<Vec<u8>>,
) -> Vec<Phdr> {
    let c = elf.codec;
    let phsize = c.phdr_size();
    let mut phdrs = kept;
    let last_load = phdrs
        .iter()
        .rposition(|p| p.p_type == PT_LOAD)
        .map_or(phdrs.len(), |i| i + 1);
    for (k, p) in new_loads.iter().enumerate() {
        phdrs.insert(last_load + k, *p);
    }
    if add_stack {
        phdrs.push(Phdr {
            p_type: PT_GNU_STACK,
            p_align: 16,
            ..Phdr::default()
        });
    }
    if let (true, Some((o, v)), Some(b)) = (note.add, at.note, &note.place) {
        phdrs.push(Phdr {
            p_type: PT_NOTE,
            p_flags: PF_R,
            p_offset: o,
            p_vaddr: v,
            p_paddr: v,
            p_filesz: b.len() as u64,
            p_memsz: b.len() as u64,
            p_align: 4,
        });
    }
    let place = |p: &mut Phdr, (o, v): (u64, u64)| {
        p.p_offset = o;
        p.p_vaddr = v;
        p.p_paddr = v;
    };
    for p in phdrs.iter_mut() {
        match p.p_type {
            PT_NOTE => {
                if let (Some((_, h)), Some(to)) = (note.moves, at.note) {
                    if p.p_offset == h.sh_offset {
                        place(p, to);
                    }
                }
            }
            PT_PHDR => {
                if let Some(to) = at.ph {
                    place(p, to);
                }
                p.p_filesz = count * phsize;
                p.p_memsz = count * phsize;
            }
            PT_INTERP => {
                if let Some(to) = at.interp {
                    place(p, to);
                }
                if let Some(i) = interp {
                    p.p_filesz = i.len() as u64;
                    p.p_memsz = i.len() as u64;
                }
            }
            PT_DYNAMIC => {
                if let Some(to) = at.dynamic {
                    place(p, to);
                    p.p_filesz = at.dyn_entries * c.dyn_size();
                    p.p_memsz = p.p_filesz;
                }
            }
            PT_GNU_STACK => {
                if let Some(f) = lg.gnu_stack {
                    p.p_flags = f;
                }
            }
            _ => {}
        }
    }
    phdrs
}

/// The contents written: the string table, interpreter, dynamic section, section name
/// table and note (where they stay or where they moved), the region's marks, the plan's
/// patches; the old copies of moved pieces zeroed.
#[allow(clippy::too_many_arguments)]
fn region_writes(
    elf: &Elf,
    lg: &Logical,
    img: &mut Image,
    at: &Placed,
    interp: &Option<Vec<u8>>,
    names: &NamesWork,
    note: &NoteWork,
    marks: Vec<u64>,
) -> Result<()> {
    let c = elf.codec;
    let mut region: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut entries = lg.entries.clone();
    if let Some(s) = &elf.strtab {
        match at.strings {
            Some((o, v)) => {
                if !lg.keep_old {
                    img.zero(s.offset, s.size);
                }
                region.push((o, lg.strings.clone()));
                for e in entries.iter_mut() {
                    match e.0 {
                        DT_STRTAB => e.1 = v,
                        DT_STRSZ => e.1 = lg.strings.len() as u64,
                        _ => {}
                    }
                }
            }
            None => {
                if lg.strings != elf.strtab_bytes() {
                    region.push((s.offset, lg.strings.clone()));
                }
            }
        }
    }
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    if let (Some(i), Some(p)) = (interp, old_interp) {
        if !(lg.keep_old && at.interp.is_some()) {
            img.zero(p.p_offset, p.p_filesz);
        }
        region.push((at.interp.map_or(p.p_offset, |(o, _)| o), i.clone()));
    }
    if let Some(d) = &elf.dynamic {
        let (to, cap) = match at.dynamic {
            Some((o, _)) => (o, at.dyn_entries),
            None => (d.offset, d.capacity),
        };
        let mut b = vec![0u8; (cap * c.dyn_size()) as usize];
        for (k, &(t, v)) in entries.iter().enumerate() {
            c.write_dyn(&mut b, k as u64 * c.dyn_size(), t, v)?;
        }
        region.push((to, b));
    }
    if let (Some(to), Some(b)) = (at.names, &names.place) {
        region.push((to, b.clone()));
    }
    if let (Some((to, _)), Some(b)) = (at.note, &note.place) {
        region.push((to, b.clone()));
    }
    if let Some((_, h)) = note.remove {
        // Its descriptor names store paths: zeroed, like the X-ed old run path.
        img.zero(h.sh_offset, h.sh_size);
    }
    for m in marks {
        region.push((m, MARK.to_vec()));
    }
    for (off, bytes) in region.into_iter().chain(lg.patches.iter().cloned()) {
        img.put(off, bytes)?;
    }
    Ok(())
}

/// The section headers: those of moved pieces (and `.gnu.version_r`'s count) rewritten
/// in place, or, when the table moves or a section is added or removed, the whole table
/// written at `sht_at` and the file header (`ehdr`) pointed at it.
#[allow(clippy::too_many_arguments)]
fn section_writes(
    elf: &Elf,
    lg: &Logical,
    img: &mut Image,
    ehdr: &mut [u8],
    phdrs: &[Phdr],
    at: &Placed,
    names: &NamesWork,
    note: &NoteWork,
    sht_at: Option<u64>,
) -> Result<()> {
    let c = elf.codec;
    let (mut shdrs, mut changed) = moved_sections(elf, phdrs, at, lg.strings.len() as u64);
    for &(i, info) in &lg.section_info {
        if let Some(h) = shdrs.get_mut(i) {
            h.sh_info = info;
            changed[i] = true;
        }
    }
    if let (Some(to), Some(b)) = (at.names, &names.place) {
        let i = elf.shstrndx as usize;
        shdrs[i].sh_offset = to;
        shdrs[i].sh_size = b.len() as u64;
        changed[i] = true;
    }
    if let (Some((k, _)), Some((o, v))) = (note.moves, at.note) {
        shdrs[k].sh_offset = o;
        shdrs[k].sh_addr = v;
        changed[k] = true;
    }
    let Some(to) = sht_at else {
        for (i, s) in elf.sections.iter().enumerate().filter(|(i, _)| changed[*i]) {
            img.put(s.at, sections::encode_shdr(c, &shdrs[i])?)?;
        }
        return Ok(());
    };
    let mut shstrndx = elf.shstrndx;
    if let Some((k, _)) = note.remove {
        shstrndx = sections::remove_section(elf, &mut shdrs, k, img)?;
    }
    if let (true, Some((o, v)), Some(b)) = (note.add, at.note, &note.place) {
        shdrs.push(sections::ldcache_shdr(names.name, o, v, b.len() as u64));
    }
    let mut table = Vec::with_capacity(shdrs.len() * c.shdr_size() as usize);
    for h in &shdrs {
        table.extend(sections::encode_shdr(c, h)?);
    }
    img.zero(elf.shoff, elf.shnum * c.shdr_size());
    img.put(to, table)?;
    sections::put_section_fields(c, ehdr, to, shdrs.len() as u64, shstrndx)
}

/// The section headers with the moved pieces' new places, and which of them changed.
fn moved_sections(elf: &Elf, phdrs: &[Phdr], at: &Placed, str_len: u64) -> (Vec<Shdr>, Vec<bool>) {
    let c = elf.codec;
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    let new_interp = phdrs.iter().find(|p| p.p_type == PT_INTERP);
    let mut out = Vec::with_capacity(elf.sections.len());
    let mut moved = Vec::with_capacity(elf.sections.len());
    for s in &elf.sections {
        let mut h = s.hdr;
        let mut changed = false;
        if let (Some(o), Some(n)) = (old_interp, new_interp) {
            if h.sh_type != SHT_NOBITS
                && h.sh_offset == o.p_offset
                && h.sh_size > 0
                && s.name == b".interp"
            {
                if let Some((off, v)) = at.interp {
                    h.sh_offset = off;
                    h.sh_addr = v;
                }
                h.sh_size = n.p_filesz;
                changed = true;
            }
        }
        if let (Some(st), Some((off, v))) = (&elf.strtab, at.strings) {
            if h.sh_type == SHT_STRTAB && h.sh_offset == st.offset && h.sh_addr == st.vaddr {
                h.sh_offset = off;
                h.sh_addr = v;
                h.sh_size = str_len;
                changed = true;
            }
        }
        if let (Some(d), Some((off, v))) = (&elf.dynamic, at.dynamic) {
            if h.sh_type == SHT_DYNAMIC && h.sh_offset == d.offset {
                h.sh_offset = off;
                h.sh_addr = v;
                h.sh_size = at.dyn_entries * c.dyn_size();
                changed = true;
            }
        }
        out.push(h);
        moved.push(changed);
    }
    (out, moved)
}
