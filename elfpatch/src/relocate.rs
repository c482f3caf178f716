//! `elfpatch relocate`: after a store moved together with the ld-cas inside it, point the
//! converted programs' `PT_INTERP` at the store's new ld-cas, and the programs converted
//! elsewhere (registered roots) at the store's new place. Only those strings change; the
//! rest of each file is left byte for byte where the new string fits.

use std::ffi::OsStr;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use resolver::store::{Store, BIN_DIR};

use crate::convert::output::store_reference;
use crate::elf::{Edit, Elf, DT_LDCAS_LOADER, DT_LDCAS_STORE};

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
    /// Registered roots and programs left alone because they cannot be trusted to belong
    /// to this store, and why (relocation then fails).
    pub refused: Vec<Refused>,
}

/// A root or program `relocate` did not touch, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
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

/// Points the converted programs of `store` at it after it moved: those under
/// `STORE/bin` get the store's ld-cas for their ELF machine (`interpreter_for`) as
/// `PT_INTERP`; those registered in `STORE/roots` (converted elsewhere, naming the store
/// by its absolute path) get the store's new path, and its ld-cas where their interpreter
/// no longer exists (a stable one elsewhere stays).
pub fn relocate(store: &Store, interpreter_for: impl Fn(u16) -> PathBuf) -> Result<Relocation> {
    let mut report = Relocation::default();
    let mut inside = Vec::new();
    let bin = store.root().join(BIN_DIR);
    if bin.is_dir() {
        converted_programs(&bin, &mut inside)?;
    }
    for path in inside {
        relocate_program(
            &path,
            &mut report,
            |elf| Wanted {
                interpreter: merged_interpreter(store, elf)
                    .unwrap_or_else(|| interpreter_for(elf.machine())),
                store: None,
            },
            |_| None,
        )?;
    }
    let mut outside = Vec::new();
    for root in store.registered_roots()?.into_iter().filter(|r| r.live) {
        if let Some(reason) = untrusted_root(store, &root.link) {
            report.refused.push(Refused {
                path: root.link,
                reason,
            });
            continue;
        }
        if root.target.is_dir() {
            converted_programs(&root.target, &mut outside)?;
        } else {
            outside.push(root.target);
        }
    }
    for path in outside {
        let store_path = store_reference(&path, store.root());
        relocate_program(
            &path,
            &mut report,
            |elf| Wanted {
                interpreter: match elf.interpreter() {
                    Some(i) if Path::new(OsStr::from_bytes(i)).is_file() => {
                        PathBuf::from(OsStr::from_bytes(i))
                    }
                    _ => merged_interpreter(store, elf)
                        .unwrap_or_else(|| interpreter_for(elf.machine())),
                },
                store: Some(store_path.clone()),
            },
            |elf| other_store(elf, store),
        )?;
    }
    Ok(report)
}

/// The store's merged interpreter of the same loader, for a program whose interpreter was a
/// merged interpreter (`…/interp/<loader hex>/<name>`) of the store before it moved.
fn merged_interpreter(store: &Store, elf: &Elf) -> Option<PathBuf> {
    let old = Path::new(OsStr::from_bytes(elf.interpreter()?));
    let name = old.file_name()?;
    let hex = old.parent()?.file_name()?;
    let dir = old.parent()?.parent()?;
    if dir.file_name()? != crate::merged::INTERP_DIR {
        return None;
    }
    let new = store
        .root()
        .join(crate::merged::INTERP_DIR)
        .join(hex)
        .join(name);
    new.is_file().then_some(new)
}

/// Why the root link `link` cannot be trusted, if it cannot: a link in `STORE/roots` is
/// someone's claim that a program belongs to this store, so only the store's owner (or
/// root) may make it, in a directory nobody else may write.
fn untrusted_root(store: &Store, link: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let owner = match fs::metadata(store.root()) {
        Ok(m) => m.uid(),
        Err(e) => return Some(format!("cannot stat the store: {e}")),
    };
    let dir = link.parent().unwrap_or(store.root());
    match fs::metadata(dir) {
        Ok(m) if m.mode() & 0o022 != 0 => {
            return Some(format!(
                "{} is writable by others than its owner, so anyone could have planted this root",
                dir.display()
            ))
        }
        Ok(m) if m.uid() != owner && m.uid() != 0 => {
            return Some(format!(
                "{} is not owned by the store's owner",
                dir.display()
            ))
        }
        Err(e) => return Some(format!("cannot stat {}: {e}", dir.display())),
        Ok(_) => {}
    }
    match fs::symlink_metadata(link) {
        Ok(m) if m.uid() != owner && m.uid() != 0 => Some(format!(
            "the link is owned by uid {}, not by the store's owner (uid {owner})",
            m.uid()
        )),
        Err(e) => Some(format!("cannot stat the link: {e}")),
        Ok(_) => None,
    }
}

/// Why a program reached through a root belongs to another store, if it does: it names,
/// by absolute path, a store that exists and is not this one. (A store that moved here
/// left nothing at its old path.)
fn other_store(elf: &Elf, store: &Store) -> Option<String> {
    let recorded = elf.dynamic_string(DT_LDCAS_STORE)?;
    let recorded = Path::new(OsStr::from_bytes(recorded));
    if !recorded.is_absolute() {
        return None;
    }
    let here = store.root();
    match recorded.canonicalize() {
        Ok(there) if there != here && there.join(resolver::store::TABLE_FILE).exists() => {
            Some(format!(
                "it belongs to the store at {}, which still exists",
                recorded.display()
            ))
        }
        _ => None,
    }
}

/// What a converted program should name.
struct Wanted {
    interpreter: PathBuf,
    /// The store reference (`DT_LDCAS_STORE`), when it may have to change.
    store: Option<String>,
}

/// Gives the converted program at `path` (files that are not are skipped) what `wanted`
/// says: a new interpreter that fits the old one's room is written where it lies,
/// anything else by an atomic rewrite.
fn relocate_program(
    path: &Path,
    report: &mut Relocation,
    wanted: impl Fn(&Elf) -> Wanted,
    refuse: impl Fn(&Elf) -> Option<String>,
) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok(elf) = Elf::parse(&bytes) else {
        return Ok(());
    };
    if elf.dynamic_string(DT_LDCAS_LOADER).is_none() {
        return Ok(());
    }
    let Wanted { interpreter, store } = wanted(&elf);
    if let Some(reason) = refuse(&elf) {
        report.refused.push(Refused {
            path: path.to_path_buf(),
            reason,
        });
        return Ok(());
    }
    let new = interpreter.as_os_str().as_encoded_bytes();
    let new_interpreter = elf.interpreter() != Some(new);
    let new_store = store.filter(|s| elf.dynamic_string(DT_LDCAS_STORE) != Some(s.as_bytes()));
    let Some(interp) = elf
        .program_headers()
        .iter()
        .find(|p| p.p_type == 3)
        .copied()
    else {
        return Ok(());
    };
    if !new_interpreter && new_store.is_none() {
        report.unchanged += 1;
        return Ok(());
    }
    // The kernel reads p_filesz bytes and requires the last to be NUL; the path ends at
    // the first NUL, so a shorter path padded with NULs fits the same segment.
    if new_store.is_none()
        && (new.len() as u64) < interp.p_filesz
        && write_in_place(path, interp.p_offset, interp.p_filesz, new).is_ok()
    {
        report.bytes_written += interp.p_filesz;
        report.in_place.push(path.to_path_buf());
        return Ok(());
    }
    let mut edit = Edit::new();
    edit.set_interpreter(interpreter.to_string_lossy());
    if let Some(s) = new_store {
        edit.set_dynamic_tag(DT_LDCAS_STORE, s);
    }
    let out = edit
        .apply(&bytes)
        .with_context(|| format!("cannot relocate {}", path.display()))?;
    crate::elf::write_atomic(path, &out)
        .with_context(|| format!("cannot write {}", path.display()))?;
    report.bytes_written += out.len() as u64;
    report.rewritten.push(path.to_path_buf());
    Ok(())
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
