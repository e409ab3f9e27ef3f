//! The drain switch: once a drain is requested (`.control`, SIGUSR1, `shareuplift drain`),
//! new writes are refused with EACCES and the mount's drain thread is woken; it waits for the
//! queue and unmounts (`mount.rs`). The switch never turns back off within a mount.
//!
//! Locks: none (an atomic flag and a channel).

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::{FsError, FsResult};

pub(super) struct Drain {
    draining: AtomicBool,
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Drain {
    pub(super) fn new() -> Self {
        let (tx, rx) = unbounded();
        Drain {
            draining: AtomicBool::new(false),
            tx,
            rx,
        }
    }

    /// Refuse new writes from now on, and wake the drain thread.
    pub(super) fn request(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let _ = self.tx.send(());
    }

    /// `ReadOnly` (EACCES) once draining.
    pub(super) fn check_writable(&self) -> FsResult<()> {
        if self.draining.load(Ordering::SeqCst) {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Drain requests, for the mount's drain thread.
    pub(super) fn requests(&self) -> Receiver<()> {
        self.rx.clone()
    }
}
