//! What the unit tests share: the synthetic inputs of every class and byte order, and
//! the edited outputs read back with `object` (not with the editor's own parser).

use object::read::elf::{Dyn as _, FileHeader, ProgramHeader as _};
use object::Endianness;

use super::synth::{build, with_and_without_sections, Target};

/// The four classes and byte orders, each with and without section headers.
pub(crate) fn targets() -> Vec<Target> {
    with_and_without_sections(&[
        ("x86_64", true, false, 62),
        ("s390x", true, true, 22),
        ("i386", false, false, 3),
        ("ppc32", false, true, 20),
    ])
}

/// Each target with its synthetic file.
pub(crate) fn inputs() -> Vec<(Target, Vec<u8>)> {
    targets().into_iter().map(|t| (t, build(t))).collect()
}

/// A program header as `object` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seg {
    pub(crate) p_type: u32,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) vaddr: u64,
    pub(crate) filesz: u64,
}

/// What the tests check of a file.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) segs: Vec<Seg>,
    pub(crate) interp: Option<Vec<u8>>,
    pub(crate) needed: Vec<Vec<u8>>,
    pub(crate) runpath: Option<Vec<u8>>,
    /// The bytes `DT_STRTAB`/`DT_STRSZ` describe.
    pub(crate) dynstr: Vec<u8>,
}

/// Reads `data` with `object`; panics on anything it cannot read.
pub(crate) fn parsed(data: &[u8]) -> Parsed {
    match data[4] {
        1 => parse_as::<object::elf::FileHeader32<Endianness>>(data),
        _ => parse_as::<object::elf::FileHeader64<Endianness>>(data),
    }
}

fn parse_as<H: FileHeader<Endian = Endianness>>(data: &[u8]) -> Parsed {
    let h = H::parse(data).expect("file header");
    let e = h.endian().expect("byte order");
    let phdrs = h.program_headers(e, data).expect("program headers");
    let segs = phdrs
        .iter()
        .map(|p| Seg {
            p_type: p.p_type(e),
            flags: p.p_flags(e),
            offset: p.p_offset(e).into(),
            vaddr: p.p_vaddr(e).into(),
            filesz: p.p_filesz(e).into(),
        })
        .collect();
    let interp = phdrs
        .iter()
        .find_map(|p| p.interpreter(e, data).expect("PT_INTERP"))
        .map(<[u8]>::to_vec);
    let dynamic = phdrs
        .iter()
        .find_map(|p| p.dynamic(e, data).expect("PT_DYNAMIC"))
        .expect("a dynamic section");
    let tag = |t: u32| {
        dynamic
            .iter()
            .filter(move |d| d.d_tag(e).into() == u64::from(t))
            .map(|d| d.d_val(e).into())
    };
    let (addr, size) = (
        tag(object::elf::DT_STRTAB).next(),
        tag(object::elf::DT_STRSZ).next(),
    );
    let dynstr = phdrs
        .iter()
        .find_map(|p| {
            p.data_range(e, data, addr.expect("DT_STRTAB"), size.expect("DT_STRSZ"))
                .expect("DT_STRTAB range")
        })
        .expect("DT_STRTAB mapped")
        .to_vec();
    let string = |off: u64| {
        let rest = &dynstr[off as usize..];
        rest[..rest.iter().position(|&b| b == 0).expect("NUL")].to_vec()
    };
    Parsed {
        segs,
        interp,
        needed: tag(object::elf::DT_NEEDED).map(string).collect(),
        runpath: tag(object::elf::DT_RUNPATH).next().map(string),
        dynstr: dynstr.clone(),
    }
}

impl Parsed {
    /// The `PT_LOAD`s.
    pub(crate) fn loads(&self) -> Vec<Seg> {
        self.segs
            .iter()
            .filter(|s| s.p_type == object::elf::PT_LOAD)
            .copied()
            .collect()
    }
    /// The segment of type `t`.
    pub(crate) fn seg(&self, t: u32) -> Option<Seg> {
        self.segs.iter().find(|s| s.p_type == t).copied()
    }
}
