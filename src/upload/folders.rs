//! Folders the mount created that the server does not have yet. `mkdir` on a FUSE thread
//! only records the folder here ([`FolderPlan::expect`]); the folder is created remotely off
//! the FUSE threads: by the worker about to upload a file beneath it (every missing ancestor,
//! outermost first, before the file's createUploadSession), or by the folder thread for a
//! folder that stays empty. So a new file in a new folder costs one `mkdir` per folder, once,
//! and then createUploadSession + PUT — never a failed session first.
//!
//! Invariants: a path is in the plan from `expect` until its creation succeeded, or until it
//! is forgotten (`rmdir` before creation) or renamed (`rename` before creation); at most one
//! thread creates a given folder at a time (single flight: others wait for its answer). Keys
//! are folded (`crate::collation::fold`), as SharePoint compares names. A failed creation stays in the plan and is
//! tried again by the next file beneath it (the worker's 404 fallback remains as a last resort).
//!
//! Locks: one leaf mutex, never held across a remote call; waiters sleep on its condvar.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use log::{debug, warn};

use crate::remote::{ancestors, Remote, RemoteError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting to be created.
    Waiting,
    /// A thread is creating it now.
    Creating,
}

#[derive(Debug, Default)]
struct PlanState {
    /// Folded path → (path as created, step).
    folders: HashMap<String, (String, Step)>,
}

/// The folders to create before their files; shared by the core (`mkdir`, `rmdir`, `rename`)
/// and the upload workers.
#[derive(Debug, Default)]
pub struct FolderPlan {
    state: Mutex<PlanState>,
    changed: Condvar,
}

fn key(path: &str) -> String {
    crate::collation::fold(path)
}

impl FolderPlan {
    fn lock(&self) -> MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `path` was created through the mount and must be created on the server.
    pub fn expect(&self, path: &str) {
        self.lock()
            .folders
            .entry(key(path))
            .or_insert_with(|| (path.to_string(), Step::Waiting));
    }

    /// Is `path` still to be created (or being created)?
    pub fn is_pending(&self, path: &str) -> bool {
        self.lock().folders.contains_key(&key(path))
    }

    /// No folder is waiting or being created.
    pub fn is_idle(&self) -> bool {
        self.lock().folders.is_empty()
    }

    /// The pending folders, outermost first (for the folder thread).
    pub fn waiting(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock()
            .folders
            .values()
            .filter(|(_, s)| *s == Step::Waiting)
            .map(|(p, _)| p.clone())
            .collect();
        v.sort_by_key(|p| p.matches('/').count());
        v
    }

    /// `rmdir` of `path`: if it was never created, forget it (and return true: nothing to
    /// delete on the server). A folder being created now is not forgotten (false).
    pub fn forget(&self, path: &str) -> bool {
        let mut s = self.lock();
        match s.folders.get(&key(path)) {
            Some((_, Step::Waiting)) => {
                s.folders.remove(&key(path));
                true
            }
            _ => false,
        }
    }

    /// Create every pending folder above `file_path` (outermost first).
    pub fn ensure_parents(&self, remote: &dyn Remote, file_path: &str) -> Result<(), RemoteError> {
        for dir in ancestors(file_path) {
            self.ensure(remote, dir)?;
        }
        Ok(())
    }

    /// Create `dir` (and its pending ancestors) if it is pending; wait if another thread is
    /// creating it. `Ok` when it exists on the server as far as the plan knows.
    pub fn ensure(&self, remote: &dyn Remote, dir: &str) -> Result<(), RemoteError> {
        for up in ancestors(dir) {
            self.ensure_one(remote, up)?;
        }
        self.ensure_one(remote, dir)
    }

    fn ensure_one(&self, remote: &dyn Remote, dir: &str) -> Result<(), RemoteError> {
        let k = key(dir);
        let path = {
            let mut s = self.lock();
            loop {
                match s.folders.get_mut(&k) {
                    None => return Ok(()),
                    Some((p, step @ Step::Waiting)) => {
                        *step = Step::Creating;
                        break p.clone();
                    }
                    Some((_, Step::Creating)) => {
                        s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        };
        let result = remote.mkdir(&path);
        let mut s = self.lock();
        match &result {
            Ok(_) => {
                debug!("created folder {path}");
                s.folders.remove(&k);
            }
            Err(e) => {
                warn!("cannot create folder {path}: {e}");
                if let Some((_, step)) = s.folders.get_mut(&k) {
                    *step = Step::Waiting;
                }
            }
        }
        drop(s);
        self.changed.notify_all();
        result.map(|_| ())
    }

    /// A pending folder moved from `from` to `to` before it was created: the pending entries
    /// at and below `from` now name `to`. Returns false if one of them is being created now
    /// (the caller then creates `from` first and renames on the server).
    pub fn rename(&self, from: &str, to: &str) -> bool {
        let mut s = self.lock();
        let kf = key(from);
        let prefix = format!("{kf}/");
        let moving: Vec<String> = s
            .folders
            .keys()
            .filter(|k| **k == kf || k.starts_with(&prefix))
            .cloned()
            .collect();
        if moving.iter().any(|k| {
            s.folders
                .get(k)
                .is_some_and(|(_, st)| *st == Step::Creating)
        }) {
            return false;
        }
        for k in moving {
            if let Some((p, st)) = s.folders.remove(&k) {
                let np = format!("{to}{}", &p[from.len().min(p.len())..]);
                s.folders.insert(key(&np), (np, st));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::memory::{Call, MemoryRemote};

    #[test]
    fn pending_folders_are_created_once_outermost_first() {
        let remote = MemoryRemote::default();
        let plan = FolderPlan::default();
        plan.expect("a");
        plan.expect("a/b");
        plan.ensure_parents(&remote, "a/b/f.txt").unwrap();
        plan.ensure_parents(&remote, "a/b/g.txt").unwrap();
        let mkdirs: Vec<String> = remote
            .calls()
            .iter()
            .filter_map(|c| match c {
                Call::Mkdir { path } => Some(path.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(mkdirs, vec!["a".to_string(), "a/b".to_string()]);
        assert!(plan.is_idle());
    }

    #[test]
    fn forget_and_rename_before_creation() {
        let plan = FolderPlan::default();
        plan.expect("x");
        plan.expect("x/y");
        assert!(plan.rename("x", "z"));
        assert!(plan.is_pending("Z/y") && !plan.is_pending("x"));
        assert_eq!(plan.waiting(), vec!["z".to_string(), "z/y".to_string()]);
        assert!(plan.forget("z/y"));
        assert!(!plan.forget("nope"));
        assert_eq!(plan.waiting(), vec!["z".to_string()]);
    }
}
