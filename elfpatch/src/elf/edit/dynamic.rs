//! The edits of dynamic entries and their strings: `DT_NEEDED` (with the matching
//! `.gnu.version_r` records), the search path, the soname and other string tags, flags.

use super::super::consts::*;
use super::super::error::{Error, Result};
use super::super::strtab::Strings;
use super::plan::Draft;
use super::{Edit, RpathEdit};

/// A `.dynstr` offset as the 32-bit field of a version record holds it.
fn offset32(off: u64) -> Result<u32> {
    u32::try_from(off).map_err(|_| Error::Unsupported("string table larger than 4 GiB".into()))
}

fn is_path(tag: u64) -> bool {
    tag == DT_RPATH || tag == DT_RUNPATH
}

impl Edit {
    /// `--replace-needed`, `--remove-needed`, `--add-needed` (with their version records).
    pub(super) fn edit_needed(&self, d: &mut Draft) -> Result<()> {
        for (old, new) in &self.replace_needed {
            replace_needed(d, old, new)?;
        }
        for name in &self.remove_needed {
            remove_needed(d, name);
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
        let after = d
            .entries
            .iter()
            .rposition(|e| e.0 == DT_NEEDED)
            .map_or(0, |i| i + 1);
        for (i, name) in self.append_needed.iter().enumerate() {
            let off = d.st.add(name)?;
            d.entries.insert(after + i, (DT_NEEDED, off));
        }
        Ok(())
    }

    /// The string and flag tags: soname, search path, ld-cas tags, `DF_1_NODEFLIB`,
    /// `DT_DEBUG`.
    pub(super) fn edit_tags(&self, d: &mut Draft) -> Result<()> {
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

    fn edit_rpath(
        &self,
        r: &RpathEdit,
        entries: &mut Vec<(u64, u64)>,
        st: &mut Strings,
        removed: &mut Vec<u64>,
    ) -> Result<()> {
        let Some(value) = rpath_value(r, entries, st, removed) else {
            return Ok(());
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

/// The new search path, or `None` when `r` removes it (which is then done).
fn rpath_value(
    r: &RpathEdit,
    entries: &mut Vec<(u64, u64)>,
    st: &Strings,
    removed: &mut Vec<u64>,
) -> Option<String> {
    match r {
        RpathEdit::Remove => {
            entries.retain(|e| {
                if is_path(e.0) {
                    removed.push(e.1);
                }
                !is_path(e.0)
            });
            None
        }
        RpathEdit::Set(v) => Some(v.clone()),
        RpathEdit::Add(v) => {
            let cur = entries
                .iter()
                .find(|e| e.0 == DT_RUNPATH)
                .or_else(|| entries.iter().find(|e| e.0 == DT_RPATH))
                .and_then(|e| st.get(e.1))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Some(if cur.is_empty() {
                v.clone()
            } else {
                format!("{cur}:{v}")
            })
        }
    }
}

/// `DT_NEEDED` entries and `.gnu.version_r` file names `old` become `new` (one string).
fn replace_needed(d: &mut Draft, old: &str, new: &str) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let mut new_off = None;
    for e in d.entries.iter_mut().filter(|e| e.0 == DT_NEEDED) {
        if d.st.get(e.1) == Some(old.as_bytes()) {
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
            if d.st.get(u64::from(v.file)) == Some(old.as_bytes()) {
                let off = match new_off {
                    Some(o) => o,
                    None => *new_off.insert(d.st.add(new)?),
                };
                d.removed.push(u64::from(v.file));
                v.file = offset32(off)?;
            }
        }
    }
    Ok(())
}

/// `DT_NEEDED` entries named `name` and their `.gnu.version_r` records go; the versions
/// those records defined are cleared from the symbols later.
fn remove_needed(d: &mut Draft, name: &str) {
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

/// Sets the string tag `tag` to `value`, adding the entry when there is none.
pub(super) fn set_string_tag(
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
