//! `--rename-dynamic-symbols`: new names for dynamic symbols. The symbol hash tables key
//! on names, so they are rebuilt: `DT_HASH` in place; `DT_GNU_HASH` needs its hashed
//! symbols sorted by bucket, so when a new name changes a bucket `.dynsym` is reordered
//! and `.gnu.version` and every dynamic relocation's symbol index follow.

use std::collections::BTreeMap;

use object::elf::{gnu_hash, hash as sysv_hash, GnuHashHeader, HashHeader};
use object::{Endianness, U32};

use super::codec::Codec;
use super::consts::*;
use super::error::{malformed, Error, Result};
use super::parse::Elf;
use super::tables::{self, GNU_HASH_HEADER};

/// A byte write at a file offset.
type Patch = (u64, Vec<u8>);

/// Byte writes the rename needs, given the new `st_name` of every renamed symbol.
pub(crate) fn rename_patches(
    elf: &Elf,
    new_names: &BTreeMap<u64, (u32, Vec<u8>)>,
    all_names: &[Vec<u8>],
) -> Result<Vec<Patch>> {
    let (symoff, count) = tables::dynsym(elf)?
        .ok_or_else(|| Error::Missing("no dynamic symbol table to rename symbols in".into()))?;
    let mut syms = renamed_symbols(elf, symoff, count, new_names)?;
    let mut names: Vec<Vec<u8>> = all_names.to_vec();
    let mut patches = Vec::new();
    // GNU hash: the hashed symbols in bucket order.
    let mut perm: Vec<usize> = (0..count as usize).collect();
    if let Some(addr) = elf.dyn_val(DT_GNU_HASH) {
        let gnu = GnuHash::read(elf, addr, count)?;
        perm[gnu.symoffset..].sort_by_key(|&i| gnu.bucket(&names[i]));
        patches.push((gnu.off, gnu.encode(elf.codec, &names, &perm)?));
    }
    if perm.iter().enumerate().any(|(k, &i)| k != i) {
        if elf.machine == EM_MIPS && elf.codec.word_size() == 8 {
            return Err(Error::Unsupported(
                "reordering MIPS64 dynamic symbols".into(),
            ));
        }
        names = perm.iter().map(|&i| names[i].clone()).collect();
        syms = perm.iter().map(|&i| syms[i].clone()).collect();
        patches.extend(reorder_patches(elf, &perm, count)?);
    }
    if let Some(h) = elf.dyn_val(DT_HASH) {
        patches.push(sysv_table(elf, h, &names, count)?);
    }
    patches.push((symoff, syms.concat()));
    Ok(patches)
}

/// The bytes of each of the `count` symbols at `symoff`, with the new names' offsets.
fn renamed_symbols(
    elf: &Elf,
    symoff: u64,
    count: u64,
    new_names: &BTreeMap<u64, (u32, Vec<u8>)>,
) -> Result<Vec<Vec<u8>>> {
    let ss = elf.codec.sym_size();
    let mut syms: Vec<Vec<u8>> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = (symoff + i * ss) as usize;
        let mut b = elf
            .data
            .get(at..at + ss as usize)
            .ok_or_else(|| malformed(format!("symbol {i} at {at:#x} past end of file")))?
            .to_vec();
        if let Some((name, _)) = new_names.get(&i) {
            // `st_name` is the first field of a symbol in both classes.
            elf.codec.put_u32(&mut b, 0, *name)?;
        }
        syms.push(b);
    }
    Ok(syms)
}

/// The header of `.gnu.hash`, checked against the symbol count.
struct GnuHash {
    /// File offset of the table.
    off: u64,
    nbuckets: u32,
    /// Index of the first hashed symbol.
    symoffset: usize,
    bloom_size: u32,
    shift: u32,
    count: usize,
}

impl GnuHash {
    fn read(elf: &Elf, addr: u64, count: u64) -> Result<GnuHash> {
        let c = elf.codec;
        let e = c.endianness();
        let off = elf
            .vaddr_to_offset(addr, GNU_HASH_HEADER)
            .ok_or_else(|| malformed(format!("DT_GNU_HASH {addr:#x} is not mapped")))?;
        let h = c.read::<GnuHashHeader<Endianness>>(elf.data, off)?;
        let (nbuckets, bloom_size) = (h.bucket_count.get(e), h.bloom_count.get(e));
        let symoffset = h.symbol_base.get(e) as usize;
        if nbuckets == 0 || bloom_size == 0 || symoffset > count as usize {
            return Err(malformed(format!(
                ".gnu.hash table header out of range: DT_GNU_HASH at {off:#x} has \
                 {nbuckets} buckets, {bloom_size} mask words, symbol offset {symoffset} of \
                 {count} symbols"
            )));
        }
        let gnu = GnuHash {
            off,
            nbuckets,
            symoffset,
            bloom_size,
            shift: h.bloom_shift.get(e),
            count: count as usize,
        };
        let table_size = gnu.size(c);
        if elf.vaddr_to_offset(addr, table_size).is_none() {
            return Err(malformed(format!(
                ".gnu.hash table header out of range: DT_GNU_HASH at {off:#x} needs \
                 {table_size} bytes, more than its segment holds"
            )));
        }
        Ok(gnu)
    }

    /// Bytes of the whole table: header, bloom words, buckets, one chain word a hashed
    /// symbol.
    fn size(&self, c: Codec) -> u64 {
        GNU_HASH_HEADER
            + c.word_size() as u64 * u64::from(self.bloom_size)
            + 4 * (u64::from(self.nbuckets) + (self.count - self.symoffset) as u64)
    }

    fn bucket(&self, name: &[u8]) -> u32 {
        gnu_hash(name) % self.nbuckets
    }

    /// The table for the symbols `names` in the order `perm` (sorted by bucket).
    fn encode(&self, c: Codec, names: &[Vec<u8>], perm: &[usize]) -> Result<Vec<u8>> {
        let w = c.word_size() as u64;
        let bits = 8 * w;
        let mut bloom = vec![0u64; self.bloom_size as usize];
        let mut buckets = vec![0u32; self.nbuckets as usize];
        let mut chains = vec![0u32; self.count - self.symoffset];
        for k in self.symoffset..self.count {
            let h = gnu_hash(&names[perm[k]]);
            let word = ((u64::from(h) / bits) % u64::from(self.bloom_size)) as usize;
            bloom[word] |= (1u64 << (u64::from(h) % bits))
                | (1u64 << (u64::from(h.checked_shr(self.shift).unwrap_or(0)) % bits));
            let b = (h % self.nbuckets) as usize;
            if buckets[b] == 0 {
                buckets[b] = k as u32;
            }
            let last = k + 1 == self.count || self.bucket(&names[perm[k + 1]]) as usize != b;
            chains[k - self.symoffset] = (h & !1) | u32::from(last);
        }
        let e = c.endianness();
        let header = GnuHashHeader {
            bucket_count: U32::new(e, self.nbuckets),
            symbol_base: U32::new(e, self.symoffset as u32),
            bloom_count: U32::new(e, self.bloom_size),
            bloom_shift: U32::new(e, self.shift),
        };
        let mut t = vec![0u8; self.size(c) as usize];
        c.put(&mut t, 0, &header)?;
        for (k, v) in bloom.iter().enumerate() {
            let v = if w == 4 { v & 0xffff_ffff } else { *v };
            c.put_word(&mut t, GNU_HASH_HEADER + w * k as u64, v)?;
        }
        let bstart = GNU_HASH_HEADER + w * u64::from(self.bloom_size);
        put_words(c, &mut t, bstart, buckets.iter().chain(chains.iter()))?;
        Ok(t)
    }
}

/// Writes 32-bit `words` one after the other from `at`.
fn put_words<'w>(
    c: Codec,
    t: &mut [u8],
    at: u64,
    words: impl Iterator<Item = &'w u32>,
) -> Result<()> {
    for (k, v) in words.enumerate() {
        c.put_u32(t, at + 4 * k as u64, *v)?;
    }
    Ok(())
}

/// `.gnu.version` and every dynamic relocation's symbol index, after the symbols moved:
/// symbol `perm[k]` is now symbol `k`.
fn reorder_patches(elf: &Elf, perm: &[usize], count: u64) -> Result<Vec<Patch>> {
    let mut patches = Vec::new();
    let mut inverse = vec![0u64; perm.len()];
    for (k, &i) in perm.iter().enumerate() {
        inverse[i] = k as u64;
    }
    if let Some(v) = elf.dyn_val(DT_VERSYM) {
        let at = elf
            .vaddr_to_offset(v, 2 * count)
            .ok_or_else(|| malformed(format!("DT_VERSYM {v:#x} is not mapped")))?;
        let old: Vec<u8> = elf.data[at as usize..(at + 2 * count) as usize].to_vec();
        let mut new = vec![0u8; old.len()];
        for (k, &i) in perm.iter().enumerate() {
            new[2 * k..2 * k + 2].copy_from_slice(&old[2 * i..2 * i + 2]);
        }
        patches.push((at, new));
    }
    for t in reloc_tables(elf)? {
        patches.push((t.at, remap_relocs(elf, &t, &inverse)?));
    }
    Ok(patches)
}

/// The `DT_HASH` table at `addr` rebuilt for `names`.
fn sysv_table(elf: &Elf, addr: u64, names: &[Vec<u8>], count: u64) -> Result<Patch> {
    let c = elf.codec;
    let e = c.endianness();
    let header_size = std::mem::size_of::<HashHeader<Endianness>>() as u64;
    let off = elf
        .vaddr_to_offset(addr, header_size)
        .ok_or_else(|| malformed(format!("DT_HASH {addr:#x} is not mapped")))?;
    let h = c.read::<HashHeader<Endianness>>(elf.data, off)?;
    let (nbucket, nchain) = (h.bucket_count.get(e), h.chain_count.get(e));
    if nbucket == 0
        || u64::from(nchain) != count
        || elf
            .vaddr_to_offset(addr, header_size + 4 * (u64::from(nbucket) + count))
            .is_none()
    {
        return Err(malformed(format!(
            "DT_HASH at {off:#x}: {nbucket} buckets, {nchain} chains"
        )));
    }
    let mut buckets = vec![0u32; nbucket as usize];
    let mut chains = vec![0u32; nchain as usize];
    for (i, n) in names.iter().enumerate().skip(1) {
        let b = (sysv_hash(n) % nbucket) as usize;
        chains[i] = buckets[b];
        buckets[b] = i as u32;
    }
    let mut t = vec![0u8; (header_size + 4 * (u64::from(nbucket) + u64::from(nchain))) as usize];
    c.put(&mut t, 0, h)?;
    put_words(c, &mut t, header_size, buckets.iter().chain(chains.iter()))?;
    Ok((off, t))
}

/// A dynamic relocation table.
struct RelocTable {
    /// File offset.
    at: u64,
    size: u64,
    /// `Elf_Rela` entries (else `Elf_Rel`).
    rela: bool,
}

/// The dynamic relocation tables, each once.
fn reloc_tables(elf: &Elf) -> Result<Vec<RelocTable>> {
    let mut v: Vec<RelocTable> = Vec::new();
    let mut add = |addr: Option<u64>, size: Option<u64>, rela: bool| -> Result<()> {
        if let (Some(a), Some(s)) = (addr, size) {
            if s > 0 {
                let at = elf.vaddr_to_offset(a, s).ok_or_else(|| {
                    malformed(format!(
                        "relocation table at {a:#x} ({s} bytes) is not mapped"
                    ))
                })?;
                if !v.iter().any(|x| x.at == at) {
                    v.push(RelocTable { at, size: s, rela });
                }
            }
        }
        Ok(())
    };
    add(elf.dyn_val(DT_RELA), elf.dyn_val(DT_RELASZ), true)?;
    add(elf.dyn_val(DT_REL), elf.dyn_val(DT_RELSZ), false)?;
    let plt_rela = elf.dyn_val(DT_PLTREL) == Some(DT_RELA);
    add(elf.dyn_val(DT_JMPREL), elf.dyn_val(DT_PLTRELSZ), plt_rela)?;
    Ok(v)
}

/// The relocations of `t` with their symbol indices mapped through `inverse`.
fn remap_relocs(elf: &Elf, t: &RelocTable, inverse: &[u64]) -> Result<Vec<u8>> {
    let c = elf.codec;
    // `r_offset`, `r_info` and, in `Elf_Rela`, `r_addend`: one word each.
    let w = c.word_size() as u64;
    let ent = if t.rela { 3 * w } else { 2 * w };
    let (at, size) = (t.at, t.size);
    let mut b = elf
        .data
        .get(at as usize..(at + size) as usize)
        .ok_or_else(|| malformed(format!("relocations at {at:#x} past end of file")))?
        .to_vec();
    // ELF64_R_SYM is the high 32 bits of `r_info`, ELF32_R_SYM all but the low 8.
    let sym_shift = if w == 8 { 32 } else { 8 };
    for k in 0..size / ent {
        let info = c.word(&b, k * ent + w)?;
        let (sym, rest) = (info >> sym_shift, info & ((1 << sym_shift) - 1));
        if sym == 0 {
            continue;
        }
        let new = *inverse.get(sym as usize).ok_or_else(|| {
            malformed(format!(
                "relocation at {:#x} names symbol {sym} of {}",
                at + k * ent,
                inverse.len()
            ))
        })?;
        c.put_word(&mut b, k * ent + w, (new << sym_shift) | rest)?;
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_functions_match_the_reference_values() {
        // Values from the gABI (sysv) and the GNU hash specification: `object`'s functions
        // are the ones the tables are rebuilt with.
        assert_eq!(gnu_hash(b""), 0x0000_1505);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
        assert_eq!(sysv_hash(b""), 0);
        assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
        assert_eq!(sysv_hash(b"exit"), 0x0006_cf04);
    }
}
