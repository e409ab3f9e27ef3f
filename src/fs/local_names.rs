//! The core's name checks beyond SharePoint's published rules (`names.rs`): names that would
//! clash with another entry under SharePoint's collation, and local-only names (application
//! owner, lock and cache files, [`names::is_local_only`]).
//!
//! Clashes (field reference entry 15): a new name (create, mkdir, rename target) whose
//! collation key an entry of the folder already holds under another name (`Mærsk.txt` beside
//! `Maersk.txt`, known from the table: listings, the change feed, our own creates) is refused
//! with EEXIST, logged, and noted in `.status` as "name clashes with …". Refusing, not keeping
//! a conflict copy: the name the user asked for cannot exist in SharePoint, and `cp`, `rsync`
//! and `tar` report EEXIST for that one file and go on with the rest. A clash the table cannot
//! know (the other name was created elsewhere after the last listing) is found by the upload
//! (409 `similarRelationshipNameAlreadyExists`): it fails at once, its data kept in the spool
//! (`upload::worker`), and the other file is never replaced. Renaming the failed file in the
//! mount queues it again under the new name (`namespace::rename`).
//!
//! Local-only files live in the table and the spool like any written file — listed, readable,
//! writable, renamable — but `seal` never hands them to the queue: they are shown in `.status`
//! as local only, and dropped from the spool at unmount ([`Fs::drop_local_only`] from
//! `shutdown`), at the next mount's recovery, and once left untouched and closed for
//! [`LOCAL_ONLY_IDLE`] (checked whenever another local-only file is created). Renaming one to
//! an ordinary name uploads it. Renaming a file SharePoint has, or one already handed to the
//! queue, to a local-only name is refused (EINVAL): its content would silently stop reaching
//! SharePoint.
//!
//! Locks: the core state lock (the checks take the caller's guard); the refusal notes are a
//! leaf mutex, taken alone.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use super::inode::NodeKind;
use super::names::{self, check_name_len, check_path_len, join};
use super::{Fs, FsError, FsResult, State};

/// How long a closed local-only file may stay untouched before the mount drops it (an owner
/// file left by an application that crashed). Office keeps its owner file for as long as the
/// document is open, which can be days on a desktop left running; a day untouched *and*
/// closed is past any session that still holds it.
pub const LOCAL_ONLY_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Refusals shown in `.status`: the latest this many, each for at most [`NOTE_TTL`].
const MAX_NOTES: usize = 20;
const NOTE_TTL: Duration = Duration::from_secs(3600);

/// Names recently refused at create, mkdir or rename (clashes and names SharePoint refuses),
/// for `.status`; the log has every one.
#[derive(Debug, Default)]
pub(super) struct RefusedNames {
    notes: Mutex<VecDeque<(Instant, String)>>,
}

impl RefusedNames {
    fn note(&self, line: String) {
        let mut n = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        n.retain(|(at, l)| at.elapsed() < NOTE_TTL && *l != line);
        if n.len() >= MAX_NOTES {
            n.pop_front();
        }
        n.push_back((Instant::now(), line));
    }

    /// The notes still shown, oldest first.
    pub(super) fn lines(&self) -> Vec<String> {
        let n = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        n.iter()
            .filter(|(at, _)| at.elapsed() < NOTE_TTL)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Fs {
    /// The path of a new entry `name` of `kind` in `parent_path`, if it may be created there:
    /// [`Self::allowed_name`], then [`Self::check_clash`]. Called with the core lock held.
    pub(super) fn new_name(
        &self,
        st: &State,
        parent_path: &str,
        name: &str,
        kind: NodeKind,
    ) -> FsResult<String> {
        let path = self.allowed_name(parent_path, name, kind)?;
        self.check_clash(st, &path, None)?;
        Ok(path)
    }

    /// The path of a new entry `name` of `kind` in `parent_path`, if SharePoint's rules allow
    /// it (a local-only file name passes them: it never reaches SharePoint; only its length
    /// counts). A refused name is noted for `.status`. Pure.
    pub(super) fn allowed_name(
        &self,
        parent_path: &str,
        name: &str,
        kind: NodeKind,
    ) -> FsResult<String> {
        let checked = if kind == NodeKind::File && names::is_local_only(name) {
            let path = join(parent_path, name);
            check_name_len(name)
                .and_then(|_| check_path_len(self.opts.base_path_chars, &path))
                .map(|_| path)
                .map_err(super::namespace::name_error)
        } else {
            self.check_new_name(parent_path, name)
        };
        if let Err(e @ FsError::InvalidName(_)) = &checked {
            self.refused
                .note(format!("{}: {e}", join(parent_path, name)));
        }
        checked
    }

    /// Refuse a new entry at `path` that would clash, under SharePoint's collation, with
    /// another entry the table knows in its folder (`renaming`: the node being renamed, which
    /// may take another spelling of its own name). Noted for `.status`. Called with the core
    /// lock held.
    pub(super) fn check_clash(
        &self,
        st: &State,
        path: &str,
        renaming: Option<u64>,
    ) -> FsResult<()> {
        let other = st
            .table
            .clash_of(path)
            .filter(|o| Some(*o) != renaming)
            .and_then(|o| st.table.get(o))
            .map(|n| n.name().to_string());
        match other {
            Some(other) => {
                let e = FsError::NameClash(other);
                self.refused.note(format!("{path}: {e}"));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// May the node `ino` be renamed to the local-only name `to`? Only a file with no version
    /// in SharePoint and nothing handed to the queue (still being written, or already local
    /// only). Called with the core lock held.
    pub(super) fn check_rename_to_local_only(st: &State, ino: u64, to: &str) -> FsResult<()> {
        if !names::is_local_only(names::split(to).1) {
            return Ok(());
        }
        let n = st.table.get(ino).ok_or(FsError::NotFound)?;
        let pending_only = n.kind == NodeKind::File
            && n.remote.is_none()
            && n.local
                .as_ref()
                .is_some_and(|l| !l.queued && l.failed.is_none());
        if pending_only {
            return Ok(());
        }
        Err(FsError::InvalidName(format!(
            "\"{}\" is a name the mount keeps local only (application owner and lock files); \
             renaming {} to it would stop it reaching SharePoint",
            names::split(to).1,
            n.path
        )))
    }

    /// After a rename from a local-only name to an ordinary one: the file is now meant for
    /// SharePoint, so it is queued (at once if closed, else at its last close).
    pub(super) fn upload_after_local_only_rename(&self, ino: u64) {
        {
            let mut st = self.lock();
            let Some(l) = st.table.get_mut(ino).and_then(|n| n.local.as_mut()) else {
                return;
            };
            l.dirty = true;
        }
        self.seal(ino, false);
    }

    /// Drop local-only files from the table and the spool: all of them (`idle: None`, at
    /// unmount), or the closed ones untouched for `idle`. Returns how many.
    pub fn drop_local_only(&self, idle: Option<Duration>) -> usize {
        let now = SystemTime::now();
        let doomed: Vec<(u64, String, std::path::PathBuf, bool)> = {
            let st = self.lock();
            st.table
                .local_nodes()
                .filter(|(_, n)| names::is_local_only(n.name()))
                .filter(|(ino, n)| match idle {
                    None => true,
                    Some(idle) => {
                        let touched = n.times().ctime.max(n.size_mtime().1);
                        Self::open_count(&st, **ino) == 0
                            && now.duration_since(touched).unwrap_or_default() >= idle
                    }
                })
                .filter_map(|(ino, n)| {
                    let l = n.local.as_ref()?;
                    Some((*ino, n.path.clone(), l.spool.clone(), n.remote.is_some()))
                })
                .collect()
        };
        for (ino, path, spool, on_server) in doomed.iter() {
            {
                let mut st = self.lock();
                if *on_server {
                    // The server's copy (app litter someone uploaded) stays visible.
                    if let Some(n) = st.table.get_mut(*ino) {
                        n.local = None;
                    }
                } else {
                    st.table.removed(path, now);
                }
            }
            crate::spool::remove_spooled(spool);
            info!("{path}: local-only file dropped from the spool");
        }
        doomed.len()
    }

    /// A local-only file was created: drop the ones left idle (an application that crashed
    /// leaves its owner file behind).
    pub(super) fn created_local_only(&self, path: &str) {
        let n = self.drop_local_only(Some(LOCAL_ONLY_IDLE));
        if n > 0 {
            warn!("{n} local-only file(s) untouched for a day were dropped");
        }
        info!("{path}: kept in the mount only, never uploaded (an application's own file)");
    }

    /// The local-only files, by path (for `.status`). Called with the core lock held.
    pub(super) fn local_only_paths(st: &State) -> Vec<String> {
        let mut v: Vec<String> = st
            .table
            .local_nodes()
            .filter(|(_, n)| names::is_local_only(n.name()))
            .map(|(_, n)| n.path.clone())
            .collect();
        v.sort();
        v
    }
}
