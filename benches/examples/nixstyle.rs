//! Lays this Debian system's python3 (and the given programs) out as a Nix-style store
//! under ROOT (see `elf_tests::nixstyle`), and prints `NAME<TAB>PACKAGE_DIR` per package.
//!
//! `cargo run --release -p benches --example nixstyle -- ROOT [PROGRAM...]`

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = args.first() else {
        eprintln!("usage: nixstyle ROOT [PROGRAM...]");
        std::process::exit(2);
    };
    let programs: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let nix = elf_tests::nixstyle::generate(std::path::Path::new(root), &programs);
    for (name, dir) in &nix.packages {
        println!("{name}\t{}", dir.display());
    }
}
