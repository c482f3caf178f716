//! BLAKE3 (unkeyed, 32-byte output), portable and allocation-free, for code that cannot
//! use the `blake3` crate: the interpreter's `--verify` and the cycle rule's small hashes.
//!
//! Written from the BLAKE3 specification (the reference design: 1 KiB chunks, a binary tree
//! of parent nodes, seven rounds of the G function). It favours size over speed: the
//! interpreter carries it in every process, and the store hashes whole objects with the
//! `blake3` crate instead. `tests/blake3.rs` checks it against that crate.

const IV: [u32; 8] = [
    0x6A09_E667,
    0xBB67_AE85,
    0x3C6E_F372,
    0xA54F_F53A,
    0x510E_527F,
    0x9B05_688C,
    0x1F83_D9AB,
    0x5BE0_CD19,
];
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const BLOCK: usize = 64;
const CHUNK: usize = 1024;

fn g(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize, x: u32, y: u32) {
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(x);
    s[d] = (s[d] ^ s[a]).rotate_right(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(12);
    s[a] = s[a].wrapping_add(s[b]).wrapping_add(y);
    s[d] = (s[d] ^ s[a]).rotate_right(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_right(7);
}

fn compress(cv: &[u32; 8], block: &[u32; 16], counter: u64, len: u32, flags: u32) -> [u32; 16] {
    let mut s = [
        cv[0],
        cv[1],
        cv[2],
        cv[3],
        cv[4],
        cv[5],
        cv[6],
        cv[7],
        IV[0],
        IV[1],
        IV[2],
        IV[3],
        counter as u32,
        (counter >> 32) as u32,
        len,
        flags,
    ];
    let mut m = *block;
    for round in 0..7 {
        g(&mut s, 0, 4, 8, 12, m[0], m[1]);
        g(&mut s, 1, 5, 9, 13, m[2], m[3]);
        g(&mut s, 2, 6, 10, 14, m[4], m[5]);
        g(&mut s, 3, 7, 11, 15, m[6], m[7]);
        g(&mut s, 0, 5, 10, 15, m[8], m[9]);
        g(&mut s, 1, 6, 11, 12, m[10], m[11]);
        g(&mut s, 2, 7, 8, 13, m[12], m[13]);
        g(&mut s, 3, 4, 9, 14, m[14], m[15]);
        if round < 6 {
            let old = m;
            for (i, w) in m.iter_mut().enumerate() {
                *w = old[PERMUTATION[i]];
            }
        }
    }
    for i in 0..8 {
        s[i] ^= s[i + 8];
        s[i + 8] ^= cv[i];
    }
    s
}

fn first8(w: &[u32; 16]) -> [u32; 8] {
    let mut o = [0; 8];
    o.copy_from_slice(&w[..8]);
    o
}

fn words(bytes: &[u8; BLOCK]) -> [u32; 16] {
    let mut w = [0u32; 16];
    for (i, x) in w.iter_mut().enumerate() {
        let b = &bytes[4 * i..4 * i + 4];
        *x = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    w
}

/// The BLAKE3 hash of `bytes`.
pub fn hash(bytes: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// An incremental BLAKE3 hasher.
#[derive(Clone)]
pub struct Hasher {
    cv: [u32; 8],
    chunk: u64,
    block: [u8; BLOCK],
    block_len: usize,
    blocks_done: usize,
    stack: [[u32; 8]; 54],
    depth: usize,
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Hasher {
        Hasher {
            cv: IV,
            chunk: 0,
            block: [0; BLOCK],
            block_len: 0,
            blocks_done: 0,
            stack: [[0; 8]; 54],
            depth: 0,
        }
    }

    fn start_flag(&self) -> u32 {
        if self.blocks_done == 0 {
            CHUNK_START
        } else {
            0
        }
    }

    fn chunk_len(&self) -> usize {
        self.blocks_done * BLOCK + self.block_len
    }

    /// Feeds bytes.
    pub fn update(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if self.chunk_len() == CHUNK {
                let cv = self.chunk_cv();
                self.push_chunk(cv);
            }
            if self.block_len == BLOCK {
                let flags = self.start_flag();
                self.cv = first8(&compress(
                    &self.cv,
                    &words(&self.block),
                    self.chunk,
                    BLOCK as u32,
                    flags,
                ));
                self.blocks_done += 1;
                self.block = [0; BLOCK];
                self.block_len = 0;
            }
            let take = (BLOCK - self.block_len).min(input.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&input[..take]);
            self.block_len += take;
            input = &input[take..];
        }
    }

    fn chunk_cv(&self) -> [u32; 8] {
        let flags = self.start_flag() | CHUNK_END;
        first8(&compress(
            &self.cv,
            &words(&self.block),
            self.chunk,
            self.block_len as u32,
            flags,
        ))
    }

    fn push_chunk(&mut self, mut cv: [u32; 8]) {
        let mut total = self.chunk + 1;
        while total & 1 == 0 {
            self.depth -= 1;
            cv = parent_cv(&self.stack[self.depth], &cv, 0);
            total >>= 1;
        }
        self.stack[self.depth] = cv;
        self.depth += 1;
        self.chunk += 1;
        self.cv = IV;
        self.block = [0; BLOCK];
        self.block_len = 0;
        self.blocks_done = 0;
    }

    /// The 32-byte hash of everything fed so far.
    pub fn finalize(&self) -> [u8; 32] {
        // The root is the last chunk when it is alone, else the last parent node.
        let (mut cv, mut block, mut counter, mut len, mut flags) = (
            self.cv,
            words(&self.block),
            self.chunk,
            self.block_len as u32,
            self.start_flag() | CHUNK_END,
        );
        let mut d = self.depth;
        while d > 0 {
            d -= 1;
            let right = first8(&compress(&cv, &block, counter, len, flags));
            block = join(&self.stack[d], &right);
            cv = IV;
            counter = 0;
            len = BLOCK as u32;
            flags = PARENT;
        }
        let out = compress(&cv, &block, counter, len, flags | ROOT);
        let mut h = [0u8; 32];
        for i in 0..8 {
            h[4 * i..4 * i + 4].copy_from_slice(&out[i].to_le_bytes());
        }
        h
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

fn join(left: &[u32; 8], right: &[u32; 8]) -> [u32; 16] {
    let mut b = [0u32; 16];
    b[..8].copy_from_slice(left);
    b[8..].copy_from_slice(right);
    b
}

fn parent_cv(left: &[u32; 8], right: &[u32; 8], extra: u32) -> [u32; 8] {
    first8(&compress(
        &IV,
        &join(left, right),
        0,
        BLOCK as u32,
        PARENT | extra,
    ))
}
