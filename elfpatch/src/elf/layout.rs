//! Layout: where the edited pieces go in the output file.
//!
//! Original bytes stay where they are. What no longer fits in its old place (the
//! interpreter string, `.dynstr`, `.dynamic`, the program header table) goes to a region
//! appended at the end of the file and mapped by at most two new `PT_LOAD`s: one read-only
//! (program headers, interpreter, strings) and one read-write (`.dynamic`, which ld.so
//! writes `DT_DEBUG` into). A region made by an earlier edit is recognised and rebuilt, so
//! any number of successive edits adds at most two segments.

use super::codec::Phdr;
use super::consts::*;
use super::edit::Logical;
use super::error::{malformed, Error, Result};
use super::image::Image;
use super::parse::Elf;
use super::sections;

mod notes;
mod place;
mod tail;
mod writes;

use notes::{names_work, note_work, NamesWork, NoteWork};
use place::{place_region, program_headers, Region};
pub(crate) use tail::table_is_last;
use tail::{find_tail, Tail};
use writes::{phdr_table_writes, region_writes, section_writes};

/// Ends every segment this module appends, so a later edit can tell that region from a
/// segment a linker made (which it must never drop) and rebuild it.
const MARK: &[u8; 16] = b"\0elfpatch:region";

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

/// What the layout decided before anything is placed.
struct Plan<'l> {
    lg: &'l Logical,
    /// The interpreter written: the new one, or the old one when its region is rebuilt.
    interp: Option<Vec<u8>>,
    moves: Moves,
    /// The input's program headers that stay.
    kept: Vec<Phdr>,
    /// A `PT_GNU_STACK` is added.
    add_stack: bool,
    /// Entries of the output's program header table.
    count: u64,
    /// The program header table is rewritten.
    table_changes: bool,
    note: NoteWork,
    names: NamesWork,
}

/// Produces the edited image of `elf` with the logical content `lg`, or `None` when the
/// program header table would have to move and `may_move_phdrs` is false (the caller
/// then first tries to make room in place).
pub(crate) fn build(
    elf: &Elf,
    lg: &Logical,
    page: u64,
    may_move_phdrs: bool,
) -> Result<Option<Image>> {
    let c = elf.codec;
    let tail = find_tail(elf);
    let Some(plan) = plan(elf, lg, &tail, may_move_phdrs)? else {
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
/// would have to move and `may_move_phdrs` is false.
fn plan<'l>(
    elf: &Elf,
    lg: &'l Logical,
    tail: &Tail,
    may_move_phdrs: bool,
) -> Result<Option<Plan<'l>>> {
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
    let (mut kept, add_stack) = kept_headers(elf, lg, tail, &note);
    let names = names_work(elf, &note, tail.start)?;
    let slots = if in_tail(elf.phoff) {
        0
    } else {
        elf.phdrs.len() + super::room::slack_entries(elf)
    };
    let count_for = |kept: &[Phdr], r: bool| {
        kept.len() + add_stack as usize + note.add as usize + r as usize + moves.dynamic as usize
    };
    let r_wanted = moves.interp || moves.strings || note.place.is_some() || names.place.is_some();
    if count_for(&kept, r_wanted || moves.phdrs) > slots {
        kept.retain(|p| p.p_type != PT_NULL);
        if count_for(&kept, r_wanted) > slots {
            if !may_move_phdrs && !moves.phdrs && !elf.sections.is_empty() {
                return Ok(None);
            }
            moves.phdrs = true;
        }
    }
    moves.region = r_wanted || moves.phdrs;
    let count = count_for(&kept, moves.region) as u64;
    // A new segment may take the slot of a dropped PT_NULL, leaving the count as it was.
    let table_changes = count != elf.phdrs.len() as u64
        || moves.region
        || moves.interp
        || moves.dynamic
        || lg.gnu_stack.is_some()
        || lg.interp.is_some()
        || note.add
        || note.remove.is_some()
        || !tail.dropped.is_empty();
    check_count(elf, count, table_changes)?;
    Ok(Some(Plan {
        lg,
        interp,
        moves,
        kept,
        add_stack,
        count,
        table_changes,
        note,
        names,
    }))
}

/// The input's program headers that stay (not those of the old region, nor the removed
/// note's), and whether a `PT_GNU_STACK` must be added.
fn kept_headers(elf: &Elf, lg: &Logical, tail: &Tail, note: &NoteWork) -> (Vec<Phdr>, bool) {
    let mut kept: Vec<Phdr> = elf
        .phdrs
        .iter()
        .enumerate()
        .filter(|(i, _)| !tail.dropped.contains(i))
        .map(|(_, p)| *p)
        .collect();
    let add_stack = lg.gnu_stack.is_some() && !kept.iter().any(|p| p.p_type == PT_GNU_STACK);
    if let Some((_, h)) = note.remove {
        // Its PT_NOTE, and the PT_LOAD patchelf maps exactly the note with.
        kept.retain(|p| {
            !(matches!(p.p_type, PT_LOAD | PT_NOTE)
                && p.p_offset == h.sh_offset
                && p.p_filesz == h.sh_size)
        });
    }
    (kept, add_stack)
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
mod tests {
    use super::super::testing::{inputs, parsed};
    use super::super::Edit;
    use super::MARK;
    use object::elf::{PF_R, PF_W, PT_DYNAMIC, PT_INTERP, PT_PHDR};

    const LONG: &str = "/nix/store/0123456789abcdefghijklmnopqrstuv-glibc-2.40/lib/ld.so";

    #[test]
    fn a_longer_interpreter_moves_to_an_appended_read_only_load() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.set_interpreter(LONG);
            let out = e
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let (before, after) = (parsed(&input), parsed(&out));
            assert_eq!(after.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
            assert_eq!(after.loads().len(), before.loads().len() + 1, "{}", t.name);
            let new = *after.loads().last().expect("a load");
            let old_end = before.loads().iter().map(|l| l.offset + l.filesz).max();
            assert!(Some(new.offset) >= old_end, "{}: {new:?}", t.name);
            assert_eq!(new.flags, PF_R, "{}", t.name);
            let interp = after.seg(PT_INTERP).expect("PT_INTERP");
            assert!(
                interp.offset >= new.offset && interp.offset < new.offset + new.filesz,
                "{}: the interpreter is in the new segment",
                t.name
            );
            // The region ends with its mark, and PT_PHDR follows the table.
            let end = (new.offset + new.filesz) as usize;
            assert_eq!(&out[end - MARK.len()..end], MARK, "{}", t.name);
            let phdr = after.seg(PT_PHDR).expect("PT_PHDR");
            assert_eq!(
                phdr.filesz as usize,
                after.segs.len() * if t.is64 { 56 } else { 32 }
            );
        }
    }

    #[test]
    fn successive_edits_rebuild_the_region_instead_of_adding_one() {
        for (t, input) in inputs() {
            let mut first = Edit::new();
            first
                .set_interpreter(LONG)
                .add_needed("libextra-with-a-long-name.so");
            let once = first
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let mut second = Edit::new();
            second.set_runpath(format!("{LONG}/and/more/of/it"));
            let twice = second
                .apply(&once)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let (a, b) = (parsed(&once), parsed(&twice));
            assert_eq!(b.loads().len(), a.loads().len(), "{}", t.name);
            assert!(
                b.loads().len() <= parsed(&input).loads().len() + 2,
                "{}",
                t.name
            );
            assert_eq!(b.interp.as_deref(), Some(LONG.as_bytes()), "{}", t.name);
            assert_eq!(b.needed[0], b"libextra-with-a-long-name.so", "{}", t.name);
        }
    }

    #[test]
    fn more_dynamic_entries_move_dynamic_to_a_writable_load() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.add_needed("liba.so")
                .add_needed("libb.so")
                .add_debug_tag();
            let out = e
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let p = parsed(&out);
            let d = p.seg(PT_DYNAMIC).expect("PT_DYNAMIC");
            let holder = p
                .loads()
                .into_iter()
                .find(|l| d.vaddr >= l.vaddr && d.vaddr < l.vaddr + l.filesz)
                .expect("PT_DYNAMIC mapped");
            assert_eq!(holder.flags, PF_R | PF_W, "{}", t.name);
            let old = parsed(&input).loads();
            let old_end = old.iter().map(|l| l.offset + l.filesz).max();
            assert!(Some(holder.offset) >= old_end, "{}: {holder:?}", t.name);
            assert_eq!(p.needed.len(), 4, "{}", t.name);
        }
    }
}
