//! Fragments sized to the link (issue 19): how many bytes the next fragment PUT carries.
//!
//! Every fragment costs a fixed time besides its bytes — the request's round trip and the
//! server's own time per fragment — during which the link carries nothing of this upload.
//! With fragments sent one after another, a file can go no faster than
//! `size / (fixed + size / bandwidth)`: at 150 ms and 10 MiB that is about 55 MB/s whatever
//! the link. The rule:
//!
//! - start at `chunk_size` (default 10 MiB);
//! - after a fragment is accepted, estimate its fixed cost ([`fixed_cost`]: its time less
//!   what its bytes took at the pace the connection took them) and, when that is more than
//!   [`GROW_SHARE`] of the fragment's time, grow: to the size at which it would be that
//!   share at the pace the fragment went (at least double), up to the protocol's largest
//!   fragment (`protocol::MAX_FRAGMENT`, 191 × 320 KiB, just under 60 MiB);
//! - after a fragment dropped mid-body or timed out, halve it (not below [`FLOOR`], or the
//!   start if that is smaller), so a flaky link re-sends little; successes grow it again.
//!
//! A `chunk_size` set explicitly in the configuration is a fixed size: no rule applies.
//! Sizes are always multiples of 320 KiB. Memory does not depend on the size: bodies are
//! streamed from the spool file (`remote::FragmentBody`). The state is one per mount (the
//! link is one), shared by the workers of the big-file lane ([`FragmentSizes`]); the pure
//! rule is [`FragmentSizer`].

use std::sync::Mutex;
use std::time::Duration;

use crate::protocol::{FRAGMENT_UNIT, MAX_FRAGMENT};

/// A fixed cost above this share of a fragment's time makes the next fragments larger.
pub const GROW_SHARE: f64 = 0.1;
/// Smallest size a failure shrinks to (4 × 320 KiB = 1.25 MiB), unless the start is smaller.
pub const FLOOR: u64 = 4 * FRAGMENT_UNIT;
/// Fewer pieces than this tell nothing about the link's pace: no growth from them.
const MIN_PIECES: usize = 8;

/// `bytes` rounded down to a multiple of 320 KiB within `320 KiB ..= MAX_FRAGMENT`.
fn aligned(bytes: u64) -> u64 {
    (bytes / FRAGMENT_UNIT * FRAGMENT_UNIT).clamp(FRAGMENT_UNIT, MAX_FRAGMENT)
}

/// The rule of the module documentation. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentSizer {
    size: u64,
    floor: u64,
    adaptive: bool,
}

impl FragmentSizer {
    /// Always `size` (aligned): a `chunk_size` from the configuration.
    pub fn fixed(size: u64) -> Self {
        let size = aligned(size);
        FragmentSizer {
            size,
            floor: size,
            adaptive: false,
        }
    }

    /// Starting at `start` (aligned), sized to the link.
    pub fn adaptive(start: u64) -> Self {
        let size = aligned(start);
        FragmentSizer {
            size,
            floor: size.min(FLOOR),
            adaptive: true,
        }
    }

    /// The size of the next fragment.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// A fragment of `len` bytes was accepted after `took`, `fixed` of which was fixed cost.
    pub fn succeeded(&mut self, len: u64, took: Duration, fixed: Duration) {
        // Only a fragment of about the current size says something about it (not the short
        // last one of a file, nor one sent before a shrink).
        if !self.adaptive || took.is_zero() || len * 2 < self.size {
            return;
        }
        let (fixed, took) = (fixed.as_secs_f64(), took.as_secs_f64());
        if fixed > GROW_SHARE * took {
            // The size at which the fixed cost would be GROW_SHARE of the time, at this
            // fragment's pace; at least double.
            let streaming = took - fixed;
            let wanted = if streaming > 0.0 {
                len as f64 * fixed * (1.0 - GROW_SHARE) / (GROW_SHARE * streaming)
            } else {
                f64::MAX
            };
            let doubled = self.size.saturating_mul(2);
            self.size = aligned(doubled.max(wanted.min(MAX_FRAGMENT as f64) as u64));
        }
    }

    /// A fragment was dropped mid-body or timed out.
    pub fn failed(&mut self) {
        if self.adaptive {
            self.size = aligned(self.size / 2).max(self.floor);
        }
    }
}

/// The fixed cost of a fragment that took `took`, whose `len` bytes went out in pieces of
/// `piece` bytes taken by the connection `gaps` apart: `took` less the time the bytes need at
/// the median gap (the link's pace while it was moving; the first pieces fill socket buffers
/// and the pauses are the latency). Zero when there are too few pieces to tell.
pub fn fixed_cost(took: Duration, gaps: &[Duration], len: u64, piece: u64) -> Duration {
    if gaps.len() < MIN_PIECES || piece == 0 {
        return Duration::ZERO;
    }
    let mut sorted = gaps.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let pieces = len as f64 / piece as f64;
    let streaming = median.mul_f64(pieces);
    took.saturating_sub(streaming)
}

/// The mount's fragment size, shared by the workers.
#[derive(Debug)]
pub struct FragmentSizes(Mutex<FragmentSizer>);

impl FragmentSizes {
    pub fn new(sizer: FragmentSizer) -> Self {
        FragmentSizes(Mutex::new(sizer))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FragmentSizer> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn size(&self) -> u64 {
        self.lock().size()
    }

    pub fn succeeded(&self, len: u64, took: Duration, fixed: Duration) {
        self.lock().succeeded(len, took, fixed);
    }

    pub fn failed(&self) {
        self.lock().failed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DEFAULT_CHUNK;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_while_the_fixed_cost_is_a_large_share() {
        let mut s = FragmentSizer::adaptive(DEFAULT_CHUNK);
        let mut sizes = vec![s.size()];
        // 15 ms of latency, 100 ms of bytes: double, up to the largest fragment.
        for _ in 0..5 {
            s.succeeded(s.size(), 115 * MS, 15 * MS);
            sizes.push(s.size());
        }
        assert_eq!(
            sizes,
            vec![
                DEFAULT_CHUNK,
                2 * DEFAULT_CHUNK,
                4 * DEFAULT_CHUNK,
                MAX_FRAGMENT,
                MAX_FRAGMENT,
                MAX_FRAGMENT
            ]
        );
        assert_eq!(MAX_FRAGMENT % FRAGMENT_UNIT, 0);
    }

    #[test]
    fn a_large_fixed_cost_grows_to_where_it_would_be_a_tenth() {
        let mut s = FragmentSizer::adaptive(DEFAULT_CHUNK);
        // 350 ms fixed, 20 ms of bytes: straight to the largest fragment.
        s.succeeded(DEFAULT_CHUNK, 370 * MS, 350 * MS);
        assert_eq!(s.size(), MAX_FRAGMENT);
        // 20 ms fixed, 100 ms of bytes: 10 MiB × 20 × 0.9 / (0.1 × 100) = 18 MiB → 20 MiB
        // (at least double), aligned.
        let mut s = FragmentSizer::adaptive(DEFAULT_CHUNK);
        s.succeeded(DEFAULT_CHUNK, 120 * MS, 20 * MS);
        assert_eq!(s.size(), 2 * DEFAULT_CHUNK);
        // 40 ms fixed: 36 MiB, aligned down to 320 KiB.
        let mut s = FragmentSizer::adaptive(DEFAULT_CHUNK);
        s.succeeded(DEFAULT_CHUNK, 140 * MS, 40 * MS);
        assert_eq!(s.size(), 36 * 1024 * 1024 / FRAGMENT_UNIT * FRAGMENT_UNIT);
    }

    #[test]
    fn stays_when_the_fixed_cost_is_small() {
        let mut s = FragmentSizer::adaptive(DEFAULT_CHUNK);
        s.succeeded(DEFAULT_CHUNK, 100 * MS, 5 * MS);
        assert_eq!(s.size(), DEFAULT_CHUNK);
        // A short last fragment says nothing.
        s.succeeded(FRAGMENT_UNIT, 100 * MS, 90 * MS);
        assert_eq!(s.size(), DEFAULT_CHUNK);
    }

    #[test]
    fn shrinks_after_failures_down_to_the_floor_then_grows_again() {
        let mut s = FragmentSizer::adaptive(MAX_FRAGMENT);
        let mut seen = Vec::new();
        for _ in 0..8 {
            s.failed();
            seen.push(s.size());
            assert_eq!(s.size() % FRAGMENT_UNIT, 0);
        }
        assert_eq!(*seen.last().unwrap(), FLOOR);
        assert!(seen.windows(2).all(|w| w[0] >= w[1]));
        s.succeeded(FLOOR, 12 * MS, 2 * MS);
        assert_eq!(s.size(), 2 * FLOOR);
        // A start below the floor is its own floor.
        let mut small = FragmentSizer::adaptive(FRAGMENT_UNIT);
        small.failed();
        assert_eq!(small.size(), FRAGMENT_UNIT);
    }

    #[test]
    fn a_fixed_size_never_changes() {
        let mut s = FragmentSizer::fixed(3 * FRAGMENT_UNIT + 5);
        assert_eq!(s.size(), 3 * FRAGMENT_UNIT);
        s.succeeded(s.size(), 1000 * MS, 990 * MS);
        s.failed();
        assert_eq!(s.size(), 3 * FRAGMENT_UNIT);
        assert!(!s.is_adaptive());
        assert_eq!(FragmentSizer::fixed(u64::MAX).size(), MAX_FRAGMENT);
    }

    #[test]
    fn the_fixed_cost_is_the_time_beyond_the_median_pace() {
        let piece = 256 * 1024;
        // 40 pieces: 10 into socket buffers at once, a 150 ms pause, then 1 ms each.
        let mut gaps = vec![Duration::ZERO; 10];
        gaps.push(150 * MS);
        gaps.extend(std::iter::repeat_n(MS, 29));
        let len = 40 * piece;
        let took = 150 * MS + 29 * MS + 20 * MS; // + the answer
        let fixed = fixed_cost(took, &gaps, len, piece);
        assert_eq!(fixed, took - 40 * MS);
        // Too few pieces: nothing to tell.
        assert_eq!(fixed_cost(took, &gaps[..3], len, piece), Duration::ZERO);
        // Never negative.
        assert_eq!(fixed_cost(MS, &vec![MS; 20], len, piece), Duration::ZERO);
    }
}
