//! ld-cas run as a command (`AT_BASE` = 0): run a program, list or verify its closure.

use crate::arch;
use crate::cas::{Hash, Table, URI_LEN, URI_PREFIX};
use crate::elf::{self, DT_LDCAS_LOADER, DT_LDCAS_STORE, DT_LDCAS_TABLE};
use crate::launch::{self, Program};
use crate::loadmap;
use crate::merged;
use crate::out::{die, Out, STDOUT};
use crate::path::{dirname, PathBuf};
use crate::startup::{self, Stack, AT_ENTRY, AT_PHDR, AT_PHNUM};
use crate::store;
use crate::sys;
use crate::verify;

const USAGE: &str = "\
usage: ld-cas [--] PROGRAM [ARGS...]   run PROGRAM through ld-cas
       ld-cas --list PROGRAM           print the resolved closure (URI, soname, path)
       ld-cas --verify PROGRAM         rehash the closure against its URIs
       ld-cas --version | --help

ld-cas is the ELF interpreter of content-addressed programs: their DT_NEEDED entries
name libraries as uri:blake3:<hash>, resolved through the store's lookup table.
Environment (ignored, and removed, for setuid programs): LD_CAS_STORE (the store),
LD_CAS_DEBUG=1 (trace every resolution to stderr), LD_CAS_OVERRIDE=SONAME=PATH[:...]
(load PATH wherever a uri: name stands for a library with that soname).
";

/// Entry point when run as a command.
/// `own_base` is where ld-cas's image starts.
pub fn main(mut stack: Stack, own_base: usize) -> ! {
    let mut i = 1;
    let mut mode = b"" as &[u8];
    while let Some(a) = stack.arg(i) {
        match a {
            b"--help" | b"-h" => {
                Out::new(STDOUT).str(USAGE);
                sys::exit(0);
            }
            b"--version" => {
                Out::new(STDOUT).str(concat!("ld-cas ", env!("CARGO_PKG_VERSION"), "\n"));
                sys::exit(0);
            }
            b"--list" | b"--verify" => mode = a,
            b"--" => {
                i += 1;
                break;
            }
            _ if a.starts_with(b"-") => die(2, |o| {
                o.str("unknown option ")
                    .bytes(a)
                    .str(" (see ld-cas --help)");
            }),
            _ => break,
        }
        i += 1;
    }
    let prog = match stack.arg(i) {
        Some(p) => p,
        None => die(2, |o| {
            o.str("no program given (see ld-cas --help)");
        }),
    };
    let page = startup::page_size(&stack);
    match mode {
        b"--list" => list(&stack, prog, false, page),
        b"--verify" => list(&stack, prog, true, page),
        _ => {}
    }
    let mut path = PathBuf::new();
    path.push(prog);
    let m = match loadmap::map_path(path.c(), arch::EM_MACHINE, page, loadmap::Role::Program) {
        Ok((m, _)) => m,
        Err(e) => die(127, |o| {
            o.str("cannot run ").bytes(prog).str(": ").str(e.describe());
        }),
    };
    // Run as a command, a merged interpreter is the image the kernel mapped.
    // SAFETY: AT_PHDR/AT_PHNUM come from the kernel and describe that image.
    let merged = unsafe { merged::as_command(stack.aux(AT_PHDR), stack.aux(AT_PHNUM), own_base) };
    stack.set_aux(AT_PHDR, m.phdr);
    stack.set_aux(AT_PHNUM, m.phnum);
    stack.set_aux(AT_ENTRY, m.entry);
    stack.shift_args(i);
    // SAFETY: the program was just mapped with these headers.
    let program = unsafe { Program::from_phdrs(m.phdr, m.phnum, Some(m.bias)) };
    // Both paths are copied by the hand-over: the stack they live on is given back.
    let mut me = PathBuf::new();
    if !me.fill(|buf| sys::readlink(sys::cpath!("/proc/self/exe"), buf).ok()) {
        die(127, |o| {
            o.str("cannot find ld-cas's own path in /proc/self/exe");
        });
    }
    // The program's directory, absolute (the program may change directory before a
    // `dlopen` resolved against a store found relative to it).
    let mut dir = PathBuf::new();
    if !prog.starts_with(b"/") && dir.fill(|buf| sys::getcwd(buf).ok()) {
        dir.push(b"/");
    }
    dir.push(prog);
    if dir.overflowed() {
        die(127, |o| {
            o.str("the path of ").bytes(prog).str(" is too long");
        });
    }
    launch::handover(
        stack,
        program,
        prog,
        Some(dirname(dir.bytes())),
        me.bytes(),
        merged,
    )
}

/// Maps the file at `path` read-only for good.
fn map(path: &[u8]) -> Result<&'static [u8], sys::Errno> {
    let mut p = PathBuf::new();
    p.push(path);
    let fd = sys::open(p.c())?;
    let st = sys::fstat(&fd)?;
    if st.kind() != sys::S_IFREG {
        // A FIFO, a directory, a device: nothing to map (and never waited for).
        return Err(sys::Errno(if st.kind() == sys::S_IFDIR { 21 } else { 19 }));
    }
    sys::map_file(&fd, st.size as usize)
}

/// `--list` (and `--verify`): walks the closure breadth-first like ld.so would. `page` is
/// the page size.
fn list(stack: &Stack, prog: &[u8], verify: bool, page: usize) -> ! {
    let data = match map(prog) {
        Ok(d) => d,
        Err(e) => die(1, |o| {
            o.str("cannot read ")
                .bytes(prog)
                .str(": ")
                .str(e.describe());
        }),
    };
    let file = match elf::File::parse(data, arch::EM_MACHINE) {
        Some(f) => f,
        None => die(1, |o| {
            o.bytes(prog).str(": not an ELF file for this machine");
        }),
    };
    let env = if stack.aux(crate::startup::AT_SECURE) == 0 {
        stack.env(b"LD_CAS_STORE").filter(|e| !e.is_empty())
    } else {
        None
    };
    let recorded = file.tag(DT_LDCAS_STORE).map(|o| file.string(o));
    let mut built = PathBuf::new();
    let mut scratch = PathBuf::new();
    let (dir, source) = match store::locate(&mut built, env, recorded, dirname(prog)) {
        Ok(l) => (l.path, l.source),
        Err(why) => die(1, |o| {
            o.bytes(prog).str(": the store's path ").str(why);
        }),
    };
    let table_dir = file
        .tag(DT_LDCAS_TABLE)
        .map_or(&b""[..], |o| file.string(o));
    let table = store::open_table(dir, table_dir, &mut scratch, None, None)
        .ok()
        .map(|t| t.table);
    // Which objects replaced which (`elfpatch substitute`): optional.
    let mut record_path = PathBuf::new();
    record_path.push(dir);
    record_path.push(b"/substitutions");
    let record = map(record_path.bytes()).ok();
    let mut o = Out::new(STDOUT);
    o.str("store ")
        .bytes(dir)
        .str(" (")
        .str(source.describe())
        .str(")");
    if table.is_none() {
        o.str(": no usable lookup table");
    }
    o.str("\n");
    let mut failed = false;
    let mut objs = [(Hash([0; 32]), &[][..]); verify::MAX];
    let mut m = 0;
    let loader_uri = file.tag(DT_LDCAS_LOADER).map(|v| file.string(v));
    if let Some(uri) = loader_uri {
        o.str("\tloader ");
        match show(&mut o, table, record, dir, uri) {
            Some(bytes) => {
                if let Ok(h) = Hash::parse_uri(uri) {
                    objs[m] = (h, bytes);
                    m += 1;
                }
            }
            None => failed = true,
        }
    }
    let default = &arch::DEFAULT_LOADER[..arch::DEFAULT_LOADER.len() - 1];
    let default = &default[default
        .iter()
        .rposition(|&c| c == b'/')
        .map_or(0, |i| i + 1)..];
    let loader_soname: &[u8] = match (loader_uri.map(Hash::parse_uri), table) {
        (Some(Ok(h)), Some(t)) => match t.lookup_checked(&h) {
            Ok(Some(e)) => e.soname,
            _ => default,
        },
        _ => default,
    };
    // Room for the loader besides in `objs`.
    let mut seen = [Hash([0; 32]); verify::MAX - 1];
    let mut n = 0;
    let mut queue = [&[][..]; verify::MAX];
    queue[0] = data;
    let (mut head, mut tail) = (0, 1);
    let mut plain = [&[][..]; 128];
    let mut np = 0;
    while head < tail {
        let f = elf::File::parse(queue[head], arch::EM_MACHINE);
        head += 1;
        let f = match f {
            Some(f) => f,
            None => {
                // Not an ELF file for this machine: it needs nothing ld-cas can follow;
                // `--verify` still rehashes it.
                continue;
            }
        };
        for name in f.needed() {
            if !name.starts_with(URI_PREFIX) {
                if !plain[..np].contains(&name) {
                    o.str("\t").bytes(name);
                    if name == loader_soname {
                        o.str(" => the loader itself\n");
                    } else {
                        o.str(" => searched by ld.so\n");
                    }
                    if np < plain.len() {
                        plain[np] = name;
                        np += 1;
                    }
                }
                continue;
            }
            let h = match Hash::parse_uri(name) {
                Ok(h) if name.len() == URI_LEN => h,
                _ => {
                    o.str("\t")
                        .bytes(name)
                        .str(" => malformed content address\n");
                    failed = true;
                    continue;
                }
            };
            if seen[..n].contains(&h) {
                continue;
            }
            if n == seen.len() {
                // Never a silent cut: the closure is bigger than what is listed.
                o.flush();
                die(1, |o| {
                    o.bytes(prog);
                    let _ = core::fmt::write(
                        o,
                        format_args!(
                            ": the closure has more than {} content-addressed objects, more than ld-cas --list and --verify handle",
                            seen.len()
                        ),
                    );
                });
            }
            seen[n] = h;
            n += 1;
            o.str("\t");
            match show(&mut o, table, record, dir, name) {
                Some(bytes) => {
                    // At most `seen.len()` objects: `queue` has room for them after the
                    // program, `objs` after the loader.
                    queue[tail] = bytes;
                    tail += 1;
                    objs[m] = (h, bytes);
                    m += 1;
                }
                None => failed = true,
            }
        }
    }
    if verify && !verify::closure(&objs[..m], page, &mut o) {
        failed = true;
    }
    o.flush();
    sys::exit(if failed { 1 } else { 0 })
}

/// Prints `URI (soname) => path` (and, from the substitution record, the objects it
/// replaced) and returns the object's bytes, or prints why not.
fn show(
    o: &mut Out,
    table: Option<Table<'static>>,
    record: Option<&[u8]>,
    store: &[u8],
    uri: &[u8],
) -> Option<&'static [u8]> {
    o.bytes(uri);
    let entry = match table.and_then(|t| Hash::parse_uri(uri).ok().map(|h| t.lookup_checked(&h))) {
        Some(Ok(Some(e))) => e,
        Some(Err(e)) => {
            let _ = core::fmt::write(o, format_args!(" => the lookup table {}\n", e));
            return None;
        }
        _ => {
            o.str(" => not found\n");
            return None;
        }
    };
    o.str(" (")
        .bytes(entry.soname)
        .str(") => ")
        .bytes(store)
        .str("/")
        .bytes(entry.path);
    // Record lines are `<new URI> <old URI>`.
    for line in record.unwrap_or_default().split(|&c| c == b'\n') {
        if line.len() == 2 * URI_LEN + 1 && &line[..URI_LEN] == uri && line[URI_LEN] == b' ' {
            o.str(" (replaces ").bytes(&line[URI_LEN + 1..]).str(")");
        }
    }
    let mut p = PathBuf::new();
    p.push(store);
    p.push(b"/");
    p.push(entry.path);
    let bytes = match map(p.bytes()) {
        Ok(b) => b,
        Err(e) => {
            o.str(": ").str(e.describe()).str("\n");
            return None;
        }
    };
    o.str("\n");
    Some(bytes)
}
