//! What the store needs to know about a file before adding it: whether it is ELF, its
//! `DT_SONAME`, and whether it is a library, a program or a program interpreter.

use anyhow::{bail, Context, Result};
use resolver::table::Kind;

use crate::elf::{Class, Elf, Endian};

/// `e_type` of a fixed-address executable.
const ET_EXEC: u16 = 2;

/// Facts about an ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfFacts {
    /// `DT_SONAME`, if any.
    pub soname: Option<String>,
    /// What the file is.
    pub kind: Kind,
}

/// Names that an interpreter satisfies by its own soname, so a conversion never rewrites
/// them: glibc's `ld-linux*.so.*` and `ld64.so.*`, musl's `ld-musl-*.so.1`, `ld.so.1`.
pub fn is_interpreter_soname(name: &[u8]) -> bool {
    name.starts_with(b"ld-linux")
        || name.starts_with(b"ld64.so")
        || name.starts_with(b"ld-musl")
        || name == b"ld.so.1"
}

/// `e_entry` of an ELF header (0 when the header is too short to hold it).
fn entry_point(bytes: &[u8], elf: &Elf) -> u64 {
    let field = match elf.class() {
        Class::Elf32 => bytes.get(24..28),
        Class::Elf64 => bytes.get(24..32),
    };
    let Some(field) = field else { return 0 };
    let mut wide = [0u8; 8];
    match elf.endian() {
        Endian::Little => {
            wide[..field.len()].copy_from_slice(field);
            u64::from_le_bytes(wide)
        }
        Endian::Big => {
            wide[8 - field.len()..].copy_from_slice(field);
            u64::from_be_bytes(wide)
        }
    }
}

/// Inspects `bytes`, the contents of the file called `name` in messages.
pub fn elf_facts(bytes: &[u8], name: &str) -> Result<ElfFacts> {
    if !bytes.starts_with(b"\x7fELF") {
        bail!("{name} is not an ELF file");
    }
    let elf = Elf::parse(bytes).with_context(|| format!("{name} is not a valid ELF file"))?;
    let soname = elf
        .soname()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    // A program has an interpreter or a fixed address; libc.so.6 has an interpreter too (it
    // runs to print its version) but, being a library, it has a soname.
    let kind = if elf.file_type() == ET_EXEC || (elf.interpreter().is_some() && soname.is_none()) {
        Kind::Program
    } else if elf.interpreter().is_none()
        && (elf.soname().is_some_and(is_interpreter_soname)
            || (elf.soname().is_none() && elf.needed().is_empty() && entry_point(bytes, &elf) != 0))
    {
        // glibc's ld.so; or musl's, which has no soname, needs nothing and has an entry.
        Kind::Interpreter
    } else {
        Kind::Library
    };
    Ok(ElfFacts { soname, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(path: &str) -> Kind {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e} (scripts/install-deps.sh installs it)"));
        elf_facts(&bytes, path).unwrap().kind
    }

    #[test]
    fn kinds_of_system_files() {
        assert_eq!(kind_of("/lib64/ld-linux-x86-64.so.2"), Kind::Interpreter);
        assert_eq!(kind_of("/lib/ld-musl-x86_64.so.1"), Kind::Interpreter);
        // libc.so.6 has an interpreter (it prints its version when run) but is a library.
        assert_eq!(kind_of("/lib/x86_64-linux-gnu/libc.so.6"), Kind::Library);
        assert_eq!(kind_of("/lib/x86_64-linux-gnu/libz.so.1"), Kind::Library);
        assert_eq!(kind_of("/usr/bin/ls"), Kind::Program);
        assert!(elf_facts(b"#!/bin/sh\n", "script").is_err());
    }
}
