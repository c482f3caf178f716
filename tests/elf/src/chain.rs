//! A program whose library needs another library, the shape of every real closure: the
//! inner library is found through the store's index once converted.

use std::fs;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::compile;

/// Writes `source` to `dir/name` and returns the path.
pub fn source(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

/// A program `prog` needing `libouter.so`, which needs `libinner.so` (both in `dir/lib`),
/// built in `dir`. The inner library holds `tls_bytes` of initial-exec TLS.
pub fn chain(dir: &Path, tls_bytes: usize) -> PathBuf {
    chain_on(Arch::X86_64, dir, tls_bytes)
}

/// [`chain`], built for `arch`.
pub fn chain_on(arch: Arch, dir: &Path, tls_bytes: usize) -> PathBuf {
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    let inner = source(
        dir,
        "inner.c",
        &format!(
            "__attribute__((tls_model(\"initial-exec\"))) __thread char big[{tls_bytes}];\n\
             int inner(int v) {{ big[{last}] = (char)v; return big[{last}] + 1; }}\n",
            last = tls_bytes - 1
        ),
    );
    let outer = source(
        dir,
        "outer.c",
        "int inner(int);\nint outer(int v) { return inner(v) * 2; }\n",
    );
    let main = source(
        dir,
        "main.c",
        "#include <stdio.h>\n#include <unistd.h>\nint outer(int);\n\
         int main(void) { printf(\"euid %d value %d\\n\", (int)geteuid(), outer(20)); return 0; }\n",
    );
    let l = format!("-L{}", lib.display());
    let r = arch.rpath(dir, &lib);
    let r_lib = arch.rpath(&lib, &lib);
    compile(
        arch.cc(),
        &[&inner],
        &lib.join("libinner.so"),
        &["-shared", "-fPIC", "-Wl,-soname,libinner.so"],
    );
    compile(
        arch.cc(),
        &[&outer],
        &lib.join("libouter.so"),
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libouter.so",
            &l,
            "-l:libinner.so",
            &r_lib,
        ],
    );
    let prog = dir.join("prog");
    compile(arch.cc(), &[&main], &prog, &[&l, "-l:libouter.so", &r]);
    prog
}
