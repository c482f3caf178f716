//! Secure mode's trust rule. Under `AT_SECURE` (set-user-ID, set-group-ID or capability
//! programs) a file is used only when everything on the way to it was checked, with
//! `fstat` on what was actually opened, one component at a time (`openat` with
//! `O_NOFOLLOW` from the directory opened before), so nothing can be swapped between the
//! check and the use:
//!
//! - every directory, file and symbolic link on the way is owned by a trusted user: root,
//!   or the user whose rights the program gains (its file's owner, the effective user when
//!   it differs from the real one; a set-group-ID program trusts root alone);
//! - every directory in the store (the store itself included) and every file used is
//!   writable by its owner only (no group or other write bit); the directories above the
//!   store may also be world-writable if sticky (like `/tmp`: nobody else may rename or
//!   replace an entry there, and each entry passed is checked to be trusted);
//! - the last component is of the kind asked for (a directory, or a regular file: a FIFO
//!   or a device is refused without waiting, since every open is `O_NONBLOCK`).
//!
//! Since no directory on the way can be changed by anyone else, the path resolves to the
//! same files when ld.so opens it afterwards.

use crate::path::PathBuf;
use crate::startup::{Stack, AT_EUID, AT_UID};
use crate::sys::{
    self, cpath, Dir, Errno, Fd, Stat, AT_SYMLINK_NOFOLLOW, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK,
    S_IFDIR, S_IFLNK, S_IFREG,
};

/// Most symbolic links followed in one walk (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Who may own what a secure program uses.
#[derive(Clone, Copy, Debug)]
pub struct Trust {
    /// Root, and the effective user when the program raised it (else root again).
    owners: [u32; 2],
}

impl Trust {
    /// The trusted owners of this process: root, and the user a set-user-ID program runs
    /// as. A set-group-ID program gains a group, not a user: it trusts root alone (the real
    /// user, the caller, is never trusted).
    pub fn of(stack: &Stack) -> Trust {
        let (uid, euid) = (stack.aux(AT_UID) as u32, stack.aux(AT_EUID) as u32);
        Trust {
            owners: [0, if euid != uid { euid } else { 0 }],
        }
    }

    fn owner_ok(&self, st: &Stat) -> bool {
        self.owners.contains(&st.uid)
    }
}

/// Why a walk failed, for a message naming the component at fault.
#[derive(Clone, Copy, Debug)]
pub enum WalkError {
    /// A system call failed.
    Sys(Errno),
    /// The component is owned by an untrusted user (its uid).
    Owner(u32),
    /// The component is writable by group or others.
    Writable,
    /// The last component is not of the kind asked for (what it is).
    Kind(&'static str),
    /// More than [`MAX_LINKS`] symbolic links, or a path too long for ld-cas's buffers.
    Path(&'static str),
    /// The file does not have the size the table records.
    Size {
        /// The size recorded in the table.
        want: u64,
        /// The file's size.
        got: u64,
    },
}

impl WalkError {
    /// Writes the reason (after the path at fault).
    pub fn describe(&self, o: &mut crate::out::Out) {
        match *self {
            WalkError::Sys(e) => {
                o.str(e.describe());
            }
            WalkError::Owner(uid) => {
                let _ = core::fmt::write(
                    o,
                    format_args!("is owned by uid {uid}, not by root (or the program's owner)"),
                );
            }
            WalkError::Writable => {
                o.str("is writable by group or others");
            }
            WalkError::Kind(k) => {
                o.str("is ").str(k).str(", not a regular file");
            }
            WalkError::Path(why) => {
                o.str(why);
            }
            WalkError::Size { want, got } => {
                let _ = core::fmt::write(
                    o,
                    format_args!("is {got} bytes long, but the lookup table records {want}"),
                );
            }
        }
    }
}

/// What a walk should end on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    /// A directory.
    Dir,
    /// A regular file.
    File,
}

/// Checks one opened component: trusted owner; for a directory, no group or other write
/// bit (unless `sticky_ok` and the sticky bit is set); for the last one, the kind wanted.
fn check(st: &Stat, trust: &Trust, last: Option<Want>, sticky_ok: bool) -> Result<(), WalkError> {
    if !trust.owner_ok(st) {
        return Err(WalkError::Owner(st.uid));
    }
    let writable = st.mode & 0o022 != 0;
    match (st.kind(), last) {
        (S_IFDIR, None) | (S_IFDIR, Some(Want::Dir)) => {
            if writable && !(sticky_ok && st.mode & 0o1000 != 0) {
                return Err(WalkError::Writable);
            }
        }
        (S_IFREG, Some(Want::File)) => {
            if writable {
                return Err(WalkError::Writable);
            }
        }
        (S_IFDIR, Some(Want::File)) => return Err(WalkError::Kind("a directory")),
        (_, Some(Want::File)) => return Err(WalkError::Kind(st.describe_kind())),
        _ => return Err(WalkError::Sys(Errno(20))),
    }
    Ok(())
}

/// Opens `path` one component at a time, from `start` (a directory) when it is relative,
/// from `/` when it is absolute, checking each component by the trust rule (see the
/// module), and following symbolic links only when they are trusted too. `sticky_ok`
/// allows sticky world-writable directories before the last component (the directories
/// above a store). `at` receives the path walked so far (for messages). Returns the last
/// component, open, and its `fstat`.
pub fn walk(
    start: Option<&Fd>,
    path: &[u8],
    want: Want,
    trust: &Trust,
    sticky_ok: bool,
    at: &mut PathBuf,
) -> Result<(Fd, Stat), WalkError> {
    // What is left to walk; a trusted link's target is put in front of the rest.
    let mut rest = PathBuf::new();
    if !rest.push(path) {
        return Err(WalkError::Path("is too long or contains a NUL byte"));
    }
    at.clear();
    let root = |at: &mut PathBuf| -> Result<(Fd, Stat), WalkError> {
        let fd =
            sys::openat(Dir::Cwd, cpath!("/"), O_DIRECTORY | O_NOFOLLOW).map_err(WalkError::Sys)?;
        let st = sys::fstat(&fd).map_err(WalkError::Sys)?;
        at.push(b"/");
        check(&st, trust, None, sticky_ok).map(|_| (fd, st))
    };
    let (mut cur, mut st) = match start {
        Some(dir) if !path.starts_with(b"/") => {
            let fd = sys::openat(Dir::Fd(dir), cpath!("."), O_DIRECTORY).map_err(WalkError::Sys)?;
            let st = sys::fstat(&fd).map_err(WalkError::Sys)?;
            (fd, st)
        }
        _ => {
            if !path.starts_with(b"/") {
                return Err(WalkError::Path("is not an absolute path"));
            }
            root(at)?
        }
    };
    let mut links = 0;
    let mut pos = 0;
    let mut name = PathBuf::new();
    let mut target = [0u8; crate::path::PATH_MAX];
    loop {
        let bytes = rest.bytes();
        while pos < bytes.len() && bytes[pos] == b'/' {
            pos += 1;
        }
        if pos == bytes.len() {
            // Nothing left (the path was `/`, or ended with `/` or `.`).
            return match (st.kind(), want) {
                (S_IFDIR, Want::Dir) => Ok((cur, st)),
                _ => Err(WalkError::Kind(st.describe_kind())),
            };
        }
        let end = bytes[pos..]
            .iter()
            .position(|&c| c == b'/')
            .map_or(bytes.len(), |n| pos + n);
        let component = &bytes[pos..end];
        let last = bytes[end..].iter().all(|&c| c == b'/');
        name.clear();
        name.push(component);
        if !(at.bytes().is_empty() || at.bytes().ends_with(b"/")) {
            at.push(b"/");
        }
        at.push(component);
        pos = end;
        if component == b"." {
            continue;
        }
        let kind = if last { Some(want) } else { None };
        let dir_flag = if last && want == Want::File {
            0
        } else {
            O_DIRECTORY
        };
        match sys::openat(Dir::Fd(&cur), name.c(), O_NOFOLLOW | O_NONBLOCK | dir_flag) {
            Ok(fd) => {
                st = sys::fstat(&fd).map_err(WalkError::Sys)?;
                check(&st, trust, kind, sticky_ok && !last)?;
                cur = fd;
                if last {
                    return Ok((cur, st));
                }
            }
            Err(e) if e == Errno(40) || e == Errno(20) => {
                // O_NOFOLLOW met a symbolic link (or a file where a directory was needed).
                let lst = sys::stat_at(Dir::Fd(&cur), name.c(), AT_SYMLINK_NOFOLLOW)
                    .map_err(WalkError::Sys)?;
                if lst.kind() != S_IFLNK {
                    return Err(if last {
                        WalkError::Kind(lst.describe_kind())
                    } else {
                        WalkError::Sys(e)
                    });
                }
                if !trust.owner_ok(&lst) {
                    return Err(WalkError::Owner(lst.uid));
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(WalkError::Path("has too many levels of symbolic links"));
                }
                let n = sys::readlinkat(Dir::Fd(&cur), name.c(), &mut target)
                    .map_err(WalkError::Sys)?;
                if n == 0 || n >= target.len() {
                    return Err(WalkError::Path("has a symbolic link ld-cas cannot follow"));
                }
                let mut next = PathBuf::new();
                let ok = next.push(&target[..n]) && next.push(b"/") && next.push(&bytes[end..]);
                if !ok {
                    return Err(WalkError::Path("is too long or contains a NUL byte"));
                }
                if target[0] == b'/' {
                    let (fd, s) = root(&mut PathBuf::new())?;
                    cur = fd;
                    st = s;
                }
                rest = next;
                pos = 0;
            }
            Err(e) => return Err(WalkError::Sys(e)),
        }
    }
}
