//! Helpers of the conversion tests: a store with ld-cas, `elfpatch convert --json`, reading
//! `DT_NEEDED` back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::arch::Arch;
use crate::{built_binary, run_ok};

/// A command running the built `elfpatch`.
pub fn elfpatch() -> Command {
    Command::new(built_binary("elfpatch"))
}

/// Copies the built ld-cas to `dir/stable/ld-cas`: a place outside any store, for
/// conversions whose store is moved afterwards.
pub fn stable_ld_cas(dir: &Path) -> PathBuf {
    let interp = dir.join("stable/ld-cas");
    fs::create_dir_all(interp.parent().expect("a parent")).expect("create the directory");
    fs::copy(built_binary("ld-cas"), &interp).expect("copy ld-cas");
    interp
}

/// `elfpatch store init`, installing the built ld-cas as `STORE/ld-cas`.
pub fn init_store(store: &Path) {
    init_store_on(Arch::X86_64, store);
}

/// `elfpatch store init`, installing the ld-cas of `arch` (for aarch64 as
/// `STORE/ld-cas-aarch64`, the x86_64 one as `STORE/ld-cas` beside it).
pub fn init_store_on(arch: Arch, store: &Path) {
    let mut builds = vec![built_binary("ld-cas")];
    if arch != Arch::X86_64 {
        builds.push(arch.ld_cas());
    }
    for ld_cas in builds {
        run_ok(
            elfpatch()
                .args(["store", "init", "--store"])
                .arg(store)
                .arg("--ld-cas")
                .arg(ld_cas),
        );
    }
}

/// `elfpatch convert --json --store STORE EXTRA... PATHS...`, its report parsed.
pub fn convert(store: &Path, extra: &[&str], paths: &[PathBuf]) -> serde_json::Value {
    convert_on(Arch::X86_64, store, extra, paths)
}

/// [`convert`] of programs of `arch` (for aarch64, from the cross toolchain's sysroot).
pub fn convert_on(
    arch: Arch,
    store: &Path,
    extra: &[&str],
    paths: &[PathBuf],
) -> serde_json::Value {
    let out = run_ok(
        elfpatch()
            .args(["convert", "--json", "--store"])
            .arg(store)
            .args(arch.convert_args())
            .args(extra)
            .args(paths),
    );
    serde_json::from_str(&out).expect("convert --json prints JSON")
}

/// `DT_NEEDED` names of an ELF file (read with `readelf`).
pub fn needed(file: &Path) -> Vec<String> {
    let out = run_ok(Command::new("readelf").arg("-dW").arg(file));
    out.lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            l.split('[')
                .nth(1)
                .map(|s| s.trim_end_matches(']').to_owned())
        })
        .collect()
}

/// Every object file of a store's `objects/` (`objects/<hex>/<name>`), sorted.
pub fn object_files(store: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in fs::read_dir(store.join("objects")).expect("list objects/") {
        let dir = dir.expect("list objects/").path();
        if dir.is_dir() {
            files.extend(
                fs::read_dir(&dir)
                    .expect("list an object's directory")
                    .map(|e| e.expect("list an object's directory").path()),
            );
        } else {
            files.push(dir);
        }
    }
    files.sort();
    files
}
