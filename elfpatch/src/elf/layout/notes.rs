//! The section side of a layout with the resolution cache: where the note goes (added,
//! kept, moved with a rebuilt region or removed) and what the section name table becomes.

use super::super::codec::Shdr;
use super::super::edit::NotePlan;
use super::super::error::{malformed, Error, Result};
use super::super::parse::Elf;
use super::super::sections;
use super::tail::shstrtab;

/// What an edit does with the resolution cache note, in layout terms.
#[derive(Default)]
pub(super) struct NoteWork {
    /// Note bytes to place in the appended region: a new note, or the old one when the
    /// region it is in is rebuilt.
    pub(super) place: Option<Vec<u8>>,
    /// A section header (and a `PT_NOTE`) are added for the placed note.
    pub(super) add: bool,
    /// The note section (index, header) to remove with its headers.
    pub(super) remove: Option<(usize, Shdr)>,
    /// The note section that moves with the region (index, old header).
    pub(super) moves: Option<(usize, Shdr)>,
}

pub(super) fn note_work(elf: &Elf, plan: &NotePlan, tail_start: u64) -> Result<NoteWork> {
    let found = sections::ldcache_section(elf);
    Ok(match (plan, found) {
        (NotePlan::Add(_), Some(_)) => {
            return Err(Error::Unsupported(
                "a resolution cache note is already present".into(),
            ))
        }
        (NotePlan::Add(_), None) if elf.shstrndx == 0 => {
            return Err(Error::Unsupported(
                "a resolution cache note needs section headers with a name table".into(),
            ))
        }
        (NotePlan::Add(b), None) => NoteWork {
            place: Some(b.clone()),
            add: true,
            ..NoteWork::default()
        },
        (NotePlan::Drop, Some(f)) => NoteWork {
            remove: Some(f),
            ..NoteWork::default()
        },
        (NotePlan::Keep, Some((k, h))) if h.sh_offset >= tail_start => NoteWork {
            place: Some(section_bytes(elf, &h)?.to_vec()),
            moves: Some((k, h)),
            ..NoteWork::default()
        },
        _ => NoteWork::default(),
    })
}

fn section_bytes<'a>(elf: &Elf<'a>, h: &Shdr) -> Result<&'a [u8]> {
    h.sh_offset
        .checked_add(h.sh_size)
        .and_then(|end| {
            elf.data
                .get(h.sh_offset as usize..usize::try_from(end).ok()?)
        })
        .ok_or_else(|| malformed(format!("section at {:#x} past end of file", h.sh_offset)))
}

/// The section name table after the edit: the offset of the note's name in it, and the
/// table's bytes when they go to the appended region (the name was missing, or the table
/// is in a region being rebuilt).
pub(super) struct NamesWork {
    pub(super) name: u32,
    pub(super) place: Option<Vec<u8>>,
}

pub(super) fn names_work(elf: &Elf, note: &NoteWork, tail_start: u64) -> Result<NamesWork> {
    let Some(h) = shstrtab(elf) else {
        return Ok(NamesWork {
            name: 0,
            place: None,
        });
    };
    let old = section_bytes(elf, &h)?;
    let found = sections::name_offset(old, sections::LDCACHE_SECTION);
    Ok(match found {
        None if note.add => {
            let mut grown = old.to_vec();
            grown.extend_from_slice(sections::LDCACHE_SECTION);
            grown.push(0);
            NamesWork {
                name: u32::try_from(old.len())
                    .map_err(|_| Error::Unsupported("section name table over 4 GiB".into()))?,
                place: Some(grown),
            }
        }
        found => NamesWork {
            name: found.unwrap_or(0),
            place: (h.sh_offset >= tail_start).then(|| old.to_vec()),
        },
    })
}
