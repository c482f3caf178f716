//! The tables that hold `.dynstr` offsets besides `.dynamic`: the dynamic symbol table and
//! the GNU version tables (`.gnu.version_r`, `.gnu.version_d`, `.gnu.version`).

use super::codec::{Class, Endian};
use super::consts::*;
use super::error::{malformed, Result};
use super::parse::Elf;

/// One `Elf_Vernaux` of `.gnu.version_r`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vernaux {
    pub hash: u32,
    pub flags: u16,
    pub other: u16,
    pub name: u32,
}

/// One `Elf_Verneed`: the versions needed from one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verneed {
    pub version: u16,
    /// `.dynstr` offset of the file name (matches a `DT_NEEDED`).
    pub file: u32,
    pub aux: Vec<Vernaux>,
}

/// `.gnu.version_r` as found through `DT_VERNEED`/`DT_VERNEEDNUM`.
#[derive(Clone, Debug)]
pub struct VerneedTable {
    /// File offset of the first entry.
    pub offset: u64,
    /// Bytes the table occupies (from its first to its last record).
    pub size: u64,
    pub entries: Vec<Verneed>,
}

/// Reads `.gnu.version_r`. `Ok(None)` when the file has none.
pub fn read_verneed(elf: &Elf) -> Result<Option<VerneedTable>> {
    let (Some(addr), Some(num)) = (elf.dyn_val(DT_VERNEED), elf.dyn_val(DT_VERNEEDNUM)) else {
        return Ok(None);
    };
    let c = elf.codec;
    let d = elf.data;
    let base = elf
        .vaddr_to_offset(addr, 16)
        .ok_or_else(|| malformed(format!("DT_VERNEED {addr:#x} is not inside any PT_LOAD")))?;
    if num > d.len() as u64 / 16 {
        return Err(malformed(format!(
            "DT_VERNEEDNUM {num} is larger than the file allows"
        )));
    }
    let mut entries = Vec::new();
    let mut at = base;
    let mut end = base;
    for i in 0..num {
        let version = c.u16(d, at)?;
        let cnt = c.u16(d, at + 2)?;
        let file = c.u32(d, at + 4)?;
        let aux_off = c.u32(d, at + 8)?;
        let next = c.u32(d, at + 12)?;
        end = end.max(at + 16);
        let mut aux = Vec::new();
        let mut a = at + u64::from(aux_off);
        for _ in 0..cnt {
            aux.push(Vernaux {
                hash: c.u32(d, a)?,
                flags: c.u16(d, a + 4)?,
                other: c.u16(d, a + 6)?,
                name: c.u32(d, a + 8)?,
            });
            end = end.max(a + 16);
            let an = c.u32(d, a + 12)?;
            if an == 0 {
                break;
            }
            a += u64::from(an);
        }
        entries.push(Verneed { version, file, aux });
        if next == 0 {
            if i + 1 != num {
                return Err(malformed(format!(
                    ".gnu.version_r at {base:#x}: chain ends after {} of {num} entries",
                    i + 1
                )));
            }
            break;
        }
        at += u64::from(next);
    }
    Ok(Some(VerneedTable {
        offset: base,
        size: end - base,
        entries,
    }))
}

/// Encodes `entries` as a packed `.gnu.version_r` (each `Verneed` followed by its auxes).
pub fn encode_verneed(elf: &Elf, entries: &[Verneed]) -> Result<Vec<u8>> {
    let c = elf.codec;
    let total: usize = entries.iter().map(|e| 16 * (1 + e.aux.len())).sum();
    let mut out = vec![0u8; total];
    let mut at = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let len = 16 * (1 + e.aux.len() as u64);
        c.put_u16(&mut out, at, e.version)?;
        c.put_u16(&mut out, at + 2, e.aux.len() as u16)?;
        c.put_u32(&mut out, at + 4, e.file)?;
        c.put_u32(&mut out, at + 8, if e.aux.is_empty() { 0 } else { 16 })?;
        c.put_u32(
            &mut out,
            at + 12,
            if i + 1 == entries.len() {
                0
            } else {
                len as u32
            },
        )?;
        for (j, a) in e.aux.iter().enumerate() {
            let p = at + 16 * (1 + j as u64);
            c.put_u32(&mut out, p, a.hash)?;
            c.put_u16(&mut out, p + 4, a.flags)?;
            c.put_u16(&mut out, p + 6, a.other)?;
            c.put_u32(&mut out, p + 8, a.name)?;
            c.put_u32(&mut out, p + 12, if j + 1 == e.aux.len() { 0 } else { 16 })?;
        }
        at += len;
    }
    Ok(out)
}

/// `.dynstr` offsets of the names in `.gnu.version_d`.
pub fn verdef_names(elf: &Elf) -> Result<Vec<u32>> {
    let (Some(addr), Some(num)) = (elf.dyn_val(DT_VERDEF), elf.dyn_val(DT_VERDEFNUM)) else {
        return Ok(Vec::new());
    };
    let c = elf.codec;
    let d = elf.data;
    let mut at = elf
        .vaddr_to_offset(addr, 20)
        .ok_or_else(|| malformed(format!("DT_VERDEF {addr:#x} is not inside any PT_LOAD")))?;
    let mut names = Vec::new();
    for _ in 0..num.min(d.len() as u64 / 20) {
        let cnt = c.u16(d, at + 6)?;
        let aux = c.u32(d, at + 12)?;
        let next = c.u32(d, at + 16)?;
        let mut a = at + u64::from(aux);
        for _ in 0..cnt {
            names.push(c.u32(d, a)?);
            let an = c.u32(d, a + 4)?;
            if an == 0 {
                break;
            }
            a += u64::from(an);
        }
        if next == 0 {
            break;
        }
        at += u64::from(next);
    }
    Ok(names)
}

/// The dynamic symbol table: file offset and number of symbols. The count comes from the
/// `.dynsym` section header, else from `DT_HASH`, else by walking `DT_GNU_HASH`.
pub fn dynsym(elf: &Elf) -> Result<Option<(u64, u64)>> {
    let Some(symtab) = elf.dyn_val(DT_SYMTAB) else {
        return Ok(None);
    };
    let c = elf.codec;
    let d = elf.data;
    let ss = c.sym_size();
    let count = if let Some(s) = elf.section_at(SHT_DYNSYM, symtab) {
        s.hdr.sh_size / ss
    } else if let Some(h) = elf.dyn_val(DT_HASH) {
        let off = elf
            .vaddr_to_offset(h, 8)
            .ok_or_else(|| malformed(format!("DT_HASH {h:#x} is not mapped")))?;
        u64::from(c.u32(d, off + 4)?)
    } else if let Some(h) = elf.dyn_val(DT_GNU_HASH) {
        gnu_hash_count(elf, h)?
    } else {
        return Ok(None);
    };
    let off = elf
        .vaddr_to_offset(symtab, count.saturating_mul(ss))
        .ok_or_else(|| {
            malformed(format!(
                "DT_SYMTAB {symtab:#x} ({count} symbols) is not mapped"
            ))
        })?;
    Ok(Some((off, count)))
}

fn gnu_hash_count(elf: &Elf, addr: u64) -> Result<u64> {
    let c = elf.codec;
    let d = elf.data;
    let off = elf
        .vaddr_to_offset(addr, 16)
        .ok_or_else(|| malformed(format!("DT_GNU_HASH {addr:#x} is not mapped")))?;
    let nbuckets = u64::from(c.u32(d, off)?);
    let symoffset = u64::from(c.u32(d, off + 4)?);
    let bloom = u64::from(c.u32(d, off + 8)?);
    let buckets = off + 16 + bloom * c.word_size() as u64;
    if nbuckets > d.len() as u64 {
        return Err(malformed(format!(
            "DT_GNU_HASH at {off:#x}: {nbuckets} buckets"
        )));
    }
    let mut max = 0u64;
    for i in 0..nbuckets {
        max = max.max(u64::from(c.u32(d, buckets + 4 * i)?));
    }
    if max < symoffset {
        return Ok(symoffset);
    }
    let chains = buckets + 4 * nbuckets;
    let mut i = max;
    loop {
        let v = c.u32(d, chains + 4 * (i - symoffset))?;
        if v & 1 == 1 {
            return Ok(i + 1);
        }
        i += 1;
    }
}

/// `st_name` of symbol `i` of the table at `off`.
pub fn sym_name(elf: &Elf, off: u64, i: u64) -> Result<u32> {
    elf.codec.u32(elf.data, off + i * elf.codec.sym_size())
}

/// The `st_shndx` of every symbol of `bytes`, a symbol table of entries of type `S`.
fn section_indices<S: object::read::elf::Sym<Endian = object::Endianness>>(
    bytes: &[u8],
    endian: object::Endianness,
) -> Vec<u16> {
    let n = bytes.len() / std::mem::size_of::<S>();
    object::pod::slice_from_bytes::<S>(bytes, n)
        .map(|(syms, _)| syms.iter().map(|s| s.st_shndx(endian)).collect())
        .unwrap_or_default()
}

/// Indices of the sections without a name that symbols of `.symtab` or `.dynsym` refer
/// to (patchelf warns about them, and scripts match its warning).
pub fn unnamed_section_refs(elf: &Elf) -> Vec<u16> {
    let endian = match elf.codec.endian {
        Endian::Little => object::Endianness::Little,
        Endian::Big => object::Endianness::Big,
    };
    let mut found = std::collections::BTreeSet::new();
    let tables = elf
        .sections
        .iter()
        .filter(|s| matches!(s.hdr.sh_type, SHT_SYMTAB | SHT_DYNSYM));
    for t in tables {
        let Some(bytes) = t.hdr.sh_offset.checked_add(t.hdr.sh_size).and_then(|end| {
            elf.data
                .get(usize::try_from(t.hdr.sh_offset).ok()?..usize::try_from(end).ok()?)
        }) else {
            continue;
        };
        let indices = match elf.codec.class {
            Class::Elf32 => {
                section_indices::<object::elf::Sym32<object::Endianness>>(bytes, endian)
            }
            Class::Elf64 => {
                section_indices::<object::elf::Sym64<object::Endianness>>(bytes, endian)
            }
        };
        for i in indices {
            let unnamed = elf
                .sections
                .get(usize::from(i))
                .is_some_and(|s| s.name.is_empty());
            if i != object::elf::SHN_UNDEF && i < object::elf::SHN_LORESERVE && unnamed {
                found.insert(i);
            }
        }
    }
    found.into_iter().collect()
}
