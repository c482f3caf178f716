//! The ELF editing engine.
//!
//! ```no_run
//! use elfpatch::elf::{Edit, Elf};
//! let input = std::fs::read("prog").unwrap();
//! let mut edit = Edit::new();
//! edit.set_interpreter("/lib/ld-cas").replace_needed("libc.so.6", "uri:blake3:...");
//! let output = edit.apply(&input).unwrap(); // parsed, edited and verified
//! elfpatch::elf::write_atomic("prog".as_ref(), &output).unwrap();
//! ```
//!
//! Reading goes through [`Elf::parse`] and its accessors; changes are collected in an
//! [`Edit`] and applied in one pass. Original bytes are kept; what grows moves to a region
//! at the end of the file (see `layout`). Every output passes [`verify`] before it is
//! returned.

mod codec;
mod consts;
mod cow;
mod edit;
mod error;
mod image;
mod layout;
mod parse;
mod rename;
mod room;
mod sections;
mod strtab;
#[cfg(test)]
mod synth;
mod tables;
#[cfg(test)]
mod testing;
mod verify;
mod write;

pub use codec::{Class, Endian, Phdr, Shdr};
pub use consts::{
    max_page_size, DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE,
    LDCAS_FLAG_INDEX_FIRST, LDCAS_FLAG_NAME_SERVICE,
};
pub use edit::{Edit, RpathEdit};
pub use error::{Error, Result};
pub use image::{Image, Run};
pub use parse::Elf;
pub use verify::{check_input, findings, verify, verify_edit, Finding};
pub use write::{read_file, write_atomic, write_edit, write_image, Input};

use consts::*;

impl Edit {
    /// Parses `input`, applies this edit, verifies the result against the input and
    /// returns the new image. An edit that changes nothing returns `input` unchanged.
    pub fn apply(&self, input: &[u8]) -> Result<Vec<u8>> {
        let elf = Elf::parse(input)?;
        self.apply_to(&elf)
    }

    /// Like [`Edit::apply`] on an already parsed file.
    pub fn apply_to(&self, elf: &Elf) -> Result<Vec<u8>> {
        let img = self.image(elf)?;
        if img.is_identity(elf.data) {
            return Ok(elf.data.to_vec());
        }
        let out = img.materialize(elf.data);
        verify_edit(elf.data, &out)?;
        Ok(out)
    }

    /// The edited file as the input's bytes plus a list of writes (not yet verified: the
    /// verify pass runs on the materialised bytes, see [`Edit::apply_to`] and
    /// [`write_edit`]).
    pub fn image(&self, elf: &Elf) -> Result<Image> {
        check_input(elf.data)?;
        let logical = self.plan(elf)?;
        let page = match self.page_size {
            Some(p) if p.is_power_of_two() => p,
            Some(p) => {
                return Err(Error::Unsupported(format!(
                    "page size {p:#x} is not a power of two"
                )))
            }
            None => segment_align(elf),
        };
        if let Some(img) = layout::build(elf, &logical, page, layout::Options::default())? {
            return Ok(img);
        }
        // The program header table needs more room: grow it in place if the sections
        // after it can move (strip and objcopy keep the table after the ELF header), else
        // move it to the appended region. What the layout appends then continues the
        // moved sections' segment: one new segment, not two.
        if let Some(room) = room::make_room(elf, page, 4, self.keep_old_pieces)? {
            let mid = cow::output(&room.image, elf.data, elf.file)
                .map_err(|e| Error::Io(format!("cannot map a copy of the file to edit: {e}")))?;
            let parsed = Elf::parse(&mid)?;
            let logical = self.plan(&parsed)?;
            let opts = layout::Options {
                may_move_phdrs: false,
                continues: Some(room.load),
            };
            if let Some(img) = layout::build(&parsed, &logical, page, opts)? {
                return Ok(room.image.then(img));
            }
        }
        let opts = layout::Options {
            may_move_phdrs: true,
            continues: None,
        };
        layout::build(elf, &logical, page, opts)?
            .ok_or_else(|| Error::Unsupported("no room for the program headers".into()))
    }
}

/// Alignments above this are not page sizes (patchelf refuses to grow such files): they
/// are ignored when choosing the alignment of new segments.
const MAX_SEGMENT_ALIGN: u64 = 16 << 20;

/// The alignment of new segments: the machine's page size, or the largest `p_align` of the
/// file's `PT_LOAD`s when that is larger (a file linked with `-z max-page-size=0x200000`),
/// as patchelf does, so that all the file's loads agree and a kernel with pages that large
/// can map the new ones too.
fn segment_align(elf: &Elf) -> u64 {
    elf.phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && p.p_align.is_power_of_two())
        .map(|p| p.p_align)
        .filter(|&a| a <= MAX_SEGMENT_ALIGN)
        .fold(max_page_size(elf.machine), u64::max)
}

impl<'a> Elf<'a> {
    /// 32- or 64-bit.
    pub fn class(&self) -> Class {
        self.codec.class
    }
    /// Byte order.
    pub fn endian(&self) -> Endian {
        self.codec.endian
    }
    /// `e_machine` (62 = x86_64, 183 = aarch64, ...).
    pub fn machine(&self) -> u16 {
        self.machine
    }
    /// `e_type` (2 = `ET_EXEC`, 3 = `ET_DYN`).
    pub fn file_type(&self) -> u16 {
        self.e_type
    }
    /// `EI_OSABI`.
    pub fn os_abi(&self) -> u8 {
        self.osabi
    }
    /// The program headers.
    pub fn program_headers(&self) -> &[Phdr] {
        &self.phdrs
    }
    /// True when the file has a dynamic section.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic.is_some()
    }
    /// The `PT_INTERP` string.
    pub fn interpreter(&self) -> Option<&'a [u8]> {
        let p = self.interp_phdr()?;
        let s = self.data.get(p.p_offset as usize..p.file_end() as usize)?;
        Some(s.split(|&b| b == 0).next().unwrap_or(s))
    }
    /// `DT_NEEDED` names, in order.
    pub fn needed(&self) -> Vec<&'a [u8]> {
        self.string_tags(DT_NEEDED)
    }
    /// `DT_SONAME`.
    pub fn soname(&self) -> Option<&'a [u8]> {
        self.string_tags(DT_SONAME).into_iter().next()
    }
    /// `DT_RUNPATH`.
    pub fn runpath(&self) -> Option<&'a [u8]> {
        self.string_tags(DT_RUNPATH).into_iter().next()
    }
    /// `DT_RPATH`.
    pub fn rpath(&self) -> Option<&'a [u8]> {
        self.string_tags(DT_RPATH).into_iter().next()
    }
    /// The string value of the first dynamic entry with `tag` (e.g. [`DT_LDCAS_STORE`]).
    pub fn dynamic_string(&self, tag: u64) -> Option<&'a [u8]> {
        self.string_tags(tag).into_iter().next()
    }
    /// The descriptor of the resolution cache note (`.note.nixos.ldcache`): `None` when
    /// the file has no such section, `Some(None)` when its bytes are not that note.
    pub fn resolution_cache(&self) -> Option<Option<&'a [u8]>> {
        sections::ldcache_descriptor(self)
    }
    /// Indices of unnamed sections that symbols refer to (see [`crate::patchelf_cli`],
    /// which warns about them as patchelf does).
    pub fn unnamed_section_refs(&self) -> Vec<u16> {
        tables::unnamed_section_refs(self)
    }
    /// Flags of `PT_GNU_STACK`, if present.
    pub fn gnu_stack_flags(&self) -> Option<u32> {
        self.phdrs
            .iter()
            .find(|p| p.p_type == PT_GNU_STACK)
            .map(|p| p.p_flags)
    }
    fn string_tags(&self, tag: u64) -> Vec<&'a [u8]> {
        let Some(d) = &self.dynamic else {
            return Vec::new();
        };
        d.entries
            .iter()
            .filter(|e| e.0 == tag)
            .filter_map(|e| self.dynstr(e.1))
            .collect()
    }
}
