//! Table lookup on 1k, 100k and 1M entries, side by side with a `HashMap` already in memory
//! and a binary search over the same sorted keys; and table build time.
//!
//! Run: `cargo bench -p benches --bench table`

use std::collections::HashMap;
use std::hint::black_box;

use benches::synthetic_entries;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use resolver::table::write::build;
use resolver::table::Table;
use resolver::uri::Hash;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Keys probed, in an order unrelated to the table's, so caches help no one.
fn probe_order(keys: &[Hash]) -> Vec<Hash> {
    let mut order: Vec<Hash> = keys.to_vec();
    order.sort_by_key(|h| blake3::hash(&h.0).as_bytes()[0..8].to_vec());
    order
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let entries = synthetic_entries(n);
        let keys: Vec<Hash> = entries.iter().map(|e| e.hash).collect();
        let order = probe_order(&keys);
        let map: HashMap<Hash, (Vec<u8>, Vec<u8>, u64)> = entries
            .iter()
            .map(|e| (e.hash, (e.path.clone(), e.soname.clone(), e.size)))
            .collect();
        let mut sorted: Vec<(Hash, usize)> = keys.iter().copied().zip(0..).collect();
        sorted.sort();
        let bytes = build(entries, 0).expect("table builds");
        // The table as ld-cas sees it: a file mapped read-only.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("table");
        std::fs::write(&path, &bytes).expect("write table");
        drop(bytes);
        let file = std::fs::File::open(&path).expect("open table");
        // SAFETY: the file is private to this bench and not modified while mapped.
        let mapped = unsafe { memmap2::Mmap::map(&file) }.expect("map table");
        let table = Table::parse(&mapped).expect("table parses");

        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("table", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % order.len();
                black_box(
                    table
                        .lookup(black_box(&order[i]))
                        .ok()
                        .flatten()
                        .map(|e| e.path.len()),
                )
            })
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("table_checked", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % order.len();
                black_box(
                    table
                        .lookup_checked(black_box(&order[i]))
                        .ok()
                        .flatten()
                        .map(|e| e.path.len()),
                )
            })
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("hashmap", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % order.len();
                black_box(map.get(black_box(&order[i])).map(|e| e.0.len()))
            })
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("binary_search", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % order.len();
                let key = black_box(&order[i]);
                black_box(sorted.binary_search_by(|(h, _)| h.cmp(key)).ok())
            })
        });
    }
    group.finish();
}

fn builds(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for n in SIZES {
        let entries = synthetic_entries(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("table", n), &n, |b, _| {
            // The copy of the entries the writer consumes is made outside the timing.
            b.iter_batched(
                || entries.clone(),
                |e| black_box(build(e, 1).expect("table builds").len()),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, builds);
criterion_main!(benches);
