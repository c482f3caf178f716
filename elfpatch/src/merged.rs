//! Merged interpreters: ld-cas appended to a copy of a store's ld.so, so that the kernel
//! maps one interpreter file and ld.so is the file `PT_INTERP` names (see
//! `docs/ld-cas.md`, "The hand-over").
//!
//! ```text
//! [ ld.so, unchanged ][ pad ][ PT_PHDR table | descriptor ][ pad ][ ld-cas's file ]
//!   offset 0                   F (= its address)             C (= its address)
//! ```
//!
//! The new program-header table lists ld.so's headers, a `PT_PHDR`, ld-cas's `PT_LOAD`s
//! moved up by `C` (the first one extended down over the table and descriptor, or a
//! read-only `PT_LOAD` of their own when ld-cas's first segment does not start its file), and
//! `PT_LDCAS_MERGED` locating the descriptor; `e_entry` is ld-cas's. `F` is a multiple of
//! 64 KiB, so ld.so's segments and the new ones share no page on any page size; `C` is the
//! first multiple of ld-cas's own segment alignment after the descriptor, so ld-cas's
//! segments keep their offsets congruent to their addresses as ld-cas was linked, and the
//! descriptor lies close to ld-cas's code (the kernel maps file pages around a fault in
//! 64 KiB windows: one window fewer to fault in at every start). ld.so's sections and their
//! headers stay where they were.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, ProgramHeader64, ET_DYN, PF_R, PT_INTERP, PT_LOAD, PT_PHDR};
use object::read::elf::{FileHeader, ProgramHeader};
use object::{pod, LittleEndian as LE, U32, U64};
use resolver::uri::Hash;
use thiserror::Error;

/// The program-header type locating the descriptor (ld-cas's `merged::PT_LDCAS_MERGED`).
pub const PT_LDCAS_MERGED: u32 = 0x6c64_6301;
/// Alignment of the appended parts.
const ALIGN: u64 = 0x1_0000;
/// Directory of the merged interpreters inside a store.
pub const INTERP_DIR: &str = "interp";

/// The descriptor ld-cas reads (`ld-cas/src/merged.rs`).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Descriptor {
    magic: [u8; 8],
    version: U32<LE>,
    reserved: U32<LE>,
    loader_entry: U64<LE>,
    ldcas_start: U64<LE>,
    loader_hash: [u8; 32],
}
// SAFETY: plain bytes and little-endian integers, no padding (8 + 4 + 4 + 8 + 8 + 32).
unsafe impl pod::Pod for Descriptor {}

/// Why two files cannot be merged.
#[derive(Debug, Error)]
pub enum MergeError {
    /// Not an ELF file the merge understands.
    #[error("{what} is not a 64-bit little-endian ELF file: {why}")]
    Parse { what: &'static str, why: String },
    /// The loader is not a position-independent interpreter.
    #[error("the loader is not position-independent (ET_DYN) or has an interpreter itself")]
    NotLoader,
    /// Loader and ld-cas are for different machines.
    #[error("the loader is for machine {loader}, ld-cas for machine {ldcas}")]
    Machine { loader: u16, ldcas: u16 },
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

type Header = FileHeader64<LE>;
type Phdr = ProgramHeader64<LE>;

fn parse<'a>(what: &'static str, data: &'a [u8]) -> Result<(&'a Header, &'a [Phdr]), MergeError> {
    let bad = |e: object::Error| MergeError::Parse {
        what,
        why: e.to_string(),
    };
    let h = Header::parse(data).map_err(bad)?;
    if !h.is_little_endian() {
        return Err(MergeError::Parse {
            what,
            why: "big-endian".into(),
        });
    }
    let ph = h.program_headers(LE, data).map_err(bad)?;
    Ok((h, ph))
}

fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

fn phdr(p_type: u32, flags: u32, offset: u64, vaddr: u64, size: u64, align: u64) -> Phdr {
    Phdr {
        p_type: U32::new(LE, p_type),
        p_flags: U32::new(LE, flags),
        p_offset: U64::new(LE, offset),
        p_vaddr: U64::new(LE, vaddr),
        p_paddr: U64::new(LE, vaddr),
        p_filesz: U64::new(LE, size),
        p_memsz: U64::new(LE, size),
        p_align: U64::new(LE, align),
    }
}

/// The merged interpreter of `loader` (an ld.so, whose URI is `loader_hash`) and `ldcas`
/// (ld-cas's binary for the same machine).
pub fn merge(loader: &[u8], ldcas: &[u8], loader_hash: &Hash) -> Result<Vec<u8>, MergeError> {
    let (lh, lph) = parse("the loader", loader)?;
    let (ch, cph) = parse("ld-cas", ldcas)?;
    if lh.e_type(LE) != ET_DYN || lph.iter().any(|p| p.p_type(LE) == PT_INTERP) {
        return Err(MergeError::NotLoader);
    }
    if lh.e_machine(LE) != ch.e_machine(LE) {
        return Err(MergeError::Machine {
            loader: lh.e_machine(LE),
            ldcas: ch.e_machine(LE),
        });
    }
    let loader_end = lph
        .iter()
        .filter(|p| p.p_type(LE) == PT_LOAD)
        .map(|p| p.p_vaddr(LE) + p.p_memsz(LE))
        .max()
        .unwrap_or(0);
    let table_at = align_up(loader_end.max(loader.len() as u64), ALIGN);
    let cas_loads: Vec<&Phdr> = cph.iter().filter(|p| p.p_type(LE) == PT_LOAD).collect();
    // When ld-cas's first segment starts at the start of its file (its ELF header), it is
    // extended down over the table and descriptor: one mapping fewer for the kernel to
    // make at every start (it then maps them executable; they are read only).
    let extend_first = cas_loads
        .first()
        .is_some_and(|p| p.p_offset(LE) == 0 && p.p_vaddr(LE) == 0);
    let count = lph.len() + 2 + usize::from(!extend_first) + cas_loads.len();
    let table_size = (count * std::mem::size_of::<Phdr>()) as u64;
    let desc_at = table_at + table_size;
    let block = table_size + std::mem::size_of::<Descriptor>() as u64;
    // ld-cas's segments keep their alignment (a power of two; at least a page).
    let cas_align = cas_loads
        .iter()
        .map(|p| p.p_align(LE))
        .max()
        .unwrap_or(ALIGN)
        .max(0x1000);
    if !cas_align.is_power_of_two() || cas_align > ALIGN {
        return Err(MergeError::Parse {
            what: "ld-cas",
            why: format!("segment alignment {cas_align:#x} is not a power of two up to 64 KiB"),
        });
    }
    let cas_at = align_up(table_at + block, cas_align);

    let mut table: Vec<Phdr> = Vec::with_capacity(count);
    table.push(phdr(PT_PHDR, PF_R, table_at, table_at, table_size, 8));
    table.extend(lph.iter().copied());
    if !extend_first {
        table.push(phdr(PT_LOAD, PF_R, table_at, table_at, block, ALIGN));
    }
    for (i, p) in cas_loads.iter().enumerate() {
        let mut q = **p;
        let (below, at) = if i == 0 && extend_first {
            (cas_at - table_at, table_at)
        } else {
            (0, p.p_offset(LE) + cas_at)
        };
        q.p_offset = U64::new(LE, at);
        q.p_vaddr = U64::new(
            LE,
            if below > 0 {
                table_at
            } else {
                p.p_vaddr(LE) + cas_at
            },
        );
        q.p_paddr = q.p_vaddr;
        q.p_filesz = U64::new(LE, p.p_filesz(LE) + below);
        q.p_memsz = U64::new(LE, p.p_memsz(LE) + below);
        table.push(q);
    }
    table.push(phdr(
        PT_LDCAS_MERGED,
        0,
        desc_at,
        desc_at,
        std::mem::size_of::<Descriptor>() as u64,
        8,
    ));
    let desc = Descriptor {
        magic: *b"LDCASMRG",
        version: U32::new(LE, 1),
        reserved: U32::new(LE, 0),
        loader_entry: U64::new(LE, lh.e_entry(LE)),
        ldcas_start: U64::new(LE, cas_at),
        loader_hash: loader_hash.0,
    };

    let mut out = loader.to_vec();
    out.resize(table_at as usize, 0);
    out.extend_from_slice(pod::bytes_of_slice(&table));
    out.extend_from_slice(pod::bytes_of(&desc));
    out.resize(cas_at as usize, 0);
    out.extend_from_slice(ldcas);
    let mut header = *lh;
    header.e_phoff = U64::new(LE, table_at);
    header.e_phnum = object::U16::new(LE, count as u16);
    header.e_entry = U64::new(LE, cas_at + ch.e_entry(LE));
    out[..std::mem::size_of::<Header>()].copy_from_slice(pod::bytes_of(&header));
    Ok(out)
}

/// Where the merged interpreter of the loader `hash` (file name `name`) lies in a store.
pub fn path_in(store: &Path, hash: &Hash, name: &str) -> PathBuf {
    let hex = String::from_utf8_lossy(&hash.to_hex_bytes()).into_owned();
    store.join(INTERP_DIR).join(hex).join(name)
}

/// Writes the merged interpreter of `loader` (its bytes, URI and file name) with the
/// ld-cas at `ldcas` into `store` (atomically; read-only, executable), with a hard link of
/// that ld-cas beside it (the audit module it uses when it needs one). Returns its path.
pub fn install(
    store: &Path,
    loader: &[u8],
    hash: &Hash,
    name: &str,
    ldcas: &Path,
) -> Result<PathBuf, MergeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    let cas = fs::read(ldcas).map_err(io(ldcas))?;
    let merged = merge(loader, &cas, hash)?;
    let path = path_in(store, hash, name);
    let dir = path.parent().unwrap_or(store);
    fs::create_dir_all(dir).map_err(io(dir))?;
    let beside = dir.join("ld-cas");
    let same = fs::read(&beside).is_ok_and(|b| b == cas);
    if !same {
        let tmp = dir.join(".ld-cas.tmp");
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(ldcas, &tmp).is_err() {
            resolver::atomic::replace_file(&tmp, &cas, Some(fs::Permissions::from_mode(0o555)))
                .map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &beside).map_err(io(&beside))?;
    }
    if fs::read(&path).ok().as_deref() != Some(&merged[..]) {
        resolver::atomic::replace_file(&path, &merged, Some(fs::Permissions::from_mode(0o555)))
            .map_err(io(&path))?;
    }
    Ok(path)
}

/// Rebuilds every merged interpreter of `store` whose loader is for `machine` with the
/// ld-cas at `ldcas` (after `store init` installed a new one). Returns how many there were.
pub fn refresh(
    store: &resolver::store::Store,
    machine: u16,
    ldcas: &Path,
) -> Result<usize, MergeError> {
    let dir = store.root().join(INTERP_DIR);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    let entries = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let hex = entry.file_name();
        let Ok(hash) = Hash::parse_hex(hex.as_encoded_bytes()) else {
            continue;
        };
        let Ok(Some(loader_path)) = store.resolve(&hash) else {
            continue;
        };
        let loader = fs::read(&loader_path).map_err(io(&loader_path))?;
        if parse("the loader", &loader)?.0.e_machine(LE) != machine {
            continue;
        }
        let mut names = Vec::new();
        for file in fs::read_dir(entry.path()).map_err(io(&entry.path()))? {
            let name = file.map_err(io(&entry.path()))?.file_name();
            let name = name.to_string_lossy().into_owned();
            if name != "ld-cas" && !name.starts_with('.') {
                names.push(name);
            }
        }
        for name in names {
            install(store.root(), &loader, &hash, &name, ldcas)?;
            count += 1;
        }
    }
    Ok(count)
}
