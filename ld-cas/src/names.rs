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

use crate::audit::{self, Found, Object};
use crate::cas::{layout, Entry};
use crate::elf::{
    self, Dyn, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH,
    DT_VERNEED, DT_VERNEEDNUM,
};
use crate::launch;
use crate::near::{self, Near};
use crate::out::die;
use crate::program::Program;
use crate::sys::{self, Dir, Fd, AT_SYMLINK_NOFOLLOW, S_IFREG};
use crate::trust::Trust;

/// The moved `DT_NEEDED` strings, one record per string in [`Near`],
/// `[old offset: u64][length: u64][path][NUL]`, 8-aligned and adjacent (nothing else is
/// allocated while they are written), so that a program with few libraries touches one
/// page. Kept as positions in [`Near`], which stay valid when it moves to its mapping.
struct Moved {
    /// Where the first record starts.
    start: usize,
    /// One past the last record.
    end: usize,
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
    fn new(near: &Near, strtab: usize) -> Moved {
        let start = near.position();
        Moved {
            start,
            end: start,
            strtab,
        }
    }

    /// Adds the path made of `parts` for the string at `from`: the path with its NUL, or
    /// `None` when full.
    fn push(&mut self, near: &mut Near, from: u64, parts: &[&[u8]]) -> Option<&'static [u8]> {
        let len = near::joined_len(parts);
        let rec = near.alloc(16 + len + 1, 8)?;
        rec[..8].copy_from_slice(&from.to_ne_bytes());
        rec[8..16].copy_from_slice(&(len as u64).to_ne_bytes());
        near::copy_parts(&mut rec[16..], parts);
        self.end = near.position();
        Some(&rec[16..])
    }

    /// The offset from the string table of `path`, one of ours.
    fn offset_of(&self, path: *const u8) -> u64 {
        (path as usize).wrapping_sub(self.strtab) as u64
    }

    /// The records, in order, where `near` holds them now.
    fn iter<'a>(&'a self, near: &'a Near) -> impl Iterator<Item = MovedString> + 'a {
        let mut at = self.start;
        core::iter::from_fn(move || {
            at = (at + 7) & !7;
            if at >= self.end {
                return None;
            }
            let rec = near.address(at);
            // SAFETY: a record written by `push`, 8-aligned, in `near`'s current room (a
            // move copies every record).
            let (from, len) = unsafe { (*(rec as *const u64), *((rec + 8) as *const u64)) };
            let to = (rec + 16 - self.strtab) as u64;
            at += 16 + len as usize + 1;
            Some(MovedString { from, to })
        })
    }
}

/// The `DT_NEEDED` names [`hand_names`] has seen, as a set of 256 bits, one per name (a
/// Bloom filter with one hash): a name whose bit is clear was not seen, and only for the
/// others are the moved strings searched. A program lists its whole closure, so without
/// it every name would be compared with every earlier one.
struct Seen([u64; 4]);

impl Seen {
    /// The word and bit of `name`: its last eight bytes (a URI's last hex digits; all of a
    /// shorter name), mixed by a multiplication whose top eight bits choose the bit.
    fn bit(name: &[u8]) -> (usize, u64) {
        let mut tail = [0u8; 8];
        match name.len().checked_sub(8) {
            Some(at) => tail = <[u8; 8]>::try_from(&name[at..]).unwrap_or_default(),
            None => {
                for (t, &b) in tail.iter_mut().zip(name) {
                    *t = b;
                }
            }
        }
        let h = u64::from_le_bytes(tail).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
        ((h >> 6) as usize, 1 << (h & 63))
    }

    fn insert(&mut self, name: &[u8]) {
        let (word, bit) = Seen::bit(name);
        self.0[word] |= bit;
    }

    /// Whether `name` may have been seen (`false`: it certainly was not).
    fn may_hold(&self, name: &[u8]) -> bool {
        let (word, bit) = Seen::bit(name);
        self.0[word] & bit != 0
    }
}

/// What [`hand_names`] needs besides the program.
pub struct Context<'a> {
    /// The program, for messages.
    pub name: &'a [u8],
    /// The store's index directory (absolute).
    pub index: IndexPath<'a>,
    /// The program's first search-path entry is the index, relative
    /// (`LDCAS_FLAG_INDEX_FIRST`).
    pub index_first: bool,
    /// Secure mode: the trust rule and the store directory, open.
    pub secure: Option<(&'a Trust, Option<&'a Fd>)>,
}

/// Points the program's `uri:` names at the store, in memory, as the module says.
pub fn hand_names(prog: &mut Program, near: &mut Near, cx: &Context<'_>) {
    let fail = |detail: &str| -> ! {
        die(127, |o| {
            o.bytes(cx.name).str(": ").str(detail);
        })
    };
    let mut moved = Moved::new(near, prog.strtab);
    let mut seen = Seen([0; 4]);
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
        // Same offset, or the same bytes followed by the terminator (compared with the
        // length known: measuring every earlier string again cost more than the rest).
        let same = |from: u64| {
            let at = from as usize;
            from == d.d_val
                || (strings.get(at..at + needed.len()) == Some(needed)
                    && strings.get(at + needed.len()) == Some(&0))
        };
        // Most names are new: the set says so without a search of the records.
        if seen.may_hold(needed) && moved.iter(near).any(|m| same(m.from)) {
            // A second entry of a name: ld.so finds it in the index (see the module).
            continue;
        }
        seen.insert(needed);
        // The path goes straight where ld.so reads it.
        let mut keep = |parts: &[&[u8]]| {
            moved
                .push(near, d.d_val, parts)
                .unwrap_or_else(|| fail("has too many content-addressed libraries"))
        };
        let (path, entry, mut links) = match audit::resolve_with(r, needed, cx.name, &mut keep) {
            Some(Found::Path(Object {
                path,
                entry: Some(entry),
                links,
            })) => (path, entry, links),
            _ => continue,
        };
        if let Some((trust, store_dir)) = cx.secure {
            // Secure mode: the object is opened from the store directory one component at
            // a time, by the trust rule, and must have the recorded size.
            // SAFETY: single-threaded before the hand-over.
            let at = unsafe { launch::scratch() };
            match launch::open_trusted(store_dir, entry.path, Some(entry.size), trust, at) {
                Ok((_, st)) => links = Some(st.links),
                Err(err) => die(127, |o| {
                    o.bytes(cx.name)
                        .str(": cannot load ")
                        .bytes(needed)
                        .str(": ");
                    launch::refused(o, at, err);
                }),
            }
        }
        if let Some(links) = links {
            refuse_a_copied_index_entry(cx, needed, &entry, links);
        }
        prog.dynamic[i].d_val = moved.offset_of(path);
    }
    retarget_verneed(prog, &moved, near)
        .unwrap_or_else(|| fail("has a version table too large to copy"));
    search_the_index(prog, cx, near)
        .unwrap_or_else(|| fail("cannot name the store's index: no free slot in its dynamic section (convert it again with elfpatch)"));
}

/// Refuses a store copied without its hard links. The index holds a hard link of each of
/// the store's own objects (`resolver/src/store/index.rs`), so an object with one name only
/// has a symbolic link there (made where the file system refused a hard link, or by an
/// older version: fine) or a second file of the same bytes, which a copy that does not keep
/// hard links (`cp -r`, `rsync -a` without `-H`) makes: ld.so would load that file, found
/// for a library's own `uri:` name, as a second library beside the object. So for such an
/// object only (a start with a hard-linked index spends nothing here) the entry is looked
/// at, with one `lstat`. Indexes of tables in trees are all symbolic links.
fn refuse_a_copied_index_entry(cx: &Context<'_>, uri: &[u8], entry: &Entry<'_>, links: u32) {
    let store = cx.index.store;
    if links >= 2 || !cx.index.table_dir.is_empty() || !layout::is_own_object(entry.path) {
        return;
    }
    // SAFETY: single-threaded before the hand-over.
    let at = unsafe { launch::scratch() };
    at.clear();
    for part in cx.index.parts() {
        at.push(part);
    }
    at.push(b"/");
    at.push(uri);
    // A symbolic link, or nothing (ld.so's search then fails and says so), is left to ld.so.
    let copy = !at.overflowed()
        && matches!(sys::stat_at(Dir::Cwd, at.c(), AT_SYMLINK_NOFOLLOW), Ok(st) if st.kind() == S_IFREG);
    if copy {
        die(127, |o| {
            o.bytes(cx.name)
                .str(": cannot load ")
                .bytes(uri)
                .str(": the store's index holds a copy of ")
                .bytes(store)
                .str("/")
                .bytes(entry.path)
                .str(", not a link to it (the store was copied without its hard links: copy stores with `cp -a`, `rsync -aH` or `tar`; `elfpatch store init --store ")
                .bytes(store)
                .str("` links its index again)");
        });
    }
}

/// Puts the index first in the program's search path: its `DT_RUNPATH` when it has one
/// (then `DT_RPATH` is ignored), else its `DT_RPATH`, else a new `DT_RPATH` in a free slot.
/// When the first entry already is the index (`LDCAS_FLAG_INDEX_FIRST`, relative to the
/// program for `ldd`), the absolute path replaces it. `None` when no slot is free.
fn search_the_index(prog: &mut Program, cx: &Context<'_>, near: &mut Near) -> Option<()> {
    let strings = prog.strings;
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
    let rest = if cx.index_first {
        old.iter()
            .position(|&c| c == b':')
            .map_or(&b""[..], |i| &old[i + 1..])
    } else {
        old
    };
    let sep: &[u8] = if rest.is_empty() { b"" } else { b":" };
    let index = cx.index.parts();
    let parts = [index[0], index[1], index[2], index[3], index[4], sep, rest];
    let kept = near.alloc_joined(&parts, 1)?.as_ptr();
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

/// Points each `vn_file` that named a moved `DT_NEEDED` string at its new string, in a
/// copy of `.gnu.version_r` in the [`Near`] mapping that `DT_VERNEED` then names: the
/// program's own pages stay as they are (no `mprotect`, no copy-on-write fault). `None`
/// when the copy does not fit.
fn retarget_verneed(prog: &mut Program, moved: &Moved, near: &mut Near) -> Option<()> {
    let (mut slot, mut num) = (None, 0usize);
    for (i, d) in prog
        .dynamic
        .iter()
        .enumerate()
        .take_while(|(_, d)| d.d_tag != DT_NULL)
    {
        match d.d_tag {
            DT_VERNEED => slot = Some(i),
            DT_VERNEEDNUM => num = d.d_val as usize,
            _ => {}
        }
    }
    let slot = match slot {
        Some(s) if moved.start != moved.end => s,
        _ => return Some(()),
    };
    let addr = prog.bias.wrapping_add(prog.dynamic[slot].d_val as usize);
    let span = verneed_span(prog, addr, num)?;
    let copy = near.alloc(span, 8)?;
    // SAFETY: `verneed_span` checked `[addr, addr + span)` lies in one loaded segment.
    copy.copy_from_slice(unsafe { core::slice::from_raw_parts(addr as *const u8, span) });
    // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
    let mut vn = 0usize;
    for _ in 0..num {
        let file = u32::from_ne_bytes(copy[vn + 4..vn + 8].try_into().ok()?);
        if let Some(m) = moved.iter(near).find(|m| m.from == u64::from(file)) {
            copy[vn + 4..vn + 8].copy_from_slice(&(m.to as u32).to_ne_bytes());
        }
        let next = u32::from_ne_bytes(copy[vn + 12..vn + 16].try_into().ok()?) as usize;
        if next == 0 {
            break;
        }
        vn += next;
    }
    prog.dynamic[slot].d_val = (copy.as_ptr() as usize).wrapping_sub(prog.bias) as u64;
    Some(())
}

/// The bytes `.gnu.version_r` at `addr` (`num` entries) spans, every `Elf64_Verneed`
/// (16 bytes) and `Elf64_Vernaux` (16 bytes) checked to lie in the loaded segment holding
/// it, in 4-aligned positions; `None` when one does not.
fn verneed_span(prog: &Program, addr: usize, num: usize) -> Option<usize> {
    let seg = prog.phdrs.iter().find(|p| {
        let start = prog.bias.wrapping_add(p.p_vaddr as usize);
        p.p_type == elf::PT_LOAD && addr >= start && addr - start < p.p_filesz as usize
    })?;
    let limit = prog
        .bias
        .wrapping_add((seg.p_vaddr + seg.p_filesz) as usize)
        - addr;
    let word = |at: usize| -> Option<usize> {
        if at & 3 != 0 || at.checked_add(4)? > limit {
            return None;
        }
        // SAFETY: inside the segment (checked above).
        Some(unsafe { *((addr + at) as *const u32) } as usize)
    };
    let (mut vn, mut end) = (0usize, 0usize);
    for _ in 0..num {
        word(vn + 12)?;
        end = end.max(vn + 16);
        let cnt = word(vn)? >> 16;
        let mut aux = vn.checked_add(word(vn + 8)?)?;
        for _ in 0..cnt {
            word(aux + 12)?;
            end = end.max(aux + 16);
            match word(aux + 12)? {
                0 => break,
                n => aux = aux.checked_add(n)?,
            }
        }
        match word(vn + 12)? {
            0 => break,
            n => vn = vn.checked_add(n)?,
        }
    }
    Some(end)
}

/// The index directory of a store whose table lies in `table_dir` (relative to the store;
/// empty: the store itself): `STORE[/TABLE_DIR]/index`, written only where ld.so reads it.
#[derive(Clone, Copy)]
pub struct IndexPath<'a> {
    /// The store directory.
    pub store: &'a [u8],
    /// The table's directory, relative to the store (empty: the store itself).
    pub table_dir: &'a [u8],
}

impl<'a> IndexPath<'a> {
    /// The path's parts, in order.
    fn parts(&self) -> [&'a [u8]; 5] {
        let sep: &[u8] = if self.table_dir.is_empty() { b"" } else { b"/" };
        [
            self.store,
            sep,
            self.table_dir,
            b"/",
            layout::INDEX_DIR.as_bytes(),
        ]
    }
}
