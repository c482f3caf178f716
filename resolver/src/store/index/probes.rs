//! The links that make glibc's first probe of the index, for any `uri:` name, the entry.
//!
//! ld.so does not open `DIR/NAME` first for a directory `DIR` of a search path: it first
//! tries subdirectories chosen by the CPU, and only then `DIR` itself. Each of them is, in
//! the index, a symbolic link back to the index, so the first name tried is the entry:
//!
//! - glibc 2.33 and later on x86_64 try `glibc-hwcaps/x86-64-v4`, `v3`, `v2` (those the
//!   CPU supports): `glibc-hwcaps/x86-64-v{2,3,4} -> ..`, in every index;
//! - glibc 2.36 and older on aarch64 have no `glibc-hwcaps` levels and try the legacy
//!   subdirectories, every combination of `tls`, the platform (`AT_PLATFORM`, `aarch64`)
//!   and the important capabilities (`atomics`), longest first: `tls/aarch64/atomics`,
//!   `tls/aarch64`, `tls/atomics`, `tls`, `aarch64/atomics`, …: `tls`, `aarch64` and
//!   `atomics -> .`, so that every combination is the index. Only in the index of a table
//!   that lists the aarch64 ld.so: with them ld.so also tries every combination, each a
//!   failed `openat`, for a plain soname it searches through the index (without them only
//!   at its first search, glibc remembers a subdirectory that does not exist), and the
//!   x86_64 ld.so of glibc 2.36 tries `tls` too (one more for each).
//!
//! A link the table does not call for (the aarch64 ld.so was dropped) is removed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::table::write::NewEntry;

/// One link: `DIR/NAME -> TARGET`, `DIR` relative to the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeLink {
    /// The directory holding it, relative to the index (empty: the index itself).
    pub dir: &'static str,
    /// Its name.
    pub name: &'static str,
    /// Where it leads: back to the index.
    pub target: &'static str,
}

impl ProbeLink {
    /// Its path, relative to the index.
    pub fn path(&self) -> PathBuf {
        Path::new(self.dir).join(self.name)
    }

    /// Whether `index` holds it.
    fn is_in(&self, index: &Path) -> bool {
        fs::read_link(index.join(self.path())).ok().as_deref() == Some(Path::new(self.target))
    }

    /// Whether `index` holds anything of its name.
    fn is_taken_in(&self, index: &Path) -> bool {
        fs::symlink_metadata(index.join(self.path())).is_ok()
    }
}

/// The `glibc-hwcaps` directory, where the x86_64 links are.
pub const HWCAPS_DIR: &str = "glibc-hwcaps";

const fn back_from_hwcaps(name: &'static str) -> ProbeLink {
    ProbeLink {
        dir: HWCAPS_DIR,
        name,
        target: "..",
    }
}

const fn back_from_index(name: &'static str) -> ProbeLink {
    ProbeLink {
        dir: "",
        name,
        target: ".",
    }
}

/// Those of glibc 2.33+ on x86_64: in every index.
pub const X86_64: [ProbeLink; 3] = [
    back_from_hwcaps("x86-64-v2"),
    back_from_hwcaps("x86-64-v3"),
    back_from_hwcaps("x86-64-v4"),
];

/// Those of glibc 2.36 and older on aarch64: where the table lists [`AARCH64_LOADER`].
pub const AARCH64: [ProbeLink; 3] = [
    back_from_index("tls"),
    back_from_index("aarch64"),
    back_from_index("atomics"),
];

/// The `DT_SONAME` of glibc's aarch64 ld.so.
pub const AARCH64_LOADER: &[u8] = b"ld-linux-aarch64.so.1";

/// The links the index of a table listing `entries` holds.
pub fn wanted(entries: &[NewEntry]) -> Vec<ProbeLink> {
    let mut links = X86_64.to_vec();
    if entries.iter().any(|e| e.soname == AARCH64_LOADER) {
        links.extend(AARCH64);
    }
    links
}

/// The links of `want` that `index` lacks (or holds wrong), and those it holds that it
/// should not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeDiff {
    /// Missing or wrong.
    pub wrong: Vec<ProbeLink>,
    /// Held but not wanted.
    pub unwanted: Vec<ProbeLink>,
}

impl ProbeDiff {
    /// Whether the index holds exactly the links it should.
    pub fn is_empty(&self) -> bool {
        self.wrong.is_empty() && self.unwanted.is_empty()
    }
}

/// Compares the links of `index` with `want`.
pub fn diff(index: &Path, want: &[ProbeLink]) -> ProbeDiff {
    ProbeDiff {
        wrong: want.iter().filter(|l| !l.is_in(index)).copied().collect(),
        unwanted: X86_64
            .iter()
            .chain(&AARCH64)
            .filter(|l| !want.contains(l) && l.is_taken_in(index))
            .copied()
            .collect(),
    }
}

/// How `want` reads in `verify`'s report: `glibc-hwcaps/x86-64-v2 -> .., …`.
pub fn describe(want: &[ProbeLink]) -> String {
    let each: Vec<String> = want
        .iter()
        .map(|l| format!("{} -> {}", l.path().display(), l.target))
        .collect();
    each.join(", ")
}

/// Removes the link `l` from `index`; one already gone is fine.
pub fn remove(index: &Path, l: &ProbeLink) -> io::Result<()> {
    match fs::remove_file(index.join(l.path())) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
