//! The virtual files at the mount root: `.status` (a table), `.status.json` (the same as
//! JSON), `.status.all` and `.status.all.json` (the same with every retained entry listed,
//! where the first two switch to a summary form above `status_summary_at` entries) and
//! `.control` (write-only commands). Their names and inode numbers are defined here
//! once; the CLI client (`crate::control`, `main.rs`) uses the same constants.
//!
//! Invariants: none is listed by `readdir` (so `rsync --delete` and `cp -r` of the mount leave
//! them alone) but each is looked up by name at the root; their attributes are volatile (zero
//! TTL). The status files are read-only and rendered fresh at each open, then fixed
//! for that handle (`direct_io`, since the size is not known in advance). Each line written to
//! `.control` is one command of the grammar in `command.rs`, applied at once; the write fails
//! with the errno of the first command that failed (ENOENT: no such kept upload, EINVAL:
//! unknown command).
//!
//! Locks: the core state lock, briefly, to list the files open for writing in the snapshot
//! (after the queue's snapshot, never together with it).

use std::time::SystemTime;

use log::info;

use super::command::ControlCommand;
use super::handles::{accmode_writes, HandleKind};
use super::{Attr, Fs, FsError, FsResult, NodeKind, Opened, ROOT_INO};
use crate::upload::status::StatusSnapshot;

/// The status table.
pub const STATUS_NAME: &str = ".status";
/// The status as JSON.
pub const STATUS_JSON_NAME: &str = ".status.json";
/// The hidden, write-only command file.
pub const CONTROL_NAME: &str = ".control";
/// The status table with every retained entry (never in the summary form).
pub const STATUS_ALL_NAME: &str = ".status.all";
/// The same as JSON.
pub const STATUS_ALL_JSON_NAME: &str = ".status.all.json";

pub const STATUS_INO: u64 = 2;
pub const STATUS_JSON_INO: u64 = 3;
pub const CONTROL_INO: u64 = 4;
pub const STATUS_ALL_INO: u64 = 5;
pub const STATUS_ALL_JSON_INO: u64 = 6;

/// The read-only status files: name and inode.
const STATUS_FILES: [(&str, u64); 4] = [
    (STATUS_NAME, STATUS_INO),
    (STATUS_JSON_NAME, STATUS_JSON_INO),
    (STATUS_ALL_NAME, STATUS_ALL_INO),
    (STATUS_ALL_JSON_NAME, STATUS_ALL_JSON_INO),
];

fn is_status_ino(ino: u64) -> bool {
    STATUS_FILES.iter().any(|(_, i)| *i == ino)
}

/// Is `name` in `parent` one of the read-only status files?
pub(super) fn is_status_file(parent: u64, name: &str) -> bool {
    parent == ROOT_INO && STATUS_FILES.iter().any(|(n, _)| *n == name)
}

impl Fs {
    /// The attributes of a virtual file named `name` in `parent`, if it is one.
    pub(super) fn virtual_lookup(&self, parent: u64, name: &str) -> Option<Attr> {
        if parent != ROOT_INO {
            return None;
        }
        if name == CONTROL_NAME {
            return Some(self.control_attr());
        }
        let (_, ino) = STATUS_FILES.iter().find(|(n, _)| *n == name)?;
        Some(self.virtual_attr(*ino))
    }

    /// The attributes of the virtual file `ino`, if it is one.
    pub(super) fn virtual_getattr(&self, ino: u64) -> Option<Attr> {
        match ino {
            CONTROL_INO => Some(self.control_attr()),
            _ if is_status_ino(ino) => Some(self.virtual_attr(ino)),
            _ => None,
        }
    }

    /// Open the virtual file `ino`, if it is one.
    pub(super) fn open_virtual(&self, ino: u64, flags: i32) -> Option<FsResult<Opened>> {
        match ino {
            CONTROL_INO => Some(Ok(Opened {
                fh: self.add_handle(HandleKind::Control),
                direct_io: true,
            })),
            _ if is_status_ino(ino) && accmode_writes(flags) => Some(Err(FsError::ReadOnly)),
            _ if is_status_ino(ino) => {
                let data = self.render_virtual(ino);
                Some(Ok(Opened {
                    fh: self.add_handle(HandleKind::Virtual { data }),
                    direct_io: true,
                }))
            }
            _ => None,
        }
    }

    /// `setattr` on the virtual file `ino`, if it is one: truncating a status file is refused,
    /// everything else ignored.
    pub(super) fn setattr_virtual(&self, ino: u64, size: Option<u64>) -> Option<FsResult<Attr>> {
        match ino {
            CONTROL_INO => Some(Ok(self.control_attr())),
            _ if is_status_ino(ino) && size.is_some() => Some(Err(FsError::ReadOnly)),
            _ if is_status_ino(ino) => Some(Ok(self.virtual_attr(ino))),
            _ => None,
        }
    }

    fn control_attr(&self) -> Attr {
        Attr {
            ino: CONTROL_INO,
            kind: NodeKind::File,
            size: 0,
            atime: SystemTime::now(),
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
            perm: 0o200,
            nlink: 1,
            volatile: true,
        }
    }

    fn virtual_attr(&self, ino: u64) -> Attr {
        let size = self.render_virtual(ino).len() as u64;
        Attr {
            ino,
            kind: NodeKind::File,
            size,
            atime: SystemTime::now(),
            mtime: SystemTime::now(),
            ctime: SystemTime::now(),
            perm: 0o444,
            nlink: 1,
            volatile: true,
        }
    }

    fn render_virtual(&self, ino: u64) -> Vec<u8> {
        let all = ino == STATUS_ALL_INO || ino == STATUS_ALL_JSON_INO;
        let snap = self.status_snapshot_with(all);
        if ino == STATUS_INO || ino == STATUS_ALL_INO {
            snap.render_table().into_bytes()
        } else {
            snap.render_json().into_bytes()
        }
    }

    /// The status the virtual files show (the summary form above the threshold).
    pub fn status_snapshot(&self) -> StatusSnapshot {
        self.status_snapshot_with(false)
    }

    /// The status with every retained entry (`all`) or in the summary form above the
    /// threshold.
    pub fn status_snapshot_with(&self, all: bool) -> StatusSnapshot {
        let mut snap = if all {
            self.queue.snapshot_all()
        } else {
            self.queue.snapshot()
        };
        let st = self.lock();
        let mut open: Vec<String> = st
            .table
            .local_nodes()
            .filter(|(_, n)| {
                n.local
                    .as_ref()
                    .is_some_and(|l| !l.queued && l.failed.is_none())
                    && !super::names::is_local_only(n.name())
            })
            .map(|(_, n)| n.path.clone())
            .collect();
        open.sort();
        snap.open_for_writing = open;
        snap.local_only = Self::local_only_paths(&st);
        drop(st);
        snap.refused_names = self.refused.lines();
        snap.spool = Some(self.space.usage());
        snap.bandwidth_limit = self.opts.bwlimit.as_ref().and_then(|b| b.status());
        snap
    }

    /// Apply the commands written to `.control`.
    pub(super) fn control_write(&self, data: &[u8]) -> FsResult<u32> {
        let text = String::from_utf8_lossy(data);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let cmd = ControlCommand::parse(line).map_err(FsError::InvalidName)?;
            info!("control: {cmd:?}");
            match cmd {
                ControlCommand::Retry(path) => {
                    if self.queue.retry_failed(path.as_deref()) == 0 && path.is_some() {
                        return Err(FsError::NotFound);
                    }
                }
                ControlCommand::Discard(path) => {
                    if self.discard(path.as_deref()) == 0 && path.is_some() {
                        return Err(FsError::NotFound);
                    }
                }
                ControlCommand::Drain => self.request_drain(),
                ControlCommand::Bwlimit(value) => {
                    let Some(limit) = &self.opts.bwlimit else {
                        return Err(FsError::NotSupported(
                            "bandwidth limit changes without a mount limiter",
                        ));
                    };
                    match value {
                        Some(t) => limit.set(t),
                        None => limit.reset(),
                    }
                }
            }
        }
        Ok(data.len() as u32)
    }
}
