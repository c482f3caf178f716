//! The edit plan: what to change, expressed on the logical content (dynamic entries,
//! strings, interpreter, version tables). [`super::layout`] then decides where the bytes go.
//!
//! [`Edit`] collects the changes; `plan` turns them into a [`Logical`] result in steps:
//! the dynamic entries and strings (`dynamic`), then the version tables (`versions`).

use std::collections::BTreeMap;

mod dynamic;
mod plan;
mod versions;

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
    pub(crate) append_needed: Vec<String>,
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
    /// Adds a `DT_NEEDED` entry after the existing ones, even when the name is already
    /// needed (a second entry of a name is how a converted program gives a loaded
    /// library its `uri:` name; see `docs/ld-cas.md`).
    pub fn append_needed(&mut self, name: impl Into<String>) -> &mut Self {
        self.append_needed.push(name.into());
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
            || !self.append_needed.is_empty()
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

#[cfg(test)]
mod tests {
    use super::super::testing::{inputs, parsed};
    use super::Edit;

    #[test]
    fn replace_needed_and_runpath_read_back_with_object() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.replace_needed("libc.so.6", "libc.so.7")
                .set_runpath("/a:/b");
            let out = e
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            let p = parsed(&out);
            assert_eq!(p.needed, [&b"libfoo.so.1"[..], b"libc.so.7"], "{}", t.name);
            assert_eq!(p.runpath.as_deref(), Some(&b"/a:/b"[..]), "{}", t.name);
            assert_eq!(
                p.interp.as_deref(),
                Some(&b"/lib/ld.so.1"[..]),
                "{}",
                t.name
            );
            // The replaced name and the old run path are X-ed where they were.
            assert!(
                !p.dynstr.windows(9).any(|w| w == b"libc.so.6"),
                "{}",
                t.name
            );
            assert!(p.dynstr.windows(8).any(|w| w == b"XXXXXXXX"), "{}", t.name);
        }
    }

    #[test]
    fn add_and_remove_needed_order_as_patchelf() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.add_needed("libbar.so").remove_needed("libfoo.so.1");
            let out = e
                .apply(&input)
                .unwrap_or_else(|err| panic!("{}: {err}", t.name));
            // Added names go in front of the others.
            assert_eq!(
                parsed(&out).needed,
                [&b"libbar.so"[..], b"libc.so.6"],
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn an_edit_that_changes_nothing_returns_the_input() {
        for (t, input) in inputs() {
            let mut e = Edit::new();
            e.replace_needed("libc.so.6", "libc.so.6")
                .set_runpath("/opt/lib");
            assert!(e.apply(&input).expect("apply") == input, "{}", t.name);
        }
    }

    #[test]
    fn interpreter_of_a_library_without_one_is_refused() {
        let (_, input) = inputs().remove(0);
        let mut stripped = input.clone();
        // Make PT_INTERP (the second program header) a PT_NULL.
        let phoff = 64 + 56;
        stripped[phoff..phoff + 4].copy_from_slice(&0u32.to_le_bytes());
        let mut e = Edit::new();
        e.set_interpreter("/x/ld.so");
        let err = e.apply(&stripped).expect_err("no PT_INTERP to set");
        assert!(err.to_string().contains("no PT_INTERP"), "{err}");
    }
}
