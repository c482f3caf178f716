//! What the store needs to know about a file before adding it: whether it is ELF, its
//! `DT_SONAME`, and whether it is a library, a program or a program interpreter.

use anyhow::{bail, Context, Result};
use resolver::table::Kind;

use crate::elf::Elf;

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
        && elf
            .soname()
            .is_some_and(|s| is_interpreter_soname(s) || s == b"libc.so")
    {
        // glibc's ld.so, or musl's libc.so, which is its own interpreter.
        Kind::Interpreter
    } else {
        Kind::Library
    };
    Ok(ElfFacts { soname, kind })
}
