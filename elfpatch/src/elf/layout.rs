//! Layout: where the edited pieces go in the output file.
//!
//! Original bytes stay where they are. What no longer fits in its old place (the
//! interpreter string, `.dynstr`, `.dynamic`, the program header table) goes to a region
//! appended at the end of the file and mapped by at most two new `PT_LOAD`s: one read-only
//! (program headers, interpreter, strings) and one read-write (`.dynamic`, which ld.so
//! writes `DT_DEBUG` into). When the sections after the program header table were moved
//! to make room for it (see `room`), the read-only part continues their `PT_LOAD` instead
//! of adding one. A region made by an earlier edit is recognised and rebuilt, so any
//! number of successive edits adds at most two segments.
//!
//! Before any of that, the interpreter and strings go to the zero slack a linker leaves
//! after a read-only `PT_LOAD` when they fit there (see `slack`): that segment grows over
//! them and, unless `.dynamic` moves, the edit adds no segment at all.

use super::codec::Phdr;
use super::consts::*;
use super::edit::Logical;
use super::error::{malformed, Error, Result};
use super::image::Image;
use super::parse::Elf;
use super::sections;

mod notes;
mod place;
mod slack;
mod tail;
mod writes;

use notes::{names_work, note_work, NamesWork, NoteWork};
use place::{place_region, program_headers, Region};
use slack::Slack;
pub(crate) use tail::table_is_last;
use tail::{find_tail, Tail};
use writes::{phdr_table_writes, region_writes, section_writes};

/// Ends every segment this module appends, so a later edit can tell that region from a
/// segment a linker made (which it must never drop) and rebuild it.
const MARK: &[u8; 16] = b"\0elfpatch:region";

/// How far the appended read-write segment (the new `.dynamic`) reaches past its bytes in
/// the file, as the last writable segment a linker writes does with its `.bss`: the kernel
/// then clears the rest of its last page at `execve`, so the page is in memory before the
/// program starts. ld.so's write of `DT_DEBUG` finds it there, and so does ld-cas, which
/// puts what it builds for ld.so in the rest of the program's last page
/// (`ld-cas/src/near.rs`) instead of a mapping of its own.
const DYNAMIC_ZERO_TAIL: u64 = 8;

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

/// How the layout may make room for what moves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    /// The program header table may move to the region; without it the layout gives up
    /// when the table would have to move.
    pub(crate) may_move_phdrs: bool,
    /// A read-only `PT_LOAD` (an index into the program headers) that ends the file's
    /// segments: the read-only region continues it instead of adding a segment (the block
    /// of sections `room` moved to a new `PT_LOAD`, which saves ld.so an mmap).
    pub(crate) continues: Option<usize>,
}

/// What the layout decided before anything is placed.
struct Plan<'l> {
    lg: &'l Logical,
    /// The interpreter written: the new one, or the old one when its region is rebuilt.
    interp: Option<Vec<u8>>,
    moves: Moves,
    /// The input's program headers that stay.
    kept: Vec<Phdr>,
    /// The `PT_LOAD` of `kept` that the read-only region continues, instead of a new one.
    continues: Option<usize>,
    /// The load that grows over its slack to hold the moving interpreter and strings
    /// (grown in `kept`); they are then not in the region.
    slack: Option<Slack>,
    /// A `PT_GNU_STACK` is added.
    add_stack: bool,
    /// Entries of the output's program header table.
    count: u64,
    /// The program header table is rewritten.
    table_changes: bool,
    note: NoteWork,
    names: NamesWork,
    /// The moving interpreter and strings go into the new `.dynamic`'s segment, before it
    /// (no read-only region).
    beside_dynamic: bool,
}

/// Produces the edited image of `elf` with the logical content `lg`, or `None` when the
/// program header table would have to move and `opts` does not let it (the caller then
/// first tries to make room in place).
pub(crate) fn build(elf: &Elf, lg: &Logical, page: u64, opts: Options) -> Result<Option<Image>> {
    let c = elf.codec;
    let tail = find_tail(elf);
    let Some(plan) = plan(elf, lg, &tail, opts)? else {
        return Ok(None);
    };
    // The section header table: dropped from the end of the file when something is
    // appended there, and then written anew after it.
    let mut base_len = tail.start;
    let sections_change = plan.note.add || plan.note.remove.is_some();
    if (plan.moves.region || plan.moves.dynamic || sections_change)
        && base_len == elf.data.len() as u64
        && table_is_last(elf, base_len)
    {
        base_len = elf.shoff;
    }
    let sht_rewrite = elf.shnum > 0 && (sections_change || elf.shoff >= base_len);
    let region = place_region(elf, &plan, page, base_len)?;
    let mut final_len = region
        .loads
        .iter()
        .chain(region.continued.as_ref().map(|c| &c.load))
        .map(|p| p.file_end())
        .max()
        .unwrap_or(base_len)
        .max(base_len);
    let sht_at = if sht_rewrite {
        let shnum_out =
            elf.sections.len() + plan.note.add as usize - plan.note.remove.is_some() as usize;
        let at = sections::table_at(final_len)?;
        final_len = at + shnum_out as u64 * c.shdr_size();
        Some(at)
    } else {
        None
    };
    let phdrs = program_headers(elf, &plan, &region);
    // Assemble: a list of writes over the kept prefix of the input.
    let mut img = Image {
        base_len,
        len: final_len,
        writes: Vec::new(),
    };
    assemble(elf, &plan, &mut img, &region, &phdrs, sht_at)?;
    Ok(Some(img))
}

/// The writes of the output: pieces, program header table, section headers, file header.
fn assemble(
    elf: &Elf,
    plan: &Plan,
    img: &mut Image,
    region: &Region,
    phdrs: &[Phdr],
    sht_at: Option<u64>,
) -> Result<()> {
    region_writes(elf, plan, img, region)?;
    let mut ehdr = elf
        .data
        .get(..elf.codec.ehdr_size() as usize)
        .ok_or_else(|| malformed("file header truncated"))?
        .to_vec();
    if plan.table_changes {
        phdr_table_writes(elf, img, &mut ehdr, phdrs, plan.count, &region.at)?;
    }
    section_writes(elf, plan, img, &mut ehdr, phdrs, &region.at, sht_at)?;
    if ehdr != elf.data[..ehdr.len()] {
        img.put(0, ehdr)?;
    }
    Ok(())
}

/// Decides what moves and what the program header table becomes; `None` when the table
/// would have to move and `opts` does not let it.
fn plan<'l>(elf: &Elf, lg: &'l Logical, tail: &Tail, opts: Options) -> Result<Option<Plan<'l>>> {
    let in_tail = |off: u64| off >= tail.start;
    let interp = interp_bytes(elf, lg, tail.start)?;
    let old_interp = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    let mut moves = Moves {
        region: false,
        phdrs: in_tail(elf.phoff),
        interp: match (&interp, old_interp) {
            (Some(v), Some(p)) => v.len() as u64 > p.p_filesz || in_tail(p.p_offset),
            _ => false,
        },
        strings: elf
            .strtab
            .as_ref()
            .is_some_and(|s| lg.strings.len() as u64 > s.size || in_tail(s.offset)),
        dynamic: elf
            .dynamic
            .as_ref()
            .is_some_and(|d| lg.entries.len() as u64 + 1 > d.capacity || in_tail(d.offset)),
    };
    // The program headers that stay, and whether the table must move.
    let note = note_work(elf, &lg.note, tail.start)?;
    let cont = tail.continued.or(opts.continues);
    let Kept {
        mut kept,
        add_stack,
        continued,
    } = kept_headers(elf, lg, tail, &note, cont);
    let names = names_work(elf, &note, tail.start)?;
    // The interpreter and strings go to slack only when nothing else needs the
    // read-only region: with the region there anyway, they cost no segment in it.
    let region_anyway = moves.phdrs || note.place.is_some() || names.place.is_some();
    let slack = if region_anyway {
        None
    } else {
        slack_for(elf, lg, &kept, tail, &moves, interp.as_deref())
    };
    let slots = if in_tail(elf.phoff) {
        0
    } else {
        elf.phdrs.len() + super::room::slack_entries(elf)
    };
    // The read-only region needs a segment of its own unless it continues one, which it
    // does not when the table moves into it (programs keep the first segment's
    // `vaddr - offset` for the table's segment).
    let own_load = |region: bool, phdrs: bool| region && (phdrs || continued.is_none());
    let count_for = |kept: &[Phdr], new_ro: bool| {
        kept.len()
            + add_stack as usize
            + note.add as usize
            + new_ro as usize
            + moves.dynamic as usize
    };
    let r_needed = (slack.is_none() && (moves.interp || moves.strings))
        || note.place.is_some()
        || names.place.is_some();
    // The interpreter and strings alone would need a read-only segment of their own: with
    // a `.dynamic` that moves anyway, they go before it, in its read-write segment (one
    // segment for ld.so to map, not two; ld.so writes `.dynamic` there already, so the
    // strings gain no protection from a segment of their own).
    let may_share =
        moves.dynamic && continued.is_none() && note.place.is_none() && names.place.is_none();
    let r_wanted = r_needed && !may_share;
    if count_for(&kept, own_load(r_wanted || moves.phdrs, moves.phdrs)) > slots {
        kept.retain(|p| p.p_type != PT_NULL);
        // One slot more, and the table stays (no segment for it): the `PT_NOTE` that
        // only repeats `PT_GNU_PROPERTY`.
        let fewer = without_property_note(&kept);
        if fewer.len() < kept.len() && count_for(&fewer, own_load(r_wanted, false)) <= slots {
            kept = fewer;
        }
        if count_for(&kept, own_load(r_wanted, false)) > slots {
            if !opts.may_move_phdrs && !moves.phdrs && !elf.sections.is_empty() {
                return Ok(None);
            }
            moves.phdrs = true;
        }
    }
    let beside_dynamic = may_share && r_needed && !moves.phdrs;
    moves.region = (r_needed && !beside_dynamic) || moves.phdrs;
    if let Some(s) = &slack {
        if let Some(p) = kept.iter_mut().find(|p| **p == s.load) {
            *p = s.grown;
        }
    }
    let continues = continued
        .filter(|_| moves.region && !moves.phdrs)
        .and_then(|c| kept.iter().position(|p| *p == c));
    let count = count_for(&kept, moves.region && continues.is_none()) as u64;
    // A new segment may take the slot of a dropped PT_NULL, leaving the count as it was.
    let table_changes = count != elf.phdrs.len() as u64
        || moves.region
        || moves.interp
        || moves.dynamic
        || slack.is_some()
        || lg.gnu_stack.is_some()
        || lg.interp.is_some()
        || note.add
        || note.remove.is_some()
        || !tail.dropped.is_empty()
        || tail.continued.is_some();
    check_count(elf, count, table_changes)?;
    Ok(Some(Plan {
        lg,
        interp,
        moves,
        kept,
        continues,
        slack,
        add_stack,
        count,
        table_changes,
        note,
        names,
        beside_dynamic,
    }))
}

/// `kept` without the `PT_NOTE` that maps exactly what `PT_GNU_PROPERTY` maps (GNU ld
/// writes both for `.note.gnu.property`): the kernel (5.8 and later) and glibc (2.32 and
/// later) read the properties through `PT_GNU_PROPERTY`, and the note stays in the file
/// and in its section. Every other note (the build ID, the ABI tag) keeps its header.
fn without_property_note(kept: &[Phdr]) -> Vec<Phdr> {
    let property = kept.iter().find(|p| p.p_type == PT_GNU_PROPERTY);
    let same = |p: &Phdr, q: &Phdr| {
        (p.p_offset, p.p_vaddr, p.p_filesz, p.p_memsz, p.p_align)
            == (q.p_offset, q.p_vaddr, q.p_filesz, q.p_memsz, q.p_align)
    };
    let repeat = property.and_then(|g| kept.iter().position(|p| p.p_type == PT_NOTE && same(p, g)));
    let mut out = kept.to_vec();
    if let Some(i) = repeat {
        out.remove(i);
    }
    out
}

/// The slack the moving interpreter (`interp`) and strings go to, when they fit after
/// one of the `kept` loads (see `slack`).
fn slack_for(
    elf: &Elf,
    lg: &Logical,
    kept: &[Phdr],
    tail: &Tail,
    moves: &Moves,
    interp: Option<&[u8]>,
) -> Option<Slack> {
    if !(moves.interp || moves.strings) {
        return None;
    }
    let len = |moves: bool, n: usize| if moves { n as u64 } else { 0 };
    let interp_len = len(moves.interp, interp.map_or(0, <[u8]>::len));
    let need = slack::Need {
        size: interp_len.checked_add(len(moves.strings, lg.strings.len()))?,
        limit: tail.start,
        reusable: elf.strtab.clone().filter(|_| moves.strings && !lg.keep_old),
    };
    slack::find(elf, kept, &need)
}

/// The program headers an edit keeps of the input.
struct Kept {
    kept: Vec<Phdr>,
    /// A `PT_GNU_STACK` must be added.
    add_stack: bool,
    /// The kept `PT_LOAD` the read-only region may continue, as kept.
    continued: Option<Phdr>,
}

/// The input's program headers that stay (not those of the old region, nor the removed
/// note's; the load that continues into the old region cut where the region starts), and
/// whether a `PT_GNU_STACK` must be added. `cont` is the load the read-only region may
/// continue.
fn kept_headers(
    elf: &Elf,
    lg: &Logical,
    tail: &Tail,
    note: &NoteWork,
    cont: Option<usize>,
) -> Kept {
    let mut continued = None;
    let mut kept = Vec::with_capacity(elf.phdrs.len());
    for (i, p) in elf.phdrs.iter().enumerate() {
        if tail.dropped.contains(&i) {
            continue;
        }
        let mut p = *p;
        if tail.continued == Some(i) {
            p.p_filesz = tail.start.saturating_sub(p.p_offset);
            p.p_memsz = p.p_filesz;
        }
        if cont == Some(i) && continues_well(elf, tail, i, &p) {
            continued = Some(p);
        }
        kept.push(p);
    }
    let add_stack = lg.gnu_stack.is_some() && !kept.iter().any(|p| p.p_type == PT_GNU_STACK);
    if let Some((_, h)) = note.remove {
        // Its PT_NOTE, and the PT_LOAD patchelf maps exactly the note with.
        kept.retain(|p| {
            !(matches!(p.p_type, PT_LOAD | PT_NOTE)
                && p.p_offset == h.sh_offset
                && p.p_filesz == h.sh_size)
        });
    }
    let continued = continued.filter(|c| kept.contains(c));
    Kept {
        kept,
        add_stack,
        continued,
    }
}

/// True when the read-only region may continue `load`, the input's program header `i` as
/// kept: a read-only `PT_LOAD` with all its bytes in the file, kept whole, that ends the
/// file's segments in the file and in memory, so that what follows it maps nothing else.
fn continues_well(elf: &Elf, tail: &Tail, i: usize, load: &Phdr) -> bool {
    let mut others = elf
        .phdrs
        .iter()
        .enumerate()
        .filter(|&(j, p)| j != i && p.p_type == PT_LOAD && !tail.dropped.contains(&j))
        .map(|(_, p)| p)
        .filter(|p| p.p_memsz > 0 || p.p_filesz > 0);
    load.p_type == PT_LOAD
        && load.p_flags == PF_R
        && load.p_filesz == load.p_memsz
        && load.p_filesz > 0
        && load.file_end() <= tail.start
        && others.all(|p| p.file_end() <= load.p_offset && p.mem_end() <= load.p_vaddr)
}

/// The interpreter to write: the new one, or the old one when it is in the region an
/// earlier edit appended (which is rebuilt).
fn interp_bytes(elf: &Elf, lg: &Logical, tail_start: u64) -> Result<Option<Vec<u8>>> {
    let old = elf.phdrs.iter().find(|p| p.p_type == PT_INTERP);
    Ok(match (&lg.interp, old) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(p)) if p.p_offset >= tail_start => Some(
            elf.data
                .get(p.p_offset as usize..p.file_end() as usize)
                .ok_or_else(|| malformed("PT_INTERP past end of file"))?
                .to_vec(),
        ),
        _ => None,
    })
}

/// Refuses program header counts the file header cannot say.
fn check_count(elf: &Elf, count: u64, table_changes: bool) -> Result<()> {
    if elf.phnum_extended && table_changes {
        return Err(Error::Unsupported(
            "program header count uses the PN_XNUM extension".into(),
        ));
    }
    if count >= 0xffff {
        return Err(Error::Unsupported("too many program headers".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
