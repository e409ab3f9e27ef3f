//! Reference quickXorHash for the emulator, deliberately independent of the client's
//! `crate::quickxor` so the tests can compare two implementations written apart.
//!
//! Definition (protocol reference §5): a 160-bit state `S`; byte `i` is XORed in after a
//! left rotation by `(11 * i) mod 160` bits (little-endian bit order: bit `p` is bit `p % 8`
//! of byte `p / 8`); the 64-bit little-endian length is XORed into the last 8 of the 20
//! output bytes; the result is standard, padded base64.
//!
//! Why it is fast without being clever: the rotation depends only on `i mod 160`
//! (`11 * 160 ≡ 0 mod 160`), so bytes are first XOR-folded into 160 per-position
//! accumulators (one XOR per input byte) and rotated into `S` only in [`QuickXorRef::finish`].
//! The state is incremental across arbitrary chunk boundaries, which lets an upload session
//! hash its bytes as they arrive in order.

use base64::Engine;

/// Incremental reference quickXorHash.
#[derive(Clone, Debug)]
pub struct QuickXorRef {
    /// The 160 per-position accumulators, 8 to a little-endian word: position `k` is byte
    /// `k % 8` of `lanes[k / 8]` (words make whole-block folding cheap even in debug builds).
    lanes: [u64; 20],
    len: u64,
}

impl Default for QuickXorRef {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorRef {
    pub fn new() -> Self {
        QuickXorRef {
            lanes: [0; 20],
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn fold_byte(&mut self, pos: usize, b: u8) {
        self.lanes[pos / 8] ^= u64::from(b) << (8 * (pos % 8));
    }

    /// Feed the next bytes of the stream.
    pub fn update(&mut self, data: &[u8]) {
        let mut pos = (self.len % 160) as usize;
        self.len += data.len() as u64;
        // Bring the position to a block boundary byte by byte...
        let head = ((160 - pos) % 160).min(data.len());
        for &b in &data[..head] {
            self.fold_byte(pos, b);
            pos = (pos + 1) % 160;
        }
        // ...then fold whole 160-byte blocks word by word (pos is 0 here, or the input has
        // ended and `rest` is empty)...
        let rest = &data[head..];
        let blocks = rest.chunks_exact(160);
        let tail = blocks.remainder();
        for block in blocks {
            for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                *lane ^= u64::from_le_bytes(w);
            }
        }
        // ...and the tail byte by byte.
        for &b in tail {
            self.fold_byte(pos, b);
            pos += 1;
        }
    }

    /// The 160 folded bytes.
    fn folded(&self) -> [u8; 160] {
        let mut out = [0u8; 160];
        for (chunk, lane) in out.chunks_exact_mut(8).zip(self.lanes) {
            chunk.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }

    /// The 20 raw hash bytes.
    pub fn finish_raw(&self) -> [u8; 20] {
        let mut s = [0u8; 20];
        for (k, &b) in self.folded().iter().enumerate() {
            let shift = (k * 11) % 160;
            for bit in 0..8 {
                if (b >> bit) & 1 == 1 {
                    let p = (shift + bit) % 160;
                    s[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (i, l) in self.len.to_le_bytes().iter().enumerate() {
            s[12 + i] ^= l;
        }
        s
    }

    /// The hash as Graph reports it (base64, 28 characters).
    pub fn finish(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finish_raw())
    }
}

/// Hash a whole byte slice.
pub fn quickxor_base64(data: &[u8]) -> String {
    let mut h = QuickXorRef::new();
    h.update(data);
    h.finish()
}

/// Hash a file in one streaming pass.
pub fn quickxor_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = QuickXorRef::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, bit by bit, for cross-checking.
    fn naive(data: &[u8]) -> String {
        let mut s = [0u8; 20];
        for (i, &b) in data.iter().enumerate() {
            let shift = (i * 11) % 160;
            for bit in 0..8 {
                if (b >> bit) & 1 == 1 {
                    let p = (shift + bit) % 160;
                    s[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (i, l) in (data.len() as u64).to_le_bytes().iter().enumerate() {
            s[12 + i] ^= l;
        }
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reference_vectors() {
        let b64 = base64::engine::general_purpose::STANDARD;
        for &(input, want) in crate::quickxor::REFERENCE_VECTORS {
            let data = b64.decode(input).unwrap();
            assert_eq!(quickxor_base64(&data), want, "input {input}");
            assert_eq!(naive(&data), want, "naive, input {input}");
        }
        assert_eq!(
            quickxor_base64(b"hello world"),
            "aCgDG9jwBhDc4Q1yawMZAAAAAAA="
        );
    }

    #[test]
    fn large_zero_vectors() {
        let zeros = vec![0u8; 1 << 20];
        let mut h = QuickXorRef::new();
        let mut left = 20_000_000usize;
        while left > 0 {
            let n = left.min(zeros.len());
            h.update(&zeros[..n]);
            left -= n;
        }
        assert_eq!(h.finish(), "AAAAAAAAAAAAAAAAAC0xAQAAAAA=");
        let mut h = QuickXorRef::new();
        for _ in 0..1024 {
            h.update(&zeros);
        }
        assert_eq!(h.finish(), "AAAAAAAAAAAAAAAAAAAAQAAAAAA=");
    }

    #[test]
    fn chunking_does_not_matter() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let want = naive(&data);
        for chunk in [1, 7, 159, 160, 161, 1000] {
            let mut h = QuickXorRef::new();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.finish(), want, "chunk {chunk}");
        }
    }
}
