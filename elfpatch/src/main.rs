//! The `elfpatch` command. Invoked as `patchelf` (a symlink) or with a first argument that
//! is a patchelf option (`--set-interpreter`, `@args-file`, ...), it takes patchelf's command
//! line; otherwise its own subcommands (`store`, `convert`, ...).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn invoked_as_patchelf(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == "patchelf")
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str());
    let patchelf_style = invoked_as_patchelf(args.first())
        || first.is_some_and(|a| {
            (a.starts_with("--") && a != "--help" && a != "--version") || a.starts_with('@')
        });
    if first == Some("--help-patchelf") {
        return elfpatch::patchelf_cli::run(vec![OsString::from("--help")]);
    }
    if patchelf_style {
        return elfpatch::patchelf_cli::run(args.into_iter().skip(1).collect());
    }
    elfpatch::cli::run()
}
