//! A minimal dynamically linked ELF file, built byte by byte for any class, byte order and
//! machine: the editor's 32-bit and big-endian paths are tested on it where no compiler
//! for the target is installed.

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub is64: bool,
    pub big: bool,
    pub machine: u16,
    pub with_sections: bool,
}

/// A target of each `(name, is64, big, machine)`, with and without section headers.
pub fn with_and_without_sections(list: &[(&'static str, bool, bool, u16)]) -> Vec<Target> {
    let mut v = Vec::new();
    for &(name, is64, big, machine) in list {
        for with_sections in [true, false] {
            v.push(Target {
                name,
                is64,
                big,
                machine,
                with_sections,
            });
        }
    }
    v
}

struct W {
    b: Vec<u8>,
    t: Target,
}

impl W {
    fn at(&mut self, off: usize, bytes: &[u8]) {
        if self.b.len() < off + bytes.len() {
            self.b.resize(off + bytes.len(), 0);
        }
        self.b[off..off + bytes.len()].copy_from_slice(bytes);
    }
    fn u16(&mut self, off: usize, v: u16) {
        let b = if self.t.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.at(off, &b);
    }
    fn u32(&mut self, off: usize, v: u32) {
        let b = if self.t.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.at(off, &b);
    }
    fn word(&mut self, off: usize, v: u64) {
        if self.t.is64 {
            let b = if self.t.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            };
            self.at(off, &b);
        } else {
            self.u32(off, v as u32);
        }
    }
}

/// A section header: name, type, flags, addr, offset, size, link, addralign, entsize.
type Sec = (u32, u32, u64, u64, u64, u64, u32, u64, u64);
/// A program header: type, flags, offset, vaddr, filesz, memsz, align.
type Seg = (u32, u32, u64, u64, u64, u64, u64);

const BASE: u64 = 0x10000;
const PAGE: usize = 0x10000;

/// Builds the file: `PT_PHDR`, `PT_INTERP`, a read-only and a read-write `PT_LOAD`,
/// `PT_DYNAMIC`, `PT_GNU_STACK`; `DT_NEEDED` libfoo.so.1 and libc.so.6, a `DT_RUNPATH`,
/// a `DT_HASH` and a one-symbol `.dynsym`; section headers when asked.
pub fn build(t: Target) -> Vec<u8> {
    build_with_symbols(t, 1)
}

/// Like [`build`] with `symbols` (at least one) entries in `.dynsym`: enough of them make
/// the sections after the program header table a block that can move to make room for
/// more program headers.
pub fn build_with_symbols(t: Target, symbols: usize) -> Vec<u8> {
    build_padded(t, symbols, 0)
}

/// Like [`build`] with `slack` zero bytes (a multiple of 16) between the read-only
/// segment's end and the read-write one, as linkers leave before a segment's page: in no
/// section and no segment, in the file and in memory.
pub fn build_with_slack(t: Target, slack: usize) -> Vec<u8> {
    build_padded(t, 1, slack)
}

fn build_padded(t: Target, symbols: usize, slack: usize) -> Vec<u8> {
    let symbols = symbols.max(1);
    let mut w = W { b: Vec::new(), t };
    let ws = if t.is64 { 8 } else { 4 };
    let (ehsize, phsize, shsize) = if t.is64 { (64, 56, 64) } else { (52, 32, 40) };
    let phnum = 6;
    let phoff = ehsize;
    let interp_off = phoff + phnum * phsize;
    let interp = b"/lib/ld.so.1\0";
    let dynstr_off = interp_off + interp.len();
    let dynstr = b"\0libfoo.so.1\0libc.so.6\0/opt/lib\0";
    let hash_off = (dynstr_off + dynstr.len() + 7) & !7;
    // One bucket, one chain entry a symbol.
    let hash_size = 4 * (3 + symbols);
    let sym_off = (hash_off + hash_size + 7) & !7;
    let symsize = if t.is64 { 24 } else { 16 };
    let ro_end = sym_off + symbols * symsize;
    let dyn_off = ((ro_end + 15) & !15) + slack;
    let dyn_vaddr = BASE + PAGE as u64 + dyn_off as u64;
    let dyns: Vec<(u64, u64)> = vec![
        (1, 1),
        (1, 13),
        (29, 23),
        (5, BASE + dynstr_off as u64),
        (10, dynstr.len() as u64),
        (6, BASE + sym_off as u64),
        (11, symsize as u64),
        (4, BASE + hash_off as u64),
        (0, 0),
    ];
    let dyn_size = dyns.len() * 2 * ws;
    let file_end = dyn_off + dyn_size;
    // ELF header.
    w.at(0, b"\x7fELF");
    w.at(
        4,
        &[if t.is64 { 2 } else { 1 }, if t.big { 2 } else { 1 }, 1, 0],
    );
    w.u16(16, 3); // ET_DYN
    w.u16(18, t.machine);
    w.u32(20, 1);
    w.word(24, 0);
    w.word(24 + ws, phoff as u64);
    w.u16(24 + 3 * ws + 4, ehsize as u16);
    w.u16(24 + 3 * ws + 6, phsize as u16);
    w.u16(24 + 3 * ws + 8, phnum as u16);
    w.u16(24 + 3 * ws + 10, shsize as u16);
    // Program headers: (type, flags, offset, vaddr, filesz, memsz, align).
    let phdrs: [Seg; 6] = [
        (
            6,
            4,
            phoff as u64,
            BASE + phoff as u64,
            (phnum * phsize) as u64,
            (phnum * phsize) as u64,
            ws as u64,
        ),
        (
            3,
            4,
            interp_off as u64,
            BASE + interp_off as u64,
            interp.len() as u64,
            interp.len() as u64,
            1,
        ),
        (1, 4, 0, BASE, ro_end as u64, ro_end as u64, PAGE as u64),
        (
            1,
            6,
            dyn_off as u64,
            dyn_vaddr,
            dyn_size as u64,
            dyn_size as u64,
            PAGE as u64,
        ),
        (
            2,
            6,
            dyn_off as u64,
            dyn_vaddr,
            dyn_size as u64,
            dyn_size as u64,
            ws as u64,
        ),
        (0x6474_e551, 6, 0, 0, 0, 0, 16),
    ];
    for (i, p) in phdrs.iter().enumerate() {
        let o = phoff + i * phsize;
        w.u32(o, p.0);
        if t.is64 {
            w.u32(o + 4, p.1);
            for (k, v) in [p.2, p.3, p.3, p.4, p.5, p.6].into_iter().enumerate() {
                w.word(o + 8 + 8 * k, v);
            }
        } else {
            for (k, v) in [p.2, p.3, p.3, p.4, p.5].into_iter().enumerate() {
                w.word(o + 4 + 4 * k, v);
            }
            w.u32(o + 24, p.1);
            w.word(o + 28, p.6);
        }
    }
    w.at(interp_off, interp);
    w.at(dynstr_off, dynstr);
    w.u32(hash_off, 1);
    w.u32(hash_off + 4, symbols as u32);
    w.at(hash_off + 8, &vec![0; hash_size - 8]);
    w.at(sym_off, &vec![0; symbols * symsize]);
    for (k, (tag, val)) in dyns.iter().enumerate() {
        w.word(dyn_off + 2 * ws * k, *tag);
        w.word(dyn_off + 2 * ws * k + ws, *val);
    }
    if t.with_sections {
        let shstr = b"\0.interp\0.dynstr\0.hash\0.dynsym\0.dynamic\0.shstrtab\0";
        let shstr_off = file_end;
        w.at(shstr_off, shstr);
        let shoff = (shstr_off + shstr.len() + 7) & !7;
        // (name, type, flags, addr, offset, size, link, info, align, entsize)
        let secs: [Sec; 7] = [
            (0, 0, 0, 0, 0, 0, 0, 0, 0),
            (
                1,
                1,
                2,
                BASE + interp_off as u64,
                interp_off as u64,
                interp.len() as u64,
                0,
                1,
                0,
            ),
            (
                9,
                3,
                2,
                BASE + dynstr_off as u64,
                dynstr_off as u64,
                dynstr.len() as u64,
                0,
                1,
                0,
            ),
            (
                17,
                5,
                2,
                BASE + hash_off as u64,
                hash_off as u64,
                hash_size as u64,
                4,
                4,
                4,
            ),
            (
                23,
                11,
                2,
                BASE + sym_off as u64,
                sym_off as u64,
                (symbols * symsize) as u64,
                2,
                8,
                symsize as u64,
            ),
            (
                31,
                6,
                3,
                dyn_vaddr,
                dyn_off as u64,
                dyn_size as u64,
                2,
                8,
                2 * ws as u64,
            ),
            (40, 3, 0, 0, shstr_off as u64, shstr.len() as u64, 0, 1, 0),
        ];
        for (i, s) in secs.iter().enumerate() {
            let o = shoff + i * shsize;
            w.u32(o, s.0);
            w.u32(o + 4, s.1);
            if t.is64 {
                for (k, v) in [s.2, s.3, s.4, s.5].into_iter().enumerate() {
                    w.word(o + 8 + 8 * k, v);
                }
                w.u32(o + 40, s.6);
                w.u32(o + 44, if s.1 == 11 { 1 } else { 0 });
                w.word(o + 48, s.7);
                w.word(o + 56, s.8);
            } else {
                for (k, v) in [s.2, s.3, s.4, s.5].into_iter().enumerate() {
                    w.word(o + 8 + 4 * k, v);
                }
                w.u32(o + 24, s.6);
                w.u32(o + 28, if s.1 == 11 { 1 } else { 0 });
                w.word(o + 32, s.7);
                w.word(o + 36, s.8);
            }
        }
        w.word(24 + 2 * ws, shoff as u64);
        w.u16(24 + 3 * ws + 12, secs.len() as u16);
        w.u16(24 + 3 * ws + 14, 6);
    } else {
        w.b.resize(file_end, 0);
    }
    w.b
}
