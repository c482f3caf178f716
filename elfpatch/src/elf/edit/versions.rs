//! The version tables after an edit: `.gnu.version_r` rewritten in place (its records
//! follow the `DT_NEEDED` edits) and `.gnu.version` entries cleared.

use std::collections::BTreeSet;

use super::super::consts::*;
use super::super::error::{malformed, Error, Result};
use super::super::parse::Elf;
use super::super::strtab::Strings;
use super::super::tables::{self, Verneed, VerneedTable};
use super::plan::{Draft, Patches};
use super::Edit;

impl Edit {
    /// The version table writes of the draft `d` (into `patches`), and the new `sh_info`
    /// of `.gnu.version_r`'s section when its entry count changed.
    pub(super) fn version_patches(
        &self,
        elf: &Elf,
        verneed: Option<&VerneedTable>,
        d: &mut Draft,
        patches: &mut Patches,
    ) -> Result<Vec<(usize, u32)>> {
        let mut section_info = Vec::new();
        if let (Some(table), Some(vn)) = (verneed, d.new_vn.as_ref()) {
            if &table.entries != vn {
                section_info.extend(verneed_patch(elf, table, vn, patches, &mut d.entries)?);
            }
        }
        if !self.clear_symbol_version.is_empty() || !d.cleared_versions.is_empty() {
            let (names, cleared) = (&self.clear_symbol_version, &d.cleared_versions);
            versym_patch(elf, &d.st, names, cleared, patches)?;
        }
        Ok(section_info)
    }
}

/// `.gnu.version_r` as `new` says, in the bytes it had; `DT_VERNEEDNUM` follows.
fn verneed_patch(
    elf: &Elf,
    table: &VerneedTable,
    new: &[Verneed],
    patches: &mut Patches,
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

/// Symbols named in `names`, or of a version in `cleared`, made unversioned
/// (`VER_NDX_GLOBAL`) in `.gnu.version`.
fn versym_patch(
    elf: &Elf,
    st: &Strings,
    names: &[String],
    cleared: &BTreeSet<u16>,
    patches: &mut Patches,
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
