//! ShareUplift: a FUSE filesystem that uploads files to SharePoint Online / OneDrive for
//! Business through Microsoft Graph upload sessions.
//!
//! Layers (top to bottom): `config` (CLI and TOML) → `fuse` (the only module that touches
//! fuser reply types) → `fs` (filesystem core: inodes, handles, spool, `.status`) → `upload`
//! (queue and workers, knows nothing of FUSE) → `remote` (the trait) implemented by `graph`.
//! `emulator` is the built-in local SharePoint used by the demo and the tests.

pub mod emulator;
pub mod graph;
pub mod quickxor;
pub mod redact;
pub mod remote;
pub mod upload;
