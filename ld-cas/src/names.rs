//! How `uri:` names reach ld.so without an audit module: ld.so's own search finds them.
//!
//! Before the hand-over, in the program's memory only (its file is untouched):
//!
//! - the first `DT_NEEDED` entry of each `uri:` name becomes the object's absolute path in
//!   the store (and so does the matching `vn_file` of `.gnu.version_r`, which glibc
//!   matches to loaded objects by that name). ld.so opens a path directly, with no search,
//!   and names the object by it: `l_name` and `$ORIGIN` are the library's real place.
//!   A converted program lists its whole closure this way (`elfpatch convert`), so every
//!   library loaded at start-up gets its real name;
//! - a later entry of the same name stays a name: ld.so finds it in the index and, the
//!   file being the object already loaded (same device and inode), adds the name to that
//!   object's names. An object that keeps a `DT_RUNPATH` cannot search the program's
//!   `DT_RPATH`; it finds its `uri:` names among those;
//! - the program's search path starts with the store's index, `STORE/index`, by its
//!   absolute path: a directory whose entries are named by URI and link to the objects
//!   (plus `glibc-hwcaps/x86-64-v{2,3,4}`, links back to it, so that the first name glibc
//!   probes is the entry). A library's own `uri:` names, and `dlopen` of `uri:` names, are
//!   found there by ld.so's search (the `DT_RPATH` of the program is searched for every
//!   object without a `DT_RUNPATH`), with no failed look-up, and in secure mode too:
//!   glibc honours an absolute `DT_RPATH` then.

use crate::arena;
use crate::audit::{self, Found};
use crate::elf::{
    self, Dyn, DT_LDCAS_FLAGS, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NEEDED, DT_NULL, DT_RPATH,
    DT_RUNPATH, DT_VERNEED, DT_VERNEEDNUM, LDCAS_FLAG_INDEX_FIRST,
};
use crate::launch;
use crate::loadmap;
use crate::out::{cstr, die};
use crate::path::PathBuf;
use crate::program::Program;
use crate::sys::{self, Fd, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE};
use crate::trust::Trust;

/// Room for the absolute paths of the program's libraries (about 2,000 of them), within the
/// 32-bit reach of `vn_file` from the program's string table.
const NEAR: usize = 1 << 18;

/// The moved `DT_NEEDED` strings, in the mapping within reach of the string table: one
/// record per string, `[old offset: u64][length: u64][path][NUL]`, 8-aligned, so that a
/// program with few libraries touches one page (a table of them on the stack would touch
/// several).
struct Moved {
    /// The mapping.
    base: usize,
    /// Bytes used.
    used: usize,
    /// The program's string table.
    strtab: usize,
}

/// One record of [`Moved`].
#[derive(Clone, Copy)]
struct MovedString {
    /// Old offset from the string table.
    from: u64,
    /// New offset from the string table.
    to: u64,
}

impl Moved {
    /// Adds `path` for the string at `from`; its new offset, or `None` when full.
    fn push(&mut self, from: u64, path: &[u8]) -> Option<u64> {
        let at = (self.used + 7) & !7;
        let end = at.checked_add(16 + path.len() + 1)?;
        if end > NEAR {
            return None;
        }
        let rec = self.base + at;
        // SAFETY: `[rec, rec + 16 + len + 1)` lies in our fresh writable mapping of NEAR
        // bytes, 8-aligned.
        unsafe {
            *(rec as *mut u64) = from;
            *((rec + 8) as *mut u64) = path.len() as u64;
            core::ptr::copy_nonoverlapping(path.as_ptr(), (rec + 16) as *mut u8, path.len());
            *((rec + 16 + path.len()) as *mut u8) = 0;
        }
        self.used = end;
        Some((rec + 16 - self.strtab) as u64)
    }

    /// The records, in order.
    fn iter(&self) -> impl Iterator<Item = MovedString> + '_ {
        let mut at = 0;
        core::iter::from_fn(move || {
            at = (at + 7) & !7;
            if at >= self.used {
                return None;
            }
            let rec = self.base + at;
            // SAFETY: a record written by `push`.
            let (from, len) = unsafe { (*(rec as *const u64), *((rec + 8) as *const u64)) };
            at += 16 + len as usize + 1;
            Some(MovedString {
                from,
                to: (rec + 16 - self.strtab) as u64,
            })
        })
    }
}

/// What [`hand_names`] needs besides the program.
pub struct Context<'a> {
    /// The program, for messages.
    pub name: &'a [u8],
    /// The store's index directory (absolute).
    pub index: &'a [u8],
    /// Secure mode: the trust rule and the store directory, open.
    pub secure: Option<(&'a Trust, Option<&'a Fd>)>,
    /// The page size (`AT_PAGESZ`).
    pub page: usize,
}

/// Points the program's `uri:` names at the store, in memory, as the module says.
pub fn hand_names(prog: &mut Program, cx: &Context<'_>) {
    let fail = |detail: &str| -> ! {
        die(127, |o| {
            o.bytes(cx.name).str(": ").str(detail);
        })
    };
    let near = near_strings(prog).unwrap_or_else(|| {
        fail("cannot map memory within reach of its string table for its library paths")
    });
    let mut moved = Moved {
        base: near,
        used: 0,
        strtab: prog.strtab,
    };
    let strings = prog.strings;
    // SAFETY: single-threaded before the hand-over.
    let r = unsafe { audit::state() };
    for i in 0..prog.dynamic.len() {
        let d = prog.dynamic[i];
        if d.d_tag == DT_NULL {
            break;
        }
        if d.d_tag != DT_NEEDED {
            continue;
        }
        let needed = elf::str_at(strings, d.d_val);
        if moved.iter().any(|m| elf::str_at(strings, m.from) == needed) {
            // A second entry of a name: ld.so finds it in the index (see the module).
            continue;
        }
        let (path, entry) = match audit::resolve(r, needed, cx.name) {
            Some(Found::Path(p, Some(e))) => (p, e),
            _ => continue,
        };
        // SAFETY: `resolve` returns a NUL-terminated copy that lives for good.
        let file = unsafe { cstr(path) };
        if let Some((trust, store_dir)) = cx.secure {
            // Secure mode: the object is opened from the store directory one component at
            // a time, by the trust rule, and must have the recorded size.
            // SAFETY: single-threaded before the hand-over.
            let at = unsafe { launch::scratch() };
            if let Err(err) =
                launch::open_trusted(store_dir, entry.path, Some(entry.size), trust, at)
            {
                die(127, |o| {
                    o.bytes(cx.name)
                        .str(": cannot load ")
                        .bytes(needed)
                        .str(": ");
                    launch::refused(o, at, err);
                });
            }
        }
        let to = moved
            .push(d.d_val, file)
            .unwrap_or_else(|| fail("has too many content-addressed libraries"));
        prog.dynamic[i].d_val = to;
    }
    retarget_verneed(prog, &moved, cx.page);
    search_the_index(prog, cx.index)
        .unwrap_or_else(|| fail("cannot name the store's index: no free slot in its dynamic section (convert it again with elfpatch)"));
}

/// A fresh 256 KiB mapping within 4 GiB above the program's string table (`vn_file` is a
/// 32-bit offset from it), or `None`.
fn near_strings(prog: &Program) -> Option<usize> {
    let end = prog
        .phdrs
        .iter()
        .filter(|p| p.p_type == elf::PT_LOAD)
        .map(|p| prog.bias.wrapping_add((p.p_vaddr + p.p_memsz) as usize))
        .max()
        .unwrap_or(prog.strtab);
    let hint = (end + (1 << 30)) & !0xffff;
    // SAFETY: a fresh anonymous mapping (the address is only a hint).
    let near = unsafe {
        sys::mmap(
            hint,
            NEAR,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    }
    .ok()?;
    let reach = near.checked_sub(prog.strtab)?.checked_add(NEAR)?;
    (reach <= u32::MAX as usize).then_some(near)
}

/// Puts the index first in the program's search path: its `DT_RUNPATH` when it has one
/// (then `DT_RPATH` is ignored), else its `DT_RPATH`, else a new `DT_RPATH` in a free slot.
/// When the first entry already is the index (`LDCAS_FLAG_INDEX_FIRST`, relative to the
/// program for `ldd`), the absolute path replaces it. `None` when no slot is free.
fn search_the_index(prog: &mut Program, index: &[u8]) -> Option<()> {
    let strings = prog.strings;
    let flags = prog.tag_val(DT_LDCAS_FLAGS).unwrap_or(0);
    let live = prog
        .dynamic
        .iter()
        .position(|d| d.d_tag == DT_NULL)
        .unwrap_or(prog.dynamic.len());
    let find = |tag| prog.dynamic[..live].iter().position(|d| d.d_tag == tag);
    let slot = match find(DT_RUNPATH).or_else(|| find(DT_RPATH)) {
        Some(i) => i,
        None => free_slot(prog.dynamic, live)?,
    };
    let old: &[u8] = match prog.dynamic[slot].d_tag {
        DT_RUNPATH | DT_RPATH => elf::str_at(strings, prog.dynamic[slot].d_val),
        _ => b"",
    };
    let rest = if flags & LDCAS_FLAG_INDEX_FIRST != 0 {
        old.iter()
            .position(|&c| c == b':')
            .map_or(&b""[..], |i| &old[i + 1..])
    } else {
        old
    };
    let sep: &[u8] = if rest.is_empty() { b"" } else { b":" };
    // SAFETY: single-threaded before the hand-over; the arena is never freed.
    let kept = unsafe { arena::keep(&[index, sep, rest]) };
    let tag = match prog.dynamic[slot].d_tag {
        DT_RUNPATH => DT_RUNPATH,
        _ => DT_RPATH,
    };
    prog.dynamic[slot] = Dyn {
        d_tag: tag,
        d_val: (kept as u64).wrapping_sub(prog.strtab as u64),
    };
    Some(())
}

/// A slot of the dynamic section that can take a new entry: one of ld-cas's own records
/// (already read), or a spare `DT_NULL` after the terminator.
fn free_slot(dynamic: &[Dyn], live: usize) -> Option<usize> {
    dynamic[..live]
        .iter()
        .position(|d| d.d_tag == DT_LDCAS_STORE || d.d_tag == DT_LDCAS_LOADER)
        .or_else(|| {
            (live + 1 < dynamic.len() && dynamic[live + 1].d_tag == DT_NULL).then_some(live)
        })
}

/// Points each `vn_file` that named a moved `DT_NEEDED` string at its new string.
fn retarget_verneed(prog: &Program, moved: &Moved, page: usize) {
    let (mut addr, mut num) = (0usize, 0usize);
    for d in prog.dynamic.iter().take_while(|d| d.d_tag != DT_NULL) {
        match d.d_tag {
            DT_VERNEED => addr = prog.bias.wrapping_add(d.d_val as usize),
            DT_VERNEEDNUM => num = d.d_val as usize,
            _ => {}
        }
    }
    if addr == 0 || moved.used == 0 {
        return;
    }
    let seg = prog.phdrs.iter().find(|p| {
        let start = prog.bias.wrapping_add(p.p_vaddr as usize);
        p.p_type == elf::PT_LOAD && addr >= start && addr - start < p.p_memsz as usize
    });
    let seg = match seg {
        Some(s) => s,
        None => return,
    };
    // Every Elf64_Verneed read must lie in that segment.
    let seg_start = prog.bias.wrapping_add(seg.p_vaddr as usize);
    let seg_end = seg_start.wrapping_add(seg.p_memsz as usize);
    let start = seg_start & !(page - 1);
    let len = (seg_end - start + page - 1) & !(page - 1);
    let prot = loadmap::prot(seg);
    // SAFETY: the range is the program's own segment; nothing else runs while it is
    // writable, and its protection is restored before the hand-over.
    unsafe {
        if sys::mprotect(start, len, prot | PROT_WRITE).is_err() {
            return;
        }
        let mut vn = addr;
        for _ in 0..num {
            if vn & 3 != 0 || vn >= seg_end || seg_end - vn < 16 {
                break;
            }
            // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
            let file = (vn + 4) as *mut u32;
            if let Some(m) = moved.iter().find(|m| m.from == *file as u64) {
                *file = m.to as u32;
            }
            let next = *((vn + 12) as *const u32) as usize;
            if next == 0 {
                break;
            }
            vn = match vn.checked_add(next) {
                Some(v) => v,
                None => break,
            };
        }
        let _ = sys::mprotect(start, len, prot);
    }
}

/// The index directory of a store whose table lies in `table_dir` (relative to the store;
/// empty: the store itself): `STORE[/TABLE_DIR]/index`.
pub fn index_path(out: &mut PathBuf, store: &[u8], table_dir: &[u8]) -> bool {
    out.clear();
    out.push(store)
        && (table_dir.is_empty() || (out.push(b"/") && out.push(table_dir)))
        && out.push(b"/index")
}
