//! The bytes a layout writes: the moved and edited pieces, the program header table and
//! the section headers.

use super::super::codec::{Phdr, Shdr};
use super::super::consts::*;
use super::super::error::Result;
use super::super::image::Image;
use super::super::parse::Elf;
use super::super::sections;
use super::place::{Placed, Region};
use super::{Plan, MARK};

/// A byte write at a file offset.
type Write = (u64, Vec<u8>);

/// The contents written: the string table, interpreter, dynamic section, section name
/// table and note (where they stay or where they moved), the region's marks, the plan's
/// patches; the old copies of moved pieces zeroed.
pub(super) fn region_writes(
    elf: &Elf,
    plan: &Plan,
    img: &mut Image,
    region: &Region,
) -> Result<()> {
    let (lg, at) = (plan.lg, &region.at);
    let mut writes: Vec<Write> = Vec::new();
    let mut entries = lg.entries.clone();
    string_table_writes(elf, plan, img, at, &mut writes, &mut entries);
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    if let (Some(i), Some(p)) = (&plan.interp, old_interp) {
        if !(lg.keep_old && at.interp.is_some()) {
            img.zero(p.p_offset, p.p_filesz);
        }
        writes.push((at.interp.map_or(p.p_offset, |to| to.offset), i.clone()));
    }
    if let Some(d) = &elf.dynamic {
        let c = elf.codec;
        let (to, cap) = match at.dynamic {
            Some(to) => (to.offset, at.dyn_entries),
            None => (d.offset, d.capacity),
        };
        let mut b = vec![0u8; (cap * c.dyn_size()) as usize];
        for (k, &(t, v)) in entries.iter().enumerate() {
            c.write_dyn(&mut b, k as u64 * c.dyn_size(), t, v)?;
        }
        writes.push((to, b));
    }
    if let (Some(to), Some(b)) = (at.names, &plan.names.place) {
        writes.push((to, b.clone()));
    }
    if let (Some(to), Some(b)) = (at.note, &plan.note.place) {
        writes.push((to.offset, b.clone()));
    }
    if let Some((_, h)) = plan.note.remove {
        // Its descriptor names store paths: zeroed, like the X-ed old run path.
        img.zero(h.sh_offset, h.sh_size);
    }
    for &m in &region.marks {
        writes.push((m, MARK.to_vec()));
    }
    for (off, bytes) in writes.into_iter().chain(lg.patches.iter().cloned()) {
        img.put(off, bytes)?;
    }
    Ok(())
}

/// The string table where it stays or where it moved (then `DT_STRTAB` and `DT_STRSZ` in
/// `entries` follow it, and its old copy is zeroed unless kept).
fn string_table_writes(
    elf: &Elf,
    plan: &Plan,
    img: &mut Image,
    at: &Placed,
    writes: &mut Vec<Write>,
    entries: &mut [(u64, u64)],
) {
    let lg = plan.lg;
    let Some(s) = &elf.strtab else {
        return;
    };
    match at.strings {
        Some(to) => {
            if !lg.keep_old {
                img.zero(s.offset, s.size);
            }
            writes.push((to.offset, lg.strings.clone()));
            for e in entries.iter_mut() {
                match e.0 {
                    DT_STRTAB => e.1 = to.vaddr,
                    DT_STRSZ => e.1 = lg.strings.len() as u64,
                    _ => {}
                }
            }
        }
        None => {
            if lg.strings != elf.strtab_bytes() {
                writes.push((s.offset, lg.strings.clone()));
            }
        }
    }
}

/// The program header table `phdrs` (`count` entries), where it stays (the old entries zeroed first) or
/// where it moved, and the file header's `e_phoff` and `e_phnum`.
pub(super) fn phdr_table_writes(
    elf: &Elf,
    img: &mut Image,
    ehdr: &mut [u8],
    phdrs: &[Phdr],
    count: u64,
    at: &Placed,
) -> Result<()> {
    let c = elf.codec;
    let phsize = c.phdr_size();
    let phoff = at.ph.map_or(elf.phoff, |to| to.offset);
    if at.ph.is_none() {
        img.zero(elf.phoff, elf.phdrs.len() as u64 * phsize);
    }
    let mut table = vec![0u8; (count * phsize) as usize];
    for (k, p) in phdrs.iter().enumerate() {
        c.write_phdr(&mut table, k as u64 * phsize, p)?;
    }
    img.put(phoff, table)?;
    c.put_phdr_fields(ehdr, phoff, count as u16)
}

/// The section headers: those of moved pieces (and `.gnu.version_r`'s count) rewritten
/// in place, or, when the table moves or a section is added or removed, the whole table
/// written at `sht_at` and the file header (`ehdr`) pointed at it.
pub(super) fn section_writes(
    elf: &Elf,
    plan: &Plan,
    img: &mut Image,
    ehdr: &mut [u8],
    phdrs: &[Phdr],
    at: &Placed,
    sht_at: Option<u64>,
) -> Result<()> {
    let c = elf.codec;
    let (lg, note) = (plan.lg, &plan.note);
    let (mut shdrs, mut changed) = moved_sections(elf, phdrs, at, lg.strings.len() as u64);
    for &(i, info) in &lg.section_info {
        if let Some(h) = shdrs.get_mut(i) {
            h.sh_info = info;
            changed[i] = true;
        }
    }
    if let (Some(to), Some(b)) = (at.names, &plan.names.place) {
        let i = elf.shstrndx as usize;
        shdrs[i].sh_offset = to;
        shdrs[i].sh_size = b.len() as u64;
        changed[i] = true;
    }
    if let (Some((k, _)), Some(to)) = (note.moves, at.note) {
        shdrs[k].sh_offset = to.offset;
        shdrs[k].sh_addr = to.vaddr;
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
    if let (true, Some(n), Some(b)) = (note.add, at.note, &note.place) {
        let len = b.len() as u64;
        shdrs.push(sections::ldcache_shdr(
            plan.names.name,
            n.offset,
            n.vaddr,
            len,
        ));
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
                if let Some(to) = at.interp {
                    h.sh_offset = to.offset;
                    h.sh_addr = to.vaddr;
                }
                h.sh_size = n.p_filesz;
                changed = true;
            }
        }
        if let (Some(st), Some(to)) = (&elf.strtab, at.strings) {
            if h.sh_type == SHT_STRTAB && h.sh_offset == st.offset && h.sh_addr == st.vaddr {
                h.sh_offset = to.offset;
                h.sh_addr = to.vaddr;
                h.sh_size = str_len;
                changed = true;
            }
        }
        if let (Some(d), Some(to)) = (&elf.dynamic, at.dynamic) {
            if h.sh_type == SHT_DYNAMIC && h.sh_offset == d.offset {
                h.sh_offset = to.offset;
                h.sh_addr = to.vaddr;
                h.sh_size = at.dyn_entries * c.dyn_size();
                changed = true;
            }
        }
        out.push(h);
        moved.push(changed);
    }
    (out, moved)
}
