//! ELF constants the engine uses (kept in one place; values from the gABI and glibc's elf.h).

pub const PT_NULL: u32 = 0;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_NOTE: u32 = 4;
pub const PT_PHDR: u32 = 6;
pub const PT_GNU_STACK: u32 = 0x6474_e551;

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

pub const SHT_NOBITS: u32 = 8;
pub const SHT_NOTE: u32 = 7;
pub const SHT_REL: u32 = 9;
pub const SHT_RELA: u32 = 4;
pub const SHT_DYNAMIC: u32 = 6;
pub const SHT_STRTAB: u32 = 3;
pub const SHT_DYNSYM: u32 = 11;
pub const SHT_SYMTAB: u32 = 2;
pub const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
pub const SHF_ALLOC: u64 = 2;

pub const ET_EXEC: u16 = 2;

pub const DT_NULL: u64 = 0;
pub const DT_NEEDED: u64 = 1;
pub const DT_HASH: u64 = 4;
pub const DT_STRTAB: u64 = 5;
pub const DT_SYMTAB: u64 = 6;
pub const DT_STRSZ: u64 = 10;
pub const DT_SONAME: u64 = 14;
pub const DT_RPATH: u64 = 15;
pub const DT_DEBUG: u64 = 21;
pub const DT_RUNPATH: u64 = 29;
pub const DT_FLAGS_1: u64 = 0x6fff_fffb;
pub const DT_GNU_HASH: u64 = 0x6fff_fef5;
pub const DT_VERSYM: u64 = 0x6fff_fff0;
pub const DT_VERDEF: u64 = 0x6fff_fffc;
pub const DT_VERDEFNUM: u64 = 0x6fff_fffd;
pub const DT_VERNEED: u64 = 0x6fff_fffe;
pub const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
pub const DF_1_NODEFLIB: u64 = 0x800;

/// `DT_LDCAS_LOADER`: `.dynstr` offset of the URI of the real ld.so a converted program needs.
pub const DT_LDCAS_LOADER: u64 = 0x6c64_6301;
/// `DT_LDCAS_STORE`: `.dynstr` offset of the store path (relative to the program's directory
/// when relative).
pub const DT_LDCAS_STORE: u64 = 0x6c64_6302;
/// `DT_LDCAS_TABLE`: `.dynstr` offset of the directory holding the lookup table and its
/// index, relative to the store (absent: the store itself).
pub const DT_LDCAS_TABLE: u64 = 0x6c64_6304;
/// `DT_LDCAS_FLAGS`: a set of `LDCAS_FLAG_*` bits (a number, not a string).
pub const DT_LDCAS_FLAGS: u64 = 0x6c64_6305;
/// `DT_LDCAS_FLAGS`: the program needs ld-cas's name service (an object it may load keeps
/// a `DT_RUNPATH` and needs `uri:` names that ld.so's own search cannot reach).
pub const LDCAS_FLAG_NAME_SERVICE: u64 = 1;

/// Tags whose value is a `.dynstr` offset (besides ld-cas's own, see [`is_string_tag`]).
const STRING_TAGS: &[u64] = &[
    DT_NEEDED,
    DT_SONAME,
    DT_RPATH,
    DT_RUNPATH,
    0x7fff_fffd, // DT_AUXILIARY
    0x7fff_ffff, // DT_FILTER
    0x6fff_fefa, // DT_CONFIG
    0x6fff_fefb, // DT_DEPAUDIT
    0x6fff_fefc, // DT_AUDIT
    DT_LDCAS_LOADER,
    DT_LDCAS_STORE,
    DT_LDCAS_TABLE,
];

/// Tags whose value is an address (checked by the verify pass: it must be mapped).
pub const ADDRESS_TAGS: &[(u64, &str)] = &[
    (3, "DT_PLTGOT"),
    (DT_HASH, "DT_HASH"),
    (DT_STRTAB, "DT_STRTAB"),
    (DT_SYMTAB, "DT_SYMTAB"),
    (7, "DT_RELA"),
    (12, "DT_INIT"),
    (13, "DT_FINI"),
    (17, "DT_REL"),
    (23, "DT_JMPREL"),
    (25, "DT_INIT_ARRAY"),
    (26, "DT_FINI_ARRAY"),
    (32, "DT_PREINIT_ARRAY"),
    (36, "DT_RELR"),
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
            DT_VERDEFNUM | DT_VERNEEDNUM | DT_FLAGS_1 | DT_LDCAS_FLAGS | 0x6fff_fff9 | 0x6fff_fffa
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
