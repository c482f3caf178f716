//! The section header table as a whole (for edits that add or remove a section), and the
//! one section the editor adds: `.note.nixos.ldcache`, patchelf 0.19's resolution cache
//! (read by a glibc patch in nixpkgs). Layouts are `object`'s.

use object::elf::{SectionHeader32, SectionHeader64};
use object::{Endianness, U32, U64};

use super::codec::{align_up, Class, Codec, Shdr};
use super::consts::*;
use super::error::{malformed, Error, Result};
use super::image::Image;
use super::parse::Elf;

/// Name of the resolution cache section.
pub const LDCACHE_SECTION: &[u8] = b".note.nixos.ldcache";
/// Owner of the resolution cache note.
const LDCACHE_OWNER: &[u8] = b"NixOS\0";
/// Type of the resolution cache note.
pub const NT_NIXOS_LD_CACHE: u32 = 0x63a8_6cb6;

/// The resolution cache note (header, owner, `desc`), as it is written into the file.
pub(crate) fn ldcache_note(c: Codec, desc: &[u8]) -> Result<Vec<u8>> {
    let e = c.endianness();
    let size = |n: usize| {
        u32::try_from(n).map_err(|_| Error::Unsupported("resolution cache over 4 GiB".into()))
    };
    let header = object::elf::NoteHeader32 {
        n_namesz: U32::new(e, size(LDCACHE_OWNER.len())?),
        n_descsz: U32::new(e, size(desc.len())?),
        n_type: U32::new(e, NT_NIXOS_LD_CACHE),
    };
    let mut note = object::bytes_of(&header).to_vec();
    note.extend_from_slice(LDCACHE_OWNER);
    note.resize(align4(note.len()), 0);
    note.extend_from_slice(desc);
    note.resize(align4(note.len()), 0);
    Ok(note)
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The section named `.note.nixos.ldcache`, with its index.
pub(crate) fn ldcache_section(elf: &Elf) -> Option<(usize, Shdr)> {
    elf.sections
        .iter()
        .enumerate()
        .find(|(_, s)| s.name == LDCACHE_SECTION)
        .map(|(i, s)| (i, s.hdr))
}

/// The descriptor of the resolution cache note: `None` without the section, `Some(None)`
/// when its bytes are not one such note (foreign, truncated).
pub(crate) fn ldcache_descriptor<'a>(elf: &Elf<'a>) -> Option<Option<&'a [u8]>> {
    let (_, h) = ldcache_section(elf)?;
    let bytes = h.sh_offset.checked_add(h.sh_size).and_then(|end| {
        elf.data
            .get(h.sh_offset as usize..usize::try_from(end).ok()?)
    });
    Some(bytes.and_then(|b| note_descriptor(elf.codec, b)))
}

fn note_descriptor(c: Codec, b: &[u8]) -> Option<&[u8]> {
    let (header, rest) =
        object::pod::from_bytes::<object::elf::NoteHeader32<Endianness>>(b).ok()?;
    let e = c.endianness();
    let name = align4(header.n_namesz.get(e) as usize);
    let desc = header.n_descsz.get(e) as usize;
    (header.n_type.get(e) == NT_NIXOS_LD_CACHE && rest.get(..name)? == pad4(LDCACHE_OWNER))
        .then(|| rest.get(name..name.checked_add(desc)?))
        .flatten()
}

fn pad4(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v.resize(align4(v.len()), 0);
    v
}

/// Offset of `name` (NUL-terminated, possibly as the suffix of a longer name) in the
/// section name table `table`.
pub(crate) fn name_offset(table: &[u8], name: &[u8]) -> Option<u32> {
    let mut pat = name.to_vec();
    pat.push(0);
    table
        .windows(pat.len())
        .position(|w| w == pat)
        .and_then(|p| u32::try_from(p).ok())
}

/// Encodes a whole section header.
pub(crate) fn encode_shdr(c: Codec, h: &Shdr) -> Result<Vec<u8>> {
    let e = c.endianness();
    let narrow = |v: u64| {
        u32::try_from(v).map_err(|_| malformed(format!("{v:#x} does not fit an ELF32 field")))
    };
    Ok(match c.class {
        Class::Elf64 => object::bytes_of(&SectionHeader64::<Endianness> {
            sh_name: U32::new(e, h.sh_name),
            sh_type: U32::new(e, h.sh_type),
            sh_flags: U64::new(e, h.sh_flags),
            sh_addr: U64::new(e, h.sh_addr),
            sh_offset: U64::new(e, h.sh_offset),
            sh_size: U64::new(e, h.sh_size),
            sh_link: U32::new(e, h.sh_link),
            sh_info: U32::new(e, h.sh_info),
            sh_addralign: U64::new(e, h.sh_addralign),
            sh_entsize: U64::new(e, h.sh_entsize),
        })
        .to_vec(),
        Class::Elf32 => object::bytes_of(&SectionHeader32::<Endianness> {
            sh_name: U32::new(e, h.sh_name),
            sh_type: U32::new(e, h.sh_type),
            sh_flags: U32::new(e, narrow(h.sh_flags)?),
            sh_addr: U32::new(e, narrow(h.sh_addr)?),
            sh_offset: U32::new(e, narrow(h.sh_offset)?),
            sh_size: U32::new(e, narrow(h.sh_size)?),
            sh_link: U32::new(e, h.sh_link),
            sh_info: U32::new(e, h.sh_info),
            sh_addralign: U32::new(e, narrow(h.sh_addralign)?),
            sh_entsize: U32::new(e, narrow(h.sh_entsize)?),
        })
        .to_vec(),
    })
}

/// Writes `e_shoff`, `e_shnum` and `e_shstrndx` into the file header bytes `ehdr`.
pub(crate) fn put_section_fields(
    c: Codec,
    ehdr: &mut [u8],
    shoff: u64,
    shnum: u64,
    shstrndx: u32,
) -> Result<()> {
    let small =
        |v: u64| u16::try_from(v).map_err(|_| Error::Unsupported("too many sections".into()));
    c.put_section_fields(ehdr, shoff, small(shnum)?, small(u64::from(shstrndx))?)
}

/// Section indices after section `gone` is removed: the index that follows it, 0 for
/// itself.
fn renumbered(i: u32, gone: u32) -> u32 {
    match i.cmp(&gone) {
        std::cmp::Ordering::Less => i,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => i - 1,
    }
}

/// Removes section `gone` from `shdrs` and renumbers what refers to sections by index:
/// `sh_link`, the `sh_info` of relocation sections, `e_shstrndx` (returned) and the
/// `st_shndx` of every symbol (written into `img`), so section symbols keep naming their
/// own sections.
pub(crate) fn remove_section(
    elf: &Elf,
    shdrs: &mut Vec<Shdr>,
    gone: usize,
    img: &mut Image,
) -> Result<u32> {
    let g = u32::try_from(gone).map_err(|_| malformed("section index overflows"))?;
    if g == elf.shstrndx {
        return Err(Error::Unsupported(
            "the section name table is the section to remove".into(),
        ));
    }
    shdrs.remove(gone);
    for h in shdrs.iter_mut() {
        h.sh_link = renumbered(h.sh_link, g);
        if matches!(h.sh_type, SHT_REL | SHT_RELA) {
            h.sh_info = renumbered(h.sh_info, g);
        }
    }
    if gone + 1 < elf.sections.len() {
        renumber_symbols(elf, g, img)?;
    }
    Ok(renumbered(elf.shstrndx, g))
}

fn renumber_symbols(elf: &Elf, gone: u32, img: &mut Image) -> Result<()> {
    let c = elf.codec;
    let (size, at) = (c.sym_size(), c.sym_shndx_at());
    let tables = elf
        .sections
        .iter()
        .filter(|s| matches!(s.hdr.sh_type, SHT_SYMTAB | SHT_DYNSYM));
    for t in tables {
        for k in 0..t.hdr.sh_size / size {
            let field = t.hdr.sh_offset + k * size + at;
            let shndx = c.u16(elf.data, field)?;
            if shndx == 0 || shndx >= object::elf::SHN_LORESERVE {
                continue;
            }
            let new = renumbered(u32::from(shndx), gone) as u16;
            if new != shndx {
                let mut b = vec![0u8; 2];
                c.put_u16(&mut b, 0, new)?;
                img.put(field, b)?;
            }
        }
    }
    Ok(())
}

/// The section header of a resolution cache note at `offset`/`addr`.
pub(crate) fn ldcache_shdr(name: u32, offset: u64, addr: u64, size: u64) -> Shdr {
    Shdr {
        sh_name: name,
        sh_type: SHT_NOTE,
        sh_flags: SHF_ALLOC,
        sh_addr: addr,
        sh_offset: offset,
        sh_size: size,
        sh_addralign: 4,
        ..Shdr::default()
    }
}

/// Where a section header table of `n` entries goes when written after `end`.
pub(crate) fn table_at(end: u64) -> Result<u64> {
    align_up(end, 8).ok_or_else(|| Error::Unsupported("file too large".into()))
}
