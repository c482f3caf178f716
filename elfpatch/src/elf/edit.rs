//! The edit plan: what to change, expressed on the logical content (dynamic entries,
//! strings, interpreter, version tables). [`super::layout`] then decides where the bytes go.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::cstr;
use super::consts::*;
use super::error::{malformed, Error, Result};
use super::parse::Elf;
use super::rename;
use super::strtab::{compact, scrub, Strings};
use super::tables::{self, Verneed, VerneedTable};

/// How to change the library search path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpathEdit {
    /// Replace it (an empty string is kept as an empty entry, like patchelf).
    Set(String),
    /// Append entries (`:`-separated) after the current ones.
    Add(String),
    /// Remove every `DT_RPATH` and `DT_RUNPATH`.
    Remove,
}

/// A set of changes to apply in one pass. Build it with the methods, then call
/// [`Edit::apply`] (or [`super::edit_bytes`]).
#[derive(Clone, Debug, Default)]
pub struct Edit {
    pub(crate) interpreter: Option<String>,
    pub(crate) soname: Option<String>,
    pub(crate) rpath: Option<RpathEdit>,
    pub(crate) force_rpath: bool,
    pub(crate) replace_needed: Vec<(String, String)>,
    pub(crate) add_needed: Vec<String>,
    pub(crate) remove_needed: Vec<String>,
    pub(crate) dyn_tags: Vec<(u64, String)>,
    pub(crate) dyn_values: Vec<(u64, u64)>,
    pub(crate) no_default_lib: bool,
    pub(crate) add_debug_tag: bool,
    pub(crate) clear_symbol_version: Vec<String>,
    pub(crate) rename_symbols: BTreeMap<String, String>,
    pub(crate) osabi: Option<u8>,
    pub(crate) execstack: Option<bool>,
    pub(crate) page_size: Option<u64>,
    pub(crate) keep_old_pieces: bool,
    pub(crate) resolution_cache: Option<Vec<u8>>,
}

impl Edit {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }
    /// Leaves the old bytes of pieces that move to the appended region (the string table,
    /// the interpreter, sections moved to make room for program headers) where they were,
    /// instead of zeroing them: for programs that read such data at its link-time address
    /// (Firefox's relocation packing), as patchelf's `--no-clobber-old-sections`. Only the
    /// bytes a grown program header table needs are overwritten.
    pub fn keep_old_pieces(&mut self, keep: bool) -> &mut Self {
        self.keep_old_pieces = keep;
        self
    }
    /// Sets `PT_INTERP`.
    pub fn set_interpreter(&mut self, path: impl Into<String>) -> &mut Self {
        self.interpreter = Some(path.into());
        self
    }
    /// Sets (or adds) `DT_SONAME`.
    pub fn set_soname(&mut self, name: impl Into<String>) -> &mut Self {
        self.soname = Some(name.into());
        self
    }
    /// Replaces the search path; `DT_RUNPATH` unless [`Edit::force_rpath`].
    pub fn set_runpath(&mut self, path: impl Into<String>) -> &mut Self {
        self.rpath = Some(RpathEdit::Set(path.into()));
        self
    }
    /// Appends to the search path.
    pub fn add_runpath(&mut self, path: impl Into<String>) -> &mut Self {
        self.rpath = Some(RpathEdit::Add(path.into()));
        self
    }
    /// Removes `DT_RPATH` and `DT_RUNPATH`.
    pub fn remove_runpath(&mut self) -> &mut Self {
        self.rpath = Some(RpathEdit::Remove);
        self
    }
    /// Writes the search path as the obsolete `DT_RPATH` instead of `DT_RUNPATH`.
    pub fn force_rpath(&mut self, yes: bool) -> &mut Self {
        self.force_rpath = yes;
        self
    }
    /// Replaces `DT_NEEDED` entries named `old` by `new`, and the matching
    /// `.gnu.version_r` `vn_file` (ld.so checks versions by file name).
    pub fn replace_needed(&mut self, old: impl Into<String>, new: impl Into<String>) -> &mut Self {
        self.replace_needed.push((old.into(), new.into()));
        self
    }
    /// Replaces every `DT_NEEDED` named by a key of `map`.
    pub fn replace_needed_map<'m>(
        &mut self,
        map: impl IntoIterator<Item = (&'m str, &'m str)>,
    ) -> &mut Self {
        for (o, n) in map {
            self.replace_needed(o, n);
        }
        self
    }
    /// Adds a `DT_NEEDED` in front of the others (as patchelf does) unless already there.
    pub fn add_needed(&mut self, name: impl Into<String>) -> &mut Self {
        self.add_needed.push(name.into());
        self
    }
    /// Removes `DT_NEEDED` entries with this name and their `.gnu.version_r` record.
    pub fn remove_needed(&mut self, name: impl Into<String>) -> &mut Self {
        self.remove_needed.push(name.into());
        self
    }
    /// Adds or replaces a dynamic tag whose value is a `.dynstr` offset (for example
    /// [`DT_LDCAS_LOADER`] and [`DT_LDCAS_STORE`]).
    pub fn set_dynamic_tag(&mut self, tag: u64, value: impl Into<String>) -> &mut Self {
        self.dyn_tags.push((tag, value.into()));
        self
    }
    /// Adds or replaces a dynamic tag whose value is a number (for example
    /// `DT_LDCAS_FLAGS`).
    pub fn set_dynamic_value(&mut self, tag: u64, value: u64) -> &mut Self {
        self.dyn_values.push((tag, value));
        self
    }
    /// Sets `DF_1_NODEFLIB` in `DT_FLAGS_1`.
    pub fn no_default_lib(&mut self) -> &mut Self {
        self.no_default_lib = true;
        self
    }
    /// Adds a `DT_DEBUG` entry when there is none.
    pub fn add_debug_tag(&mut self) -> &mut Self {
        self.add_debug_tag = true;
        self
    }
    /// Makes dynamic symbols named `sym` unversioned (`VER_NDX_GLOBAL`).
    pub fn clear_symbol_version(&mut self, sym: impl Into<String>) -> &mut Self {
        self.clear_symbol_version.push(sym.into());
        self
    }
    /// Renames dynamic symbols (`old` → `new`).
    pub fn rename_dynamic_symbol(
        &mut self,
        old: impl Into<String>,
        new: impl Into<String>,
    ) -> &mut Self {
        self.rename_symbols.insert(old.into(), new.into());
        self
    }
    /// Sets `EI_OSABI`.
    pub fn set_os_abi(&mut self, abi: u8) -> &mut Self {
        self.osabi = Some(abi);
        self
    }
    /// Sets (`true`) or clears (`false`) the executable bit of `PT_GNU_STACK`.
    pub fn set_execstack(&mut self, exec: bool) -> &mut Self {
        self.execstack = Some(exec);
        self
    }
    /// Adds a resolution cache note (`.note.nixos.ldcache`, patchelf's
    /// `--build-resolution-cache`) with descriptor `desc`: pairs of `soname\0` and
    /// `hints\0`, then a final `\0`. The file must have no such note yet. Any later edit
    /// of the run path or of `DT_NEEDED` removes the note, which no longer holds.
    pub fn add_resolution_cache(&mut self, desc: Vec<u8>) -> &mut Self {
        self.resolution_cache = Some(desc);
        self
    }
    /// Aligns new segments to `size` instead of the machine's maximum page size.
    pub fn page_size(&mut self, size: u64) -> &mut Self {
        self.page_size = Some(size);
        self
    }

    /// The page size set by [`Edit::page_size`], if any.
    pub fn page_size_override(&self) -> Option<u64> {
        self.page_size
    }

    fn touches_dynamic(&self) -> bool {
        self.soname.is_some()
            || self.rpath.is_some()
            || !self.replace_needed.is_empty()
            || !self.add_needed.is_empty()
            || !self.remove_needed.is_empty()
            || !self.dyn_tags.is_empty()
            || !self.dyn_values.is_empty()
            || self.no_default_lib
            || self.add_debug_tag
            || !self.clear_symbol_version.is_empty()
            || !self.rename_symbols.is_empty()
    }
}

/// The logical result of an edit, before layout.
#[derive(Clone, Debug)]
pub(crate) struct Logical {
    /// Dynamic entries (without the terminating `DT_NULL`).
    pub entries: Vec<(u64, u64)>,
    /// The new dynamic string table (a copy of the old one plus appended strings).
    pub strings: Vec<u8>,
    /// New `PT_INTERP` contents, NUL included.
    pub interp: Option<Vec<u8>>,
    /// Byte writes at file offsets of the original image (version tables, `EI_OSABI`).
    pub patches: Vec<(u64, Vec<u8>)>,
    /// New flags for `PT_GNU_STACK` (added when missing).
    pub gnu_stack: Option<u32>,
    /// Leave the old bytes of pieces that move (see [`Edit::keep_old_pieces`]).
    pub keep_old: bool,
    /// What becomes of the resolution cache note.
    pub note: NotePlan,
    /// New `sh_info` values of sections, by index (the entry count of `.gnu.version_r`).
    pub section_info: Vec<(usize, u32)>,
}

/// What an edit does to the resolution cache note (`.note.nixos.ldcache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NotePlan {
    /// A note there is stays (there may be none).
    Keep,
    /// The note no longer describes the file (its run path or `DT_NEEDED` changed).
    Drop,
    /// A new note, as it is written (header, owner, descriptor).
    Add(Vec<u8>),
}

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
        let mut verneed = tables::read_verneed(elf)?;
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
        let Draft {
            mut st,
            mut entries,
            removed,
            mut new_vn,
            cleared_versions,
        } = d;
        if !rename.is_empty()
            && (!self.clear_symbol_version.is_empty() || !cleared_versions.is_empty())
        {
            return Err(Error::Unsupported(
                "renaming symbols and changing symbol versions in one run: run them one after the other".into(),
            ));
        }
        scrub(elf, &mut st, &entries, new_vn.as_deref(), &removed, &rename)?;
        // Renamed symbols point past the old table's end: the table cannot be compacted.
        if rename.is_empty() && st.bytes.len() > elf.strtab_bytes().len() {
            compact(elf, &mut st, &mut entries, new_vn.as_mut(), &removed)?;
        }
        if !rename.is_empty() {
            patches.extend(rename::rename_patches(elf, &rename, &sym_names)?);
        }
        // Version table writes.
        let mut section_info = Vec::new();
        if let (Some(table), Some(vn)) = (verneed.as_mut(), new_vn.as_ref()) {
            if &table.entries != vn {
                section_info.extend(verneed_patch(elf, table, vn, &mut patches, &mut entries)?);
            }
        }
        if !self.clear_symbol_version.is_empty() || !cleared_versions.is_empty() {
            versym_patch(
                elf,
                &st,
                &self.clear_symbol_version,
                &cleared_versions,
                &mut patches,
            )?;
        }
        let changed = dependencies(&dynamic.entries, |o| elf.dynstr(o))
            != dependencies(&entries, |o| cstr(&st.bytes, o));
        Ok(Logical {
            entries,
            strings: st.bytes,
            interp,
            patches,
            gnu_stack,
            keep_old: self.keep_old_pieces,
            note: self.note_plan(elf, changed)?,
            section_info,
        })
    }

    /// The resolution cache note after this edit: added when asked for, dropped when the
    /// dependencies it resolved (`deps_changed`) changed.
    fn note_plan(&self, elf: &Elf, deps_changed: bool) -> Result<NotePlan> {
        Ok(match &self.resolution_cache {
            Some(desc) => NotePlan::Add(super::sections::ldcache_note(elf.codec, desc)?),
            None if deps_changed => NotePlan::Drop,
            None => NotePlan::Keep,
        })
    }

    fn edit_rpath(
        &self,
        r: &RpathEdit,
        entries: &mut Vec<(u64, u64)>,
        st: &mut Strings,
        removed: &mut Vec<u64>,
    ) -> Result<()> {
        let is_path = |t: u64| t == DT_RPATH || t == DT_RUNPATH;
        let value = match r {
            RpathEdit::Remove => {
                entries.retain(|e| {
                    if is_path(e.0) {
                        removed.push(e.1);
                    }
                    !is_path(e.0)
                });
                return Ok(());
            }
            RpathEdit::Set(v) => v.clone(),
            RpathEdit::Add(v) => {
                let cur = entries
                    .iter()
                    .find(|e| e.0 == DT_RUNPATH)
                    .or_else(|| entries.iter().find(|e| e.0 == DT_RPATH))
                    .and_then(|e| st.get(e.1))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                if cur.is_empty() {
                    v.clone()
                } else {
                    format!("{cur}:{v}")
                }
            }
        };
        let tag = if self.force_rpath {
            DT_RPATH
        } else {
            DT_RUNPATH
        };
        let unchanged = entries.iter().filter(|e| is_path(e.0)).count() == 1
            && entries
                .iter()
                .any(|e| e.0 == tag && st.get(e.1) == Some(value.as_bytes()));
        if unchanged {
            return Ok(());
        }
        let off = st.add(&value)?;
        let mut done = false;
        entries.retain_mut(|e| {
            if !is_path(e.0) {
                return true;
            }
            removed.push(e.1);
            if done {
                return false;
            }
            *e = (tag, off);
            done = true;
            true
        });
        if !done {
            entries.push((tag, off));
        }
        Ok(())
    }
}

/// Renamed dynamic symbols: by symbol index, the new name's `.dynstr` offset and bytes.
type Renames = BTreeMap<u64, (u32, Vec<u8>)>;

/// The dynamic part of a plan while it is being made.
struct Draft {
    st: Strings,
    entries: Vec<(u64, u64)>,
    /// `.dynstr` offsets of the strings no longer referenced where they were.
    removed: Vec<u64>,
    new_vn: Option<Vec<Verneed>>,
    /// Version indices whose `.gnu.version_r` records went with a removed library.
    cleared_versions: BTreeSet<u16>,
}

impl Edit {
    /// The new `PT_INTERP` contents, NUL included.
    fn plan_interp(&self, elf: &Elf) -> Result<Option<Vec<u8>>> {
        Ok(match &self.interpreter {
            Some(i) => {
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
                Some(v)
            }
            None => None,
        })
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

    /// `--replace-needed`, `--remove-needed`, `--add-needed` (with their version records).
    fn edit_needed(&self, d: &mut Draft) -> Result<()> {
        for (old, new) in &self.replace_needed {
            let mut new_off = None;
            for e in d.entries.iter_mut().filter(|e| e.0 == DT_NEEDED) {
                if d.st.get(e.1) == Some(old.as_bytes()) && old != new {
                    let off = match new_off {
                        Some(o) => o,
                        None => *new_off.insert(d.st.add(new)?),
                    };
                    d.removed.push(e.1);
                    e.1 = off;
                }
            }
            if let Some(vn) = d.new_vn.as_mut() {
                for v in vn.iter_mut() {
                    if d.st.get(u64::from(v.file)) == Some(old.as_bytes()) && old != new {
                        let off = match new_off {
                            Some(o) => o,
                            None => *new_off.insert(d.st.add(new)?),
                        };
                        d.removed.push(u64::from(v.file));
                        v.file = u32::try_from(off).map_err(|_| {
                            Error::Unsupported("string table larger than 4 GiB".into())
                        })?;
                    }
                }
            }
        }
        for name in &self.remove_needed {
            d.entries.retain(|e| {
                let hit = e.0 == DT_NEEDED && d.st.get(e.1) == Some(name.as_bytes());
                if hit {
                    d.removed.push(e.1);
                }
                !hit
            });
            if let Some(vn) = d.new_vn.as_mut() {
                vn.retain(|v| {
                    let hit = d.st.get(u64::from(v.file)) == Some(name.as_bytes());
                    if hit {
                        d.removed.push(u64::from(v.file));
                        d.cleared_versions
                            .extend(v.aux.iter().map(|a| a.other & 0x7fff));
                    }
                    !hit
                });
            }
        }
        let mut front = 0;
        for name in &self.add_needed {
            let present = d
                .entries
                .iter()
                .any(|e| e.0 == DT_NEEDED && d.st.get(e.1) == Some(name.as_bytes()));
            if !present {
                let off = d.st.add(name)?;
                d.entries.insert(front, (DT_NEEDED, off));
                front += 1;
            }
        }
        Ok(())
    }

    /// The string and flag tags: soname, search path, ld-cas tags, `DF_1_NODEFLIB`,
    /// `DT_DEBUG`.
    fn edit_tags(&self, d: &mut Draft) -> Result<()> {
        if let Some(s) = &self.soname {
            set_string_tag(&mut d.entries, &mut d.st, &mut d.removed, DT_SONAME, s)?;
        }
        if let Some(r) = &self.rpath {
            self.edit_rpath(r, &mut d.entries, &mut d.st, &mut d.removed)?;
        }
        for (tag, val) in &self.dyn_tags {
            set_string_tag(&mut d.entries, &mut d.st, &mut d.removed, *tag, val)?;
        }
        for &(tag, val) in &self.dyn_values {
            match d.entries.iter_mut().find(|e| e.0 == tag) {
                Some(e) => e.1 = val,
                None => d.entries.push((tag, val)),
            }
        }
        if self.no_default_lib {
            match d.entries.iter_mut().find(|e| e.0 == DT_FLAGS_1) {
                Some(e) => e.1 |= DF_1_NODEFLIB,
                None => d.entries.push((DT_FLAGS_1, DF_1_NODEFLIB)),
            }
        }
        if self.add_debug_tag && !d.entries.iter().any(|e| e.0 == DT_DEBUG) {
            d.entries.push((DT_DEBUG, 0));
        }
        Ok(())
    }

    /// Dynamic symbols to rename, and every symbol's name after the renames.
    fn plan_renames(&self, elf: &Elf, d: &mut Draft) -> Result<(Renames, Vec<Vec<u8>>)> {
        let mut rename = Renames::new();
        let mut sym_names: Vec<Vec<u8>> = Vec::new();
        if !self.rename_symbols.is_empty() {
            let (symoff, count) = tables::dynsym(elf)?.ok_or_else(|| {
                Error::Missing("no dynamic symbol table to rename symbols in".into())
            })?;
            for i in 0..count {
                let off = u64::from(tables::sym_name(elf, symoff, i)?);
                let name = d.st.get(off).unwrap_or_default().to_vec();
                match self
                    .rename_symbols
                    .get(String::from_utf8_lossy(&name).as_ref())
                {
                    Some(new) if i > 0 => {
                        let at = u32::try_from(d.st.add(new)?).map_err(|_| {
                            Error::Unsupported("string table larger than 4 GiB".into())
                        })?;
                        d.removed.push(off);
                        rename.insert(i, (at, new.as_bytes().to_vec()));
                        sym_names.push(new.as_bytes().to_vec());
                    }
                    _ => sym_names.push(name),
                }
            }
        }
        Ok((rename, sym_names))
    }
}

fn set_string_tag(
    entries: &mut Vec<(u64, u64)>,
    st: &mut Strings,
    removed: &mut Vec<u64>,
    tag: u64,
    value: &str,
) -> Result<()> {
    if let Some(e) = entries.iter().find(|e| e.0 == tag) {
        if st.get(e.1) == Some(value.as_bytes()) {
            return Ok(());
        }
    }
    let off = st.add(value)?;
    match entries.iter_mut().find(|e| e.0 == tag) {
        Some(e) => {
            removed.push(e.1);
            e.1 = off;
        }
        None => entries.push((tag, off)),
    }
    Ok(())
}

fn verneed_patch(
    elf: &Elf,
    table: &VerneedTable,
    new: &[Verneed],
    patches: &mut Vec<(u64, Vec<u8>)>,
    entries: &mut [(u64, u64)],
) -> Result<Option<(usize, u32)>> {
    let mut bytes = tables::encode_verneed(elf, new)?;
    if bytes.len() as u64 > table.size {
        return Err(Error::Unsupported(".gnu.version_r would grow".into()));
    }
    bytes.resize(table.size as usize, 0);
    patches.push((table.offset, bytes));
    for e in entries.iter_mut().filter(|e| e.0 == DT_VERNEEDNUM) {
        e.1 = new.len() as u64;
    }
    // Keep the section header's sh_info (entry count) in step with DT_VERNEEDNUM.
    Ok(elf
        .sections
        .iter()
        .position(|s| s.hdr.sh_type == SHT_GNU_VERNEED && s.hdr.sh_offset == table.offset)
        .map(|i| (i, new.len() as u32)))
}

fn versym_patch(
    elf: &Elf,
    st: &Strings,
    names: &[String],
    cleared: &BTreeSet<u16>,
    patches: &mut Vec<(u64, Vec<u8>)>,
) -> Result<()> {
    let Some(versym) = elf.dyn_val(DT_VERSYM) else {
        return Ok(());
    };
    let Some((symoff, count)) = tables::dynsym(elf)? else {
        return Ok(());
    };
    let base = elf.vaddr_to_offset(versym, count * 2).ok_or_else(|| {
        malformed(format!(
            "DT_VERSYM {versym:#x} ({count} entries) is not mapped"
        ))
    })?;
    for i in 0..count {
        let v = elf.codec.u16(elf.data, base + 2 * i)?;
        let name = st
            .get(u64::from(tables::sym_name(elf, symoff, i)?))
            .unwrap_or_default();
        let by_name = names.iter().any(|n| n.as_bytes() == name);
        if v > 1 && (by_name || cleared.contains(&(v & 0x7fff))) {
            let mut b = vec![0u8; 2];
            elf.codec.put_u16(&mut b, 0, 1)?;
            patches.push((base + 2 * i, b));
        }
    }
    Ok(())
}
