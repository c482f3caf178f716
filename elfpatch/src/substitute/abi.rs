//! The ABI check of a substitution (`docs/substitute.md`): what a dependent actually uses of
//! the library it names, and whether the replacement provides it.
//!
//! Read from the dynamic symbol table and the GNU version sections (`object`'s ELF reader,
//! which needs the section headers): the symbols a dependent imports and the version each
//! must have, the version nodes it requires of each file (`.gnu.version_r`), the data
//! objects it copies into itself (`R_*_COPY`); and what a library defines.

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, Rela, SectionHeader, Sym};
use object::{Endianness, SymbolIndex};

/// A symbol a library defines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Its version (`None`: unversioned).
    pub version: Option<Vec<u8>>,
    /// `STT_*`.
    pub kind: u8,
    /// `STB_*`.
    pub bind: u8,
    /// `st_size`.
    pub size: u64,
}

/// What a library provides.
#[derive(Clone, Debug, Default)]
pub struct Provided {
    /// Defined, visible dynamic symbols by name.
    pub symbols: HashMap<Vec<u8>, Vec<Export>>,
    /// Its version definitions.
    pub versions: BTreeSet<Vec<u8>>,
    /// Its `DT_SONAME` (empty when none).
    pub soname: Vec<u8>,
}

/// A symbol a dependent imports.
#[derive(Clone, Debug)]
pub struct Import {
    pub name: Vec<u8>,
    /// The version it requires and the file that version is required of.
    pub version: Option<(Vec<u8>, Vec<u8>)>,
    /// `STT_*` (`STT_NOTYPE` when the dependent does not say).
    pub kind: u8,
}

/// What a dependent uses.
#[derive(Clone, Debug, Default)]
pub struct Used {
    pub imports: Vec<Import>,
    /// (file, version) nodes of `.gnu.version_r`.
    pub version_needs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Data objects copied into the dependent (`R_*_COPY`), by name.
    pub copies: BTreeSet<Vec<u8>>,
}

/// The symbols of one ELF file, whichever its class.
fn read<T>(bytes: &[u8], f: impl Fn(&dyn SymbolSource) -> Result<T>) -> Result<T> {
    let kind = object::FileKind::parse(bytes).context("not an ELF file")?;
    match kind {
        object::FileKind::Elf64 => f(&Source::<elf::FileHeader64<Endianness>>::parse(bytes)?),
        object::FileKind::Elf32 => f(&Source::<elf::FileHeader32<Endianness>>::parse(bytes)?),
        _ => bail!("not an ELF file"),
    }
}

/// One dynamic symbol, as the check needs it.
struct Symbol<'a> {
    name: &'a [u8],
    defined: bool,
    visible: bool,
    kind: u8,
    bind: u8,
    size: u64,
    /// Version name and, for a requirement, the file it is required of.
    version: Option<(&'a [u8], Option<&'a [u8]>)>,
}

/// What the check reads of a file, independent of its class.
trait SymbolSource {
    fn symbols(&self) -> Result<Vec<Symbol<'_>>>;
    fn version_definitions(&self) -> Result<BTreeSet<Vec<u8>>>;
    fn version_needs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    fn copied(&self) -> Result<BTreeSet<Vec<u8>>>;
    fn soname(&self) -> Result<Vec<u8>>;
}

struct Source<'a, E: FileHeader<Endian = Endianness>> {
    data: &'a [u8],
    endian: Endianness,
    header: &'a E,
    sections: object::read::elf::SectionTable<'a, E>,
}

impl<'a, E: FileHeader<Endian = Endianness>> Source<'a, E> {
    fn parse(data: &'a [u8]) -> Result<Self> {
        let header = E::parse(data).context("cannot read the ELF header")?;
        let endian = header.endian().context("cannot read the ELF header")?;
        let sections = header
            .sections(endian, data)
            .context("cannot read the section headers")?;
        if sections.is_empty() {
            bail!("it has no section headers, which the ABI check reads (its symbol versions)");
        }
        Ok(Source {
            data,
            endian,
            header,
            sections,
        })
    }
}

impl<'a, E: FileHeader<Endian = Endianness>> SymbolSource for Source<'a, E> {
    fn symbols(&self) -> Result<Vec<Symbol<'_>>> {
        let table = self
            .sections
            .symbols(self.endian, self.data, elf::SHT_DYNSYM)
            .context("cannot read the dynamic symbols")?;
        let versions = self
            .sections
            .versions(self.endian, self.data)
            .context("cannot read the symbol versions")?;
        let mut out = Vec::new();
        for (i, sym) in table.enumerate() {
            if i.0 == 0 {
                continue;
            }
            let name = sym
                .name(self.endian, table.strings())
                .context("cannot read a symbol name")?;
            let version = match &versions {
                Some(v) => v
                    .version(v.version_index(self.endian, SymbolIndex(i.0)))
                    .context("a symbol has an invalid version index")?
                    .map(|ver| (ver.name(), ver.file())),
                None => None,
            };
            out.push(Symbol {
                name,
                defined: !sym.is_undefined(self.endian),
                visible: matches!(
                    sym.st_bind(),
                    elf::STB_GLOBAL | elf::STB_WEAK | elf::STB_GNU_UNIQUE
                ) && matches!(sym.st_visibility(), elf::STV_DEFAULT | elf::STV_PROTECTED),
                kind: sym.st_type(),
                bind: sym.st_bind(),
                size: sym.st_size(self.endian).into(),
                version,
            });
        }
        Ok(out)
    }

    fn version_definitions(&self) -> Result<BTreeSet<Vec<u8>>> {
        let mut out = BTreeSet::new();
        if let Some((mut defs, link)) = self
            .sections
            .gnu_verdef(self.endian, self.data)
            .context("cannot read .gnu.version_d")?
        {
            let strings = self
                .sections
                .strings(self.endian, self.data, link)
                .context("cannot read the version strings")?;
            while let Some((def, mut aux)) = defs.next().context("cannot read .gnu.version_d")? {
                if def.vd_flags.get(self.endian) & elf::VER_FLG_BASE != 0 {
                    continue;
                }
                if let Some(a) = aux.next().context("cannot read .gnu.version_d")? {
                    out.insert(
                        a.name(self.endian, strings)
                            .context("a version name")?
                            .to_vec(),
                    );
                }
            }
        }
        Ok(out)
    }

    fn version_needs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        if let Some((mut needs, link)) = self
            .sections
            .gnu_verneed(self.endian, self.data)
            .context("cannot read .gnu.version_r")?
        {
            let strings = self
                .sections
                .strings(self.endian, self.data, link)
                .context("cannot read the version strings")?;
            while let Some((need, mut aux)) = needs.next().context("cannot read .gnu.version_r")? {
                let file = need
                    .file(self.endian, strings)
                    .context("a vn_file")?
                    .to_vec();
                while let Some(a) = aux.next().context("cannot read .gnu.version_r")? {
                    out.push((
                        file.clone(),
                        a.name(self.endian, strings)
                            .context("a version name")?
                            .to_vec(),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn copied(&self) -> Result<BTreeSet<Vec<u8>>> {
        let copy = match self.header.e_machine(self.endian) {
            elf::EM_X86_64 => elf::R_X86_64_COPY,
            elf::EM_AARCH64 => elf::R_AARCH64_COPY,
            elf::EM_386 => elf::R_386_COPY,
            elf::EM_ARM => elf::R_ARM_COPY,
            _ => return Ok(BTreeSet::new()),
        };
        let table = self
            .sections
            .symbols(self.endian, self.data, elf::SHT_DYNSYM)
            .context("cannot read the dynamic symbols")?;
        let mut out = BTreeSet::new();
        for section in self.sections.iter() {
            if section.sh_type(self.endian) != elf::SHT_RELA {
                continue;
            }
            let Some((relas, _)) = section
                .rela(self.endian, self.data)
                .context("cannot read relocations")?
            else {
                continue;
            };
            for r in relas {
                if r.r_type(self.endian, false) == copy {
                    let sym = table
                        .symbol(SymbolIndex(r.r_sym(self.endian, false) as usize))
                        .context("a copy relocation names no symbol")?;
                    out.insert(
                        sym.name(self.endian, table.strings())
                            .context("a symbol name")?
                            .to_vec(),
                    );
                }
            }
        }
        Ok(out)
    }

    fn soname(&self) -> Result<Vec<u8>> {
        let elf = crate::elf::Elf::parse(self.data)?;
        Ok(elf.soname().map(<[u8]>::to_vec).unwrap_or_default())
    }
}

/// What the library `bytes` provides.
pub fn provided(bytes: &[u8]) -> Result<Provided> {
    read(bytes, |src| {
        let mut symbols: HashMap<Vec<u8>, Vec<Export>> = HashMap::new();
        for s in src.symbols()? {
            if s.defined && s.visible {
                symbols.entry(s.name.to_vec()).or_default().push(Export {
                    version: s.version.map(|(v, _)| v.to_vec()),
                    kind: s.kind,
                    bind: s.bind,
                    size: s.size,
                });
            }
        }
        Ok(Provided {
            symbols,
            versions: src.version_definitions()?,
            soname: src.soname()?,
        })
    })
}

/// What the dependent `bytes` uses of any library.
pub fn used(bytes: &[u8]) -> Result<Used> {
    read(bytes, |src| {
        // A copied data object is defined in the dependent (the copy), yet it comes from
        // the library: it is an import too.
        let copies = src.copied()?;
        let imports = src
            .symbols()?
            .into_iter()
            .filter(|s| !s.defined || copies.contains(s.name))
            .map(|s| Import {
                name: s.name.to_vec(),
                version: s
                    .version
                    .and_then(|(v, file)| file.map(|f| (v.to_vec(), f.to_vec()))),
                kind: s.kind,
            })
            .collect();
        Ok(Used {
            imports,
            version_needs: src.version_needs()?,
            copies,
        })
    })
}

/// Why `new` cannot stand in for `old` under a dependent that uses `used` and names `old`
/// by `old_name` (its URI): every problem, each naming the symbol or version.
pub fn incompatibilities(
    used: &Used,
    old_name: &[u8],
    old: &Provided,
    new: &Provided,
    allow_soname_change: bool,
) -> Vec<String> {
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut problems = Vec::new();
    if old.soname != new.soname && !allow_soname_change {
        problems.push(format!(
            "the soname changes from {} to {} (--allow-soname-change to accept)",
            show(&old.soname),
            show(&new.soname)
        ));
    }
    for (file, version) in &used.version_needs {
        if file == old_name && !new.versions.contains(version) {
            problems.push(format!("the version node {} is missing", show(version)));
        }
    }
    for import in &used.imports {
        // A versioned import names its file; an unversioned one is whatever defines it.
        let from_old = match &import.version {
            Some((_, file)) => file == old_name,
            None => old.symbols.contains_key(&import.name),
        };
        if !from_old {
            continue;
        }
        let wanted = import.version.as_ref().map(|(v, _)| v);
        let fits = |e: &Export| wanted.is_none_or(|v| e.version.as_ref() == Some(v));
        let name = show(&import.name);
        let at = wanted.map(|v| format!("@{}", show(v))).unwrap_or_default();
        let Some(new_def) = new
            .symbols
            .get(&import.name)
            .and_then(|d| d.iter().find(|e| fits(e)))
        else {
            problems.push(format!("the symbol {name}{at} is not defined"));
            continue;
        };
        let old_def = old
            .symbols
            .get(&import.name)
            .and_then(|d| d.iter().find(|e| fits(e)));
        if let Some(old_def) = old_def {
            if old_def.kind != new_def.kind {
                problems.push(format!(
                    "the symbol {name}{at} changes type ({} to {})",
                    old_def.kind, new_def.kind
                ));
            }
            if old_def.bind != new_def.bind {
                problems.push(format!(
                    "the symbol {name}{at} changes binding ({} to {})",
                    bind_name(old_def.bind),
                    bind_name(new_def.bind)
                ));
            }
            if used.copies.contains(&import.name) && old_def.size != new_def.size {
                problems.push(format!(
                    "the data object {name}{at}, which the dependent copies, changes size ({} to {} bytes)",
                    old_def.size, new_def.size
                ));
            }
        }
    }
    problems
}

/// The name of an `STB_*` binding.
fn bind_name(bind: u8) -> &'static str {
    match bind {
        elf::STB_GLOBAL => "global",
        elf::STB_WEAK => "weak",
        elf::STB_GNU_UNIQUE => "unique",
        _ => "local",
    }
}
