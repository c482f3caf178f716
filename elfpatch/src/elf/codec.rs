//! Reading and writing ELF structures with an explicit class (32/64-bit) and byte order.
//! The layouts are `object`'s `elf` types; every access is bounds-checked: an offset past
//! the end is an error, never a panic.

use std::mem::{offset_of, size_of};

use object::elf::{
    Dyn32, Dyn64, FileHeader32, FileHeader64, ProgramHeader32, ProgramHeader64, SectionHeader32,
    SectionHeader64, Sym32, Sym64,
};
use object::pod::{bytes_of, from_bytes, Pod};
use object::{Endianness, U16, U32, U64};

use super::error::{malformed, Result};

/// ELF class: the width of addresses and offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `ELFCLASS32`.
    Elf32,
    /// `ELFCLASS64`.
    Elf64,
}

/// Byte order of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// `ELFDATA2LSB`.
    Little,
    /// `ELFDATA2MSB`.
    Big,
}

/// A program header, widened to 64 bits whatever the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Phdr {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Phdr {
    /// End of the file range (saturating: inputs may be hostile).
    pub fn file_end(&self) -> u64 {
        self.p_offset.saturating_add(self.p_filesz)
    }
    /// End of the memory range.
    pub fn mem_end(&self) -> u64 {
        self.p_vaddr.saturating_add(self.p_memsz)
    }
}

/// A section header, widened to 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Shdr {
    pub sh_name: u32,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u32,
    pub sh_info: u32,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

/// Encoder/decoder for one class and byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    pub class: Class,
    pub endian: Endian,
}

fn range(len: usize, off: u64, n: usize) -> Result<std::ops::Range<usize>> {
    let start =
        usize::try_from(off).map_err(|_| malformed(format!("offset {off:#x} too large")))?;
    let end = start.checked_add(n).filter(|&e| e <= len).ok_or_else(|| {
        malformed(format!(
            "read of {n} bytes at {off:#x} past end of file ({len:#x})"
        ))
    })?;
    Ok(start..end)
}

/// Offsets of the file header fields that edits rewrite.
struct EhdrFields {
    phoff: usize,
    phnum: usize,
    shoff: usize,
    shnum: usize,
    shstrndx: usize,
}

macro_rules! ehdr_fields {
    ($h:ty) => {
        EhdrFields {
            phoff: offset_of!($h, e_phoff),
            phnum: offset_of!($h, e_phnum),
            shoff: offset_of!($h, e_shoff),
            shnum: offset_of!($h, e_shnum),
            shstrndx: offset_of!($h, e_shstrndx),
        }
    };
}

/// A value that an ELF32 field must hold.
pub fn narrow(v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| malformed(format!("value {v:#x} does not fit a 32-bit ELF word")))
}

impl Codec {
    /// The byte order as `object` names it.
    pub fn endianness(&self) -> Endianness {
        match self.endian {
            Endian::Little => Endianness::Little,
            Endian::Big => Endianness::Big,
        }
    }
    /// Size of an address/offset word.
    pub fn word_size(&self) -> usize {
        self.size_of::<U32<Endianness>, U64<Endianness>>()
    }
    /// Size of one program header.
    pub fn phdr_size(&self) -> u64 {
        self.size_of::<ProgramHeader32<Endianness>, ProgramHeader64<Endianness>>() as u64
    }
    /// Size of one section header.
    pub fn shdr_size(&self) -> u64 {
        self.size_of::<SectionHeader32<Endianness>, SectionHeader64<Endianness>>() as u64
    }
    /// Size of one dynamic entry.
    pub fn dyn_size(&self) -> u64 {
        self.size_of::<Dyn32<Endianness>, Dyn64<Endianness>>() as u64
    }
    /// Size of one symbol.
    pub fn sym_size(&self) -> u64 {
        self.size_of::<Sym32<Endianness>, Sym64<Endianness>>() as u64
    }
    /// Size of the file header.
    pub fn ehdr_size(&self) -> u64 {
        self.size_of::<FileHeader32<Endianness>, FileHeader64<Endianness>>() as u64
    }
    /// Offset of `st_shndx` in a symbol.
    pub fn sym_shndx_at(&self) -> u64 {
        match self.class {
            Class::Elf32 => offset_of!(Sym32<Endianness>, st_shndx) as u64,
            Class::Elf64 => offset_of!(Sym64<Endianness>, st_shndx) as u64,
        }
    }
    /// The size of `T32` or `T64`, whichever this class uses.
    fn size_of<T32, T64>(&self) -> usize {
        match self.class {
            Class::Elf32 => size_of::<T32>(),
            Class::Elf64 => size_of::<T64>(),
        }
    }
    fn ehdr_fields(&self) -> EhdrFields {
        match self.class {
            Class::Elf32 => ehdr_fields!(FileHeader32<Endianness>),
            Class::Elf64 => ehdr_fields!(FileHeader64<Endianness>),
        }
    }

    /// The `T` at `off` of `d`.
    pub fn read<'d, T: Pod>(&self, d: &'d [u8], off: u64) -> Result<&'d T> {
        let r = range(d.len(), off, size_of::<T>())?;
        from_bytes::<T>(&d[r])
            .map(|(v, _)| v)
            .map_err(|()| malformed(format!("unreadable record at {off:#x}")))
    }
    /// Writes `v` at `off` of `d`.
    pub fn put<T: Pod>(&self, d: &mut [u8], off: u64, v: &T) -> Result<()> {
        let r = range(d.len(), off, size_of::<T>())?;
        d[r].copy_from_slice(bytes_of(v));
        Ok(())
    }

    pub fn u16(&self, d: &[u8], off: u64) -> Result<u16> {
        Ok(self.read::<U16<Endianness>>(d, off)?.get(self.endianness()))
    }
    pub fn u32(&self, d: &[u8], off: u64) -> Result<u32> {
        Ok(self.read::<U32<Endianness>>(d, off)?.get(self.endianness()))
    }
    pub fn u64(&self, d: &[u8], off: u64) -> Result<u64> {
        Ok(self.read::<U64<Endianness>>(d, off)?.get(self.endianness()))
    }
    /// Reads an address-sized word.
    pub fn word(&self, d: &[u8], off: u64) -> Result<u64> {
        match self.class {
            Class::Elf32 => self.u32(d, off).map(u64::from),
            Class::Elf64 => self.u64(d, off),
        }
    }

    pub fn put_u16(&self, d: &mut [u8], off: u64, v: u16) -> Result<()> {
        self.put(d, off, &U16::new(self.endianness(), v))
    }
    pub fn put_u32(&self, d: &mut [u8], off: u64, v: u32) -> Result<()> {
        self.put(d, off, &U32::new(self.endianness(), v))
    }
    pub fn put_u64(&self, d: &mut [u8], off: u64, v: u64) -> Result<()> {
        self.put(d, off, &U64::new(self.endianness(), v))
    }
    /// Writes an address-sized word; a value that does not fit ELF32 is an error.
    pub fn put_word(&self, d: &mut [u8], off: u64, v: u64) -> Result<()> {
        match self.class {
            Class::Elf32 => self.put_u32(d, off, narrow(v)?),
            Class::Elf64 => self.put_u64(d, off, v),
        }
    }

    /// Encodes `p` at `off`.
    pub fn write_phdr(&self, d: &mut [u8], off: u64, p: &Phdr) -> Result<()> {
        let e = self.endianness();
        match self.class {
            Class::Elf64 => self.put(
                d,
                off,
                &ProgramHeader64 {
                    p_type: U32::new(e, p.p_type),
                    p_flags: U32::new(e, p.p_flags),
                    p_offset: U64::new(e, p.p_offset),
                    p_vaddr: U64::new(e, p.p_vaddr),
                    p_paddr: U64::new(e, p.p_paddr),
                    p_filesz: U64::new(e, p.p_filesz),
                    p_memsz: U64::new(e, p.p_memsz),
                    p_align: U64::new(e, p.p_align),
                },
            ),
            Class::Elf32 => self.put(
                d,
                off,
                &ProgramHeader32 {
                    p_type: U32::new(e, p.p_type),
                    p_offset: U32::new(e, narrow(p.p_offset)?),
                    p_vaddr: U32::new(e, narrow(p.p_vaddr)?),
                    p_paddr: U32::new(e, narrow(p.p_paddr)?),
                    p_filesz: U32::new(e, narrow(p.p_filesz)?),
                    p_memsz: U32::new(e, narrow(p.p_memsz)?),
                    p_flags: U32::new(e, p.p_flags),
                    p_align: U32::new(e, narrow(p.p_align)?),
                },
            ),
        }
    }

    /// Decodes the dynamic entry at `off` as `(d_tag, d_val)`.
    pub fn read_dyn(&self, d: &[u8], off: u64) -> Result<(u64, u64)> {
        let e = self.endianness();
        Ok(match self.class {
            Class::Elf32 => {
                let v = self.read::<Dyn32<Endianness>>(d, off)?;
                (v.d_tag.get(e).into(), v.d_val.get(e).into())
            }
            Class::Elf64 => {
                let v = self.read::<Dyn64<Endianness>>(d, off)?;
                (v.d_tag.get(e), v.d_val.get(e))
            }
        })
    }

    /// Encodes a dynamic entry at `off`.
    pub fn write_dyn(&self, d: &mut [u8], off: u64, tag: u64, val: u64) -> Result<()> {
        let e = self.endianness();
        match self.class {
            Class::Elf32 => self.put(
                d,
                off,
                &Dyn32 {
                    d_tag: U32::new(e, narrow(tag)?),
                    d_val: U32::new(e, narrow(val)?),
                },
            ),
            Class::Elf64 => self.put(
                d,
                off,
                &Dyn64 {
                    d_tag: U64::new(e, tag),
                    d_val: U64::new(e, val),
                },
            ),
        }
    }

    /// Writes `e_phoff` and `e_phnum` into the file header bytes `ehdr`.
    pub fn put_phdr_fields(&self, ehdr: &mut [u8], phoff: u64, phnum: u16) -> Result<()> {
        let f = self.ehdr_fields();
        self.put_word(ehdr, f.phoff as u64, phoff)?;
        self.put_u16(ehdr, f.phnum as u64, phnum)
    }

    /// Writes `e_phnum` alone.
    pub fn put_phnum(&self, ehdr: &mut [u8], phnum: u16) -> Result<()> {
        self.put_u16(ehdr, self.ehdr_fields().phnum as u64, phnum)
    }

    /// Writes `e_shoff`, `e_shnum` and `e_shstrndx` into the file header bytes `ehdr`.
    pub fn put_section_fields(
        &self,
        ehdr: &mut [u8],
        shoff: u64,
        shnum: u16,
        shstrndx: u16,
    ) -> Result<()> {
        let f = self.ehdr_fields();
        self.put_word(ehdr, f.shoff as u64, shoff)?;
        self.put_u16(ehdr, f.shnum as u64, shnum)?;
        self.put_u16(ehdr, f.shstrndx as u64, shstrndx)
    }
}

/// Rounds `v` up to a multiple of `a` (a power of two or 0/1), or `None` on overflow.
pub fn align_up(v: u64, a: u64) -> Option<u64> {
    if a <= 1 {
        return Some(v);
    }
    v.checked_add(a - 1).map(|x| x / a * a)
}

/// Reads the NUL-terminated string at `off` of `table`.
pub fn cstr(table: &[u8], off: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let rest = table.get(start..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..len])
}
