//! patchelf's command line: `elfpatch --set-interpreter ... FILE` and `patchelf ...` (when
//! the binary is invoked through a symlink named `patchelf`). Options, their spelling and
//! their semantics follow patchelf 0.19; the edits are done by [`crate::elf`].

mod args;
mod ldcache;
mod rpath;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::elf::{self, Edit, Elf};
pub use args::{parse_args, Options};

/// Runs a patchelf-style command line (`args` excludes the program name).
pub fn run(args: Vec<OsString>) -> ExitCode {
    let opts = match parse_args(args) {
        Ok(args::Parsed::Run(o)) => o,
        Ok(args::Parsed::Help) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(args::Parsed::Version) => {
            println!("patchelf 0.19.0 (elfpatch {})", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("patchelf: {e:#}");
            eprint!("{}", args::USAGE);
            return ExitCode::FAILURE;
        }
    };
    for file in &opts.files {
        if let Err(e) = process(&opts, file) {
            eprintln!("patchelf: {}: {e:#}", file.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

const OS_ABIS: &[(u8, &str, &[&str])] = &[
    (0, "System V", &["none", "system v", "sysv"]),
    (1, "HP-UX", &["hp-ux", "hpux"]),
    (2, "NetBSD", &["netbsd"]),
    (3, "Linux", &["linux", "gnu/linux", "gnu"]),
    (4, "GNU Hurd", &["gnu hurd", "hurd"]),
    (6, "Solaris", &["solaris"]),
    (7, "AIX", &["aix"]),
    (8, "IRIX", &["irix"]),
    (9, "FreeBSD", &["freebsd"]),
    (10, "Tru64", &["tru64"]),
    (12, "OpenBSD", &["openbsd"]),
    (13, "OpenVMS", &["openvms"]),
];

/// `EI_OSABI` for a name accepted by `--set-os-abi`.
fn os_abi_from_name(name: &str) -> Result<u8> {
    let n = name.to_ascii_lowercase();
    OS_ABIS
        .iter()
        .find(|(_, _, names)| names.contains(&n.as_str()))
        .map(|(v, _, _)| *v)
        .with_context(|| format!("unrecognized OS ABI '{name}'"))
}

fn process(o: &Options, file: &Path) -> Result<()> {
    let data = elf::read_file(file)?;
    let elf = data.parse()?;
    elf::check_input(&data)?;
    if o.debug {
        eprintln!("patching ELF file '{}'", file.display());
    }
    let mut out = std::io::stdout().lock();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if o.print_interpreter {
        let i = elf.interpreter().context(
            "cannot find section '.interp'. The input file is most likely statically linked",
        )?;
        writeln!(out, "{}", s(i))?;
    }
    if o.print_os_abi {
        let abi = elf.os_abi();
        match OS_ABIS.iter().find(|a| a.0 == abi) {
            Some(a) => writeln!(out, "{}", a.1)?,
            None => writeln!(out, "0x{abi:02x}")?,
        }
    }
    if o.print_soname {
        if let Some(n) = elf.soname() {
            writeln!(out, "{}", s(n))?;
        }
    }
    if o.print_rpath && elf.is_dynamic() {
        let r = elf.runpath().or_else(|| elf.rpath()).unwrap_or_default();
        writeln!(out, "{}", s(r))?;
    }
    if o.print_needed {
        for n in elf.needed() {
            writeln!(out, "{}", s(n))?;
        }
    }
    if o.print_execstack {
        let v = match elf.gnu_stack_flags() {
            Some(f) if f & 1 != 0 => "X",
            Some(_) => "-",
            None => "?",
        };
        writeln!(out, "execstack: {v}")?;
    }
    out.flush()?;
    drop(out);

    let mut edit = build_edit(o, &elf, file)?;
    if let Some(p) = o.page_size {
        edit.page_size(p);
    }
    let target = o.output.as_deref().unwrap_or(file);
    let same = o.output.as_deref().is_none_or(|t| t == file);
    let written = if o.build_resolution_cache {
        let out = with_resolution_cache(&elf, &edit)?;
        let img = if out == elf.data {
            edit.image(&elf)?
        } else {
            elf::Image::from_bytes(out)
        };
        elf::write_image(&data, &elf, &img, target, same)?
    } else {
        elf::write_edit(&data, &elf, &edit, target, same)?
    };
    if written {
        // patchelf renumbers symbols' sections when it writes, skipping (and naming) those
        // whose section has no name; elfpatch leaves them as they are, and warns alike.
        for i in elf.unnamed_section_refs() {
            eprintln!("warning: symbol table entry refers to an unnamed section (index {i})");
        }
    }
    if o.debug {
        eprintln!(
            "{}: {}",
            target.display(),
            if written { "written" } else { "unchanged" }
        );
    }
    Ok(())
}

/// The output of `edit` with a resolution cache note computed from it (the run path and
/// `DT_NEEDED` the edit leaves), as patchelf builds it after its other edits. A note that
/// is there already must be the same; nothing to resolve is a warning, as in patchelf.
fn with_resolution_cache(elf: &Elf, edit: &Edit) -> Result<Vec<u8>> {
    let first = edit.apply_to(elf)?;
    let edited = Elf::parse(&first)?;
    let existing = edited.resolution_cache();
    let stale = || {
        anyhow::anyhow!(
            "--build-resolution-cache: a resolution cache note is already present; \
             rebuild from an unpatched binary"
        )
    };
    let desc = match ldcache::descriptor(&edited) {
        Ok(d) => d,
        Err(_) if existing.is_some() => return Err(stale()),
        Err(why) => {
            eprintln!("warning: {why}");
            return Ok(first);
        }
    };
    match existing {
        Some(Some(old)) if old == desc.as_slice() => Ok(first),
        Some(_) => Err(stale()),
        None => {
            let mut e = Edit::new();
            e.add_resolution_cache(desc);
            if let Some(p) = edit.page_size_override() {
                e.page_size(p);
            }
            Ok(e.apply_to(&edited)?)
        }
    }
}

fn build_edit(o: &Options, elf: &Elf, file: &Path) -> Result<Edit> {
    let mut e = Edit::new();
    if let Some(abi) = &o.set_os_abi {
        e.set_os_abi(os_abi_from_name(abi)?);
    }
    if let Some(s) = &o.set_soname {
        if elf.file_type() != 3 {
            bail!("--set-soname only works on shared libraries (ET_DYN)");
        }
        e.set_soname(s.clone());
    }
    // An empty interpreter is ignored, as patchelf does: it is what a script passes for
    // an unset variable, and an empty PT_INTERP makes the program unloadable.
    if let Some(i) = o.set_interpreter.as_ref().filter(|i| !i.is_empty()) {
        e.set_interpreter(i.clone());
    }
    e.force_rpath(o.force_rpath);
    if o.remove_rpath {
        e.remove_runpath();
    } else if o.shrink_rpath {
        if let Some(new) = rpath::shrink(elf, file, &o.allowed_rpath_prefixes)? {
            e.set_runpath(new);
        }
    } else if let Some(r) = &o.set_rpath {
        e.set_runpath(r.clone());
    } else if let Some(r) = &o.add_rpath {
        e.add_runpath(r.clone());
    }
    for n in &o.remove_needed {
        e.remove_needed(n.clone());
    }
    for (a, b) in &o.replace_needed {
        e.replace_needed(a.clone(), b.clone());
    }
    for n in &o.add_needed {
        e.add_needed(n.clone());
    }
    if o.no_default_lib {
        e.no_default_lib();
    }
    if o.add_debug_tag {
        e.add_debug_tag();
    }
    for s in &o.clear_symbol_version {
        e.clear_symbol_version(s.clone());
    }
    for (a, b) in &o.rename_symbols {
        e.rename_dynamic_symbol(a.clone(), b.clone());
    }
    if let Some(x) = o.execstack {
        e.set_execstack(x);
    }
    e.keep_old_pieces(o.keep_old_sections);
    Ok(e)
}
