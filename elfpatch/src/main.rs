//! The `elfpatch` command. Invoked as `patchelf` (a symlink) or with a first argument that
//! is a patchelf option (`--set-interpreter`, `@args-file`, ...), it takes patchelf's command
//! line; otherwise its own subcommands (`store`, `convert`, ...).
//!
//! The entry point is the C `main`, not Rust's: the standard runtime's start-up (finding
//! the main thread's stack guard by parsing `/proc/self/maps`, an alternate signal stack,
//! signal dispositions) costs about 0.3 ms and two dozen system calls, a tenth of a whole
//! patchelf-style edit of a small file, which build systems run thousands of times.
//! glibc still hands the arguments to `std::env::args_os` (through `.init_array`).
//! Without the runtime, `SIGPIPE` keeps its default action, as in C tools: a closed pipe
//! ends the process quietly.
#![no_main]

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn invoked_as_patchelf(argv0: Option<&OsString>) -> bool {
    argv0
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name == "patchelf")
}

fn run() -> ExitCode {
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

/// The process entry, called by the C runtime.
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    let code = run();
    // Rust's runtime would flush stdout at exit; without it, do it here.
    let flushed = std::io::stdout().flush().is_ok();
    if code == ExitCode::SUCCESS && flushed {
        0
    } else {
        1
    }
}
