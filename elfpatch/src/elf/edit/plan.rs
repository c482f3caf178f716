//! From an [`Edit`] to its [`Logical`] result on one file.

use std::collections::{BTreeMap, BTreeSet};

use super::super::codec::cstr;
use super::super::consts::*;
use super::super::error::{malformed, Error, Result};
use super::super::parse::{Dynamic, Elf};
use super::super::rename;
use super::super::strtab::{compact, scrub, Strings};
use super::super::tables::{self, Verneed};
use super::{Edit, Logical, NotePlan};

/// Renamed dynamic symbols: by symbol index, the new name's `.dynstr` offset and bytes.
type Renames = BTreeMap<u64, (u32, Vec<u8>)>;

/// Byte writes at file offsets of the input.
pub(super) type Patches = Vec<(u64, Vec<u8>)>;

/// `DT_NEEDED` names and the search path (tag and value) of dynamic `entries` over the
/// string table `strings`: what a resolution cache note was computed from.
fn dependencies<'s>(
    entries: &[(u64, u64)],
    strings: impl Fn(u64) -> Option<&'s [u8]>,
) -> Vec<(u64, Option<&'s [u8]>)> {
    entries
        .iter()
        .filter(|e| matches!(e.0, DT_NEEDED | DT_RPATH | DT_RUNPATH))
        .map(|e| (e.0, strings(e.1)))
        .collect()
}

/// The dynamic part of a plan while it is being made.
pub(super) struct Draft {
    pub(super) st: Strings,
    pub(super) entries: Vec<(u64, u64)>,
    /// `.dynstr` offsets of the strings no longer referenced where they were.
    pub(super) removed: Vec<u64>,
    pub(super) new_vn: Option<Vec<Verneed>>,
    /// Version indices whose `.gnu.version_r` records went with a removed library.
    pub(super) cleared_versions: BTreeSet<u16>,
}

/// The dynamic part of a finished plan.
struct DynamicPart {
    entries: Vec<(u64, u64)>,
    strings: Vec<u8>,
    section_info: Vec<(usize, u32)>,
}

impl Edit {
    /// Computes the logical result of this edit on `elf`.
    pub(crate) fn plan(&self, elf: &Elf) -> Result<Logical> {
        let mut patches = Vec::new();
        if let Some(abi) = self.osabi {
            if elf.osabi != abi {
                patches.push((7u64, vec![abi]));
            }
        }
        let interp = self.plan_interp(elf)?;
        let gnu_stack = self.plan_gnu_stack(elf);
        let Some(dynamic) = &elf.dynamic else {
            if self.touches_dynamic() {
                return Err(Error::Missing(
                    "no dynamic section (PT_DYNAMIC): the file is statically linked".into(),
                ));
            }
            return Ok(Logical {
                entries: Vec::new(),
                strings: Vec::new(),
                interp,
                patches,
                gnu_stack,
                keep_old: self.keep_old_pieces,
                note: self.note_plan(elf, false)?,
                section_info: Vec::new(),
            });
        };
        if elf.strtab.is_none() && self.touches_dynamic() {
            return Err(malformed("dynamic section has no DT_STRTAB/DT_STRSZ"));
        }
        let d = self.plan_dynamic(elf, dynamic, &mut patches)?;
        let changed = dependencies(&dynamic.entries, |o| elf.dynstr(o))
            != dependencies(&d.entries, |o| cstr(&d.strings, o));
        Ok(Logical {
            entries: d.entries,
            strings: d.strings,
            interp,
            patches,
            gnu_stack,
            keep_old: self.keep_old_pieces,
            note: self.note_plan(elf, changed)?,
            section_info: d.section_info,
        })
    }

    /// The dynamic entries, strings and version tables after this edit; their byte
    /// writes go to `patches`.
    fn plan_dynamic(
        &self,
        elf: &Elf,
        dynamic: &Dynamic,
        patches: &mut Patches,
    ) -> Result<DynamicPart> {
        let verneed = tables::read_verneed(elf)?;
        let mut d = Draft {
            st: Strings {
                bytes: elf.strtab_bytes().to_vec(),
            },
            entries: dynamic.entries.clone(),
            removed: Vec::new(),
            new_vn: verneed.as_ref().map(|t| t.entries.clone()),
            cleared_versions: BTreeSet::new(),
        };
        self.edit_needed(&mut d)?;
        self.edit_tags(&mut d)?;
        let (rename, sym_names) = self.plan_renames(elf, &mut d)?;
        if !rename.is_empty()
            && (!self.clear_symbol_version.is_empty() || !d.cleared_versions.is_empty())
        {
            return Err(Error::Unsupported(
                "renaming symbols and changing symbol versions in one run: run them one after the other".into(),
            ));
        }
        let new_vn = d.new_vn.as_deref();
        scrub(elf, &mut d.st, &d.entries, new_vn, &d.removed, &rename)?;
        // Renamed symbols point past the old table's end: the table cannot be compacted.
        if rename.is_empty() && d.st.bytes.len() > elf.strtab_bytes().len() {
            compact(
                elf,
                &mut d.st,
                &mut d.entries,
                d.new_vn.as_mut(),
                &d.removed,
            )?;
        }
        if !rename.is_empty() {
            patches.extend(rename::rename_patches(elf, &rename, &sym_names)?);
        }
        let section_info = self.version_patches(elf, verneed.as_ref(), &mut d, patches)?;
        Ok(DynamicPart {
            entries: d.entries,
            strings: d.st.bytes,
            section_info,
        })
    }

    /// The resolution cache note after this edit: added when asked for, dropped when the
    /// dependencies it resolved (`deps_changed`) changed.
    fn note_plan(&self, elf: &Elf, deps_changed: bool) -> Result<NotePlan> {
        Ok(match &self.resolution_cache {
            Some(desc) => NotePlan::Add(super::super::sections::ldcache_note(elf.codec, desc)?),
            None if deps_changed => NotePlan::Drop,
            None => NotePlan::Keep,
        })
    }

    /// The new `PT_INTERP` contents, NUL included.
    fn plan_interp(&self, elf: &Elf) -> Result<Option<Vec<u8>>> {
        let Some(i) = &self.interpreter else {
            return Ok(None);
        };
        if elf.interp_phdr().is_none() {
            return Err(Error::Missing(
                "no PT_INTERP: the file has no interpreter (statically linked or a library)".into(),
            ));
        }
        if i.as_bytes().contains(&0) {
            return Err(Error::Unsupported(
                "interpreter path contains a NUL byte".into(),
            ));
        }
        let mut v = i.as_bytes().to_vec();
        v.push(0);
        Ok(Some(v))
    }

    /// New `PT_GNU_STACK` flags, when they change.
    fn plan_gnu_stack(&self, elf: &Elf) -> Option<u32> {
        self.execstack.and_then(|x| {
            let cur = elf
                .phdrs
                .iter()
                .find(|p| p.p_type == PT_GNU_STACK)
                .map(|p| p.p_flags);
            let base = cur.unwrap_or(PF_R | PF_W);
            let want = if x { base | PF_X } else { base & !PF_X };
            (Some(want) != cur).then_some(want)
        })
    }

    /// Dynamic symbols to rename, and every symbol's name after the renames.
    fn plan_renames(&self, elf: &Elf, d: &mut Draft) -> Result<(Renames, Vec<Vec<u8>>)> {
        let mut rename = Renames::new();
        let mut sym_names: Vec<Vec<u8>> = Vec::new();
        if self.rename_symbols.is_empty() {
            return Ok((rename, sym_names));
        }
        let (symoff, count) = tables::dynsym(elf)?
            .ok_or_else(|| Error::Missing("no dynamic symbol table to rename symbols in".into()))?;
        for i in 0..count {
            let off = u64::from(tables::sym_name(elf, symoff, i)?);
            let name = d.st.get(off).unwrap_or_default().to_vec();
            match self
                .rename_symbols
                .get(String::from_utf8_lossy(&name).as_ref())
            {
                Some(new) if i > 0 => {
                    let at = u32::try_from(d.st.add(new)?)
                        .map_err(|_| Error::Unsupported("string table larger than 4 GiB".into()))?;
                    d.removed.push(off);
                    rename.insert(i, (at, new.as_bytes().to_vec()));
                    sym_names.push(new.as_bytes().to_vec());
                }
                _ => sym_names.push(name),
            }
        }
        Ok((rename, sym_names))
    }
}
