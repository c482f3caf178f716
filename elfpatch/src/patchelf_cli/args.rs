//! Parsing of patchelf's options. `@FILE` as an option's value reads the value from FILE
//! (patchelf's convention); `@FILE` where an option is expected expands to the
//! whitespace-separated arguments written in FILE.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// patchelf's usage text.
pub const USAGE: &str = "syntax: patchelf
  [--set-interpreter FILENAME]
  [--page-size SIZE]
  [--print-interpreter]
  [--print-os-abi]		Prints 'EI_OSABI' field of ELF header
  [--set-os-abi ABI]		Sets 'EI_OSABI' field of ELF header to ABI.
  [--print-soname]		Prints 'DT_SONAME' entry of .dynamic section. Raises an error if DT_SONAME doesn't exist
  [--set-soname SONAME]		Sets 'DT_SONAME' entry to SONAME.
  [--set-rpath RPATH]
  [--add-rpath RPATH]
  [--remove-rpath]
  [--shrink-rpath]
  [--allowed-rpath-prefixes PREFIXES]		With '--shrink-rpath', reject rpath entries not starting with the allowed prefix
  [--print-rpath]
  [--force-rpath]
  [--add-needed LIBRARY]
  [--remove-needed LIBRARY]
  [--replace-needed LIBRARY NEW_LIBRARY]
  [--print-needed]
  [--no-default-lib]
  [--no-sort]		Do not sort program+section headers; useful for debugging patchelf.
  [--clear-symbol-version SYMBOL]
  [--add-debug-tag]
  [--build-resolution-cache]	Records where each DT_NEEDED resolves against the run path (.note.nixos.ldcache)
  [--print-execstack]		Prints whether the object requests an executable stack
  [--clear-execstack]
  [--set-execstack]
  [--rename-dynamic-symbols NAME_MAP_FILE]	Renames dynamic symbols. The map file should contain two symbols (old_name new_name) per line
  [--no-clobber-old-sections]		Do not clobber old section values - only use when the binary expects to find section info at the old location.
  [--output FILE]
  [--debug]
  [--version]
  FILENAME...
";

/// Everything the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub set_interpreter: Option<String>,
    pub page_size: Option<u64>,
    pub print_interpreter: bool,
    pub print_os_abi: bool,
    pub set_os_abi: Option<String>,
    pub print_soname: bool,
    pub set_soname: Option<String>,
    pub set_rpath: Option<String>,
    pub add_rpath: Option<String>,
    pub remove_rpath: bool,
    pub shrink_rpath: bool,
    pub allowed_rpath_prefixes: Vec<String>,
    pub print_rpath: bool,
    pub force_rpath: bool,
    pub add_needed: Vec<String>,
    pub remove_needed: Vec<String>,
    pub replace_needed: Vec<(String, String)>,
    pub print_needed: bool,
    pub no_default_lib: bool,
    pub add_debug_tag: bool,
    pub clear_symbol_version: Vec<String>,
    pub rename_symbols: Vec<(String, String)>,
    pub print_execstack: bool,
    pub execstack: Option<bool>,
    pub output: Option<PathBuf>,
    pub debug: bool,
    /// `--no-clobber-old-sections`: moved pieces keep their old bytes.
    pub keep_old_sections: bool,
    /// `--build-resolution-cache`.
    pub build_resolution_cache: bool,
    pub files: Vec<PathBuf>,
}

/// Result of parsing.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

fn value(arg: &str) -> Result<String> {
    match arg.strip_prefix('@') {
        Some(f) if !f.is_empty() => std::fs::read_to_string(f).with_context(|| getting_info(f)),
        _ => Ok(arg.to_string()),
    }
}

/// The context of a failed read of an `@FILE` argument, in patchelf's words (scripts match
/// them).
fn getting_info(f: &str) -> String {
    format!("getting info about '{f}'")
}

fn expand(args: Vec<OsString>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in args {
        let a = a
            .into_string()
            .map_err(|a| anyhow::anyhow!("argument is not valid UTF-8: {a:?}"))?;
        match a.strip_prefix('@') {
            Some(f) if !f.is_empty() && !out.last().is_some_and(|p: &String| takes_value(p)) => {
                let text = std::fs::read_to_string(f).with_context(|| getting_info(f))?;
                out.extend(text.split_whitespace().map(str::to_string));
            }
            _ => out.push(a),
        }
    }
    Ok(out)
}

fn takes_value(opt: &str) -> bool {
    matches!(
        opt,
        "--set-interpreter"
            | "--interpreter"
            | "--page-size"
            | "--set-os-abi"
            | "--set-soname"
            | "--set-rpath"
            | "--add-rpath"
            | "--allowed-rpath-prefixes"
            | "--add-needed"
            | "--remove-needed"
            | "--replace-needed"
            | "--clear-symbol-version"
            | "--rename-dynamic-symbols"
            | "--output"
    )
}

/// Parses patchelf's command line (without the program name).
pub fn parse_args(args: Vec<OsString>) -> Result<Parsed> {
    let args = expand(args)?;
    let mut o = Options::default();
    let mut it = args.into_iter();
    let next = |it: &mut std::vec::IntoIter<String>, opt: &str| -> Result<String> {
        it.next()
            .with_context(|| format!("option '{opt}' needs an argument"))
    };
    let mut only_files = false;
    while let Some(a) = it.next() {
        if only_files || !a.starts_with('-') || a == "-" {
            o.files.push(PathBuf::from(a));
            continue;
        }
        match a.as_str() {
            "--" => only_files = true,
            "--set-interpreter" | "--interpreter" => {
                o.set_interpreter = Some(value(&next(&mut it, &a)?)?)
            }
            "--page-size" => {
                let v = next(&mut it, &a)?;
                let n = parse_num(&v).with_context(|| format!("invalid page size '{v}'"))?;
                if n == 0 || !n.is_power_of_two() {
                    bail!("invalid page size '{v}': must be a power of two");
                }
                o.page_size = Some(n);
            }
            "--print-interpreter" => o.print_interpreter = true,
            "--print-os-abi" => o.print_os_abi = true,
            "--set-os-abi" => o.set_os_abi = Some(next(&mut it, &a)?),
            "--print-soname" => o.print_soname = true,
            "--set-soname" => o.set_soname = Some(value(&next(&mut it, &a)?)?),
            "--set-rpath" => o.set_rpath = Some(value(&next(&mut it, &a)?)?),
            "--add-rpath" => o.add_rpath = Some(value(&next(&mut it, &a)?)?),
            "--remove-rpath" => o.remove_rpath = true,
            "--shrink-rpath" => o.shrink_rpath = true,
            "--allowed-rpath-prefixes" => {
                let v = next(&mut it, &a)?;
                o.allowed_rpath_prefixes = v
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "--print-rpath" => o.print_rpath = true,
            "--force-rpath" => o.force_rpath = true,
            "--add-needed" => o.add_needed.push(next(&mut it, &a)?),
            "--remove-needed" => o.remove_needed.push(next(&mut it, &a)?),
            "--replace-needed" => {
                let old = next(&mut it, &a)?;
                let new = next(&mut it, &a)?;
                o.replace_needed.push((old, new));
            }
            "--print-needed" => o.print_needed = true,
            "--no-default-lib" => o.no_default_lib = true,
            "--add-debug-tag" => o.add_debug_tag = true,
            "--clear-symbol-version" => o.clear_symbol_version.push(next(&mut it, &a)?),
            "--rename-dynamic-symbols" => {
                let f = next(&mut it, &a)?;
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("cannot read symbol map '{f}'"))?;
                for (n, line) in text.lines().enumerate() {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    match w.as_slice() {
                        [] => {}
                        [old, new] => o.rename_symbols.push((old.to_string(), new.to_string())),
                        _ => bail!("{f}:{}: expected 'old_name new_name'", n + 1),
                    }
                }
            }
            "--print-execstack" => o.print_execstack = true,
            "--clear-execstack" => o.execstack = Some(false),
            "--set-execstack" => o.execstack = Some(true),
            "--output" => o.output = Some(PathBuf::from(next(&mut it, &a)?)),
            "--debug" => o.debug = true,
            // elfpatch never reorders headers (new segments go after the last PT_LOAD,
            // which keeps them sorted), so there is nothing to turn off.
            "--no-sort" => {}
            "--no-clobber-old-sections" => o.keep_old_sections = true,
            "--build-resolution-cache" => o.build_resolution_cache = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            "--version" | "-V" => return Ok(Parsed::Version),
            _ => bail!("unknown option '{a}'"),
        }
    }
    if o.files.is_empty() {
        bail!("missing filename");
    }
    if o.output.is_some() && o.files.len() > 1 {
        bail!("--output option only allowed with single input file");
    }
    if o.force_rpath && o.build_resolution_cache {
        bail!("--build-resolution-cache cannot be combined with --force-rpath");
    }
    if o.set_rpath.is_some() && o.add_rpath.is_some() {
        bail!("--set-rpath and --add-rpath cannot be combined");
    }
    Ok(Parsed::Run(Box::new(o)))
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_files_and_values() {
        let Parsed::Run(o) = parse(&[
            "--set-rpath",
            "/a:/b",
            "--replace-needed",
            "x",
            "y",
            "--print-needed",
            "f1",
            "f2",
        ])
        .expect("parse") else {
            panic!("not a run");
        };
        assert_eq!(o.set_rpath.as_deref(), Some("/a:/b"));
        assert_eq!(o.replace_needed, vec![("x".to_string(), "y".to_string())]);
        assert!(o.print_needed);
        assert_eq!(o.files, vec![PathBuf::from("f1"), PathBuf::from("f2")]);
    }

    #[test]
    fn at_file_value_and_response_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = dir.path().join("v");
        std::fs::write(&v, "/lib/ld.so").expect("write");
        let r = dir.path().join("r");
        std::fs::write(&r, "--add-needed libx.so\n--print-rpath").expect("write");
        let (va, ra) = (format!("@{}", v.display()), format!("@{}", r.display()));
        let Parsed::Run(o) = parse(&["--set-interpreter", &va, &ra, "f"]).expect("parse") else {
            panic!("not a run");
        };
        assert_eq!(o.set_interpreter.as_deref(), Some("/lib/ld.so"));
        assert_eq!(o.add_needed, vec!["libx.so".to_string()]);
        assert!(o.print_rpath);
    }

    #[test]
    fn errors() {
        assert!(parse(&["--set-rpath"]).is_err());
        assert!(parse(&["--print-needed"]).is_err());
        assert!(parse(&["--bogus", "f"]).is_err());
        assert!(parse(&["--output", "o", "a", "b"]).is_err());
        assert!(parse(&["--page-size", "3000", "f"]).is_err());
        assert!(matches!(parse(&["--version"]), Ok(Parsed::Version)));
        assert!(matches!(parse(&["-h"]), Ok(Parsed::Help)));
        let refused = parse(&["--force-rpath", "--build-resolution-cache", "f"]).unwrap_err();
        assert!(
            refused.to_string().contains("cannot be combined"),
            "{refused}"
        );
        let missing = parse(&["--set-rpath", "@/nonexistent/args", "f"]).unwrap_err();
        assert!(
            format!("{missing:#}").contains("getting info about '/nonexistent/args'"),
            "{missing:#}"
        );
        let Ok(Parsed::Run(o)) = parse(&["--no-sort", "--no-clobber-old-sections", "f"]) else {
            panic!("--no-sort and --no-clobber-old-sections refused");
        };
        assert!(o.keep_old_sections);
    }
}
