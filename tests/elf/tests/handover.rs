//! The hand-over without an audit module (docs/ld-cas.md): what glibc's audit interface
//! made impossible works converted, and the tools users reach for see the libraries.
//! Every program is converted by `elfpatch convert` into a store with the default
//! interpreter (ld-cas merged into the store's ld.so), and compared with the original.
//! The tests in `on_each_arch!` run on x86_64 and on aarch64 under qemu; the others need
//! what qemu-user does not give (secure mode, `ldd`, `valgrind`) or read the x86_64 build.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use elf_tests::arch::Arch;
use elf_tests::attacker::setpriv_args;
use elf_tests::chain::{chain, chain_on, source};
use elf_tests::conversion::{convert_on, init_store_on, needed};
use elf_tests::{compile, ld_cas_maps_its_own_memory, on_each_arch, require_tool, run, run_ok};

/// Asserts that `out` exited 0 and printed what `original` printed.
fn assert_same_run(out: &std::process::Output, original: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, original.stdout);
}

/// A store in `dir/store` with `paths` converted into it.
fn converted(dir: &Path, paths: &[PathBuf]) -> PathBuf {
    converted_on(Arch::X86_64, dir, paths)
}

/// [`converted`], of programs of `arch`.
fn converted_on(arch: Arch, dir: &Path, paths: &[PathBuf]) -> PathBuf {
    let store = dir.join("store");
    init_store_on(arch, &store);
    convert_on(arch, &store, &[], paths);
    store
}

on_each_arch! {
    fn eight_kib_of_initial_exec_tls_starts_converted(arch) {
        let tmp = tempfile::tempdir().unwrap();
        let prog = chain_on(arch, tmp.path(), 8192);
        let original = run_ok(&mut arch.command(&prog));
        assert_eq!(original, "euid 0 value 42\n");
        let store = converted_on(arch, tmp.path(), &[prog]);
        let out = run(&mut arch.command(store.join("bin/prog")));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            original,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // With the audit name service (which LD_CAS_DEBUG turns on) glibc sets TLS up before
        // the libraries are loaded, and the same program cannot start: the limit this
        // hand-over removes.
        let audited = run(arch.command(store.join("bin/prog")).env("LD_CAS_DEBUG", "1"));
        assert_eq!(audited.status.code(), Some(127));
        assert!(String::from_utf8_lossy(&audited.stderr).contains("static TLS"));
    }
}

on_each_arch! {
    /// On aarch64 the attacker starts a set-user-ID qemu with the program
    /// (`elf_tests::attacker::install_setuid_qemu`): qemu ignores the program's own bit.
    fn a_set_user_id_program_whose_library_needs_uri_names_runs_for_an_unprivileged_user(arch) {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let prog = chain_on(arch, tmp.path(), 16);
        let store = converted_on(arch, tmp.path(), &[prog]);
        let bin = store.join("bin/prog");
        // libinner is only needed by libouter: its name reaches ld.so as a uri: name.
        let outer = fs::read_dir(store.join("objects"))
            .unwrap()
            .filter_map(|e| fs::read_dir(e.unwrap().path()).ok())
            .flatten()
            .map(|e| e.unwrap().path())
            .find(|p| p.ends_with("libouter.so"))
            .unwrap();
        assert!(String::from_utf8_lossy(&fs::read(outer).unwrap()).contains("uri:blake3:"));
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
        let mut attacker = Command::new("env");
        setpriv_args(&mut attacker);
        if arch == Arch::Aarch64 {
            attacker.arg(elf_tests::attacker::install_setuid_qemu(tmp.path()));
        }
        // Secure mode ignores LD_CAS_DEBUG: no trace.
        let out = run(attacker.arg(&bin).env("LD_CAS_DEBUG", "1"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "euid 0 value 42\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    }
}

#[test]
fn a_converted_passwd_set_user_id_root_prints_its_help_for_an_unprivileged_user() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let passwd = PathBuf::from("/usr/bin/passwd");
    let original = run(setpriv_args(&mut Command::new("env"))
        .arg(&passwd)
        .arg("--help"));
    assert!(original.status.success());
    let store = converted(tmp.path(), std::slice::from_ref(&passwd));
    let bin = store.join("bin/passwd");
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    let out = run(setpriv_args(&mut Command::new("env"))
        .arg(&bin)
        .arg("--help"));
    assert_same_run(&out, &original);
    // It did run set-user-ID root: glibc's secure mode, which ignores the caller's
    // LD_LIBRARY_PATH, is in force.
    let evil = run(setpriv_args(&mut Command::new("env"))
        .arg("env")
        .arg("LD_LIBRARY_PATH=/nonexistent")
        .arg("LD_DEBUG=libs")
        .arg(&bin)
        .arg("--help"));
    assert!(evil.status.success());
    assert!(!String::from_utf8_lossy(&evil.stderr).contains("/nonexistent"));
}

#[test]
fn ldd_lists_a_path_for_every_library() {
    let tmp = tempfile::tempdir().unwrap();
    let prog = chain(tmp.path(), 16);
    let store = converted(tmp.path(), &[prog]);
    let out = run_ok(Command::new("ldd").arg(store.join("bin/prog")));
    assert!(!out.contains("not found"), "{out}");
    let uris: Vec<&str> = out.lines().filter(|l| l.contains("uri:blake3:")).collect();
    // libouter, libinner, libc.
    assert_eq!(uris.len(), 3, "{out}");
    for l in uris {
        assert!(l.contains(" => /"), "{out}");
    }
}

#[test]
fn valgrind_finds_no_error_the_original_does_not_have() {
    require_tool("valgrind");
    let tmp = tempfile::tempdir().unwrap();
    let prog = chain(tmp.path(), 16);
    let store = converted(tmp.path(), std::slice::from_ref(&prog));
    let grind = |p: &Path| {
        run(Command::new("valgrind")
            .args(["-q", "--error-exitcode=9", "--leak-check=no"])
            .arg(p))
    };
    let original = grind(&prog);
    assert_eq!(original.status.code(), Some(0), "{original:?}");
    let out = grind(&store.join("bin/prog"));
    assert_same_run(&out, &original);
}

on_each_arch! {
    fn the_merged_interpreter_is_the_default_and_follows_a_new_ld_cas(arch) {
        let tmp = tempfile::tempdir().unwrap();
        let prog = chain_on(arch, tmp.path(), 16);
        let store = converted_on(arch, tmp.path(), &[prog]);
        let bin = store.join("bin/prog");
        let interp = run_ok(
            elf_tests::conversion::elfpatch()
                .arg("--print-interpreter")
                .arg(&bin),
        );
        let interp = PathBuf::from(interp.trim());
        assert!(
            interp.starts_with(store.join("interp")),
            "{}",
            interp.display()
        );
        assert_eq!(interp.file_name(), arch.ld_so().file_name());
        // ld.so unchanged at its start, ld-cas's whole file at its end.
        let merged = fs::read(&interp).unwrap();
        let ld_so = fs::read(arch.ld_so()).unwrap();
        let ld_cas = fs::read(arch.ld_cas()).unwrap();
        assert_eq!(&merged[64..ld_so.len()], &ld_so[64..]);
        assert!(merged.ends_with(&ld_cas));
        // A new ld-cas installed by `store init` goes into the merged interpreter too.
        let newer = tmp.path().join("ld-cas");
        let mut bytes = ld_cas.clone();
        bytes.push(0);
        fs::write(&newer, &bytes).unwrap();
        fs::set_permissions(&newer, fs::Permissions::from_mode(0o755)).unwrap();
        run_ok(
            elf_tests::conversion::elfpatch()
                .args(["store", "init", "--store"])
                .arg(&store)
                .arg("--ld-cas")
                .arg(&newer),
        );
        assert!(fs::read(&interp).unwrap().ends_with(&bytes));
        assert_eq!(run_ok(&mut arch.command(&bin)), "euid 0 value 42\n");
    }
}

on_each_arch! {
    /// A program given its store's merged interpreter finds the store from `PT_INTERP`: no
    /// `readlink` of `/proc/self/exe`, and no `bin/..` in the paths ld.so opens. A copy moved
    /// out of the store still starts (its interpreter names the store), and so does one with
    /// the standalone ld-cas, which finds the store from the program's directory.
    fn the_store_comes_from_the_merged_interpreter(arch) {
        let tmp = tempfile::tempdir().unwrap();
        let prog = chain_on(arch, tmp.path(), 16);
        let store = converted_on(arch, tmp.path(), std::slice::from_ref(&prog));
        let bin = store.join("bin/prog");
        let out = run(&mut arch.trace("%file,readlink,readlinkat", &bin));
        let trace = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "euid 0 value 42\n",
            "{trace}"
        );
        // ld-cas finds the store before it opens its table; ld.so may read the link later,
        // for an `$ORIGIN` in the program's search path (as the aarch64 fixture's).
        let table = format!("\"{}/table\"", store.display());
        let before_table = trace.split(&table).next().unwrap_or("");
        assert!(before_table.len() < trace.len(), "{trace}");
        assert!(!before_table.contains("/proc/self/exe"), "{trace}");
        assert!(!trace.contains("/bin/.."), "{trace}");
        let debug = run(arch.command(&bin).env("LD_CAS_DEBUG", "1"));
        assert!(
            String::from_utf8_lossy(&debug.stderr).contains("(the one its interpreter lies in)"),
            "{}",
            String::from_utf8_lossy(&debug.stderr)
        );
        let moved = tmp.path().join("elsewhere");
        fs::create_dir(&moved).unwrap();
        fs::copy(&bin, moved.join("prog")).unwrap();
        assert_eq!(
            run_ok(&mut arch.command(moved.join("prog"))),
            "euid 0 value 42\n"
        );
        // The standalone ld-cas has no store of its own: the program's directory decides.
        let standalone = tmp.path().join("standalone");
        init_store_on(arch, &standalone);
        let interp = arch.ld_cas();
        convert_on(arch, &standalone, &["--interp", interp.to_str().unwrap()], &[prog]);
        let out = run(&mut arch.trace("readlink,readlinkat", standalone.join("bin/prog")));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "euid 0 value 42\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/self/exe"));
    }
}

/// A program `many` with `count` libraries `libm{i}-….so` (long names, so that their paths
/// fill pages), which prints their sum; built in `dir` for `arch`.
fn many_libraries_on(arch: Arch, dir: &Path, count: usize) -> PathBuf {
    let lib = dir.join("lib");
    fs::create_dir_all(&lib).unwrap();
    let mut main = String::from("#include <stdio.h>\n");
    let mut args = vec![format!("-L{}", lib.display())];
    for i in 0..count {
        let name = format!("libm{i}-with-a-name-long-enough-to-fill-pages-sooner.so");
        let src = source(
            dir,
            &format!("m{i}.c"),
            &format!("int m{i}(void) {{ return {i}; }}\n"),
        );
        let soname = format!("-Wl,-soname,{name}");
        compile(
            arch.cc(),
            &[&src],
            &lib.join(&name),
            &["-shared", "-fPIC", &soname],
        );
        main.push_str(&format!("int m{i}(void);\n"));
        args.push(format!("-l:{name}"));
    }
    main.push_str("int main(void) { int s = 0;\n");
    for i in 0..count {
        main.push_str(&format!("  s += m{i}();\n"));
    }
    main.push_str("  printf(\"sum %d\\n\", s); return 0; }\n");
    let main = source(dir, "main.c", &main);
    args.push(arch.rpath(dir, &lib));
    let prog = dir.join("many");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    compile(arch.cc(), &[&main], &prog, &args);
    prog
}

/// [`many_libraries_on`] converted into a store: the store, the converted program, and a run of
/// the original (checked to print the libraries' sum).
struct ManyConverted {
    store: PathBuf,
    bin: PathBuf,
    original: std::process::Output,
}

/// [`many_libraries_on`] with `count` libraries, built and converted in `dir`.
fn many_converted_on(arch: Arch, dir: &Path, count: usize) -> ManyConverted {
    let many = many_libraries_on(arch, &dir.join("many"), count);
    let store = converted_on(arch, dir, std::slice::from_ref(&many));
    let original = run(&mut arch.command(&many));
    let sum = count * count.saturating_sub(1) / 2;
    assert_eq!(
        String::from_utf8_lossy(&original.stdout),
        format!("sum {sum}\n")
    );
    ManyConverted {
        bin: store.join("bin/many"),
        store,
        original,
    }
}

/// Runs `bin` under `timeout 20` (a wait for ever fails the test) and expects it refused:
/// exit status 127. Its stderr.
fn refused_run(arch: Arch, bin: &Path) -> String {
    let out = run(&mut arch.timed("20", bin));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(127), "{}: {err}", bin.display());
    err
}

on_each_arch! {
    /// A program with many `uri:` names has each library's file checked relative to the store
    /// directory, opened for it: a FIFO or a file of the wrong size among them is still
    /// refused with one line naming it, and never makes the program wait.
    fn many_names_are_checked_relative_to_the_store_and_still_refused_when_damaged(arch) {
        require_tool("mkfifo");
        let tmp = tempfile::tempdir().unwrap();
        let ManyConverted {
            store,
            bin,
            original,
        } = many_converted_on(arch, tmp.path(), 8);
        let traced = run(&mut arch.trace("newfstatat,fstatat64,statx", &bin));
        assert_same_run(&traced, &original);
        let trace = String::from_utf8_lossy(&traced.stderr);
        // Relative to the store directory: `newfstatat(FD, "objects/…", …)`.
        assert!(trace.contains("\"objects/"), "{trace}");
        let name = "libm3-with-a-name-long-enough-to-fill-pages-sooner.so";
        let object = fs::read_dir(store.join("objects"))
            .unwrap()
            .map(|e| e.unwrap().path().join(name))
            .find(|p| p.exists())
            .expect("the library's object");
        let bytes = fs::read(&object).unwrap();
        let refused = |what: &str| {
            let err = refused_run(arch, &bin);
            assert!(err.contains(what) && err.contains(name), "{err}");
        };
        fs::remove_file(&object).unwrap();
        run_ok(Command::new("mkfifo").arg(&object));
        refused("a FIFO, not a regular file");
        fs::remove_file(&object).unwrap();
        fs::write(&object, [&bytes[..], b"x"].concat()).unwrap();
        refused("the lookup table records");
        fs::write(&object, &bytes).unwrap();
        // The object is a new file now, and the index still holds the old one (its hard link
        // was the object's first file): refused until the index is linked again.
        refused("the store's index holds a copy of");
        init_store_on(arch, &store);
        assert_same_run(&run(&mut arch.command(&bin)), &original);
    }
}

on_each_arch! {
    /// ld-cas checks the table entry of each name it looks up (its check value, over the
    /// entry and its strings; not the whole table, whose body checksum only tools verify): an
    /// entry damaged in the table is refused by name with one line, whether it is the
    /// program's first name, one in the middle, or its last, among 71.
    fn a_damaged_table_entry_is_refused_among_many_names(arch) {
        let tmp = tempfile::tempdir().unwrap();
        let ManyConverted {
            store,
            bin,
            original,
        } = many_converted_on(arch, tmp.path(), 70);
        let names = needed(&bin);
        assert_eq!(names.len(), 71, "{names:?}");
        let table_file = store.join("table");
        let sound = fs::read(&table_file).unwrap();
        let table = resolver::table::Table::parse(&sound).unwrap();
        for uri in [&names[0], &names[35], &names[names.len() - 1]] {
            // One byte of the entry's soname, in the string pool: no header field changes, so
            // only the entry's own check can tell.
            let entry = table.lookup(&uri.parse().unwrap()).unwrap().unwrap();
            let at = entry.soname.as_ptr() as usize - sound.as_ptr() as usize;
            let mut damaged = sound.clone();
            damaged[at] ^= 0x20;
            fs::remove_file(&table_file).unwrap();
            fs::write(&table_file, &damaged).unwrap();
            let err = refused_run(arch, &bin);
            assert!(
                err.contains(uri.as_str()) && err.contains("check value mismatch"),
                "{uri}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        fs::remove_file(&table_file).unwrap();
        fs::write(&table_file, &sound).unwrap();
        assert_same_run(&run(&mut arch.command(&bin)), &original);
    }
}

on_each_arch! {
    /// The paths ld-cas gives ld.so, the copy of `.gnu.version_r` and the index's search path
    /// are built in the rest of the program's last writable page, past its `.bss`, which the
    /// kernel already zeroed: no system call, no fault. When that is full, they move to one
    /// mapping of ld-cas's own; the program still gets every library and every version, and
    /// the name service (`LD_CAS_DEBUG`), which reads the table after the hand-over, still
    /// finds it.
    fn the_names_go_to_the_rest_of_the_programs_last_page_until_it_is_full(arch) {
        let tmp = tempfile::tempdir().unwrap();
        let few = chain_on(arch, &tmp.path().join("few"), 16);
        let many = many_libraries_on(arch, &tmp.path().join("many"), 80);
        let store = converted_on(arch, tmp.path(), &[few.clone(), many.clone()]);
        let mmaps = |bin: &Path| {
            let out = run(&mut arch.trace("mmap", bin));
            (
                out.clone(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let (out, trace) = mmaps(&store.join("bin/prog"));
        assert_same_run(&out, &run(&mut arch.command(&few)));
        assert!(!ld_cas_maps_its_own_memory(&trace), "{trace}");
        let many_bin = store.join("bin/many");
        let (out, trace) = mmaps(&many_bin);
        let original = run(&mut arch.command(&many));
        assert_eq!(String::from_utf8_lossy(&original.stdout), "sum 3160\n");
        assert_same_run(&out, &original);
        assert!(ld_cas_maps_its_own_memory(&trace), "{trace}");
        let debug = run(arch.command(&many_bin).env("LD_CAS_DEBUG", "1"));
        assert_same_run(&debug, &original);
    }
}

/// A hexadecimal number as `readelf` and `nm` print it.
fn hex(h: &str) -> u64 {
    u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap()
}

/// The addresses of the section `name` of `file`.
fn section(file: &Path, name: &str) -> std::ops::Range<u64> {
    let s = elf_tests::section_of(file, name);
    s.addr..s.addr + s.size
}

/// ld-cas's writable segment starts a page of its own, and what start-up relocates and
/// writes (`.dynamic`, `.got`, and `.data.rel.ro` and `.data` in `.ldcas.data`) fits in
/// that page, so a start
/// writes one page of it. The buffers only some starts use follow it in the file (the
/// section `.ldcas.cold`, `link/layout.ld`), not as `.bss`: the segment has no part past its
/// file, so the kernel maps it with one mapping and zeroes nothing.
/// (x86_64, where rust-lld lays the segment out with `-z separate-loadable-segments`.)
#[test]
#[cfg(target_arch = "x86_64")]
fn ld_cas_writes_one_page_of_its_own_at_start() {
    require_tool("readelf");
    let ld_cas = elf_tests::built_binary("ld-cas");
    let readelf = |flag: &str| run_ok(Command::new("readelf").arg(flag).arg(&ld_cas));
    let segments = readelf("-lW");
    let rw: Vec<Vec<u64>> = segments
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"LOAD") && f.get(6) == Some(&"RW"))
        .map(|f| f[1..6].iter().map(|h| hex(h)).collect())
        .collect();
    assert_eq!(rw.len(), 1, "one writable segment:\n{segments}");
    let (offset, vaddr, filesz, memsz) = (rw[0][0], rw[0][1], rw[0][3], rw[0][4]);
    assert_eq!(offset % 4096, 0, "{segments}");
    assert_eq!(vaddr % 4096, 0, "{segments}");
    assert_eq!(memsz, filesz, "no part past the file:\n{segments}");
    let sections = readelf("-SW");
    for hot in [".dynamic", ".ldcas.first", ".got", ".ldcas.data"] {
        let at = section(&ld_cas, hot);
        assert!(
            at.start >= vaddr && at.end <= vaddr + 4096,
            "{hot} is not in the first writable page:\n{sections}"
        );
    }
    let cold = section(&ld_cas, ".ldcas.cold");
    assert!(
        cold.start >= section(&ld_cas, ".ldcas.data").end,
        "{sections}"
    );
    for name in [".data.rel.ro", ".data"] {
        assert!(
            !sections.contains(&format!(" {name} ")),
            "{name} is outside .ldcas.data:\n{sections}"
        );
    }
    assert!(
        !sections.contains(" .bss "),
        "no .bss: it would be a second mapping:\n{sections}"
    );
}

on_each_arch! {
    /// The code a common start runs is together at the start of ld-cas's executable segment
    /// (`.text.ldcas.hot`, `link/layout.ld`), within the first 64 KiB (one fault-around window),
    /// instead of spread over the whole segment among the code of the commands, the audit
    /// module and the messages.
    fn the_code_a_start_runs_is_together_at_the_start_of_ld_cas(arch) {
        require_tool(&arch.binutil("readelf"));
        require_tool(&arch.binutil("nm"));
        let ld_cas = arch.ld_cas();
        let sections = run_ok(Command::new(arch.binutil("readelf")).arg("-SW").arg(&ld_cas));
        let hot = section(&ld_cas, ".text.ldcas.hot");
        assert!(
            hot.end <= 64 << 10,
            "{hot:x?} ends past 64 KiB:\n{sections}"
        );
        let symbols = run_ok(Command::new(arch.binutil("nm")).arg("-C").arg(&ld_cas));
        for name in [
            "_start",
            "ldcas_start",
            "ld_cas::launch::handover",
            "ld_cas::startup::relocate_self",
            "ld_cas::program::Program::from_phdrs",
            "resolver_core::table::read::Table::lookup_checked",
            "resolver_core::uri::decode",
            "memset",
        ] {
            let at = symbols
                .lines()
                .map(|l| l.splitn(3, ' ').collect::<Vec<_>>())
                .find(|f| f.len() == 3 && f[2] == name)
                .map(|f| hex(f[0]))
                .unwrap_or_else(|| panic!("no {name} in ld-cas:\n{symbols}"));
            assert!(hot.contains(&at), "{name} at {at:#x} is not in {hot:x?}");
        }
    }
}
