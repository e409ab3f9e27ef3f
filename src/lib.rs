//! ShareUplift: a FUSE filesystem that uploads files to SharePoint Online / OneDrive for
//! Business through Microsoft Graph upload sessions.
//!
//! Layers (top to bottom): `config` (CLI and TOML) and `mount` (wiring) → `fuse` (the only
//! module that touches fuser reply types) → `fs` (filesystem core: inodes, handles, spool
//! files, `.status`) → `upload` (queue and workers, knows nothing of FUSE) → `remote` (the
//! trait) implemented by `graph`. `emulator` is the built-in local SharePoint used by the demo
//! and the tests; `control` is the client side of a running mount's `.control` and
//! `.status.json` (the `retry`, `discard`, `drain` and `wait` commands); `watch` draws `status --watch` and `wait --progress` from `.status.json`; `spool` owns the private spool directory and its records, `recovery` puts
//! what an earlier run left there back at mount; `redact` keeps secrets out of logs; `collation` is SharePoint's name comparison; `fstab` turns mount(8)'s helper arguments into a `mount` command; `service` talks to systemd and to a `--daemon` parent.

pub mod collation;
pub mod config;
pub mod control;
pub mod emulator;
pub mod fs;
pub mod fstab;
pub mod fuse;
pub mod graph;
pub mod logging;
pub mod mount;
pub mod ownership;
pub mod protocol;
pub mod quickxor;
pub mod recovery;
pub mod redact;
pub mod remote;
pub mod service;
pub mod spool;
pub mod upload;
pub mod watch;
