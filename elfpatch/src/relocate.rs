//! `elfpatch relocate`: after a store moved together with the ld-cas inside it, point the
//! converted programs' `PT_INTERP` at the store's new ld-cas. Only the interpreter string
//! changes; the rest of each file is left byte for byte.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::elf::{Edit, Elf, DT_LDCAS_LOADER};

/// What relocation did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Relocation {
    /// Programs whose `PT_INTERP` was rewritten where it lies.
    pub in_place: Vec<PathBuf>,
    /// Programs whose new interpreter path was longer than the old one's room, rewritten
    /// whole (atomically) with the interpreter moved.
    pub rewritten: Vec<PathBuf>,
    /// Converted programs that already named the right interpreter.
    pub unchanged: usize,
    /// Bytes written.
    pub bytes_written: u64,
}

/// The programs under `dir` that a conversion wrote (they record their loader).
fn converted_programs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in crate::convert::output::sorted_entries(dir)? {
        let kind = e
            .file_type()
            .with_context(|| format!("cannot stat {}", e.path().display()))?;
        if kind.is_dir() {
            converted_programs(&e.path(), out)?;
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Points every converted program under `bin_dir` at the interpreter `interpreter_for`
/// gives for its ELF machine.
pub fn relocate(bin_dir: &Path, interpreter_for: impl Fn(u16) -> PathBuf) -> Result<Relocation> {
    let mut files = Vec::new();
    converted_programs(bin_dir, &mut files)?;
    let mut report = Relocation::default();
    for path in files {
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(elf) = Elf::parse(&bytes) else {
            continue;
        };
        if elf.dynamic_string(DT_LDCAS_LOADER).is_none() {
            continue;
        }
        let interpreter = interpreter_for(elf.machine);
        let new = interpreter.as_os_str().as_encoded_bytes();
        if elf.interpreter() == Some(new) {
            report.unchanged += 1;
            continue;
        }
        let Some(interp) = elf
            .program_headers()
            .iter()
            .find(|p| p.p_type == 3)
            .copied()
        else {
            continue;
        };
        // The kernel reads p_filesz bytes and requires the last to be NUL; the path ends
        // at the first NUL, so a shorter path padded with NULs fits the same segment.
        if (new.len() as u64) < interp.p_filesz
            && write_in_place(&path, interp.p_offset, interp.p_filesz, new).is_ok()
        {
            report.bytes_written += interp.p_filesz;
            report.in_place.push(path);
            continue;
        }
        let mut edit = Edit::new();
        edit.set_interpreter(interpreter.to_string_lossy());
        let out = edit
            .apply(&bytes)
            .with_context(|| format!("cannot relocate {}", path.display()))?;
        crate::elf::write_atomic(&path, &out)
            .with_context(|| format!("cannot write {}", path.display()))?;
        report.bytes_written += out.len() as u64;
        report.rewritten.push(path);
    }
    Ok(report)
}

/// Overwrites the interpreter string at `offset` (a segment of `room` bytes) with `new`
/// and NUL padding, in the file itself. Fails (and the caller rewrites the file whole)
/// when the file cannot be opened for writing, for example while it runs.
fn write_in_place(path: &Path, offset: u64, room: u64, new: &[u8]) -> std::io::Result<()> {
    let mut field = new.to_vec();
    field.resize(room as usize, 0);
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(&field)?;
    file.sync_all()
}
