//! The byte comparisons the compiler may call. A freestanding binary has no libc to
//! provide them; unlike the copies and fills of the platform crates, which each platform
//! writes its own way, these portable loops serve both. They compare a machine word at a
//! time (the table's 32-byte hashes are four words), then the tail byte by byte.
//!
//! Not exported when compiled into a test, where libc's are the program's.

use core::mem::size_of;
use core::ptr::read_unaligned;

/// Bytes per machine word.
const WORD: usize = size_of::<usize>();

/// The words at `a + i` and `b + i`.
///
/// # Safety
/// Both must be valid for `WORD` bytes from there (no alignment needed).
#[inline(always)]
#[allow(unused_unsafe)]
unsafe fn words_at(a: *const u8, b: *const u8, i: usize) -> (usize, usize) {
    // SAFETY: per the function's contract; `read_unaligned` needs no alignment.
    unsafe {
        (
            read_unaligned(a.add(i) as *const usize),
            read_unaligned(b.add(i) as *const usize),
        )
    }
}

/// The index, within a word read from memory, of the first byte where two words that
/// differ by `diff` (their xor, non-zero) differ: the lowest-addressed byte is the least
/// significant on a little-endian machine, the most significant on a big-endian one.
#[inline(always)]
fn first_differing_byte(diff: usize) -> usize {
    let bits = if cfg!(target_endian = "little") {
        diff.trailing_zeros()
    } else {
        diff.leading_zeros()
    };
    (bits / 8) as usize
}

/// Compares `n` bytes; same contract and result as C's `memcmp` (the difference of the
/// first differing bytes, 0 when none differ).
///
/// # Safety
/// Both pointers must be valid for `n` bytes.
#[cfg_attr(not(test), no_mangle)]
#[allow(unused_unsafe)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while n - i >= WORD {
        // SAFETY: `i + WORD <= n`, and both ranges are valid for `n` bytes.
        let (x, y) = unsafe { words_at(a, b, i) };
        if x != y {
            i += first_differing_byte(x ^ y);
            // SAFETY: `i` lies in the word just read, so below `n`.
            let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
            return x as i32 - y as i32;
        }
        i += WORD;
    }
    while i < n {
        // SAFETY: i < n and both ranges are valid for n bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// Like [`memcmp`] but only tells equal (0) from different (non-zero).
///
/// # Safety
/// Both pointers must be valid for `n` bytes.
#[cfg_attr(not(test), no_mangle)]
#[allow(unused_unsafe)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while n - i >= WORD {
        // SAFETY: `i + WORD <= n`, and both ranges are valid for `n` bytes.
        let (x, y) = unsafe { words_at(a, b, i) };
        if x != y {
            return 1;
        }
        i += WORD;
    }
    while i < n {
        // SAFETY: i < n and both ranges are valid for n bytes.
        if unsafe { *a.add(i) != *b.add(i) } {
            return 1;
        }
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::{bcmp, memcmp};

    /// The bytewise definition: the difference of the first differing bytes.
    fn memcmp_reference(a: &[u8], b: &[u8]) -> i32 {
        a.iter()
            .zip(b)
            .find(|(x, y)| x != y)
            .map_or(0, |(x, y)| *x as i32 - *y as i32)
    }

    #[test]
    fn compares_every_length_and_position() {
        // Every length to three words and a bit, every position of a single difference
        // (in both directions and at each offset from alignment), and equal inputs.
        let base: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        for offset in 0..8 {
            for n in 0..=(base.len() - offset) {
                let a = &base[offset..offset + n];
                // SAFETY: both slices hold `n` bytes.
                assert_eq!(unsafe { memcmp(a.as_ptr(), a.as_ptr(), n) }, 0);
                assert_eq!(unsafe { bcmp(a.as_ptr(), a.as_ptr(), n) }, 0);
                for at in 0..n {
                    for delta in [1u8, 0x80, 0xff] {
                        // Differs at `at`, and after it too (which must not matter).
                        let mut b = a.to_vec();
                        b[at] = b[at].wrapping_add(delta);
                        b[at + 1..].iter_mut().for_each(|c| *c ^= 0x5a);
                        let want = memcmp_reference(a, &b);
                        // SAFETY: both hold at least `n` bytes.
                        let (m, e) = unsafe {
                            (
                                memcmp(a.as_ptr(), b.as_ptr(), n),
                                bcmp(a.as_ptr(), b.as_ptr(), n),
                            )
                        };
                        assert_eq!(m, want, "n {n} at {at} delta {delta}");
                        assert_ne!(e, 0, "n {n} at {at}");
                        // SAFETY: as above.
                        let back = unsafe { memcmp(b.as_ptr(), a.as_ptr(), n) };
                        assert_eq!(back, -want);
                    }
                }
            }
        }
    }
}
