//! `--rename-dynamic-symbols`: new names for dynamic symbols. The symbol hash tables key
//! on names, so they are rebuilt: `DT_HASH` in place; `DT_GNU_HASH` needs its hashed
//! symbols sorted by bucket, so when a new name changes a bucket `.dynsym` is reordered
//! and `.gnu.version` and every dynamic relocation's symbol index follow.

use std::collections::BTreeMap;

use super::consts::*;
use super::error::{malformed, Error, Result};
use super::parse::Elf;
use super::tables;

/// Byte writes the rename needs, given the new `st_name` of every renamed symbol.
pub(crate) fn rename_patches(
    elf: &Elf,
    new_names: &BTreeMap<u64, (u32, Vec<u8>)>,
    all_names: &[Vec<u8>],
) -> Result<Vec<(u64, Vec<u8>)>> {
    let c = elf.codec;
    let (symoff, count) = tables::dynsym(elf)?
        .ok_or_else(|| Error::Missing("no dynamic symbol table to rename symbols in".into()))?;
    let ss = c.sym_size();
    let mut syms: Vec<Vec<u8>> = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = (symoff + i * ss) as usize;
        let mut b = elf
            .data
            .get(at..at + ss as usize)
            .ok_or_else(|| malformed(format!("symbol {i} at {at:#x} past end of file")))?
            .to_vec();
        if let Some((name, _)) = new_names.get(&i) {
            c.put_u32(&mut b, 0, *name)?;
        }
        syms.push(b);
    }
    let mut names: Vec<Vec<u8>> = all_names.to_vec();
    let mut patches = Vec::new();
    // GNU hash: order of the hashed symbols.
    let mut perm: Vec<usize> = (0..count as usize).collect();
    if let Some(addr) = elf.dyn_val(DT_GNU_HASH) {
        let off = elf
            .vaddr_to_offset(addr, 16)
            .ok_or_else(|| malformed(format!("DT_GNU_HASH {addr:#x} is not mapped")))?;
        let nbuckets = c.u32(elf.data, off)?;
        let symoffset = c.u32(elf.data, off + 4)? as usize;
        let bloom_size = c.u32(elf.data, off + 8)?;
        let shift = c.u32(elf.data, off + 12)?;
        if nbuckets == 0 || bloom_size == 0 || symoffset > count as usize {
            return Err(malformed(format!(
                ".gnu.hash table header out of range: DT_GNU_HASH at {off:#x} has \
                 {nbuckets} buckets, {bloom_size} mask words, symbol offset {symoffset} of \
                 {count} symbols"
            )));
        }
        let table_size = 16
            + c.word_size() as u64 * u64::from(bloom_size)
            + 4 * (u64::from(nbuckets) + (count - symoffset as u64));
        if elf.vaddr_to_offset(addr, table_size).is_none() {
            return Err(malformed(format!(
                ".gnu.hash table header out of range: DT_GNU_HASH at {off:#x} needs \
                 {table_size} bytes, more than its segment holds"
            )));
        }
        let bucket_of = |n: &[u8]| gnu_hash(n) % nbuckets;
        perm[symoffset..].sort_by_key(|&i| bucket_of(&names[i]));
        let w = c.word_size() as u64;
        let bits = 8 * w;
        let mut bloom = vec![0u64; bloom_size as usize];
        let mut buckets = vec![0u32; nbuckets as usize];
        let n_hashed = count as usize - symoffset;
        let mut chains = vec![0u32; n_hashed];
        for k in symoffset..count as usize {
            let h = gnu_hash(&names[perm[k]]);
            let word = ((u64::from(h) / bits) % u64::from(bloom_size)) as usize;
            bloom[word] |= (1u64 << (u64::from(h) % bits))
                | (1u64 << (u64::from(h.checked_shr(shift).unwrap_or(0)) % bits));
            let b = (h % nbuckets) as usize;
            if buckets[b] == 0 {
                buckets[b] = k as u32;
            }
            let last = k + 1 == count as usize || bucket_of(&names[perm[k + 1]]) as usize != b;
            chains[k - symoffset] = (h & !1) | u32::from(last);
        }
        let size = 16 + w * u64::from(bloom_size) + 4 * (u64::from(nbuckets) + n_hashed as u64);
        let mut t = vec![0u8; size as usize];
        c.put_u32(&mut t, 0, nbuckets)?;
        c.put_u32(&mut t, 4, symoffset as u32)?;
        c.put_u32(&mut t, 8, bloom_size)?;
        c.put_u32(&mut t, 12, shift)?;
        for (k, v) in bloom.iter().enumerate() {
            c.put_word(
                &mut t,
                16 + w * k as u64,
                if w == 4 { v & 0xffff_ffff } else { *v },
            )?;
        }
        let bstart = 16 + w * u64::from(bloom_size);
        for (k, v) in buckets.iter().chain(chains.iter()).enumerate() {
            c.put_u32(&mut t, bstart + 4 * k as u64, *v)?;
        }
        patches.push((off, t));
    }
    let moved = perm.iter().enumerate().any(|(k, &i)| k != i);
    if moved {
        if elf.machine == 8 && c.word_size() == 8 {
            return Err(Error::Unsupported(
                "reordering MIPS64 dynamic symbols".into(),
            ));
        }
        let mut inverse = vec![0u64; perm.len()];
        for (k, &i) in perm.iter().enumerate() {
            inverse[i] = k as u64;
        }
        names = perm.iter().map(|&i| names[i].clone()).collect();
        syms = perm.iter().map(|&i| syms[i].clone()).collect();
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
        for (at, size, rela) in reloc_tables(elf)? {
            patches.push((at, remap_relocs(elf, at, size, rela, &inverse)?));
        }
    }
    if let Some(h) = elf.dyn_val(DT_HASH) {
        let off = elf
            .vaddr_to_offset(h, 8)
            .ok_or_else(|| malformed(format!("DT_HASH {h:#x} is not mapped")))?;
        let nbucket = c.u32(elf.data, off)?;
        let nchain = c.u32(elf.data, off + 4)?;
        if nbucket == 0
            || u64::from(nchain) != count
            || elf
                .vaddr_to_offset(h, 8 + 4 * (u64::from(nbucket) + count))
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
        let mut t = vec![0u8; 8 + 4 * (nbucket as usize + nchain as usize)];
        c.put_u32(&mut t, 0, nbucket)?;
        c.put_u32(&mut t, 4, nchain)?;
        for (k, v) in buckets.iter().chain(chains.iter()).enumerate() {
            c.put_u32(&mut t, 8 + 4 * k as u64, *v)?;
        }
        patches.push((off, t));
    }
    patches.push((symoff, syms.concat()));
    Ok(patches)
}

/// Dynamic relocation tables: (file offset, size, is RELA).
fn reloc_tables(elf: &Elf) -> Result<Vec<(u64, u64, bool)>> {
    let mut v = Vec::new();
    let mut add = |addr: Option<u64>, size: Option<u64>, rela: bool| -> Result<()> {
        if let (Some(a), Some(s)) = (addr, size) {
            if s > 0 {
                let at = elf.vaddr_to_offset(a, s).ok_or_else(|| {
                    malformed(format!(
                        "relocation table at {a:#x} ({s} bytes) is not mapped"
                    ))
                })?;
                if !v.iter().any(|x: &(u64, u64, bool)| x.0 == at) {
                    v.push((at, s, rela));
                }
            }
        }
        Ok(())
    };
    add(elf.dyn_val(7), elf.dyn_val(8), true)?; // DT_RELA, DT_RELASZ
    add(elf.dyn_val(17), elf.dyn_val(18), false)?; // DT_REL, DT_RELSZ
    add(elf.dyn_val(23), elf.dyn_val(2), elf.dyn_val(20) == Some(7))?; // DT_JMPREL, DT_PLTRELSZ, DT_PLTREL
    Ok(v)
}

fn remap_relocs(elf: &Elf, at: u64, size: u64, rela: bool, inverse: &[u64]) -> Result<Vec<u8>> {
    let c = elf.codec;
    let w = c.word_size() as u64;
    let ent = if rela { 3 * w } else { 2 * w };
    let mut b = elf
        .data
        .get(at as usize..(at + size) as usize)
        .ok_or_else(|| malformed(format!("relocations at {at:#x} past end of file")))?
        .to_vec();
    for k in 0..size / ent {
        let info = c.word(&b, k * ent + w)?;
        let (sym, rest) = if w == 8 {
            (info >> 32, info & 0xffff_ffff)
        } else {
            (info >> 8, info & 0xff)
        };
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
        let info = if w == 8 {
            (new << 32) | rest
        } else {
            (new << 8) | rest
        };
        c.put_word(&mut b, k * ent + w, info)?;
    }
    Ok(b)
}

/// The GNU hash function (`DT_GNU_HASH`).
pub(crate) fn gnu_hash(name: &[u8]) -> u32 {
    name.iter().fold(5381u32, |h, &c| {
        h.wrapping_mul(33).wrapping_add(u32::from(c))
    })
}

/// The System V hash function (`DT_HASH`).
pub(crate) fn sysv_hash(name: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 4).wrapping_add(u32::from(c));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_functions_match_the_reference_values() {
        // Values from the gABI (sysv) and the GNU hash specification.
        assert_eq!(gnu_hash(b""), 0x0000_1505);
        assert_eq!(gnu_hash(b"printf"), 0x156b_2bb8);
        assert_eq!(gnu_hash(b"exit"), 0x7c96_7e3f);
        assert_eq!(sysv_hash(b""), 0);
        assert_eq!(sysv_hash(b"printf"), 0x0779_05a6);
        assert_eq!(sysv_hash(b"exit"), 0x0006_cf04);
    }
}
