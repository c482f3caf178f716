//! The corpus: every ELF file under /usr/bin, /usr/lib and /usr/lib/x86_64-linux-gnu on
//! this machine. `EDITOR_CORPUS_LIMIT=N` caps the number of files (default: all).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

const DIRS: &[&str] = &["/usr/bin", "/usr/lib", "/usr/lib/x86_64-linux-gnu"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
        && &b == b"\x7fELF"
}

/// Every ELF file of the corpus, sorted, without duplicates.
pub fn files() -> Vec<PathBuf> {
    let mut all = Vec::new();
    for d in DIRS {
        walk(Path::new(d), &mut all);
    }
    all.sort();
    all.dedup();
    all.retain(|p| is_elf(p));
    if let Some(n) = std::env::var("EDITOR_CORPUS_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        all.truncate(n);
    }
    all
}

/// Runs `f` on every file with one worker per core; returns the results in file order.
pub fn par_map<T: Send>(files: &[PathBuf], f: impl Fn(&Path) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..files.len()).map(|_| None).collect());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = files.get(i) else { break };
                let r = f(p);
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every file processed"))
        .collect()
}
