//! Spool space accounting: may a write grow a spool file, and what `.status` shows as the
//! spool's usage and limit.
//!
//! Rule: with `spool_max` the sum of spool data files must stay under it; the sum is a scan
//! of the data files, trusted for `SCAN_TTL` (a scan per write would cost a directory listing
//! per 128 KiB), plus the growth admitted since, and a refusal is confirmed by a fresh scan
//! (uploads finished meanwhile may have freed space). Without `spool_max`, the spool
//! filesystem must keep max(1 GiB, 5 %) free, so the mount never fills the disk it shares.
//! Nothing spooled is touched when a write is refused; the caller marks the file broken.
//!
//! Locks: the scan cache's mutex is a leaf, held only to copy or store the last scan; the
//! directory scan itself runs without it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{FsError, FsResult};
use crate::spool::Spool;
use crate::upload::status::SpoolUsage;

/// Free space always left on the spool filesystem when no `spool_max` is set.
const MIN_MARGIN: u64 = 1024 * 1024 * 1024;
/// How long a spool usage scan is trusted (growth through writes is added in between).
const SCAN_TTL: Duration = Duration::from_secs(1);

/// The spool's space limit and a meter of its usage.
pub(super) struct SpaceMeter {
    spool: Arc<Spool>,
    /// Most bytes the spool may hold; `None`: keep max(1 GiB, 5 %) of its filesystem free.
    spool_max: Option<u64>,
    /// (when, bytes, files) of the last scan.
    scan: Mutex<Option<(Instant, u64, u64)>>,
    /// Bytes admitted since the last scan.
    grown: AtomicU64,
}

impl SpaceMeter {
    pub(super) fn new(spool: Arc<Spool>, spool_max: Option<u64>) -> Self {
        SpaceMeter {
            spool,
            spool_max,
            scan: Mutex::new(None),
            grown: AtomicU64::new(0),
        }
    }

    fn rescan(&self) -> (u64, u64) {
        let mut bytes = 0;
        let mut files = 0;
        for f in self.spool.existing_files().unwrap_or_default() {
            if let Ok(m) = std::fs::metadata(&f) {
                bytes += m.len();
                files += 1;
            }
        }
        self.grown.store(0, Ordering::SeqCst);
        *self.scan.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), bytes, files));
        (bytes, files)
    }

    /// (bytes, files), rescanning if the last scan is older than `SCAN_TTL` or `fresh`.
    fn measure(&self, fresh: bool) -> (u64, u64) {
        let cached = *self.scan.lock().unwrap_or_else(|e| e.into_inner());
        match cached {
            Some((at, bytes, files)) if !fresh && at.elapsed() < SCAN_TTL => {
                (bytes + self.grown.load(Ordering::SeqCst), files)
            }
            _ => self.rescan(),
        }
    }

    /// May a spool file grow by `growth` bytes? `NoSpace` with the reason if not.
    pub(super) fn admit(&self, growth: u64) -> FsResult<()> {
        if growth == 0 {
            return Ok(());
        }
        let refused = match self.spool_max {
            Some(max) => {
                let (used, _) = self.measure(false);
                if used + growth > max {
                    let (used, _) = self.measure(true);
                    (used + growth > max).then(|| format!("spool_max ({max} bytes) reached"))
                } else {
                    None
                }
            }
            None => {
                let d = self.spool.disk_space()?;
                let margin = MIN_MARGIN.max(d.total_bytes / 20);
                (d.free_bytes < growth + margin).then(|| {
                    format!("less than {margin} bytes would be left free on the spool filesystem")
                })
            }
        };
        if let Some(reason) = refused {
            return Err(FsError::NoSpace(reason));
        }
        self.grown.fetch_add(growth, Ordering::SeqCst);
        Ok(())
    }

    /// The spool's usage and limit, for `.status`.
    pub(super) fn usage(&self) -> SpoolUsage {
        let (bytes, files) = self.measure(false);
        let limit_bytes = match self.spool_max {
            Some(m) => Some(m),
            None => self.spool.disk_space().ok().map(|d| {
                let margin = MIN_MARGIN.max(d.total_bytes / 20);
                (bytes + d.free_bytes).saturating_sub(margin)
            }),
        };
        SpoolUsage {
            files,
            bytes,
            limit_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_max_refuses_growth_past_it() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Arc::new(Spool::open(tmp.path()).unwrap());
        let m = SpaceMeter::new(spool.clone(), Some(1000));
        let (f, _) = spool.new_file().unwrap();
        m.admit(600).unwrap();
        std::fs::write(&f, vec![0u8; 600]).unwrap();
        assert!(matches!(m.admit(600), Err(FsError::NoSpace(_))));
        assert_eq!(m.usage().bytes, 600);
        assert_eq!(m.usage().limit_bytes, Some(1000));
    }
}
