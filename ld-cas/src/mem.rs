//! The byte comparisons the compiler may call. A freestanding binary has no libc to
//! provide them; unlike the copies and fills of the platform crates, which each platform
//! writes its own way, these plain loops serve both.

/// Compares `n` bytes; same contract and result sign as C's `memcmp`.
///
/// # Safety
/// Both pointers must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both ranges are valid for n bytes.
        let (x, y) = (*a.add(i), *b.add(i));
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
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract.
    memcmp(a, b, n)
}
