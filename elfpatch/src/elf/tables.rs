//! The tables that hold `.dynstr` offsets besides `.dynamic`: the dynamic symbol table and
//! the GNU version tables (`.gnu.version_r`, `.gnu.version_d`, `.gnu.version`).

use object::elf;
use object::{Endianness, U16, U32};

use super::codec::Class;
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
    let e = c.endianness();
    let vn_size = std::mem::size_of::<elf::Verneed<Endianness>>() as u64;
    let aux_size = std::mem::size_of::<elf::Vernaux<Endianness>>() as u64;
    let base = elf
        .vaddr_to_offset(addr, vn_size)
        .ok_or_else(|| malformed(format!("DT_VERNEED {addr:#x} is not inside any PT_LOAD")))?;
    if num > d.len() as u64 / vn_size {
        return Err(malformed(format!(
            "DT_VERNEEDNUM {num} is larger than the file allows"
        )));
    }
    let mut entries = Vec::new();
    let mut at = base;
    let mut end = base;
    for i in 0..num {
        let vn = c.read::<elf::Verneed<Endianness>>(d, at)?;
        end = end.max(at + vn_size);
        let mut aux = Vec::new();
        let mut a = at + u64::from(vn.vn_aux.get(e));
        for _ in 0..vn.vn_cnt.get(e) {
            let x = c.read::<elf::Vernaux<Endianness>>(d, a)?;
            aux.push(Vernaux {
                hash: x.vna_hash.get(e),
                flags: x.vna_flags.get(e),
                other: x.vna_other.get(e),
                name: x.vna_name.get(e),
            });
            end = end.max(a + aux_size);
            let an = x.vna_next.get(e);
            if an == 0 {
                break;
            }
            a += u64::from(an);
        }
        entries.push(Verneed {
            version: vn.vn_version.get(e),
            file: vn.vn_file.get(e),
            aux,
        });
        let next = vn.vn_next.get(e);
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
    let e = elf.codec.endianness();
    let vn_size = std::mem::size_of::<elf::Verneed<Endianness>>();
    let aux_size = std::mem::size_of::<elf::Vernaux<Endianness>>();
    let mut out = Vec::new();
    for (i, n) in entries.iter().enumerate() {
        let len = vn_size + aux_size * n.aux.len();
        let vn = elf::Verneed {
            vn_version: U16::new(e, n.version),
            vn_cnt: U16::new(e, n.aux.len() as u16),
            vn_file: U32::new(e, n.file),
            vn_aux: U32::new(e, if n.aux.is_empty() { 0 } else { vn_size as u32 }),
            vn_next: U32::new(
                e,
                if i + 1 == entries.len() {
                    0
                } else {
                    len as u32
                },
            ),
        };
        out.extend_from_slice(object::bytes_of(&vn));
        for (j, a) in n.aux.iter().enumerate() {
            let x = elf::Vernaux {
                vna_hash: U32::new(e, a.hash),
                vna_flags: U16::new(e, a.flags),
                vna_other: U16::new(e, a.other),
                vna_name: U32::new(e, a.name),
                vna_next: U32::new(
                    e,
                    if j + 1 == n.aux.len() {
                        0
                    } else {
                        aux_size as u32
                    },
                ),
            };
            out.extend_from_slice(object::bytes_of(&x));
        }
    }
    Ok(out)
}

/// `.dynstr` offsets of the names in `.gnu.version_d`.
pub fn verdef_names(elf: &Elf) -> Result<Vec<u32>> {
    let (Some(addr), Some(num)) = (elf.dyn_val(DT_VERDEF), elf.dyn_val(DT_VERDEFNUM)) else {
        return Ok(Vec::new());
    };
    let c = elf.codec;
    let e = c.endianness();
    let d = elf.data;
    let vd_size = std::mem::size_of::<elf::Verdef<Endianness>>() as u64;
    let mut at = elf
        .vaddr_to_offset(addr, vd_size)
        .ok_or_else(|| malformed(format!("DT_VERDEF {addr:#x} is not inside any PT_LOAD")))?;
    let mut names = Vec::new();
    for _ in 0..num.min(d.len() as u64 / vd_size) {
        let vd = c.read::<elf::Verdef<Endianness>>(d, at)?;
        let mut a = at + u64::from(vd.vd_aux.get(e));
        for _ in 0..vd.vd_cnt.get(e) {
            let x = c.read::<elf::Verdaux<Endianness>>(d, a)?;
            names.push(x.vda_name.get(e));
            let an = x.vda_next.get(e);
            if an == 0 {
                break;
            }
            a += u64::from(an);
        }
        let next = vd.vd_next.get(e);
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
        let header = c.read::<elf::HashHeader<Endianness>>(d, off)?;
        u64::from(header.chain_count.get(c.endianness()))
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

/// Size of `.gnu.hash`'s header.
pub(crate) const GNU_HASH_HEADER: u64 =
    std::mem::size_of::<elf::GnuHashHeader<Endianness>>() as u64;

fn gnu_hash_count(elf: &Elf, addr: u64) -> Result<u64> {
    let c = elf.codec;
    let d = elf.data;
    let off = elf
        .vaddr_to_offset(addr, GNU_HASH_HEADER)
        .ok_or_else(|| malformed(format!("DT_GNU_HASH {addr:#x} is not mapped")))?;
    let e = c.endianness();
    let header = c.read::<elf::GnuHashHeader<Endianness>>(d, off)?;
    let nbuckets = u64::from(header.bucket_count.get(e));
    let symoffset = u64::from(header.symbol_base.get(e));
    let bloom = u64::from(header.bloom_count.get(e));
    let buckets = off + GNU_HASH_HEADER + bloom * c.word_size() as u64;
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

/// `st_name` of symbol `i` of the table at `off` (the first field in both classes).
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
    let endian = elf.codec.endianness();
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
            Class::Elf32 => section_indices::<elf::Sym32<Endianness>>(bytes, endian),
            Class::Elf64 => section_indices::<elf::Sym64<Endianness>>(bytes, endian),
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
