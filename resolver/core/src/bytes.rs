//! Tests of eight bytes at a time (a `u64` read little-endian, so byte `i` of the slice is
//! byte `i` of the number counted from the least significant): the one primitive the URI
//! decoder, the table's path check and ld-cas's string reading share.

/// One in each byte of a word.
pub const ONES: u64 = 0x0101_0101_0101_0101;
/// The top bit of each byte of a word.
pub const TOPS: u64 = ONES << 7;

/// The top bit of each byte of `w` that lies in `lo..=hi` (both below 0x80), every other
/// bit clear. Exact, byte by byte: each byte is first cleared of its top bit, so adding
/// at most 0x80 to it never carries into the next one, and a byte with its top bit set
/// is in no such range.
#[inline(always)]
pub fn bytes_in(w: u64, lo: u8, hi: u8) -> u64 {
    let low = w & !TOPS;
    // Reaches 0x80 when the byte is `lo` or more; stays below it when the byte is `hi`
    // or less.
    let at_least_lo = low + u64::from(0x80 - lo) * ONES;
    let above_hi = low + u64::from(0x7f - hi) * ONES;
    at_least_lo & !above_hi & !w & TOPS
}

/// The index of the first NUL of `bytes`. The names ld-cas reads are mostly 75-byte URIs:
/// it looks at eight bytes at a time, with unaligned loads (as cheap as aligned ones on
/// x86_64 and aarch64, and with no bytes to look at one by one before the first aligned
/// word), the last eight bytes overlapping the word before them; only a slice shorter
/// than eight bytes is read byte by byte.
pub fn nul_position(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(w) = eight_at(bytes, at) {
        if let Some(i) = first_zero_byte(w) {
            return Some(at + i);
        }
        at += 8;
    }
    if at == bytes.len() {
        return None;
    }
    match bytes.len().checked_sub(8) {
        // Bytes `last..at` were looked at already: they hold no NUL.
        Some(last) => eight_at(bytes, last)
            .and_then(first_zero_byte)
            .map(|i| last + i),
        None => bytes.iter().position(|&b| b == 0),
    }
}

/// Bytes `at..at + 8` of `bytes`, if they are all inside it.
#[inline(always)]
fn eight_at(bytes: &[u8], at: usize) -> Option<&[u8; 8]> {
    let end = at.checked_add(8)?;
    <&[u8; 8]>::try_from(bytes.get(at..end)?).ok()
}

/// The index of the first zero byte of `w` (inlined: a call per word would cost more
/// than the test).
#[inline(always)]
fn first_zero_byte(w: &[u8; 8]) -> Option<usize> {
    match bytes_in(u64::from_le_bytes(*w), 0, 0) {
        0 => None,
        zeros => Some((zeros.trailing_zeros() / 8) as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::{bytes_in, nul_position};

    #[test]
    fn bytes_in_every_byte_at_every_place() {
        for (lo, hi) in [
            (0u8, 0u8),
            (0, b'0' - 1),
            (b'/', b'/'),
            (b'0', b'9'),
            (b'a', b'f'),
        ] {
            for byte in 0..=255u8 {
                for place in 0..8 {
                    let w = u64::from_le_bytes([b'x'; 8]) & !(0xff << (8 * place))
                        | u64::from(byte) << (8 * place);
                    let want = if (lo..=hi).contains(&byte) {
                        0x80 << (8 * place)
                    } else {
                        0
                    };
                    assert_eq!(
                        bytes_in(w, lo, hi),
                        want,
                        "{byte:#x} at {place} in {lo}..={hi}"
                    );
                }
            }
        }
    }

    #[test]
    fn nul_position_at_every_place() {
        // Every length, every alignment, no NUL or one at each place (with more after it,
        // and bytes with their top bit set around it).
        let mut buf = [0u8; 80];
        for offset in 0..8 {
            for len in 0..buf.len() - offset {
                for nul in (0..len).map(Some).chain([None]) {
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = 0x80 | (i as u8 % 0x7f + 1);
                    }
                    let s = &mut buf[offset..offset + len];
                    if let Some(n) = nul {
                        s[n] = 0;
                        s[n..].iter_mut().step_by(3).for_each(|b| *b = 0);
                    }
                    assert_eq!(nul_position(s), nul, "offset {offset} len {len}");
                }
            }
        }
    }
}
