//! Just enough of ELF64 (little-endian) for ld-cas: program headers, the dynamic section
//! and its string table, read either from a mapped image in memory or from file bytes.

use resolver_core::tags;

/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_DYNAMIC`.
pub const PT_DYNAMIC: u32 = 2;
/// `PT_PHDR`.
pub const PT_PHDR: u32 = 6;
/// Segment flag: writable.
pub const PF_W: u32 = 2;

/// `DT_NULL`.
pub const DT_NULL: i64 = 0;
/// `DT_NEEDED`.
pub const DT_NEEDED: i64 = 1;
/// `DT_STRTAB`.
pub const DT_STRTAB: i64 = 5;
/// `DT_STRSZ`.
pub const DT_STRSZ: i64 = 10;
/// `DT_VERNEED`: address of `.gnu.version_r`.
pub const DT_VERNEED: i64 = 0x6fff_fffe;
/// `DT_VERNEEDNUM`: its number of entries.
pub const DT_VERNEEDNUM: i64 = 0x6fff_ffff;
/// `DT_SONAME`.
pub const DT_SONAME: i64 = 14;
/// `DT_AUDIT`: a colon-separated list of audit libraries (glibc ≥ 2.32).
pub const DT_AUDIT: i64 = 0x6fff_fefc;
// ld-cas's own tags (`resolver_core::tags`) as this module's signed `d_tag`: their values
// are below 2^31, so the conversion is exact.
/// [`tags::DT_LDCAS_LOADER`]: the URI of the real loader that goes with the program's libc.
pub const DT_LDCAS_LOADER: i64 = tags::DT_LDCAS_LOADER as i64;
/// [`tags::DT_LDCAS_STORE`]: the store directory.
pub const DT_LDCAS_STORE: i64 = tags::DT_LDCAS_STORE as i64;
/// [`tags::DT_LDCAS_HOOK`]: written by ld-cas in memory only, its hooks for its audit copy.
pub const DT_LDCAS_HOOK: i64 = tags::DT_LDCAS_HOOK as i64;
/// [`tags::DT_LDCAS_TABLE`]: the directory holding the table and its index.
pub const DT_LDCAS_TABLE: i64 = tags::DT_LDCAS_TABLE as i64;
/// [`tags::DT_LDCAS_FLAGS`]: a set of `LDCAS_FLAG_*` bits.
pub const DT_LDCAS_FLAGS: i64 = tags::DT_LDCAS_FLAGS as i64;
// Unused where this module is compiled into a fuzz target on its own.
#[allow(unused_imports)]
pub use tags::{LDCAS_FLAG_INDEX_FIRST, LDCAS_FLAG_NAME_SERVICE, LDCAS_FLAG_STORE_OF_INTERP};
/// `DT_RPATH`.
pub const DT_RPATH: i64 = 15;
/// `DT_RUNPATH`.
pub const DT_RUNPATH: i64 = 29;
/// `PT_INTERP`.
pub const PT_INTERP: u32 = 3;

/// `ET_DYN`.
pub const ET_DYN: u16 = 3;
/// `ET_EXEC`.
pub const ET_EXEC: u16 = 2;

/// An ELF64 program header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Phdr {
    /// Segment type.
    pub p_type: u32,
    /// `PF_X` = 1, `PF_W` = 2, `PF_R` = 4.
    pub p_flags: u32,
    /// File offset.
    pub p_offset: u64,
    /// Virtual address (before the load bias).
    pub p_vaddr: u64,
    /// Unused physical address.
    pub p_paddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory.
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}

/// An ELF64 dynamic-section entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Dyn {
    /// Tag (`DT_*`).
    pub d_tag: i64,
    /// Value or address.
    pub d_val: u64,
}

/// The fields of an ELF header ld-cas uses.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    /// `e_type`.
    pub e_type: u16,
    /// `e_machine`.
    pub e_machine: u16,
    /// Entry point (before the load bias).
    pub e_entry: u64,
    /// Offset of the program headers.
    pub e_phoff: u64,
    /// Number of program headers.
    pub e_phnum: u16,
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    let s = b.get(o..o.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    let s = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    let s = b.get(o..o.checked_add(8)?)?;
    // An array, not `copy_from_slice`, which stays a call in the size-optimised build.
    Some(u64::from_le_bytes(<[u8; 8]>::try_from(s).ok()?))
}

/// Parses and checks an ELF header: 64-bit, little-endian, this machine, `ET_DYN`/`ET_EXEC`.
pub fn header(b: &[u8], machine: u16) -> Option<Header> {
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let h = Header {
        e_type: u16_at(b, 16)?,
        e_machine: u16_at(b, 18)?,
        e_entry: u64_at(b, 24)?,
        e_phoff: u64_at(b, 32)?,
        e_phnum: u16_at(b, 56)?,
    };
    if h.e_machine != machine || (h.e_type != ET_DYN && h.e_type != ET_EXEC) || u16_at(b, 54)? != 56
    {
        return None;
    }
    Some(h)
}

/// Reads program header `i` from file bytes.
pub fn phdr(b: &[u8], h: &Header, i: usize) -> Option<Phdr> {
    let o = usize::try_from(h.e_phoff)
        .ok()?
        .checked_add(i.checked_mul(56)?)?;
    // The header's last byte must be addressable, so no field offset below overflows.
    o.checked_add(56)?;
    Some(Phdr {
        p_type: u32_at(b, o)?,
        p_flags: u32_at(b, o + 4)?,
        p_offset: u64_at(b, o + 8)?,
        p_vaddr: u64_at(b, o + 16)?,
        p_paddr: u64_at(b, o + 24)?,
        p_filesz: u64_at(b, o + 32)?,
        p_memsz: u64_at(b, o + 40)?,
        p_align: u64_at(b, o + 48)?,
    })
}

/// An ELF file's bytes (usually a read-only mapping) with bounds-checked access to its
/// dynamic section. Never panics and never reads out of bounds on malformed input.
pub struct File<'a> {
    /// The whole file.
    pub data: &'a [u8],
    /// Its header.
    pub header: Header,
}

impl<'a> File<'a> {
    /// Checks the header of `data`.
    pub fn parse(data: &'a [u8], machine: u16) -> Option<File<'a>> {
        Some(File {
            data,
            header: header(data, machine)?,
        })
    }

    /// The program headers.
    pub fn phdrs(&self) -> impl Iterator<Item = Phdr> + '_ {
        (0..self.header.e_phnum as usize).filter_map(move |i| phdr(self.data, &self.header, i))
    }

    /// The file offset of virtual address `vaddr`, through the `PT_LOAD` that holds it.
    pub fn offset_of(&self, vaddr: u64) -> Option<usize> {
        self.phdrs()
            .filter(|p| p.p_type == PT_LOAD)
            .find(|p| vaddr >= p.p_vaddr && vaddr - p.p_vaddr < p.p_filesz)
            .and_then(|p| usize::try_from((vaddr - p.p_vaddr).checked_add(p.p_offset)?).ok())
    }

    /// The dynamic entries, up to `DT_NULL`.
    pub fn dynamic(&self) -> impl Iterator<Item = Dyn> + '_ {
        let dynp = self.phdrs().find(|p| p.p_type == PT_DYNAMIC);
        let (off, n) = match dynp {
            // An offset past the address space reads nothing (`u64_at` checks the rest).
            Some(p) => (
                usize::try_from(p.p_offset).unwrap_or(usize::MAX),
                usize::try_from(p.p_filesz / 16).unwrap_or(0),
            ),
            None => (0, 0),
        };
        (0..n)
            .map(move |i| {
                let o = off.checked_add(i.checked_mul(16)?)?;
                Some(Dyn {
                    d_tag: u64_at(self.data, o)? as i64,
                    d_val: u64_at(self.data, o.checked_add(8)?)?,
                })
            })
            .take_while(|d| matches!(d, Some(d) if d.d_tag != DT_NULL))
            .flatten()
    }

    /// The dynamic string table.
    pub fn strtab(&self) -> &'a [u8] {
        let mut addr = None;
        let mut size = 0u64;
        for d in self.dynamic() {
            match d.d_tag {
                DT_STRTAB => addr = Some(d.d_val),
                DT_STRSZ => size = d.d_val,
                _ => {}
            }
        }
        let start = match addr.and_then(|a| self.offset_of(a)) {
            Some(s) => s,
            None => return &[],
        };
        let end = (start as u64)
            .saturating_add(size)
            .min(self.data.len() as u64) as usize;
        self.data.get(start..end).unwrap_or(&[])
    }

    /// The string at `off` in the dynamic string table (empty when out of bounds).
    pub fn string(&self, off: u64) -> &'a [u8] {
        str_at(self.strtab(), off)
    }

    /// The `DT_NEEDED` names, in order.
    pub fn needed(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.dynamic()
            .filter(|d| d.d_tag == DT_NEEDED)
            .map(move |d| self.string(d.d_val))
    }

    /// The value of the first entry tagged `tag`.
    pub fn tag(&self, tag: i64) -> Option<u64> {
        self.dynamic().find(|d| d.d_tag == tag).map(|d| d.d_val)
    }
}

/// The NUL-terminated string at `off` of `tab` (without the NUL; empty when out of bounds).
pub fn str_at(tab: &[u8], off: u64) -> &[u8] {
    let rest = match tab.get(off as usize..) {
        Some(r) if off <= usize::MAX as u64 => r,
        _ => return &[],
    };
    match nul_position(rest) {
        Some(n) => &rest[..n],
        None => rest,
    }
}

pub use resolver_core::bytes::nul_position;

#[cfg(test)]
mod tests {
    use super::str_at;

    #[test]
    fn strings_of_a_table() {
        let tab = b"\0libc.so.6\0uri:blake3:00\0tail";
        assert_eq!(str_at(tab, 0), b"");
        assert_eq!(str_at(tab, 1), b"libc.so.6");
        assert_eq!(str_at(tab, 5), b".so.6");
        assert_eq!(str_at(tab, 11), b"uri:blake3:00");
        assert_eq!(str_at(tab, 25), b"tail");
        assert_eq!(str_at(tab, tab.len() as u64), b"");
        assert_eq!(str_at(tab, tab.len() as u64 + 1), b"");
        assert_eq!(str_at(tab, u64::MAX), b"");
    }
}
