//! ELF constants the engine uses (kept in one place; values from the gABI and glibc's elf.h).

// The gABI's and glibc's values, as `object` has them; dynamic tags and section flags
// widened to the 64-bit words the engine works in.
pub use object::elf::{EM_MIPS, ET_EXEC};
pub use object::elf::{
    PF_R, PF_W, PF_X, PT_DYNAMIC, PT_GNU_PROPERTY, PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP, PT_LOAD,
    PT_NOTE, PT_NULL, PT_PHDR, SHT_DYNAMIC, SHT_DYNSYM, SHT_GNU_HASH, SHT_GNU_VERDEF,
    SHT_GNU_VERNEED, SHT_GNU_VERSYM, SHT_HASH, SHT_NOBITS, SHT_NOTE, SHT_PROGBITS, SHT_REL,
    SHT_RELA, SHT_RELR, SHT_STRTAB, SHT_SYMTAB,
};

pub const SHF_ALLOC: u64 = object::elf::SHF_ALLOC as u64;
pub const SHF_TLS: u64 = object::elf::SHF_TLS as u64;

pub const DT_NULL: u64 = object::elf::DT_NULL as u64;
pub const DT_NEEDED: u64 = object::elf::DT_NEEDED as u64;
pub const DT_PLTRELSZ: u64 = object::elf::DT_PLTRELSZ as u64;
pub const DT_PLTGOT: u64 = object::elf::DT_PLTGOT as u64;
pub const DT_HASH: u64 = object::elf::DT_HASH as u64;
pub const DT_STRTAB: u64 = object::elf::DT_STRTAB as u64;
pub const DT_SYMTAB: u64 = object::elf::DT_SYMTAB as u64;
pub const DT_RELA: u64 = object::elf::DT_RELA as u64;
pub const DT_RELASZ: u64 = object::elf::DT_RELASZ as u64;
pub const DT_STRSZ: u64 = object::elf::DT_STRSZ as u64;
pub const DT_INIT: u64 = object::elf::DT_INIT as u64;
pub const DT_FINI: u64 = object::elf::DT_FINI as u64;
pub const DT_SONAME: u64 = object::elf::DT_SONAME as u64;
pub const DT_RPATH: u64 = object::elf::DT_RPATH as u64;
pub const DT_REL: u64 = object::elf::DT_REL as u64;
pub const DT_RELSZ: u64 = object::elf::DT_RELSZ as u64;
pub const DT_PLTREL: u64 = object::elf::DT_PLTREL as u64;
pub const DT_DEBUG: u64 = object::elf::DT_DEBUG as u64;
pub const DT_JMPREL: u64 = object::elf::DT_JMPREL as u64;
pub const DT_INIT_ARRAY: u64 = object::elf::DT_INIT_ARRAY as u64;
pub const DT_FINI_ARRAY: u64 = object::elf::DT_FINI_ARRAY as u64;
pub const DT_RUNPATH: u64 = object::elf::DT_RUNPATH as u64;
pub const DT_PREINIT_ARRAY: u64 = object::elf::DT_PREINIT_ARRAY as u64;
pub const DT_FLAGS_1: u64 = object::elf::DT_FLAGS_1 as u64;
pub const DT_GNU_HASH: u64 = object::elf::DT_GNU_HASH as u64;
pub const DT_VERSYM: u64 = object::elf::DT_VERSYM as u64;
pub const DT_RELACOUNT: u64 = object::elf::DT_RELACOUNT as u64;
pub const DT_RELCOUNT: u64 = object::elf::DT_RELCOUNT as u64;
pub const DT_VERDEF: u64 = object::elf::DT_VERDEF as u64;
pub const DT_VERDEFNUM: u64 = object::elf::DT_VERDEFNUM as u64;
pub const DT_VERNEED: u64 = object::elf::DT_VERNEED as u64;
pub const DT_VERNEEDNUM: u64 = object::elf::DT_VERNEEDNUM as u64;
pub const DT_AUXILIARY: u64 = object::elf::DT_AUXILIARY as u64;
pub const DT_FILTER: u64 = object::elf::DT_FILTER as u64;
pub const DT_CONFIG: u64 = object::elf::DT_CONFIG as u64;
pub const DT_DEPAUDIT: u64 = object::elf::DT_DEPAUDIT as u64;
pub const DT_AUDIT: u64 = object::elf::DT_AUDIT as u64;
/// `DT_RELRSZ` and `DT_RELR` (newer than `object`'s list).
pub const DT_RELRSZ: u64 = 35;
pub const DT_RELR: u64 = 36;
pub const DF_1_NODEFLIB: u64 = object::elf::DF_1_NODEFLIB as u64;

pub use resolver::tags::{
    DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE, LDCAS_FLAG_INDEX_FIRST,
    LDCAS_FLAG_NAME_SERVICE,
};

/// Tags whose value is a `.dynstr` offset (besides ld-cas's own, see [`is_string_tag`]).
const STRING_TAGS: &[u64] = &[
    DT_NEEDED,
    DT_SONAME,
    DT_RPATH,
    DT_RUNPATH,
    DT_AUXILIARY,
    DT_FILTER,
    DT_CONFIG,
    DT_DEPAUDIT,
    DT_AUDIT,
    DT_LDCAS_LOADER,
    DT_LDCAS_STORE,
    DT_LDCAS_TABLE,
];

/// Tags whose value is an address (checked by the verify pass: it must be mapped).
pub const ADDRESS_TAGS: &[(u64, &str)] = &[
    (DT_PLTGOT, "DT_PLTGOT"),
    (DT_HASH, "DT_HASH"),
    (DT_STRTAB, "DT_STRTAB"),
    (DT_SYMTAB, "DT_SYMTAB"),
    (DT_RELA, "DT_RELA"),
    (DT_INIT, "DT_INIT"),
    (DT_FINI, "DT_FINI"),
    (DT_REL, "DT_REL"),
    (DT_JMPREL, "DT_JMPREL"),
    (DT_INIT_ARRAY, "DT_INIT_ARRAY"),
    (DT_FINI_ARRAY, "DT_FINI_ARRAY"),
    (DT_PREINIT_ARRAY, "DT_PREINIT_ARRAY"),
    (DT_RELR, "DT_RELR"),
    (DT_GNU_HASH, "DT_GNU_HASH"),
    (DT_VERSYM, "DT_VERSYM"),
    (DT_VERDEF, "DT_VERDEF"),
    (DT_VERNEED, "DT_VERNEED"),
];

/// True when `tag`'s value is known to be a `.dynstr` offset.
pub fn is_string_tag(tag: u64) -> bool {
    STRING_TAGS.contains(&tag)
}

/// True for tags known to hold something other than a string offset; unknown tags are
/// treated as possibly holding one (so their strings are never scrubbed).
pub fn is_known_non_string_tag(tag: u64) -> bool {
    tag <= 35 && !is_string_tag(tag)
        || ADDRESS_TAGS.iter().any(|&(t, _)| t == tag)
        || matches!(
            tag,
            DT_VERDEFNUM | DT_VERNEEDNUM | DT_FLAGS_1 | DT_RELACOUNT | DT_RELCOUNT | DT_LDCAS_FLAGS
        )
}

/// The maximum page size the linkers use for `machine` (`e_machine`): the alignment that a
/// new `PT_LOAD` needs so the target's kernel can map it, whatever the host's page size.
pub fn max_page_size(machine: u16) -> u64 {
    match machine {
        3 | 62 | 243 | 6 => 0x1000,               // i386, x86_64, riscv, i486
        22 => 0x1000,                             // s390
        2 | 18 | 43 => 0x10_0000,                 // sparc, sparc32plus, sparcv9
        183 | 40 | 21 | 20 | 8 | 258 => 0x1_0000, // aarch64, arm, ppc64, ppc, mips, loongarch
        _ => 0x1_0000,
    }
}
