//! The verify pass: structural checks every output must pass before it is written.
//!
//! A check that fails on the output but already failed on the input (say, a W+X segment
//! the linker made) is the input's own property, not damage done by the edit; the edit is
//! refused only for problems it introduced.

use super::codec::{cstr, Phdr};
use super::consts::*;
use super::error::{Error, Result};
use super::parse::Elf;
use super::tables;

/// One problem found by the verify pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// A short, stable name of the check.
    pub check: &'static str,
    /// What is wrong and where.
    pub detail: String,
}

fn mapped(loads: &[&Phdr], vaddr: u64) -> bool {
    loads
        .iter()
        .any(|p| vaddr >= p.p_vaddr && vaddr < p.mem_end())
}

/// Runs every check on `data`; an empty list means the file passed.
pub fn findings(data: &[u8]) -> Vec<Finding> {
    let mut f = Vec::new();
    let mut add = |check: &'static str, detail: String| f.push(Finding { check, detail });
    let elf = match Elf::parse(data) {
        Ok(e) => e,
        Err(e) => {
            add("parse", e.to_string());
            return f;
        }
    };
    let len = data.len() as u64;
    // A PT_LOAD of no bytes maps nothing (linker scripts leave such segments, with any
    // offset and address): it cannot overlap, be misaligned or hold anything.
    let loads: Vec<&Phdr> = elf
        .phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD && (p.p_memsz > 0 || p.p_filesz > 0))
        .collect();
    check_loads(&loads, len, &mut add);
    check_segments(&elf, data, &loads, &mut add);
    check_dynamic(&elf, &loads, &mut add);
    check_sections(&elf, &loads, &mut add);
    check_verneed(&elf, &mut add);
    f
}

/// True when a `PT_LOAD` maps the `size` file bytes at `off` at address `vaddr`.
fn in_load(loads: &[&Phdr], off: u64, vaddr: u64, size: u64) -> bool {
    loads.iter().any(|p| {
        vaddr >= p.p_vaddr
            && vaddr.saturating_add(size) <= p.p_vaddr.saturating_add(p.p_filesz)
            && vaddr - p.p_vaddr == off.wrapping_sub(p.p_offset)
    })
}

/// `PT_LOAD`s: inside the file, `p_filesz <= p_memsz`, aligned, not W+X, sorted, disjoint.
fn check_loads(loads: &[&Phdr], len: u64, add: &mut impl FnMut(&'static str, String)) {
    let mut prev: Option<&Phdr> = None;
    for (i, p) in loads.iter().enumerate() {
        if p.file_end() > len {
            add(
                "load-past-eof",
                format!(
                    "PT_LOAD #{i} file range ends at {:#x}, file is {len:#x}",
                    p.file_end()
                ),
            );
        }
        if p.p_filesz > p.p_memsz {
            add(
                "load-filesz",
                format!("PT_LOAD #{i} at {:#x}: p_filesz > p_memsz", p.p_vaddr),
            );
        }
        if p.p_align > 1
            && (!p.p_align.is_power_of_two() || p.p_offset % p.p_align != p.p_vaddr % p.p_align)
        {
            add(
                "load-align",
                format!(
                    "PT_LOAD #{i}: offset {:#x} and vaddr {:#x} not congruent modulo {:#x}",
                    p.p_offset, p.p_vaddr, p.p_align
                ),
            );
        }
        if p.p_flags & PF_W != 0 && p.p_flags & PF_X != 0 {
            add(
                "load-wx",
                format!(
                    "PT_LOAD #{i} at {:#x} is writable and executable",
                    p.p_vaddr
                ),
            );
        }
        if let Some(q) = prev {
            if p.p_vaddr < q.p_vaddr {
                add(
                    "load-order",
                    format!("PT_LOAD #{i} at {:#x} is not sorted by address", p.p_vaddr),
                );
            } else if p.p_vaddr < q.mem_end() {
                add(
                    "load-overlap",
                    format!(
                        "PT_LOAD #{i} at {:#x} overlaps the previous one (ends {:#x})",
                        p.p_vaddr,
                        q.mem_end()
                    ),
                );
            }
        }
        prev = Some(p);
    }
}

/// `PT_PHDR`, `PT_INTERP` and `PT_DYNAMIC`: mapped, and what each needs of its segment.
fn check_segments(
    elf: &Elf,
    data: &[u8],
    loads: &[&Phdr],
    add: &mut impl FnMut(&'static str, String),
) {
    let len = data.len() as u64;
    for p in &elf.phdrs {
        let covered = in_load(loads, p.p_offset, p.p_vaddr, p.p_filesz);
        let unmapped =
            |name: &str| format!("{name} at {:#x} is not covered by a PT_LOAD", p.p_vaddr);
        match p.p_type {
            PT_PHDR => {
                if p.p_offset != elf.phoff {
                    add(
                        "phdr",
                        format!(
                            "PT_PHDR offset {:#x} differs from e_phoff {:#x}",
                            p.p_offset, elf.phoff
                        ),
                    );
                }
                if !covered {
                    add("phdr", unmapped("PT_PHDR"));
                }
            }
            PT_INTERP => {
                if !covered {
                    add("interp", unmapped("PT_INTERP"));
                }
                let s = data
                    .get(p.p_offset as usize..p.file_end().min(len) as usize)
                    .unwrap_or(&[]);
                if !s.contains(&0) {
                    add(
                        "interp",
                        format!("PT_INTERP at {:#x} is not NUL-terminated", p.p_offset),
                    );
                }
            }
            PT_DYNAMIC => {
                if !covered {
                    add("dynamic-unmapped", unmapped("PT_DYNAMIC"));
                } else if !loads.iter().any(|l| {
                    l.p_flags & PF_W != 0 && p.p_vaddr >= l.p_vaddr && p.p_vaddr < l.mem_end()
                }) {
                    add(
                        "dynamic-readonly",
                        format!("PT_DYNAMIC at {:#x} is in a read-only segment", p.p_vaddr),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Dynamic tags: addresses mapped, string offsets inside a NUL-terminated `.dynstr`.
fn check_dynamic(elf: &Elf, loads: &[&Phdr], add: &mut impl FnMut(&'static str, String)) {
    if let Some(d) = &elf.dynamic {
        for &(tag, val) in &d.entries {
            if let Some(&(_, name)) = ADDRESS_TAGS.iter().find(|t| t.0 == tag) {
                if val != 0 && !mapped(loads, val) {
                    add(
                        "tag-unmapped",
                        format!("{name} = {val:#x} is outside every PT_LOAD"),
                    );
                }
            }
            if is_string_tag(tag) && cstr(elf.strtab_bytes(), val).is_none() {
                add(
                    "tag-string",
                    format!(
                        "dynamic tag {tag:#x}: string table index out of bounds ({val:#x} is \
                         outside .dynstr)"
                    ),
                );
            }
        }
        match elf.strtab_bytes().last() {
            _ if elf.strtab.is_none() => add(
                "dynstr",
                "dynamic section without DT_STRTAB/DT_STRSZ".into(),
            ),
            Some(&b) if b != 0 => add(
                "dynstr",
                format!(
                    "string table is not NUL-terminated: .dynstr at DT_STRTAB {:#x}",
                    elf.strtab.as_ref().map_or(0, |s| s.vaddr)
                ),
            ),
            _ => {}
        }
    }
}

/// Section headers: `.dynstr` and `.dynamic` agree with the tags, allocated sections are
/// mapped.
fn check_sections(elf: &Elf, loads: &[&Phdr], add: &mut impl FnMut(&'static str, String)) {
    for s in &elf.sections {
        let h = &s.hdr;
        if s.name == b".dynstr" {
            match &elf.strtab {
                Some(st) if st.vaddr == h.sh_addr && st.size == h.sh_size && st.offset == h.sh_offset => {}
                Some(st) => add(
                    "dynstr-section",
                    format!(".dynstr section ({:#x}, {:#x} bytes) differs from DT_STRTAB {:#x} / DT_STRSZ {:#x}", h.sh_addr, h.sh_size, st.vaddr, st.size),
                ),
                None => {}
            }
        }
        if h.sh_type == SHT_DYNAMIC {
            if let Some(d) = &elf.dynamic {
                if d.offset != h.sh_offset || d.vaddr != h.sh_addr {
                    add(
                        "dynamic-section",
                        format!(
                            ".dynamic section at {:#x} differs from PT_DYNAMIC {:#x}",
                            h.sh_offset, d.offset
                        ),
                    );
                }
            }
        }
        if h.sh_flags & SHF_ALLOC != 0
            && h.sh_type != SHT_NOBITS
            && h.sh_size > 0
            && !elf.phdrs.is_empty()
            && !in_load(loads, h.sh_offset, h.sh_addr, h.sh_size)
        {
            add(
                "section-outside",
                format!(
                    "section {} at {:#x} is not inside a PT_LOAD",
                    String::from_utf8_lossy(&s.name),
                    h.sh_addr
                ),
            );
        }
    }
}

/// `.gnu.version_r` reads, and its file names are in `.dynstr`.
fn check_verneed(elf: &Elf, add: &mut impl FnMut(&'static str, String)) {
    match tables::read_verneed(elf) {
        Ok(Some(t)) => {
            for v in &t.entries {
                if elf.dynstr(u64::from(v.file)).is_none() {
                    add(
                        "verneed",
                        format!(
                            ".gnu.version_r vn_file: string table index out of bounds ({:#x} \
                             is outside .dynstr)",
                            v.file
                        ),
                    );
                }
            }
        }
        Ok(None) => {}
        Err(e) => add("verneed", e.to_string()),
    }
}

/// Checks that make a file unsafe to edit or to read tags from: segments past the end of
/// the file or overlapping, misaligned, string offsets outside the table.
const SEVERE: &[&str] = &[
    "parse",
    "load-past-eof",
    "load-filesz",
    "load-align",
    "load-overlap",
    "load-order",
    "tag-string",
    "verneed",
    "dynstr",
];

/// Refuses inputs with structural damage (see `SEVERE`), whatever the edit.
pub fn check_input(data: &[u8]) -> Result<()> {
    let bad: Vec<Finding> = findings(data)
        .into_iter()
        .filter(|f| SEVERE.contains(&f.check))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::Malformed(join(&bad)))
    }
}

/// Checks `data`; the error lists every problem found.
pub fn verify(data: &[u8]) -> Result<()> {
    let f = findings(data);
    if f.is_empty() {
        Ok(())
    } else {
        Err(Error::Verify(join(&f)))
    }
}

fn join(f: &[Finding]) -> String {
    f.iter()
        .map(|x| format!("{}: {}", x.check, x.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks an edit's output against its input: fails on any check that the output fails
/// and the input passed.
pub fn verify_edit(input: &[u8], output: &[u8]) -> Result<()> {
    let before = findings(input);
    let new: Vec<Finding> = findings(output)
        .into_iter()
        .filter(|x| !before.iter().any(|b| b.check == x.check))
        .collect();
    if new.is_empty() {
        Ok(())
    } else {
        Err(Error::Verify(join(&new)))
    }
}
