//! Reading and writing ELF structures with an explicit class (32/64-bit) and byte order.
//! Every access is bounds-checked: an offset past the end is an error, never a panic.

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

impl Codec {
    /// Size of an address/offset word.
    pub fn word_size(&self) -> usize {
        match self.class {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        }
    }
    /// Size of one program header.
    pub fn phdr_size(&self) -> u64 {
        match self.class {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        }
    }
    /// Size of one section header.
    pub fn shdr_size(&self) -> u64 {
        match self.class {
            Class::Elf32 => 40,
            Class::Elf64 => 64,
        }
    }
    /// Size of one dynamic entry.
    pub fn dyn_size(&self) -> u64 {
        2 * self.word_size() as u64
    }
    /// Size of one symbol.
    pub fn sym_size(&self) -> u64 {
        match self.class {
            Class::Elf32 => 16,
            Class::Elf64 => 24,
        }
    }

    pub fn u16(&self, d: &[u8], off: u64) -> Result<u16> {
        let b: [u8; 2] = d[range(d.len(), off, 2)?].try_into().unwrap_or_default();
        Ok(match self.endian {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }
    pub fn u32(&self, d: &[u8], off: u64) -> Result<u32> {
        let b: [u8; 4] = d[range(d.len(), off, 4)?].try_into().unwrap_or_default();
        Ok(match self.endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }
    pub fn u64(&self, d: &[u8], off: u64) -> Result<u64> {
        let b: [u8; 8] = d[range(d.len(), off, 8)?].try_into().unwrap_or_default();
        Ok(match self.endian {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        })
    }
    /// Reads an address-sized word.
    pub fn word(&self, d: &[u8], off: u64) -> Result<u64> {
        match self.class {
            Class::Elf32 => self.u32(d, off).map(u64::from),
            Class::Elf64 => self.u64(d, off),
        }
    }

    pub fn put_u16(&self, d: &mut [u8], off: u64, v: u16) -> Result<()> {
        let r = range(d.len(), off, 2)?;
        d[r].copy_from_slice(&match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
        Ok(())
    }
    pub fn put_u32(&self, d: &mut [u8], off: u64, v: u32) -> Result<()> {
        let r = range(d.len(), off, 4)?;
        d[r].copy_from_slice(&match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
        Ok(())
    }
    pub fn put_u64(&self, d: &mut [u8], off: u64, v: u64) -> Result<()> {
        let r = range(d.len(), off, 8)?;
        d[r].copy_from_slice(&match self.endian {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        });
        Ok(())
    }
    /// Writes an address-sized word; a value that does not fit ELF32 is an error.
    pub fn put_word(&self, d: &mut [u8], off: u64, v: u64) -> Result<()> {
        match self.class {
            Class::Elf32 => {
                let v = u32::try_from(v).map_err(|_| {
                    malformed(format!("value {v:#x} does not fit a 32-bit ELF word"))
                })?;
                self.put_u32(d, off, v)
            }
            Class::Elf64 => self.put_u64(d, off, v),
        }
    }

    /// Encodes `p` at `off`.
    pub fn write_phdr(&self, d: &mut [u8], off: u64, p: &Phdr) -> Result<()> {
        match self.class {
            Class::Elf64 => {
                self.put_u32(d, off, p.p_type)?;
                self.put_u32(d, off + 4, p.p_flags)?;
                self.put_u64(d, off + 8, p.p_offset)?;
                self.put_u64(d, off + 16, p.p_vaddr)?;
                self.put_u64(d, off + 24, p.p_paddr)?;
                self.put_u64(d, off + 32, p.p_filesz)?;
                self.put_u64(d, off + 40, p.p_memsz)?;
                self.put_u64(d, off + 48, p.p_align)
            }
            Class::Elf32 => {
                self.put_u32(d, off, p.p_type)?;
                self.put_word(d, off + 4, p.p_offset)?;
                self.put_word(d, off + 8, p.p_vaddr)?;
                self.put_word(d, off + 12, p.p_paddr)?;
                self.put_word(d, off + 16, p.p_filesz)?;
                self.put_word(d, off + 20, p.p_memsz)?;
                self.put_u32(d, off + 24, p.p_flags)?;
                self.put_word(d, off + 28, p.p_align)
            }
        }
    }

    /// Decodes the dynamic entry at `off` as `(d_tag, d_val)`.
    pub fn read_dyn(&self, d: &[u8], off: u64) -> Result<(u64, u64)> {
        let w = self.word_size() as u64;
        Ok((self.word(d, off)?, self.word(d, off + w)?))
    }

    /// Encodes a dynamic entry at `off`.
    pub fn write_dyn(&self, d: &mut [u8], off: u64, tag: u64, val: u64) -> Result<()> {
        let w = self.word_size() as u64;
        self.put_word(d, off, tag)?;
        self.put_word(d, off + w, val)
    }

    /// Size of the file header.
    pub fn ehdr_size(&self) -> u64 {
        match self.class {
            Class::Elf32 => {
                std::mem::size_of::<object::elf::FileHeader32<object::Endianness>>() as u64
            }
            Class::Elf64 => {
                std::mem::size_of::<object::elf::FileHeader64<object::Endianness>>() as u64
            }
        }
    }
    /// Offset of the `e_phoff` field and friends in the file header.
    pub fn ehdr_phoff_at(&self) -> u64 {
        match self.class {
            Class::Elf32 => 28,
            Class::Elf64 => 32,
        }
    }
    /// Offset of the `e_phnum` field.
    pub fn ehdr_phnum_at(&self) -> u64 {
        match self.class {
            Class::Elf32 => 44,
            Class::Elf64 => 56,
        }
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
