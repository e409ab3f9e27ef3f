//! The drive's quota, read before a big upload (field reference entry 13): SharePoint checks
//! it only when the final fragment arrives, so without this a file that cannot fit is refused
//! with 507 after its whole upload. A file of at least [`QUOTA_CHECK_MIN`] bytes is checked
//! against the drive's `quota.remaining` (one reading shared by every worker for
//! [`QUOTA_READING_TTL`]); a drive that reports no quota, or a reading that fails, skips the
//! check (the 507 at the end still stops the upload). A file that replaces one at its path
//! is given the room the replaced one frees.
//!
//! Lock: the reading's mutex, a leaf, never held across the request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use log::debug;

use super::clock::Clock;
use super::status::human_bytes;
use crate::remote::Remote;

/// Smallest file whose upload reads the quota first (smaller ones cost little to refuse at
/// the end).
pub const QUOTA_CHECK_MIN: u64 = 4 * 1024 * 1024;

/// How long one reading of the quota is used.
pub const QUOTA_READING_TTL: Duration = Duration::from_secs(10);

/// Readings of the drive's remaining quota, shared by the workers.
#[derive(Debug, Default)]
pub struct QuotaGuard {
    /// When read, and what was read (`None`: the drive reports no quota).
    reading: Mutex<Option<(Instant, Option<u64>)>>,
}

/// Why a file cannot fit, for `.status`: what is left, what is needed, what to do.
pub fn no_room_message(remaining: u64, size: u64) -> String {
    format!(
        "not enough room in SharePoint: the library has {} left and this file needs {} \
         (quota read before uploading); free space or raise the quota, then retry",
        human_bytes(remaining),
        human_bytes(size)
    )
}

impl QuotaGuard {
    /// The drive's remaining bytes, from a recent reading or a new one; `None` when the
    /// drive reports no quota or it cannot be read.
    fn remaining(&self, remote: &dyn Remote, clock: &dyn Clock) -> Option<u64> {
        let now = clock.now();
        {
            let r = self.reading.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, value)) = *r {
                if now.saturating_duration_since(at) < QUOTA_READING_TTL {
                    return value;
                }
            }
        }
        let value = match remote.drive_quota() {
            Ok(q) => q.map(|q| q.remaining),
            Err(e) => {
                debug!("reading the drive's quota: {e}; not checked");
                return None;
            }
        };
        *self.reading.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, value));
        value
    }

    /// `Err(reason)` when a file of `size` bytes for `path` cannot fit in what the drive has
    /// left. Files under [`QUOTA_CHECK_MIN`] are not checked.
    pub fn check_room(
        &self,
        remote: &dyn Remote,
        clock: &dyn Clock,
        path: &str,
        size: u64,
    ) -> Result<(), String> {
        if size < QUOTA_CHECK_MIN {
            return Ok(());
        }
        let Some(remaining) = self.remaining(remote, clock) else {
            return Ok(());
        };
        if remaining >= size {
            return Ok(());
        }
        // A replace frees the replaced file's bytes.
        let replaced = match remote.stat(path) {
            Ok(Some(item)) if !item.is_folder => item.size,
            Ok(_) => 0,
            Err(e) => {
                debug!("{path}: looking at the file to replace: {e}; quota not checked");
                return Ok(());
            }
        };
        if remaining.saturating_add(replaced) >= size {
            return Ok(());
        }
        Err(no_room_message(remaining, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::memory::{Call, MemoryRemote};
    use crate::remote::Conflict;
    use crate::upload::clock::ManualClock;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn refuses_early_only_what_cannot_fit() {
        let r = MemoryRemote::default();
        let clock = ManualClock::new(std::time::SystemTime::UNIX_EPOCH);
        let g = QuotaGuard::default();
        // No quota reported: never refused.
        assert_eq!(g.check_room(&r, &clock, "a.bin", 100 * MIB), Ok(()));
        r.set_quota(Some(20 * MIB));
        clock.advance(QUOTA_READING_TTL);
        // Small files are not checked; big ones that fit pass.
        assert_eq!(g.check_room(&r, &clock, "s.bin", MIB), Ok(()));
        assert_eq!(g.check_room(&r, &clock, "a.bin", 20 * MIB), Ok(()));
        let err = g.check_room(&r, &clock, "a.bin", 21 * MIB).unwrap_err();
        assert!(
            err.contains("20.0 MiB left") && err.contains("21.0 MiB"),
            "{err}"
        );
        // One reading serves every check for a while.
        let reads = |r: &MemoryRemote| r.calls().iter().filter(|c| **c == Call::Quota).count();
        assert_eq!(reads(&r), 2);
        // Replacing a file frees its bytes.
        r.upload_small(
            "big.bin",
            &vec![0u8; 5 * MIB as usize],
            Conflict::Replace,
            None,
        )
        .unwrap();
        clock.advance(QUOTA_READING_TTL);
        assert_eq!(g.check_room(&r, &clock, "big.bin", 20 * MIB), Ok(()));
        assert!(g.check_room(&r, &clock, "other.bin", 20 * MIB).is_err());
        assert_eq!(reads(&r), 3);
    }
}
