//! Known answers for the core's portable BLAKE3: its digests must be the `blake3` crate's
//! (the hash `b3sum` prints) on every input size that takes a different path through the
//! chunk and tree logic, fed whole and in uneven pieces.

use resolver_core::blake3::{hash, Hasher};

/// A deterministic, non-repeating-looking input (a repeating pattern could hide a wrong
/// block or chunk order).
fn input(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn digests_match_the_blake3_crate() {
    let lengths = [
        0,
        1,
        63,
        64,
        65,
        1023,
        1024,
        1025,
        2048,
        2049,
        4096,
        100_000,
        3 * 1024 * 1024 + 17,
    ];
    for len in lengths {
        let data = input(len);
        let expected = blake3::hash(&data).to_hex().to_string();
        assert_eq!(hex(&hash(&data)), expected, "length {len}, fed whole");
        // Pieces of a size that crosses block and chunk boundaries at odd places.
        let mut h = Hasher::new();
        for piece in data.chunks(997) {
            h.update(piece);
        }
        assert_eq!(hex(&h.finalize()), expected, "length {len}, fed in pieces");
        if len <= 4096 {
            let mut h = Hasher::new();
            for byte in data.chunks(1) {
                h.update(byte);
                h.update(&[]);
            }
            assert_eq!(hex(&h.finalize()), expected, "length {len}, byte by byte");
        }
    }
}

#[test]
fn known_digest_of_abc() {
    // `printf abc | b3sum`.
    assert_eq!(
        hex(&hash(b"abc")),
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    );
}
