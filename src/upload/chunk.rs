//! Fragment planning for Graph upload sessions (reference §2): from the file size, the server's
//! `nextExpectedRanges` and the chunk size, which bytes to PUT next.
//!
//! Rules it guarantees: a fragment starts at the first byte the server expects (which may be
//! anywhere, not on a 320 KiB boundary, after a partially accepted PUT); its length is the chunk
//! size, cut short only by the end of the file or the end of the first expected range. The chunk
//! size is a multiple of 320 KiB below 60 MiB ([`ChunkPlan::new`] normalises it), so every
//! fragment that is not the last one of the file has a valid length. Only the first expected
//! range is used: fragments of one session are sequential.

//!
//! The numbers (320 KiB unit, largest fragment, default chunk) are `crate::protocol`'s.

use crate::protocol::{FRAGMENT_UNIT, MAX_FRAGMENT};
use crate::remote::ByteRange;

/// One PUT: bytes `offset .. offset + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub offset: u64,
    pub len: u64,
}

/// Why no fragment can be planned: the server's ranges make no sense for this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// `nextExpectedRanges` is empty although the upload has not completed.
    NothingExpected,
    /// The first expected range lies outside the file.
    OutOfBounds {
        start: u64,
        end: Option<u64>,
        total: u64,
    },
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::NothingExpected => {
                write!(f, "server expects no more bytes but did not commit")
            }
            PlanError::OutOfBounds { start, end, total } => match end {
                Some(end) => write!(
                    f,
                    "server expects bytes {start}-{end} of a {total}-byte file"
                ),
                None => write!(
                    f,
                    "server expects bytes from {start} of a {total}-byte file"
                ),
            },
        }
    }
}

/// A validated chunk size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    chunk_size: u64,
}

impl ChunkPlan {
    /// Round `chunk_size` down to a multiple of 320 KiB, within `320 KiB ..= MAX_FRAGMENT`.
    pub fn new(chunk_size: u64) -> Self {
        let aligned = (chunk_size / FRAGMENT_UNIT) * FRAGMENT_UNIT;
        ChunkPlan {
            chunk_size: aligned.clamp(FRAGMENT_UNIT, MAX_FRAGMENT),
        }
    }

    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// The next fragment of a `total`-byte file given the server's expected ranges.
    pub fn next_fragment(&self, total: u64, expected: &[ByteRange]) -> Result<Fragment, PlanError> {
        let first = expected.first().ok_or(PlanError::NothingExpected)?;
        let out_of_bounds = PlanError::OutOfBounds {
            start: first.start,
            end: first.end,
            total,
        };
        if first.start >= total || first.end.is_some_and(|end| end < first.start) {
            return Err(out_of_bounds);
        }
        // Inclusive end of the range, clamped to the file.
        let last = first.end.unwrap_or(total - 1).min(total - 1);
        let len = self.chunk_size.min(last - first.start + 1);
        Ok(Fragment {
            offset: first.start,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DEFAULT_CHUNK, FRAGMENT_LIMIT};

    const K: u64 = FRAGMENT_UNIT;

    fn open(start: u64) -> ByteRange {
        ByteRange { start, end: None }
    }
    fn closed(start: u64, end: u64) -> ByteRange {
        ByteRange {
            start,
            end: Some(end),
        }
    }

    #[test]
    fn normalises_chunk_size() {
        for (input, want) in [
            (0, K),
            (1, K),
            (K, K),
            (K + 1, K),
            (DEFAULT_CHUNK, DEFAULT_CHUNK),
            (FRAGMENT_LIMIT, MAX_FRAGMENT),
            (u64::MAX, MAX_FRAGMENT),
        ] {
            assert_eq!(ChunkPlan::new(input).chunk_size(), want, "input {input}");
        }
    }

    #[test]
    fn plans_fragments() {
        let plan = ChunkPlan::new(2 * K);
        let cases: Vec<(u64, Vec<ByteRange>, Fragment)> = vec![
            // Fresh session.
            (
                5 * K,
                vec![open(0)],
                Fragment {
                    offset: 0,
                    len: 2 * K,
                },
            ),
            // Middle of the file.
            (
                5 * K,
                vec![open(2 * K)],
                Fragment {
                    offset: 2 * K,
                    len: 2 * K,
                },
            ),
            // Last, short fragment.
            (
                5 * K + 7,
                vec![open(4 * K)],
                Fragment {
                    offset: 4 * K,
                    len: K + 7,
                },
            ),
            // File smaller than a chunk.
            (10, vec![open(0)], Fragment { offset: 0, len: 10 }),
            // Unaligned resume after a partial acceptance: full chunk length.
            (
                5 * K,
                vec![open(1234)],
                Fragment {
                    offset: 1234,
                    len: 2 * K,
                },
            ),
            // Unaligned resume near the end.
            (
                5 * K,
                vec![open(5 * K - 3)],
                Fragment {
                    offset: 5 * K - 3,
                    len: 3,
                },
            ),
            // ODB-style explicit end covering the rest.
            (
                5 * K,
                vec![closed(K, 5 * K - 1)],
                Fragment {
                    offset: K,
                    len: 2 * K,
                },
            ),
            // Explicit end shorter than a chunk: never beyond it.
            (
                5 * K,
                vec![closed(K, K + 99)],
                Fragment {
                    offset: K,
                    len: 100,
                },
            ),
            // Only the first range counts.
            (
                5 * K,
                vec![closed(0, 9), open(3 * K)],
                Fragment { offset: 0, len: 10 },
            ),
            // End past the file is clamped to the file.
            (
                100,
                vec![closed(50, 10_000)],
                Fragment {
                    offset: 50,
                    len: 50,
                },
            ),
        ];
        for (total, expected, want) in cases {
            assert_eq!(
                plan.next_fragment(total, &expected),
                Ok(want),
                "total {total} expected {expected:?}"
            );
        }
    }

    #[test]
    fn rejects_nonsense_ranges() {
        let plan = ChunkPlan::new(K);
        assert_eq!(plan.next_fragment(10, &[]), Err(PlanError::NothingExpected));
        for expected in [vec![open(10)], vec![open(11)], vec![closed(5, 4)]] {
            assert!(matches!(
                plan.next_fragment(10, &expected),
                Err(PlanError::OutOfBounds { .. })
            ));
        }
    }

    #[test]
    fn non_final_fragments_are_aligned_in_length() {
        let plan = ChunkPlan::new(3 * K);
        for total in [1, K - 1, K, 3 * K, 3 * K + 1, 10 * K + 17] {
            for start in [0, 1, 999, K, 2 * K + 5] {
                if start >= total {
                    continue;
                }
                let f = plan.next_fragment(total, &[open(start)]).unwrap();
                assert!(f.len > 0 && f.len <= 3 * K);
                if f.offset + f.len < total {
                    assert_eq!(f.len % K, 0, "total {total} start {start}");
                }
            }
        }
    }
}
