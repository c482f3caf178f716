//! A damaged table is always reported, never a panic and never an out-of-bounds read:
//! every truncation, thousands of random corruptions, and offsets pointing outside the
//! file with the checksums recomputed (so only the structural checks stand between the
//! damage and the reader).

use proptest::prelude::*;
use resolver::table::format::{entry, header, ENTRY_LEN, HEADER_LEN};
use resolver::table::write::{build, NewEntry};
use resolver::table::{Fnv64, Kind, Table, TableError};
use resolver::uri::Hash;

fn sample_entries(n: usize) -> Vec<NewEntry> {
    (0..n)
        .map(|i| {
            let hash = Hash(*blake3::hash(format!("object {i}").as_bytes()).as_bytes());
            NewEntry {
                hash,
                path: format!("objects/{i:04}-libsample{i}.so.1").into_bytes(),
                soname: format!("libsample{i}.so.1").into_bytes(),
                size: 4096 + i as u64,
                kind: Kind::Library,
            }
        })
        .collect()
}

/// Parses, verifies, and exercises every reader entry point; returns whether the table was
/// accepted by `parse` + `verify`.
fn exercise(bytes: &[u8], keys: &[Hash]) -> Result<(), TableError> {
    let table = Table::parse(bytes)?;
    // Whatever `verify` says, lookups and iteration must not panic.
    for key in keys {
        let _ = table.lookup(key);
        let _ = table.lookup_checked(key);
    }
    for e in table.entries() {
        let _ = e;
    }
    let _ = table.entry(u32::MAX);
    table.verify()
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes both checksums so that damage is seen only by the structural checks.
fn reseal(bytes: &mut [u8]) {
    let body = Fnv64::of(&bytes[HEADER_LEN..]);
    put_u64(bytes, header::BODY_CHECKSUM, body);
    let head = Fnv64::of(&bytes[..header::HEADER_CHECKSUM]);
    put_u64(bytes, header::HEADER_CHECKSUM, head);
}

#[test]
fn every_truncation_is_an_error() {
    let entries = sample_entries(40);
    let keys: Vec<Hash> = entries.iter().map(|e| e.hash).collect();
    let bytes = build(entries, 1).unwrap();
    assert!(exercise(&bytes, &keys).is_ok());
    for len in 0..bytes.len() {
        let err = exercise(&bytes[..len], &keys).expect_err("a truncated table was accepted");
        let message = err.to_string();
        assert!(
            message.contains("truncated") || message.contains("shorter"),
            "truncation to {len} bytes gave an unclear message: {message}"
        );
    }
}

#[test]
fn random_corruptions_are_errors() {
    let entries = sample_entries(100);
    let keys: Vec<Hash> = entries.iter().map(|e| e.hash).collect();
    let bytes = build(entries, 1).unwrap();
    // A deterministic generator keeps failures reproducible.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..5000 {
        let mut damaged = bytes.clone();
        let flips = 1 + (next() % 4) as usize;
        for _ in 0..flips {
            let at = (next() % damaged.len() as u64) as usize;
            if round % 2 == 0 {
                damaged[at] ^= 1 << (next() % 8);
            } else {
                damaged[at] = next() as u8;
            }
        }
        if damaged == bytes {
            continue;
        }
        assert!(
            exercise(&damaged, &keys).is_err(),
            "round {round}: a corrupted table was accepted"
        );
    }
}

#[test]
fn out_of_range_offsets_are_errors() {
    let entries = sample_entries(20);
    let keys: Vec<Hash> = entries.iter().map(|e| e.hash).collect();
    let bytes = build(entries, 1).unwrap();
    let entries_off =
        u64::from_le_bytes(bytes[header::ENTRIES_OFF..][..8].try_into().unwrap()) as usize;
    let big = [
        u64::MAX,
        u64::MAX / 2,
        u32::MAX as u64,
        bytes.len() as u64,
        bytes.len() as u64 - 1,
        0,
    ];
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for field in [
        header::BUCKETS_OFF,
        header::ENTRIES_OFF,
        header::STRINGS_OFF,
        header::STRINGS_LEN,
        header::FILE_LEN,
    ] {
        for &v in &big {
            let mut b = bytes.clone();
            put_u64(&mut b, field, v);
            cases.push((format!("header field at {field} = {v}"), b));
        }
    }
    for (field, values) in [
        (header::ENTRY_COUNT, vec![u32::MAX, 21, 1 << 30]),
        (header::BUCKET_BITS, vec![25, 31, 64, u32::MAX, 20]),
    ] {
        for v in values {
            let mut b = bytes.clone();
            put_u32(&mut b, field, v);
            cases.push((format!("header field at {field} = {v}"), b));
        }
    }
    for index in [0usize, 7, 19] {
        for (field, v) in [
            (entry::PATH_OFF, u32::MAX),
            (entry::PATH_LEN, u32::MAX),
            (entry::SONAME_OFF, 1 << 20),
            (entry::SONAME_LEN, u32::MAX - 3),
            (entry::PATH_LEN, 0),
        ] {
            let mut b = bytes.clone();
            put_u32(&mut b, entries_off + index * ENTRY_LEN + field, v);
            cases.push((format!("entry {index} field {field} = {v}"), b));
        }
        let mut b = bytes.clone();
        b[entries_off + index * ENTRY_LEN + entry::KIND] = 9;
        cases.push((format!("entry {index} kind 9"), b));
    }
    // Buckets pointing past the entries or running backwards.
    for bucket in [0usize, 3, 32] {
        for v in [u32::MAX, 21, 0] {
            let mut b = bytes.clone();
            put_u32(&mut b, HEADER_LEN + bucket * 4, v);
            cases.push((format!("bucket {bucket} = {v}"), b));
        }
    }
    for (what, mut b) in cases {
        reseal(&mut b);
        if b == bytes {
            continue;
        }
        let result = exercise(&b, &keys);
        assert!(result.is_err(), "{what}: accepted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary bytes behind a valid-looking, resealed header never make the reader panic.
    #[test]
    fn arbitrary_resealed_bytes_never_panic(
        mut body in proptest::collection::vec(any::<u8>(), HEADER_LEN..2048),
        count in 0u32..64,
        bits in 0u32..8,
        offs in proptest::array::uniform4(0u64..2048),
    ) {
        body[..8].copy_from_slice(b"LDCASTBL");
        put_u32(&mut body, header::VERSION, 1);
        put_u32(&mut body, header::HEADER_LEN, HEADER_LEN as u32);
        let len = body.len() as u64;
        put_u64(&mut body, header::FILE_LEN, len);
        put_u32(&mut body, header::ENTRY_COUNT, count);
        put_u32(&mut body, header::BUCKET_BITS, bits);
        put_u64(&mut body, header::BUCKETS_OFF, offs[0]);
        put_u64(&mut body, header::ENTRIES_OFF, offs[1]);
        put_u64(&mut body, header::STRINGS_OFF, offs[2]);
        put_u64(&mut body, header::STRINGS_LEN, offs[3]);
        reseal(&mut body);
        let key = Hash(*blake3::hash(&body).as_bytes());
        let _ = exercise(&body, &[key, Hash([0; 32]), Hash([0xff; 32])]);
    }
}
