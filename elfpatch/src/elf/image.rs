//! Edited files as data: the input's kept prefix, grown with zeros, overwritten by a list
//! of writes. Writers copy an image's runs without assembling it; [`Image::materialize`]
//! assembles it in memory.

use super::error::{malformed, Result};

/// An edited file, described as the input's first `base_len` bytes, grown (with zeros) to
/// `len`, then overwritten by `writes` in order. Large files are written from this without
/// ever copying the unchanged bytes through memory.
#[derive(Clone, Debug)]
pub struct Image {
    pub(crate) base_len: u64,
    pub(crate) len: u64,
    pub(crate) writes: Vec<(u64, Vec<u8>)>,
}

impl Image {
    /// An image that is `bytes`, whatever the input.
    pub fn from_bytes(bytes: Vec<u8>) -> Image {
        Image {
            base_len: 0,
            len: bytes.len() as u64,
            writes: vec![(0, bytes)],
        }
    }

    /// `second` (an edit of this image's output) applied after this image, as one image
    /// over this image's input.
    pub(crate) fn then(self, second: Image) -> Image {
        let cut = second.base_len;
        let mut writes: Vec<(u64, Vec<u8>)> =
            Vec::with_capacity(self.writes.len() + second.writes.len());
        for (o, mut b) in self.writes {
            if o < cut {
                b.truncate((cut - o).min(b.len() as u64) as usize);
                writes.push((o, b));
            }
        }
        writes.extend(second.writes);
        Image {
            base_len: self.base_len.min(cut),
            len: second.len,
            writes,
        }
    }

    pub(crate) fn put(&mut self, off: u64, bytes: Vec<u8>) -> Result<()> {
        if off
            .checked_add(bytes.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(malformed(format!(
                "write of {} bytes at {off:#x} past the end of the output",
                bytes.len()
            )));
        }
        self.writes.push((off, bytes));
        Ok(())
    }

    /// Zeroes bytes of the kept prefix (old copies of moved pieces).
    pub(crate) fn zero(&mut self, off: u64, n: u64) {
        if off < self.base_len {
            let end = off.saturating_add(n).min(self.base_len);
            self.writes.push((off, vec![0; (end - off) as usize]));
        }
    }

    /// Length of the output.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the output has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the output equals `input` byte for byte.
    pub fn is_identity(&self, input: &[u8]) -> bool {
        self.len == input.len() as u64
            && self.base_len == self.len
            && self
                .writes
                .iter()
                .all(|(o, b)| input.get(*o as usize..*o as usize + b.len()) == Some(&b[..]))
    }

    /// The output as consecutive runs, each either bytes (from the input or from a write)
    /// or zeros, covering `0..len` in order: what a writer copies without assembling the
    /// file in memory. Later writes win where writes overlap.
    pub fn runs<'a>(&'a self, input: &'a [u8]) -> Vec<Run<'a>> {
        let keep = self.base_len.min(input.len() as u64).min(self.len);
        let mut cuts = vec![0, keep, self.len];
        for (o, b) in &self.writes {
            cuts.extend([*o, o + b.len() as u64]);
        }
        cuts.retain(|&c| c <= self.len);
        cuts.sort_unstable();
        cuts.dedup();
        let mut runs: Vec<Run<'a>> = Vec::new();
        // Between two neighbouring cuts every write covers all bytes or none.
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let from_write = self
                .writes
                .iter()
                .rev()
                .find(|(o, d)| *o <= a && b <= o + d.len() as u64);
            match (from_write, runs.last_mut()) {
                (Some((o, d)), _) => runs.push(Run::Bytes(&d[(a - o) as usize..(b - o) as usize])),
                (None, Some(Run::Input(r))) if b <= keep && r.end == a as usize => {
                    r.end = b as usize
                }
                (None, _) if b <= keep => runs.push(Run::Input(a as usize..b as usize)),
                (None, Some(Run::Zeros(n))) => *n += b - a,
                (None, _) => runs.push(Run::Zeros(b - a)),
            }
        }
        runs
    }

    /// The whole output in memory.
    pub fn materialize(&self, input: &[u8]) -> Vec<u8> {
        let mut out = input[..input.len().min(self.len as usize)].to_vec();
        out.resize(self.len as usize, 0);
        self.overwrite(input, &mut out);
        out
    }

    /// Turns `buf`, which holds `input` (zeros past its end) and is this image's length,
    /// into the output: only the bytes that differ from the input are written.
    pub(crate) fn overwrite(&self, input: &[u8], buf: &mut [u8]) {
        let mut at = 0;
        for run in self.runs(input) {
            match run {
                Run::Input(r) => at = r.end,
                Run::Bytes(b) => {
                    buf[at..at + b.len()].copy_from_slice(b);
                    at += b.len();
                }
                Run::Zeros(n) => {
                    let end = at + n as usize;
                    // Past the input's end the bytes are zeros already.
                    if at < input.len() {
                        buf[at..end.min(input.len())].fill(0);
                    }
                    at = end;
                }
            }
        }
    }
}

/// A piece of an [`Image`]'s output (see [`Image::runs`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Run<'a> {
    /// These bytes of the input.
    Input(std::ops::Range<usize>),
    /// Bytes written by the edit.
    Bytes(&'a [u8]),
    /// This many zero bytes.
    Zeros(u64),
}

#[cfg(test)]
mod tests {
    use super::{Image, Run};

    /// The output by definition: the kept prefix, zeros up to `len`, each write in order.
    fn reference(img: &Image, input: &[u8]) -> Vec<u8> {
        let keep = (img.base_len as usize).min(input.len());
        let mut out = input[..keep].to_vec();
        out.resize(img.len as usize, 0);
        for (o, b) in &img.writes {
            out[*o as usize..*o as usize + b.len()].copy_from_slice(b);
        }
        out
    }

    #[test]
    fn runs_follow_the_writes_in_order() {
        let input: Vec<u8> = (1..=40).collect();
        let cases = [
            // Nothing changed; a shorter prefix; a file grown with zeros and writes past
            // the input; overlapping writes, the later winning; writes that touch.
            (40, 40, vec![]),
            (30, 30, vec![(5, vec![0xaa; 3])]),
            (40, 64, vec![(50, vec![0xbb; 4]), (38, vec![0xcc; 4])]),
            (
                40,
                40,
                vec![(2, vec![0xdd; 10]), (4, vec![0xee; 2]), (0, vec![0xff; 3])],
            ),
            (
                20,
                48,
                vec![(10, vec![1; 5]), (15, vec![2; 5]), (20, vec![3; 5])],
            ),
        ];
        for (base_len, len, writes) in cases {
            let img = Image {
                base_len,
                len,
                writes,
            };
            let runs = img.runs(&input);
            let want = reference(&img, &input);
            assert_eq!(img.materialize(&input), want, "{img:?}");
            let mut concatenated = Vec::new();
            for run in &runs {
                match run {
                    Run::Input(r) => concatenated.extend_from_slice(&input[r.clone()]),
                    Run::Bytes(b) => concatenated.extend_from_slice(b),
                    Run::Zeros(n) => concatenated.resize(concatenated.len() + *n as usize, 0),
                }
            }
            assert_eq!(concatenated, want, "{runs:?}");
            // Neighbouring runs of the input or of zeros are merged.
            for pair in runs.windows(2) {
                assert!(
                    !matches!(pair, [Run::Zeros(_), Run::Zeros(_)])
                        && !matches!(pair, [Run::Input(a), Run::Input(b)] if a.end == b.start),
                    "{runs:?}"
                );
            }
        }
    }
}
