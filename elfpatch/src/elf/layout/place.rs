//! Where the appended region goes and what its program headers say.

use super::super::codec::{align_up, Phdr};
use super::super::consts::*;
use super::super::error::{malformed, Error, Result};
use super::super::parse::Elf;
use super::slack::Slack;
use super::{Plan, DYNAMIC_ZERO_TAIL, MARK};

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

/// A file offset and the address it is mapped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct At {
    pub(super) offset: u64,
    pub(super) vaddr: u64,
}

/// Where the pieces that move went, and how many dynamic entries the new `.dynamic`
/// holds.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Placed {
    pub(super) ph: Option<At>,
    pub(super) interp: Option<At>,
    pub(super) strings: Option<At>,
    /// The section name table (not loaded: an offset only).
    pub(super) names: Option<u64>,
    pub(super) note: Option<At>,
    pub(super) dynamic: Option<At>,
    pub(super) dyn_entries: u64,
}

/// The appended region: its new segments (or the kept one its read-only part
/// continues), where each moving piece goes, and where the marks that identify the region
/// go.
pub(super) struct Region {
    pub(super) loads: Vec<Phdr>,
    pub(super) continued: Option<Continued>,
    pub(super) at: Placed,
    pub(super) marks: Vec<u64>,
}

/// A kept `PT_LOAD` grown to map the region's read-only part after its own bytes.
pub(super) struct Continued {
    /// Its index in the plan's kept program headers.
    pub(super) index: usize,
    /// The grown segment.
    pub(super) load: Phdr,
}

fn overflow() -> Error {
    Error::Unsupported("new region would overflow the address space".into())
}

fn add(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or_else(overflow)
}

fn new_load(flags: u32, at: At, size: u64, page: u64) -> Phdr {
    Phdr {
        p_type: PT_LOAD,
        p_flags: flags,
        p_offset: at.offset,
        p_vaddr: at.vaddr,
        p_paddr: at.vaddr,
        p_filesz: size,
        p_memsz: size,
        p_align: page,
    }
}

/// Places the appended region after `base_len`.
pub(super) fn place_region(elf: &Elf, plan: &Plan, page: u64, base_len: u64) -> Result<Region> {
    // Segments of no bytes map nothing, whatever their offset and address.
    let loads: Vec<&Phdr> = plan
        .kept
        .iter()
        .filter(|p| p.p_type == PT_LOAD && (p.p_memsz > 0 || p.p_filesz > 0))
        .collect();
    let top = loads.iter().map(|p| p.mem_end()).max().unwrap_or(0);
    let v_base = align_up(top, page).ok_or_else(|| malformed("segment end overflows"))?;
    let mut region = Region {
        loads: Vec::new(),
        continued: None,
        at: Placed {
            dyn_entries: plan.lg.entries.len() as u64 + 1,
            ..Placed::default()
        },
        marks: Vec::new(),
    };
    let mut cursor = align_up(base_len, 16).ok_or_else(overflow)?;
    let mut v_next = v_base;
    if let Some(s) = &plan.slack {
        place_in_slack(plan, &mut region.at, s)?;
    }
    if plan.moves.region {
        let first = loads.iter().min_by_key(|p| p.p_vaddr);
        let bias0 = first.and_then(|p| p.p_vaddr.checked_sub(p.p_offset));
        let end = place_read_only(elf, plan, &mut region, page, v_base, bias0, cursor)?;
        cursor = align_up(end.offset, 16).ok_or_else(overflow)?;
        v_next = align_up(add(end.vaddr, page)?, page).ok_or_else(overflow)? - page;
    }
    if plan.moves.dynamic {
        place_dynamic(elf, plan, &mut region, page, cursor, v_next)?;
    }
    Ok(region)
}

/// The read-only segment (program headers, interpreter, strings, section names, note, in
/// this order) at `cursor`; returns where it ends.
fn place_read_only(
    elf: &Elf,
    plan: &Plan,
    region: &mut Region,
    page: u64,
    v_base: u64,
    bias0: Option<u64>,
    cursor: u64,
) -> Result<At> {
    let m = plan.moves;
    let exe = elf.e_type == ET_EXEC || elf.phdrs.iter().any(|p| p.p_type == PT_INTERP);
    let continued = plan
        .continues
        .and_then(|k| plan.kept.get(k).map(|p| (k, *p)));
    let mut o_r = cursor;
    let v_r = match (continued, bias0) {
        // After the kept segment's bytes, at its `vaddr - offset` (the plan made sure that
        // nothing is mapped after it).
        (Some((_, load)), _) => {
            let past = o_r
                .checked_sub(load.file_end())
                .ok_or_else(|| malformed("the region would overlap the segment it continues"))?;
            add(add(load.p_vaddr, load.p_filesz)?, past)?
        }
        // Programs: keep `vaddr - offset` of the new region equal to the first
        // segment's, so every kernel (old ones compute AT_PHDR as load address +
        // e_phoff) and qemu-user agree on where the program headers are.
        (None, Some(b))
            if m.phdrs && exe && b % page == 0 && padded(v_base, b, o_r, page).is_some() =>
        {
            let want = padded(v_base, b, o_r, page).ok_or_else(overflow)?;
            o_r = want - b;
            want
        }
        _ => add(v_base, o_r % page)?,
    };
    let mut size = 0u64;
    let at = |size: u64| -> Result<At> {
        Ok(At {
            offset: o_r + size,
            vaddr: add(v_r, size)?,
        })
    };
    let placed = &mut region.at;
    if m.phdrs {
        placed.ph = Some(at(0)?);
        size = plan.count * elf.codec.phdr_size();
    }
    size = place_interp_and_strings(plan, placed, &at, size)?;
    if let Some(b) = &plan.names.place {
        placed.names = Some(o_r + size);
        size += b.len() as u64;
    }
    if let Some(b) = &plan.note.place {
        size = align_up(size, 8).ok_or_else(overflow)?;
        placed.note = Some(at(size)?);
        size += b.len() as u64;
    }
    region.marks.push(o_r + size);
    size += MARK.len() as u64;
    match continued {
        Some((index, mut load)) => {
            load.p_filesz = o_r + size - load.p_offset;
            load.p_memsz = load.p_filesz;
            region.continued = Some(Continued { index, load });
        }
        None => {
            let start = At {
                offset: o_r,
                vaddr: v_r,
            };
            region.loads.push(new_load(PF_R, start, size, page));
        }
    }
    Ok(At {
        offset: o_r + size,
        vaddr: add(v_r, size)?,
    })
}

/// Places the moving interpreter, then the strings (those not already placed in slack),
/// from `size` bytes into a segment whose byte `n` is at `at(n)`; returns the size after
/// them.
fn place_interp_and_strings(
    plan: &Plan,
    placed: &mut Placed,
    at: &dyn Fn(u64) -> Result<At>,
    mut size: u64,
) -> Result<u64> {
    let m = plan.moves;
    if m.interp && placed.interp.is_none() {
        placed.interp = Some(at(size)?);
        size = add(size, plan.interp.as_ref().map_or(0, |v| v.len() as u64))?;
    }
    if m.strings && placed.strings.is_none() {
        placed.strings = Some(at(size)?);
        size = add(size, plan.lg.strings.len() as u64)?;
    }
    Ok(size)
}

/// The moving interpreter, then the strings, in the slack the plan grows a load over.
fn place_in_slack(plan: &Plan, placed: &mut Placed, slack: &Slack) -> Result<()> {
    let m = plan.moves;
    let mut at = slack.start;
    if m.interp {
        placed.interp = Some(at);
        let len = plan.interp.as_ref().map_or(0, |v| v.len() as u64);
        at = At {
            offset: add(at.offset, len)?,
            vaddr: add(at.vaddr, len)?,
        };
    }
    if m.strings {
        placed.strings = Some(at);
    }
    Ok(())
}

/// The read-write segment with the new `.dynamic` (ld.so writes `DT_DEBUG` into it), after
/// the moving interpreter and strings when the plan puts them there.
fn place_dynamic(
    elf: &Elf,
    plan: &Plan,
    region: &mut Region,
    page: u64,
    cursor: u64,
    v_next: u64,
) -> Result<()> {
    let ds = elf.codec.dyn_size();
    let bytes = region.at.dyn_entries * ds;
    let start = At {
        offset: cursor,
        vaddr: add(v_next, cursor % page)?,
    };
    let mut before = 0u64;
    if plan.beside_dynamic {
        let at = |n: u64| -> Result<At> {
            Ok(At {
                offset: add(start.offset, n)?,
                vaddr: add(start.vaddr, n)?,
            })
        };
        before = place_interp_and_strings(plan, &mut region.at, &at, 0)?;
        before = align_up(before, ds).ok_or_else(overflow)?;
    }
    let at = At {
        offset: add(start.offset, before)?,
        vaddr: add(start.vaddr, before)?,
    };
    add(at.vaddr, bytes + page)?;
    region.at.dynamic = Some(at);
    region.marks.push(at.offset + bytes);
    let mut load = new_load(PF_R | PF_W, start, before + bytes + MARK.len() as u64, page);
    load.p_memsz = add(load.p_memsz, DYNAMIC_ZERO_TAIL)?;
    region.loads.push(load);
    Ok(())
}

/// The output's program headers: the kept ones pointing at the moved pieces, the new
/// segments after the last `PT_LOAD`, then a new `PT_GNU_STACK` or `PT_NOTE`.
pub(super) fn program_headers(elf: &Elf, plan: &Plan, region: &Region) -> Vec<Phdr> {
    let at = &region.at;
    let mut phdrs = plan.kept.clone();
    if let Some((p, c)) = region
        .continued
        .as_ref()
        .and_then(|c| Some((phdrs.get_mut(c.index)?, c)))
    {
        *p = c.load;
    }
    let last_load = phdrs
        .iter()
        .rposition(|p| p.p_type == PT_LOAD)
        .map_or(phdrs.len(), |i| i + 1);
    for (k, p) in region.loads.iter().enumerate() {
        phdrs.insert(last_load + k, *p);
    }
    if plan.add_stack {
        phdrs.push(Phdr {
            p_type: PT_GNU_STACK,
            p_align: 16,
            ..Phdr::default()
        });
    }
    if let (true, Some(to), Some(b)) = (plan.note.add, at.note, &plan.note.place) {
        phdrs.push(Phdr {
            p_type: PT_NOTE,
            p_flags: PF_R,
            p_offset: to.offset,
            p_vaddr: to.vaddr,
            p_paddr: to.vaddr,
            p_filesz: b.len() as u64,
            p_memsz: b.len() as u64,
            p_align: 4,
        });
    }
    for p in phdrs.iter_mut() {
        point_at_moved(elf, plan, at, p);
    }
    phdrs
}

/// Points `p` at where its piece went, with the piece's new size.
fn point_at_moved(elf: &Elf, plan: &Plan, at: &Placed, p: &mut Phdr) {
    let place = |p: &mut Phdr, to: At| {
        p.p_offset = to.offset;
        p.p_vaddr = to.vaddr;
        p.p_paddr = to.vaddr;
    };
    match p.p_type {
        PT_NOTE => {
            if let (Some((_, h)), Some(to)) = (plan.note.moves, at.note) {
                if p.p_offset == h.sh_offset {
                    place(p, to);
                }
            }
        }
        PT_PHDR => {
            if let Some(to) = at.ph {
                place(p, to);
            }
            p.p_filesz = plan.count * elf.codec.phdr_size();
            p.p_memsz = p.p_filesz;
        }
        PT_INTERP => {
            if let Some(to) = at.interp {
                place(p, to);
            }
            if let Some(i) = &plan.interp {
                p.p_filesz = i.len() as u64;
                p.p_memsz = i.len() as u64;
            }
        }
        PT_DYNAMIC => {
            if let Some(to) = at.dynamic {
                place(p, to);
                p.p_filesz = at.dyn_entries * elf.codec.dyn_size();
                p.p_memsz = p.p_filesz;
            }
        }
        PT_GNU_STACK => {
            if let Some(f) = plan.lg.gnu_stack {
                p.p_flags = f;
            }
        }
        _ => {}
    }
}
