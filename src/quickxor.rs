//! quickXorHash, the content hash SharePoint and OneDrive compute for every file
//! (`file.hashes.quickXorHash`), used to verify an upload end to end.
//!
//! Definition (reference §5): byte `i` is XORed into a 160-bit little-endian state at bit
//! `(11·i) mod 160`; the input length (u64, little-endian) is XORed into the last 8 bytes of
//! the 20-byte result, which is base64-encoded (standard alphabet, padded).
//!
//! Speed: because `11·160 ≡ 0 (mod 160)`, bytes whose positions are equal mod 160 land at the
//! same bit offset, so `update` only XOR-folds the input into a 160-byte accumulator (20 u64
//! lanes, one whole block at a time, which the compiler vectorises) and `finalize` does the
//! 160 shifted XORs once. Invariant: accumulator byte `j` holds the XOR of every input byte
//! whose position is `≡ j (mod 160)`; `len` counts all bytes seen, and `len % 160` is where
//! the next byte goes. Memory is constant: `quickxor_file` streams through a 1 MiB buffer.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use base64::Engine as _;

/// Bytes per fold block: positions equal mod 160 share a bit offset.
/// The reference §5 test vectors: input (base64) → quickXorHash. Shared by the tests of this
/// implementation and of the emulator's independent one.
pub const REFERENCE_VECTORS: &[(&str, &str)] = &[
    ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
    ("0pZP", "0rDEEwAAAAAAAAAAAwAAAAAAAAA="),
    ("/aNzzCFPS/A=", "/RjFHJgRgicsAR4ACAAAAAAAAAA="),
    ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
    (
        "T6LYJIfDh81JrAK309H2JMJTXis=",
        "zBTHrspn3mEcohlJdIUAbjGNaNg=",
    ),
];

const BLOCK: usize = 160;
const LANES: usize = BLOCK / 8;
/// Width of the hash in bytes (160 bits).
const WIDTH_BYTES: usize = 20;
/// Bit shift between consecutive input bytes.
const SHIFT: usize = 11;
/// Read buffer of [`quickxor_file`].
const FILE_BUFFER: usize = 1 << 20;

/// Incremental quickXorHash.
#[derive(Clone)]
pub struct QuickXorHasher {
    /// Accumulator byte `j` is byte `j % 8` (little-endian) of lane `j / 8`.
    lanes: [u64; LANES],
    len: u64,
}

impl Default for QuickXorHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QuickXorHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickXorHasher")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl QuickXorHasher {
    pub fn new() -> Self {
        QuickXorHasher {
            lanes: [0; LANES],
            len: 0,
        }
    }

    /// Feed more bytes; any split of the input gives the same hash.
    pub fn update(&mut self, mut data: &[u8]) {
        let mut pos = (self.len % BLOCK as u64) as usize;
        self.len = self.len.wrapping_add(data.len() as u64);

        // Bytes up to the next block boundary.
        if pos != 0 {
            let take = (BLOCK - pos).min(data.len());
            self.fold_bytes(pos, &data[..take]);
            data = &data[take..];
            pos = (pos + take) % BLOCK;
            if pos != 0 {
                return;
            }
        }

        // Whole blocks.
        let mut blocks = data.chunks_exact(BLOCK);
        for block in &mut blocks {
            for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                *lane ^= u64::from_le_bytes(w);
            }
        }

        // Tail (starts at position 0 of a block).
        self.fold_bytes(0, blocks.remainder());
    }

    /// XOR `bytes` into accumulator positions `start..start + bytes.len()` (all < 160).
    fn fold_bytes(&mut self, start: usize, bytes: &[u8]) {
        for (k, &b) in bytes.iter().enumerate() {
            let j = start + k;
            self.lanes[j / 8] ^= u64::from(b) << (8 * (j % 8));
        }
    }

    /// The raw 20-byte hash.
    pub fn finalize(self) -> [u8; WIDTH_BYTES] {
        // Spread the accumulator into the 160-bit state. Work in a 21-byte buffer so a byte
        // straddling bit 160 can be written in one go, then wrap the overflow byte to 0.
        let mut state = [0u8; WIDTH_BYTES + 1];
        for j in 0..BLOCK {
            let b = (self.lanes[j / 8] >> (8 * (j % 8))) as u8;
            if b == 0 {
                continue;
            }
            let bit = (SHIFT * j) % (WIDTH_BYTES * 8);
            let (idx, off) = (bit / 8, bit % 8);
            let spread = u16::from(b) << off;
            state[idx] ^= spread as u8;
            state[idx + 1] ^= (spread >> 8) as u8;
        }
        let mut out = [0u8; WIDTH_BYTES];
        out.copy_from_slice(&state[..WIDTH_BYTES]);
        out[0] ^= state[WIDTH_BYTES];
        for (o, l) in out[WIDTH_BYTES - 8..]
            .iter_mut()
            .zip(self.len.to_le_bytes())
        {
            *o ^= l;
        }
        out
    }

    /// The hash as Graph reports it: base64, standard alphabet, padded (28 characters).
    pub fn finalize_base64(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finalize())
    }
}

/// quickXorHash (base64) of a whole file, streamed in constant memory.
pub fn quickxor_file(path: impl AsRef<Path>) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; FILE_BUFFER];
    let mut hasher = QuickXorHasher::new();
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize_base64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use rand::{Rng, RngCore, SeedableRng};

    fn hash(data: &[u8]) -> String {
        let mut h = QuickXorHasher::new();
        h.update(data);
        h.finalize_base64()
    }

    /// Bit-by-bit transcription of the reference definition, for cross-checking.
    fn reference_hash(data: &[u8]) -> String {
        let mut state = [0u8; WIDTH_BYTES];
        for (i, &b) in data.iter().enumerate() {
            let bit = (i * SHIFT) % 160;
            for k in 0..8 {
                if b >> k & 1 == 1 {
                    let p = (bit + k) % 160;
                    state[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (o, l) in state[12..]
            .iter_mut()
            .zip((data.len() as u64).to_le_bytes())
        {
            *o ^= l;
        }
        STANDARD.encode(state)
    }

    #[test]
    fn reference_vectors() {
        for &(input_b64, want) in REFERENCE_VECTORS {
            let input = STANDARD.decode(input_b64).unwrap();
            assert_eq!(hash(&input), want, "input {input_b64}");
            assert_eq!(reference_hash(&input), want, "reference, input {input_b64}");
        }
        assert_eq!(hash(b"hello world"), "aCgDG9jwBhDc4Q1yawMZAAAAAAA=");
    }

    fn zeros_hash(total: u64) -> String {
        let zeros = vec![0u8; 1 << 20];
        let mut h = QuickXorHasher::new();
        let mut left = total;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            h.update(&zeros[..n]);
            left -= n as u64;
        }
        h.finalize_base64()
    }

    #[test]
    fn twenty_million_zeros() {
        assert_eq!(zeros_hash(20_000_000), "AAAAAAAAAAAAAAAAAC0xAQAAAAA=");
    }

    #[test]
    fn one_gib_of_zeros() {
        assert_eq!(zeros_hash(1 << 30), "AAAAAAAAAAAAAAAAAAAAQAAAAAA=");
    }

    #[test]
    fn fast_path_matches_reference_definition() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [1usize, 159, 160, 161, 319, 320, 321, 1000, 4097] {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            assert_eq!(hash(&data), reference_hash(&data), "len {len}");
        }
    }

    #[test]
    fn split_updates_give_the_same_hash() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for _ in 0..200 {
            let len = rng.gen_range(0..3000);
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            let whole = hash(&data);
            let mut h = QuickXorHasher::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.gen_range(0..=rest.len().min(400));
                h.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(h.finalize_base64(), whole, "len {len}");
        }
    }

    #[test]
    fn file_hash_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let mut data = vec![0u8; 3 * FILE_BUFFER + 12345];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
        std::fs::write(&path, &data).unwrap();
        assert_eq!(quickxor_file(&path).unwrap(), hash(&data));
    }

    /// Throughput check, release only: `cargo test --release --lib quickxor -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn throughput() {
        let buf = vec![0x5au8; 1 << 20];
        let start = std::time::Instant::now();
        let mut h = QuickXorHasher::new();
        for _ in 0..2048 {
            h.update(&buf);
        }
        let _ = h.finalize();
        let secs = start.elapsed().as_secs_f64();
        println!("quickxor: {:.2} GB/s", 2.0 * 1.073_741_824 / secs);
    }
}
