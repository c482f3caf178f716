//! Hashing throughput of `resolver::hash::hash_file` side by side with the `b3sum` command
//! on the same files (a 4 MiB library-sized file and a 512 MiB file).
//!
//! Run: `cargo bench -p benches --bench hashing`

use std::hint::black_box;
use std::io::Write;
use std::process::Command;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use resolver::hash::hash_file;

fn write_file(dir: &std::path::Path, size: usize) -> std::path::PathBuf {
    let path = dir.join(format!("data-{size}"));
    let mut file = std::fs::File::create(&path).expect("create");
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x1234_5678u32;
    for b in block.iter_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = state as u8;
    }
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len());
        file.write_all(&block[..n]).expect("write");
        left -= n;
    }
    path
}

fn hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("hash");
    group.sample_size(20);
    for size in [4usize << 20, 512 << 20] {
        let path = write_file(dir.path(), size);
        group.throughput(Throughput::Bytes(size as u64));
        let expected = hash_file(&path).expect("hash");
        let b3 = Command::new("b3sum")
            .arg("--no-names")
            .arg(&path)
            .output()
            .expect("b3sum runs (scripts/install-deps.sh installs it)");
        assert_eq!(
            String::from_utf8_lossy(&b3.stdout).trim(),
            &expected.to_string()[11..]
        );
        group.bench_with_input(BenchmarkId::new("resolver", size), &path, |b, p| {
            b.iter(|| black_box(hash_file(p).expect("hash")))
        });
        group.bench_with_input(BenchmarkId::new("b3sum", size), &path, |b, p| {
            b.iter(|| {
                let out = Command::new("b3sum")
                    .arg("--no-names")
                    .arg(p)
                    .output()
                    .expect("b3sum");
                black_box(out.stdout)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
