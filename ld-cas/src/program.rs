//! The program being started, as ld-cas reads it: its program headers and dynamic section
//! in memory, each address checked to lie in one of its loaded segments before use.

use crate::cas::URI_PREFIX;
use crate::elf::{
    self, Dyn, Phdr, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE, DT_NEEDED, DT_NULL, DT_RPATH,
    DT_RUNPATH, DT_SONAME, DT_STRSZ, DT_STRTAB, PT_DYNAMIC, PT_INTERP, PT_PHDR,
};

/// The program as mapped in memory (by the kernel, or by ld-cas when run as a command).
/// Every address it holds was checked to lie in one of its loaded segments.
pub struct Program {
    /// Load bias.
    pub bias: usize,
    /// Its dynamic section, up to the end of `PT_DYNAMIC` (empty when that lies outside
    /// its loaded segments).
    pub dynamic: &'static mut [Dyn],
    /// Whether the dynamic section lies in a writable segment (ld-cas edits it there).
    pub dynamic_writable: bool,
    /// Run-time address of its string table.
    pub strtab: usize,
    /// Its string table (`DT_STRSZ` bytes, inside one loaded segment).
    pub strings: &'static [u8],
    /// Its program headers.
    pub phdrs: &'static [Phdr],
    /// Its `PT_INTERP` string (empty if none).
    pub interp: &'static [u8],
    /// What is wrong with it, if ld-cas must not go on (for the message).
    pub problem: Option<&'static str>,
    /// The string-valued dynamic entry that points outside the string table, if any.
    pub bad_tag: Option<&'static str>,
}

/// The name of `tag` if it is one of the string-valued dynamic tags ld.so (or ld-cas)
/// reads (one `match` per entry of the dynamic section, which has dozens).
fn string_tag(tag: i64) -> Option<&'static str> {
    Some(match tag {
        DT_NEEDED => "a DT_NEEDED entry",
        DT_SONAME => "its DT_SONAME",
        DT_RPATH => "its DT_RPATH",
        DT_RUNPATH => "its DT_RUNPATH",
        elf::DT_AUDIT => "its DT_AUDIT",
        0x6fff_fefb => "its DT_DEPAUDIT",
        0x7fff_fffd => "its DT_AUXILIARY",
        0x7fff_ffff => "its DT_FILTER",
        DT_LDCAS_LOADER => "its DT_LDCAS_LOADER",
        DT_LDCAS_STORE => "its DT_LDCAS_STORE",
        DT_LDCAS_TABLE => "its DT_LDCAS_TABLE",
        _ => return None,
    })
}

/// The loaded segment holding `[addr, addr + len)` of an image with headers `ph` and
/// load bias `bias`: its run-time end and whether it is writable.
pub fn segment_of(ph: &[Phdr], bias: usize, addr: usize, len: usize) -> Option<(usize, bool)> {
    ph.iter()
        .filter(|p| p.p_type == elf::PT_LOAD)
        .find_map(|p| {
            let start = bias.wrapping_add(p.p_vaddr as usize);
            let end = start.checked_add(p.p_memsz as usize)?;
            let last = addr.checked_add(len)?;
            (addr >= start && last <= end).then_some((end, p.p_flags & 2 != 0))
        })
}

impl Program {
    /// Reads the program whose headers are at `phdr`. Nothing is read from the image
    /// before it was found to lie in a loaded segment; what does not is left empty and
    /// noted in `problem`.
    ///
    /// # Safety
    /// `phdr`/`phnum` must describe a mapped program image whose `PT_LOAD` segments are
    /// mapped as their headers say.
    pub unsafe fn from_phdrs(phdr: usize, phnum: usize, bias: Option<usize>) -> Program {
        // SAFETY: per the contract (a null address gives no headers).
        let ph: &'static [Phdr] = if phdr == 0 {
            &[]
        } else {
            core::slice::from_raw_parts(phdr as *const Phdr, phnum)
        };
        let bias = bias.unwrap_or_else(|| {
            ph.iter()
                .find(|p| p.p_type == PT_PHDR)
                .map(|p| phdr.wrapping_sub(p.p_vaddr as usize))
                .unwrap_or(0)
        });
        let mut problem = None;
        let mut dynamic_writable = false;
        let dynamic: &'static mut [Dyn] = match ph.iter().find(|p| p.p_type == PT_DYNAMIC) {
            Some(p) => {
                let start = bias.wrapping_add(p.p_vaddr as usize);
                let n = (p.p_memsz / 16) as usize;
                match segment_of(ph, bias, start, n.saturating_mul(16)) {
                    Some((_, w)) if start & 7 == 0 => {
                        dynamic_writable = w;
                        // SAFETY: the range lies in a mapped PT_LOAD and is aligned.
                        core::slice::from_raw_parts_mut(start as *mut Dyn, n)
                    }
                    _ => {
                        problem = Some("its PT_DYNAMIC lies outside its loaded segments");
                        &mut []
                    }
                }
            }
            None => &mut [],
        };
        let mut strtab = 0;
        let mut strsz = 0;
        for d in dynamic.iter().take_while(|d| d.d_tag != DT_NULL) {
            match d.d_tag {
                DT_STRTAB => strtab = bias.wrapping_add(d.d_val as usize),
                DT_STRSZ => strsz = d.d_val as usize,
                _ => {}
            }
        }
        let strings: &'static [u8] = if strtab == 0 {
            &[]
        } else if segment_of(ph, bias, strtab, strsz).is_some() {
            // SAFETY: DT_STRTAB/DT_STRSZ lie in a mapped PT_LOAD.
            core::slice::from_raw_parts(strtab as *const u8, strsz)
        } else {
            problem =
                Some("its string table (DT_STRTAB, DT_STRSZ) lies outside its loaded segments");
            &[]
        };
        let interp: &'static [u8] = match ph.iter().find(|p| p.p_type == PT_INTERP) {
            Some(p) => {
                let start = bias.wrapping_add(p.p_vaddr as usize);
                match segment_of(ph, bias, start, p.p_filesz as usize) {
                    // SAFETY: the string's bytes lie in a mapped PT_LOAD.
                    Some(_) => elf::str_at(
                        core::slice::from_raw_parts(start as *const u8, p.p_filesz as usize),
                        0,
                    ),
                    None => {
                        problem = Some("its PT_INTERP lies outside its loaded segments");
                        &[]
                    }
                }
            }
            None => &[],
        };
        let mut prog = Program {
            bias,
            dynamic,
            dynamic_writable,
            strtab,
            strings,
            phdrs: ph,
            interp,
            problem,
            bad_tag: None,
        };
        prog.bad_tag = prog.bad_string();
        prog
    }

    /// The first string-valued dynamic entry whose offset lies outside the string table
    /// (or whose string runs past its end), which ld.so would read beyond the table.
    fn bad_string(&self) -> Option<&'static str> {
        let strings = self.strings;
        self.entries().find_map(|d| {
            let tag = string_tag(d.d_tag)?;
            let rest = usize::try_from(d.d_val).ok().and_then(|o| strings.get(o..));
            let ok = matches!(rest, Some(rest) if elf::nul_position(rest).is_some());
            if ok {
                None
            } else {
                Some(tag)
            }
        })
    }

    fn entries(&self) -> impl Iterator<Item = &Dyn> {
        self.dynamic.iter().take_while(|d| d.d_tag != DT_NULL)
    }

    /// The string value of the first entry tagged `tag`.
    pub fn tag_str(&self, tag: i64) -> Option<&'static [u8]> {
        let strings = self.strings;
        self.entries()
            .find(|d| d.d_tag == tag)
            .map(|d| elf::str_at(strings, d.d_val))
    }

    /// The value of the first entry tagged `tag`.
    pub fn tag_val(&self, tag: i64) -> Option<u64> {
        self.entries().find(|d| d.d_tag == tag).map(|d| d.d_val)
    }

    /// How many `DT_NEEDED` entries name a library by `uri:`. Only the prefix is read (the
    /// same answer as reading each string to its NUL, which holds no NUL): the names are
    /// read whole once, where they are used.
    pub fn uri_needed_count(&self) -> usize {
        let strings = self.strings;
        self.entries()
            .filter(|d| {
                let rest = usize::try_from(d.d_val)
                    .ok()
                    .and_then(|at| strings.get(at..));
                d.d_tag == DT_NEEDED && matches!(rest, Some(r) if r.starts_with(URI_PREFIX))
            })
            .count()
    }
}
