//! patchelf's command line: `elfpatch --set-interpreter ... FILE` and `patchelf ...` (when
//! the binary is invoked through a symlink named `patchelf`).

use std::ffi::OsString;
use std::process::ExitCode;

/// Runs a patchelf-style command line (`args` excludes the program name).
pub fn run(args: Vec<OsString>) -> ExitCode {
    let _ = args;
    eprintln!("elfpatch: patchelf-style editing is not implemented yet");
    ExitCode::from(2)
}
