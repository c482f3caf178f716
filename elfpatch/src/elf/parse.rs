//! Parsing: the file header, program and section headers are read with `object`; the
//! dynamic section, string table and version tables through the bounds-checked codec.

use object::read::elf::{FileHeader, ProgramHeader as _, SectionHeader as _};
use object::Endianness;

use super::codec::{cstr, Class, Codec, Endian, Phdr, Shdr};
use super::consts::*;
use super::error::{malformed, Error, Result};

/// A section header with its name.
#[derive(Clone, Debug)]
pub struct Section {
    /// Name from `.shstrtab` (empty when unreadable).
    pub name: Vec<u8>,
    /// The header itself.
    pub hdr: Shdr,
    /// File offset of this header in the section header table.
    pub at: u64,
}

/// The dynamic section as found through `PT_DYNAMIC`.
#[derive(Clone, Debug)]
pub struct Dynamic {
    /// File offset of the array.
    pub offset: u64,
    /// Virtual address.
    pub vaddr: u64,
    /// How many entries fit in its file range (spare `DT_NULL`s included).
    pub capacity: u64,
    /// Entries up to (excluding) the first `DT_NULL`.
    pub entries: Vec<(u64, u64)>,
}

/// The dynamic string table (`DT_STRTAB`/`DT_STRSZ`).
#[derive(Clone, Debug)]
pub struct StrTab {
    pub vaddr: u64,
    pub offset: u64,
    pub size: u64,
}

/// A parsed ELF file: the headers as plain data plus the original bytes.
#[derive(Clone, Debug)]
pub struct Elf<'a> {
    pub(crate) data: &'a [u8],
    /// The file `data` maps, when known: an edited copy can then share its pages.
    pub(crate) file: Option<&'a std::fs::File>,
    pub(crate) codec: Codec,
    pub(crate) e_type: u16,
    pub(crate) machine: u16,
    pub(crate) osabi: u8,
    pub(crate) phoff: u64,
    pub(crate) phdrs: Vec<Phdr>,
    pub(crate) phnum_extended: bool,
    pub(crate) shoff: u64,
    pub(crate) shnum: u64,
    pub(crate) sections: Vec<Section>,
    /// Index of the section name table (`e_shstrndx` resolved; 0 when there is none).
    pub(crate) shstrndx: u32,
    pub(crate) dynamic: Option<Dynamic>,
    pub(crate) strtab: Option<StrTab>,
}

fn obj_err(what: &str) -> impl Fn(object::read::Error) -> Error + '_ {
    move |e| malformed(format!("{what}: {e}"))
}

impl<'a> Elf<'a> {
    /// Parses `data`. Truncated or inconsistent headers are errors, never panics.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>> {
        if data.len() < 16 || &data[..4] != b"\x7fELF" {
            return Err(Error::NotElf(if data.len() < 4 {
                format!(
                    "file is {} bytes long, too short for an ELF header",
                    data.len()
                )
            } else {
                "no \\x7fELF magic at offset 0".into()
            }));
        }
        let class = match data[4] {
            1 => Class::Elf32,
            2 => Class::Elf64,
            c => return Err(malformed(format!("unknown EI_CLASS {c} at offset 4"))),
        };
        let endian = match data[5] {
            1 => Endian::Little,
            2 => Endian::Big,
            e => return Err(malformed(format!("unknown EI_DATA {e} at offset 5"))),
        };
        let codec = Codec { class, endian };
        let mut elf = match class {
            Class::Elf32 => parse_headers::<object::elf::FileHeader32<Endianness>>(data, codec)?,
            Class::Elf64 => parse_headers::<object::elf::FileHeader64<Endianness>>(data, codec)?,
        };
        elf.read_dynamic()?;
        Ok(elf)
    }

    /// Translates a virtual address to a file offset through the `PT_LOAD` that holds
    /// `size` bytes there.
    pub(crate) fn vaddr_to_offset(&self, vaddr: u64, size: u64) -> Option<u64> {
        let end = vaddr.checked_add(size)?;
        // The PT_LOAD holding `at` in its file-backed part.
        let load_at = |at: u64| {
            self.phdrs.iter().filter(|p| p.p_type == PT_LOAD).find(|p| {
                p.p_vaddr.checked_add(p.p_filesz).is_some_and(|load_end| {
                    at >= p.p_vaddr && (at < load_end || (size == 0 && at == load_end))
                })
            })
        };
        let first = load_at(vaddr)?;
        let offset = first.p_offset.checked_add(vaddr - first.p_vaddr)?;
        // A range may run on into the next PT_LOAD when both map the file at the same
        // offset-to-address delta (patchelf's prepended segments make such files).
        let mut covered = first.p_vaddr.checked_add(first.p_filesz)?;
        while covered < end {
            let next = load_at(covered)?;
            if next.p_vaddr.wrapping_sub(next.p_offset)
                != first.p_vaddr.wrapping_sub(first.p_offset)
            {
                return None;
            }
            covered = next.p_vaddr.checked_add(next.p_filesz)?;
        }
        Some(offset)
    }

    /// Where the dynamic section is: `PT_DYNAMIC`, or else a `.dynamic` section header (a
    /// linker script can leave a library without the segment; ld.so then finds nothing,
    /// but patchelf edits the section, and so does this editor).
    fn dynamic_range(&self) -> Option<Phdr> {
        if let Some(p) = self.phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
            return Some(*p);
        }
        let s = self
            .sections
            .iter()
            .find(|s| s.hdr.sh_type == SHT_DYNAMIC && s.hdr.sh_size > 0)?;
        Some(Phdr {
            p_type: PT_DYNAMIC,
            p_offset: s.hdr.sh_offset,
            p_vaddr: s.hdr.sh_addr,
            p_paddr: s.hdr.sh_addr,
            p_filesz: s.hdr.sh_size,
            p_memsz: s.hdr.sh_size,
            ..Phdr::default()
        })
    }

    fn read_dynamic(&mut self) -> Result<()> {
        let Some(ph) = self.dynamic_range() else {
            return Ok(());
        };
        let ds = self.codec.dyn_size();
        if ph.p_filesz == 0 {
            // A separate debug-info file: the segment exists but its bytes do not.
            return Ok(());
        }
        if ph.file_end() > self.data.len() as u64 {
            return Err(malformed(format!(
                "PT_DYNAMIC file range {:#x}..{:#x} past end of file ({:#x})",
                ph.p_offset,
                ph.file_end(),
                self.data.len()
            )));
        }
        let capacity = ph.p_filesz / ds;
        let mut entries = Vec::new();
        let mut found_null = false;
        for i in 0..capacity {
            let (tag, val) = self.codec.read_dyn(self.data, ph.p_offset + i * ds)?;
            if tag == DT_NULL {
                found_null = true;
                break;
            }
            entries.push((tag, val));
        }
        if !found_null {
            return Err(malformed(format!(
                "dynamic section at {:#x} has no DT_NULL terminator within its {} entries \
                 (patchelf: setSubstr: write extends past end of section)",
                ph.p_offset, capacity
            )));
        }
        let get = |t: u64| entries.iter().find(|e| e.0 == t).map(|e| e.1);
        if let (Some(vaddr), Some(size)) = (get(DT_STRTAB), get(DT_STRSZ)) {
            let offset = self.vaddr_to_offset(vaddr, size).ok_or_else(|| {
                malformed(format!(
                    "DT_STRTAB {vaddr:#x} (+DT_STRSZ {size:#x}) is not inside any PT_LOAD's file range"
                ))
            })?;
            if offset.saturating_add(size) > self.data.len() as u64 {
                return Err(malformed(format!(
                    "dynamic string table at {offset:#x} runs past end of file"
                )));
            }
            self.strtab = Some(StrTab {
                vaddr,
                offset,
                size,
            });
        }
        self.dynamic = Some(Dynamic {
            offset: ph.p_offset,
            vaddr: ph.p_vaddr,
            capacity,
            entries,
        });
        Ok(())
    }

    /// The bytes of the dynamic string table (empty when there is none).
    pub(crate) fn strtab_bytes(&self) -> &'a [u8] {
        match &self.strtab {
            Some(s) => self
                .data
                .get(s.offset as usize..(s.offset + s.size) as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }

    /// The string at `off` of the dynamic string table.
    pub(crate) fn dynstr(&self, off: u64) -> Option<&'a [u8]> {
        cstr(self.strtab_bytes(), off)
    }

    /// Value of the first dynamic entry with `tag`.
    pub(crate) fn dyn_val(&self, tag: u64) -> Option<u64> {
        self.dynamic
            .as_ref()?
            .entries
            .iter()
            .find(|e| e.0 == tag)
            .map(|e| e.1)
    }

    /// `PT_INTERP`, unless its bytes are absent from this file (a separate debug-info file
    /// keeps the program headers but makes `.interp` `SHT_NOBITS`).
    pub(crate) fn interp_phdr(&self) -> Option<Phdr> {
        let p = self.phdrs.iter().find(|p| p.p_type == PT_INTERP)?;
        let nobits = self
            .sections
            .iter()
            .any(|s| s.name == b".interp" && s.hdr.sh_type == SHT_NOBITS);
        (!nobits && p.p_filesz > 0).then_some(*p)
    }

    /// The section whose header has this type and address, if any.
    pub(crate) fn section_at(&self, sh_type: u32, addr: u64) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| s.hdr.sh_type == sh_type && s.hdr.sh_addr == addr && s.hdr.sh_size > 0)
    }
}

fn parse_headers<H>(data: &[u8], codec: Codec) -> Result<Elf<'_>>
where
    H: FileHeader<Endian = Endianness>,
{
    let hdr = H::parse(data).map_err(obj_err("ELF file header"))?;
    let endian = hdr.endian().map_err(obj_err("ELF byte order"))?;
    check_header_tables(hdr, endian, data.len() as u64, codec)?;
    let phdrs_raw = hdr
        .program_headers(endian, data)
        .map_err(obj_err("program header table"))?;
    let phdrs: Vec<Phdr> = phdrs_raw
        .iter()
        .map(|p| Phdr {
            p_type: p.p_type(endian),
            p_flags: p.p_flags(endian),
            p_offset: p.p_offset(endian).into(),
            p_vaddr: p.p_vaddr(endian).into(),
            p_paddr: p.p_paddr(endian).into(),
            p_filesz: p.p_filesz(endian).into(),
            p_memsz: p.p_memsz(endian).into(),
            p_align: p.p_align(endian).into(),
        })
        .collect();
    let shoff: u64 = hdr.e_shoff(endian).into();
    let shdrs = hdr
        .section_headers(endian, data)
        .map_err(obj_err("section header table"))?;
    let (shstrndx, shstr) = section_names(hdr, endian, data, shdrs)?;
    let shsize = codec.shdr_size();
    let sections = shdrs
        .iter()
        .enumerate()
        .map(|(i, s)| Section {
            name: cstr(shstr, u64::from(s.sh_name(endian)))
                .map(|n| n.to_vec())
                .unwrap_or_default(),
            hdr: Shdr {
                sh_name: s.sh_name(endian),
                sh_type: s.sh_type(endian),
                sh_flags: s.sh_flags(endian).into(),
                sh_addr: s.sh_addr(endian).into(),
                sh_offset: s.sh_offset(endian).into(),
                sh_size: s.sh_size(endian).into(),
                sh_link: s.sh_link(endian),
                sh_info: s.sh_info(endian),
                sh_addralign: s.sh_addralign(endian).into(),
                sh_entsize: s.sh_entsize(endian).into(),
            },
            at: shoff + i as u64 * shsize,
        })
        .collect::<Vec<_>>();
    check_dynamic_sections(&sections, data.len() as u64, codec)?;
    Ok(Elf {
        data,
        file: None,
        codec,
        e_type: hdr.e_type(endian),
        machine: hdr.e_machine(endian),
        osabi: hdr.e_ident().os_abi,
        phoff: hdr.e_phoff(endian).into(),
        phnum_extended: hdr.e_phnum(endian) == 0xffff,
        phdrs,
        shoff,
        shnum: sections.len() as u64,
        sections,
        shstrndx,
        dynamic: None,
        strtab: None,
    })
}

/// End of a table of `num` entries of `size` bytes at `off`, unless that overflows.
fn table_end(off: u64, num: u64, size: u64) -> Option<u64> {
    num.checked_mul(size).and_then(|s| off.checked_add(s))
}

/// The bounds and entry sizes of the header tables, checked in patchelf's order and
/// refused in its words (scripts match them). A count of 0xffff (`PN_XNUM`) or a section
/// count of 0 with a table (the real counts are in section 0) is left to `object`.
fn check_header_tables<H>(hdr: &H, endian: Endianness, len: u64, codec: Codec) -> Result<()>
where
    H: FileHeader<Endian = Endianness>,
{
    let (phoff, phnum): (u64, u64) = (hdr.e_phoff(endian).into(), hdr.e_phnum(endian).into());
    let phent = u64::from(hdr.e_phentsize(endian));
    if phnum != 0xffff && table_end(phoff, phnum, phent).is_none_or(|e| e > len) {
        return Err(malformed(format!(
            "program header table out of bounds: {phnum} entries of {phent} bytes at \
             {phoff:#x}, the file is {len:#x} bytes"
        )));
    }
    let (shoff, shnum): (u64, u64) = (hdr.e_shoff(endian).into(), hdr.e_shnum(endian).into());
    let shent = u64::from(hdr.e_shentsize(endian));
    if shnum > 0 && table_end(shoff, shnum, shent).is_none_or(|e| e > len) {
        return Err(malformed(format!(
            "section header table out of bounds: {shnum} entries of {shent} bytes at \
             {shoff:#x}, the file is {len:#x} bytes"
        )));
    }
    if phnum > 0 && phent != codec.phdr_size() {
        return Err(malformed(format!(
            "program headers have wrong size: e_phentsize is {phent}, expected {}",
            codec.phdr_size()
        )));
    }
    if shnum > 0 && shent != codec.shdr_size() {
        return Err(malformed(format!(
            "section headers have wrong size: e_shentsize is {shent}, expected {}",
            codec.shdr_size()
        )));
    }
    Ok(())
}

/// The section name table (`e_shstrndx`), checked as patchelf checks it and refused in its
/// words, with its index. Empty (index 0) when the file has no section headers or no name
/// table (`SHN_UNDEF`).
fn section_names<'d, H>(
    hdr: &H,
    endian: Endianness,
    data: &'d [u8],
    shdrs: &[H::SectionHeader],
) -> Result<(u32, &'d [u8])>
where
    H: FileHeader<Endian = Endianness>,
{
    if shdrs.is_empty() {
        return Ok((0, &[]));
    }
    let raw = u32::from(hdr.e_shstrndx(endian));
    let index = if raw == u32::from(object::elf::SHN_XINDEX) {
        shdrs[0].sh_link(endian)
    } else {
        raw
    };
    // SHN_XINDEX with no index in section 0 is as out of bounds as 0xffff itself.
    if index == u32::from(object::elf::SHN_UNDEF) && raw != index {
        return Err(malformed(format!(
            "string table index out of bounds: e_shstrndx is {raw:#x} and section 0 holds \
             no index, the file has {} sections",
            shdrs.len()
        )));
    }
    if index == u32::from(object::elf::SHN_UNDEF) {
        return Ok((0, &[]));
    }
    let s = shdrs.get(index as usize).ok_or_else(|| {
        malformed(format!(
            "string table index out of bounds: e_shstrndx is {index}, the file has {} sections",
            shdrs.len()
        ))
    })?;
    let (off, size): (u64, u64) = (s.sh_offset(endian).into(), s.sh_size(endian).into());
    let names = off
        .checked_add(size)
        .and_then(|end| data.get(off as usize..usize::try_from(end).ok()?))
        .ok_or_else(|| {
            malformed(format!(
                "data region extends past file end: the section name table ({size:#x} bytes \
                 at {off:#x}) runs past the end of the file ({:#x})",
                data.len()
            ))
        })?;
    match names.last() {
        None => Err(malformed(format!(
            "string table size is zero: section name table (section {index})"
        ))),
        Some(&b) if b != 0 => Err(malformed(format!(
            "string table is not zero terminated: section name table at {off:#x}"
        ))),
        Some(_) => {
            for (i, s) in shdrs.iter().enumerate().skip(1) {
                if u64::from(s.sh_name(endian)) >= size {
                    return Err(malformed(format!(
                        "section name offset out of bounds: section {i} names offset {:#x} \
                         of a {size:#x}-byte name table",
                        s.sh_name(endian)
                    )));
                }
            }
            Ok((index, names))
        }
    }
}

/// A `.dynamic` section header must describe bytes of the file, aligned for its entries
/// (patchelf reads the dynamic section through it; its words).
fn check_dynamic_sections(sections: &[Section], len: u64, codec: Codec) -> Result<()> {
    // A separate debug-info file's .dynamic is SHT_NOBITS: it has no bytes to check.
    for s in sections
        .iter()
        .filter(|s| s.hdr.sh_type == SHT_DYNAMIC && s.hdr.sh_size > 0)
    {
        let h = &s.hdr;
        if h.sh_offset.checked_add(h.sh_size).is_none_or(|e| e > len) {
            return Err(malformed(format!(
                "data offset extends past file end: .dynamic section ({:#x} bytes at {:#x}), \
                 the file is {len:#x} bytes",
                h.sh_size, h.sh_offset
            )));
        }
        if h.sh_offset % codec.word_size() as u64 != 0 {
            return Err(malformed(format!(
                "section content is not naturally aligned: .dynamic section at {:#x}",
                h.sh_offset
            )));
        }
    }
    Ok(())
}
