//! The namespace half of the core: lookup, getattr, directory listings (opendir, readdir,
//! releasedir), mkdir, unlink, rmdir, rename (with the pending uploads beneath a moved
//! folder), and the metadata cache that answers them.
//!
//! Cache rules: server metadata (a node's attributes, a folder's listing) is trusted for
//! `FsOptions::meta_ttl`; a node with local content, or a folder we created, is answered from
//! the table; our own changes update the table at once. On a transient error (network, 5xx,
//! throttling) lookups and listings answer from the cache, so writes keep going to the spool
//! during an outage.
//!
//! Locks: the core state lock only, taken for each read or update of the table and released
//! before every remote call. `unlink`, `rename` and `move_pending_under` hold it across the
//! queue calls that cancel or retarget a queued job (see "Locks" in `mod.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};

use super::handles::HandleKind;
use super::names::{self, check_name, check_path_len, join, NameProblem};
use super::virtual_files;
use super::{Attr, DirReplier, Fs, FsError, FsResult, NodeKind, Opened, State, ROOT_INO};

impl Fs {
    /// Is server metadata seen at `t` still within the cache time? Pure; called with the
    /// core lock held.
    fn fresh(&self, t: Option<Instant>) -> bool {
        t.is_some_and(|t| t.elapsed() < self.cache_time())
    }

    /// How long server metadata is trusted: `dir_cache_time` while the change feed keeps the
    /// cache coherent, `meta_ttl` (seconds) when there is none.
    pub(super) fn cache_time(&self) -> Duration {
        if self.coherence.live() {
            self.opts.dir_cache_time
        } else {
            self.opts.meta_ttl
        }
    }

    /// The entry and attribute timeout the kernel is given: the cache time, but never longer
    /// than a poll of the change feed, so a remote change reaches `stat` within two polls
    /// even where the kernel is not told (see `coherence`).
    pub fn kernel_ttl(&self) -> Duration {
        let t = self.cache_time();
        match self.opts.poll_interval {
            Some(p) => t.min(p),
            None => t,
        }
    }

    /// The attributes of `ino` as the table has them. Called with the core lock held.
    pub(super) fn attr_of(st: &State, ino: u64) -> FsResult<Attr> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        let (size, _) = node.size_mtime();
        let t = node.times();
        Ok(Attr {
            ino,
            kind: node.kind,
            size,
            atime: t.atime,
            mtime: t.mtime,
            ctime: t.ctime,
            perm: if node.kind == NodeKind::Dir {
                0o755
            } else {
                0o644
            },
            nlink: node.nlink(),
            volatile: false,
        })
    }

    /// The path of the folder `ino`. Called with the core lock held.
    pub(super) fn dir_path(&self, st: &State, ino: u64) -> FsResult<String> {
        let node = st.table.get(ino).ok_or(FsError::NotFound)?;
        if node.kind != NodeKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(node.path.clone())
    }

    /// The path of a new entry `name` in `parent_path`, if SharePoint allows it. Pure; called
    /// with the core lock held.
    pub(super) fn check_new_name(&self, parent_path: &str, name: &str) -> FsResult<String> {
        check_name(name, parent_path.is_empty()).map_err(name_error)?;
        let path = join(parent_path, name);
        check_path_len(self.opts.base_path_chars, &path).map_err(name_error)?;
        Ok(path)
    }

    /// Answer a lookup from the table alone, if it can: the node has local content, its
    /// server metadata is fresh, it is a folder the mount created, or the parent's complete
    /// listing is fresh (then an absent name is ENOENT). `None`: the parent must be listed.
    fn lookup_cached(&self, parent: u64, name: &str) -> FsResult<Option<FsResult<Attr>>> {
        let st = self.lock();
        let parent_path = self.dir_path(&st, parent)?;
        let path = join(&parent_path, name);
        let parent_listed = st.table.get(parent).and_then(|n| n.listed);
        Ok(match st.table.ino_of(&path) {
            Some(ino) => {
                let n = st.table.get(ino).ok_or(FsError::NotFound)?;
                let known = n.local.is_some()
                    || self.fresh(n.seen)
                    || self.fresh(parent_listed)
                    || (n.kind == NodeKind::Dir && n.remote.is_none());
                known.then(|| Self::attr_of(&st, ino))
            }
            None if self.fresh(parent_listed) => Some(Err(FsError::NotFound)),
            None => None,
        })
    }

    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if let Some(attr) = self.virtual_lookup(parent, name) {
            return Ok(attr);
        }
        names::check_name_len(name).map_err(name_error)?;
        if let Some(answer) = self.lookup_cached(parent, name)? {
            return answer;
        }
        if check_name(name, false).is_err() {
            return Err(FsError::NotFound);
        }
        // Not known: list the parent (once, however many lookups wait for it), never stat
        // the name. On a transient error the listing answers from the cache, so writes keep
        // going to the spool during an outage (a name never seen is "absent").
        let path = self.refresh_listing(parent)?;
        let st = self.lock();
        match st.table.ino_of(&join(&path, name)) {
            Some(ino) => Self::attr_of(&st, ino),
            None => Err(FsError::NotFound),
        }
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if let Some(attr) = self.virtual_getattr(ino) {
            return Ok(attr);
        }
        let st = self.lock();
        Self::attr_of(&st, ino)
    }

    /// A new folder is recorded locally (known empty) and created on the server by the upload
    /// path (`upload::folders`), before the first file beneath it: no round trip here once the
    /// parent's listing is known.
    pub fn mkdir(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let path = {
            let st = self.lock();
            let parent_path = self.dir_path(&st, parent)?;
            self.allowed_name(&parent_path, name, NodeKind::Dir)?
        };
        self.refresh_listing(parent)?;
        let mut st = self.lock();
        if st.table.ino_of(&path).is_some() {
            return Err(FsError::Exists);
        }
        self.check_clash(&st, &path, None)?;
        let ino = st.table.upsert(&path, NodeKind::Dir);
        if let Some(n) = st.table.get_mut(ino) {
            n.listed = Some(Instant::now());
        }
        st.table.entries_changed(&path, SystemTime::now());
        // A leaf lock, taken under the core lock so a concurrent create beneath the folder
        // finds it planned.
        self.queue.folders().expect(&path);
        debug!("mkdir {path}: created locally, the upload path creates it on the server");
        Self::attr_of(&st, ino)
    }

    /// Make sure the listing of folder `ino` is fresh, listing it from the server if not
    /// (one request per `MAX_PAGE_SIZE` children). Single flight: concurrent callers for the
    /// same folder wait for that one listing. A folder the mount created and the server does
    /// not have yet is known without asking. Returns the folder's path.
    fn refresh_listing(&self, ino: u64) -> FsResult<String> {
        let mut waited = false;
        loop {
            let path = {
                let st = self.lock();
                let path = self.dir_path(&st, ino)?;
                if self.fresh(st.table.get(ino).and_then(|n| n.listed)) {
                    return Ok(path);
                }
                path
            };
            if self.queue.folders().is_pending(&path) {
                if let Some(n) = self.lock().table.get_mut(ino) {
                    n.listed = Some(Instant::now());
                }
                return Ok(path);
            }
            if waited {
                // The listing we waited for failed: answer from the table, as it did.
                return Ok(path);
            }
            match self.flights.begin(ino) {
                Some(_lead) => return self.list_into(ino, path),
                None => waited = true,
            }
        }
    }

    /// List folder `ino` at `path` from the server and merge the listing into the table.
    fn list_into(&self, ino: u64, path: String) -> FsResult<String> {
        let items = match self.remote().list(&path) {
            Ok(items) => self.hide_waiting_deletes(&path, items),
            Err(e) if self.queue.sign_in_needed().is_some() => {
                // The sign-in's own line was logged once where it began (and is in .status).
                debug!("listing {path}: {e}; showing the cached listing");
                return Ok(path);
            }
            Err(e) if transient(&e) => {
                warn!("listing {path}: {e}; showing the cached listing");
                return Ok(path);
            }
            Err(e) => return Err(e.into()),
        };
        // Children the server no longer has go, unless they have local content (or are
        // folders the mount made, which have no server metadata); the ids listed feed the
        // change feed's id map (`feed.rs`). The kernel is not told from a FUSE request: the
        // reply carries the new state.
        let _ = super::feed::merge_listing(&mut self.lock(), ino, &path, &items, Instant::now());
        Ok(path)
    }

    pub fn opendir(&self, ino: u64) -> FsResult<Opened> {
        let path = self.refresh_listing(ino)?;
        let st = self.lock();
        let parent_ino = if path.is_empty() {
            ROOT_INO
        } else {
            st.table.ino_of(names::split(&path).0).unwrap_or(ROOT_INO)
        };
        let mut entries = vec![
            (ino, NodeKind::Dir, ".".to_string()),
            (parent_ino, NodeKind::Dir, "..".to_string()),
        ];
        // `.status` and `.status.json` are looked up by name but not listed: `rsync --delete`
        // would try to remove them and `cp -r` of the mount would copy them.
        let mut children: Vec<(u64, NodeKind, String)> = st
            .table
            .children(&path)
            .into_iter()
            .filter_map(|c| st.table.get(c).map(|n| (c, n.kind, n.name().to_string())))
            .collect();
        children.sort_by(|a, b| a.2.cmp(&b.2));
        entries.extend(children);
        drop(st);
        Ok(Opened {
            fh: self.add_handle(HandleKind::Dir { entries }),
            direct_io: false,
        })
    }

    pub fn readdir(&self, fh: u64, offset: u64, out: &mut dyn DirReplier) -> FsResult<()> {
        let h = self.handle(fh)?;
        let HandleKind::Dir { entries } = h.as_ref() else {
            return Err(FsError::BadHandle);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if out.add(*ino, i as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    pub fn releasedir(&self, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    /// The inode and path of `name` in `parent`, the path spelt as the table has it (the
    /// server's spelling: `name` may differ in case or Unicode normal form).
    fn child(&self, parent: u64, name: &str) -> FsResult<(u64, String)> {
        self.lookup(parent, name)?;
        let st = self.lock();
        let parent_path = self.dir_path(&st, parent)?;
        let ino = st
            .table
            .ino_of(&join(&parent_path, name))
            .ok_or(FsError::NotFound)?;
        let path = st.table.get(ino).ok_or(FsError::NotFound)?.path.clone();
        Ok((ino, path))
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        if virtual_files::is_status_file(parent, name) {
            return Err(FsError::ReadOnly);
        }
        let (ino, path) = self.child(parent, name)?;
        let (kind, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.kind, n.local.clone(), n.remote.clone())
        };
        if kind == NodeKind::Dir {
            return Err(FsError::IsDir);
        }
        if self.unlink_open(ino, &path)? {
            return Ok(()); // still open: kept until its last close (`seal.rs`)
        }
        // Forget the node and cancel its upload under the lock, so a concurrent release
        // cannot queue it again (see `seal`).
        let local = {
            let mut st = self.lock();
            let local = st.table.get(ino).and_then(|n| n.local.clone()).or(local);
            if local.is_some() {
                self.queue.cancel(&path);
            }
            st.table.removed(&path, SystemTime::now());
            local
        };
        if let Some(l) = &local {
            crate::spool::remove_spooled(&l.spool);
        }
        if remote.is_some() || local.as_ref().is_some_and(|l| l.queued) {
            self.delete_on_server(&path)?; // a locked file's delete waits in the queue
        }
        Ok(())
    }

    /// Drop whatever local state the file at `path` has (its pending upload, its spool file)
    /// and forget it, leaving the server's item alone.
    fn forget_local_target(&self, path: &str) {
        let local = {
            let st = self.lock();
            st.table
                .ino_of(path)
                .and_then(|i| st.table.get(i))
                .and_then(|n| n.local.clone())
        };
        if let Some(l) = local {
            self.queue.cancel(path);
            crate::spool::remove_spooled(&l.spool);
        }
        self.lock().table.remove_tree(path);
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        let (ino, path) = self.child(parent, name)?;
        {
            let st = self.lock();
            if st.table.get(ino).map(|n| n.kind) != Some(NodeKind::Dir) {
                return Err(FsError::NotDir);
            }
        }
        {
            let mut st = self.lock();
            if !st.table.children(&path).is_empty() {
                return Err(FsError::NotEmpty);
            }
            // Made through the mount and not created on the server yet: nothing to delete.
            if self.queue.folders().forget(&path) {
                st.table.removed(&path, SystemTime::now());
                return Ok(());
            }
        }
        // Ask the server, not the cache: a folder is empty only if SharePoint says so.
        if let Some(n) = self.lock().table.get_mut(ino) {
            n.listed = None;
        }
        self.refresh_listing(ino)?;
        if !self.lock().table.children(&path).is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.remote().delete(&path)?;
        self.lock().table.removed(&path, SystemTime::now());
        Ok(())
    }

    pub fn rename(&self, parent: u64, name: &str, newparent: u64, newname: &str) -> FsResult<()> {
        let (ino, from) = self.child(parent, name)?;
        let to = {
            let st = self.lock();
            let np = self.dir_path(&st, newparent)?;
            let kind = st.table.get(ino).map_or(NodeKind::File, |n| n.kind);
            let to = self.allowed_name(&np, newname, kind)?;
            Self::check_rename_to_local_only(&st, ino, &to)?;
            to
        };
        if from == to {
            return Ok(());
        }
        // Whatever is at the target is replaced (POSIX rename).
        let target = match self.lookup(newparent, newname) {
            Ok(a) => Some(a),
            Err(FsError::NotFound) => None,
            Err(e) => return Err(e),
        };
        // After the lookup, which listed the target's folder if it was not known.
        self.check_clash(&self.lock(), &to, Some(ino))?;
        let leaves_local_only = names::is_local_only(name) && !names::is_local_only(newname);
        let (kind, local, remote) = {
            let st = self.lock();
            let n = st.table.get(ino).ok_or(FsError::NotFound)?;
            (n.kind, n.local.clone(), n.remote.clone())
        };
        let same_item = names::fold(&from) == names::fold(&to);
        let over_etag = if target.as_ref().is_some_and(|t| t.kind == NodeKind::File)
            && kind == NodeKind::File
            && local.is_some()
            && self.opts.replace_by_upload
            && !same_item
        {
            self.rename_over_base(&to)
        } else {
            None
        };
        if let (Some(t), false) = (target, same_item) {
            if t.kind == NodeKind::Dir {
                self.rmdir(newparent, newname)?;
            } else if kind == NodeKind::File && local.is_some() && self.opts.replace_by_upload {
                // Atomic save (write a temp file, rename it over the original): the upload of
                // the new content replaces the server's item, keeping its version history.
                // Only the target's own pending upload, if any, is dropped.
                self.forget_local_target(&to);
            } else {
                self.unlink(newparent, newname)?;
            }
        }
        if kind == NodeKind::File && remote.is_none() {
            // Decide under the lock: `seal` submits under it too (see there).
            let mut st = self.lock();
            let l = st.table.get(ino).and_then(|n| n.local.as_ref());
            let queued_now = l.is_some_and(|l| l.queued);
            // A failed upload goes the queued way below: queued again under the new name.
            let unqueued_now = l.is_some_and(|l| !l.queued && l.failed.is_none());
            // A queued job carries its base eTag from the start: one renamed over a file read
            // from the server is queued anew below (relinked) rather than retargeted.
            let retargeted = || over_etag.is_none() && self.queue.retarget(&from, &to);
            if unqueued_now || (queued_now && retargeted()) {
                // Not yet queued (it will be under the new name), or queued but not started
                // (the job simply goes to the new name): nothing to do on the server.
                st.table.rename_tree(&from, &to);
                st.table.renamed(ino, &from, &to, SystemTime::now());
                if let Some(n) = st.table.get_mut(ino) {
                    n.seen = None;
                    if let (Some(tag), Some(l)) = (&over_etag, n.local.as_mut()) {
                        l.base_etag = Some(tag.clone());
                    }
                }
                drop(st);
                if leaves_local_only {
                    self.upload_after_local_only_rename(ino);
                }
                debug!("renamed {from} -> {to} before its upload started");
                return Ok(());
            }
        }
        // Queued, or failed (its job is kept by the queue): the content goes to the new name.
        let queued = {
            let st = self.lock();
            st.table
                .get(ino)
                .and_then(|n| n.local.as_ref())
                .is_some_and(|l| l.queued || l.failed.is_some())
        };
        let mut relinked = None;
        if let (NodeKind::File, true, Some(l)) = (kind, queued, local.as_ref()) {
            // The queued upload goes to the old name: keep the content under a new spool
            // name (a hard link, no copy), stop that upload, and queue it under the new name.
            let (link, _) = self.spool.new_file()?;
            std::fs::remove_file(&link)?;
            std::fs::hard_link(&l.spool, &link)?;
            self.queue.cancel(&from);
            relinked = Some(link);
        }
        let folders = self.queue.folders();
        let local_folder = kind == NodeKind::Dir && folders.is_pending(&from) && {
            // A folder not created on the server yet moves in the plan, unless it is being
            // created right now (then it is created first and moved on the server).
            folders.rename(&from, &to) || {
                folders.ensure(self.remote(), &from)?;
                false
            }
        };
        if (remote.is_some() || kind == NodeKind::Dir) && !local_folder {
            // The server's rename needs the new parent to exist (a round trip only when
            // that parent was made through the mount and is not on the server yet).
            folders.ensure(self.remote(), names::split(&to).0)?;
            match self.remote().rename(&from, &to) {
                Ok(_) => {}
                // Not on the server yet (still uploading when cancelled): nothing to move.
                Err(crate::remote::RemoteError::NotFound(_)) if local.is_some() => {}
                // The new content is re-queued under the new name either way; an older copy
                // may stay under the old name, but nothing is lost.
                Err(e) if queued => warn!("rename {from} -> {to} on the server failed: {e}"),
                Err(e @ crate::remote::RemoteError::Locked(_)) => {
                    return Err(self.rename_refused(&from, &to, e))
                }
                Err(e) => return Err(e.into()),
            }
        }
        {
            let mut st = self.lock();
            st.table.rename_tree(&from, &to);
            st.table.renamed(ino, &from, &to, SystemTime::now());
            if let Some(n) = st.table.get_mut(ino) {
                n.seen = None;
                if let (Some(link), Some(l)) = (relinked.take(), n.local.as_mut()) {
                    l.spool = link;
                    l.queued = false;
                    l.dirty = true;
                    if over_etag.is_some() {
                        l.base_etag = over_etag.clone();
                    }
                }
            }
        }
        if queued {
            self.seal(ino, false);
        }
        if kind == NodeKind::Dir {
            self.move_pending_under(&from, &to)?;
        }
        info!("renamed {from} -> {to}");
        Ok(())
    }

    /// The eTag a rename-over (an editor's or rsync's atomic save: write a temp file, rename
    /// it over the original) must find on the server for its upload to replace the target:
    /// the target's, when it is a file the mount knows only from the server (its content
    /// read from there, nothing of it in the spool). Cheap: the table's metadata, no request;
    /// it is as fresh as the last lookup, listing or change feed round, so a change made on
    /// the server before that is not seen as a conflict, and a change after it is (the
    /// upload then goes beside the file as a conflict copy, `upload::conflict_name`).
    fn rename_over_base(&self, to: &str) -> Option<String> {
        let st = self.lock();
        let n = st.table.get(st.table.ino_of(to)?)?;
        if n.local.is_some() || n.kind != NodeKind::File {
            return None;
        }
        n.remote.as_ref()?.etag.clone()
    }

    /// After a folder moved from `from` to `to`, send the queued uploads beneath it to their
    /// new paths: a waiting job is retargeted; one already uploading is stopped and its
    /// content queued again under the new path (a hard link keeps the spool content).
    fn move_pending_under(&self, from: &str, to: &str) -> FsResult<()> {
        let prefix = format!("{}/", names::fold(to));
        let moved: Vec<(u64, String, PathBuf)> = {
            let st = self.lock();
            st.table
                .local_nodes()
                .filter(|(_, n)| names::fold(&n.path).starts_with(&prefix))
                .filter_map(|(i, n)| {
                    let l = n.local.as_ref().filter(|l| l.queued)?;
                    Some((*i, n.path.clone(), l.spool.clone()))
                })
                .collect()
        };
        for (ino, new_path, spool) in moved {
            let old_path = format!("{from}{}", &new_path[to.len()..]);
            {
                let _st = self.lock(); // ordered with `seal`, as in `rename`
                if self.queue.retarget(&old_path, &new_path) {
                    continue;
                }
            }
            let (link, _) = self.spool.new_file()?;
            std::fs::remove_file(&link)?;
            std::fs::hard_link(&spool, &link)?;
            self.queue.cancel(&old_path);
            if let Some(l) = self
                .lock()
                .table
                .get_mut(ino)
                .and_then(|n| n.local.as_mut())
            {
                l.spool = link;
                l.queued = false;
                l.dirty = true;
            }
            self.seal(ino, false);
        }
        Ok(())
    }
}

pub(super) fn name_error(p: NameProblem) -> FsError {
    match p {
        NameProblem::Invalid(m) => FsError::InvalidName(m),
        NameProblem::TooLong(n) => FsError::NameTooLong(n),
        NameProblem::ComponentTooLong(n) => FsError::ComponentTooLong(n),
    }
}

/// Errors that say nothing about the item (network, 5xx, throttling): the cache may answer.
/// (So may any error while the remote waits for the user to sign in again.)
fn transient(e: &crate::remote::RemoteError) -> bool {
    use crate::remote::RemoteError as E;
    matches!(e, E::Transport(_) | E::Server { .. } | E::Throttled { .. })
}

/// In-flight folder listings, one per folder inode: the first caller lists, the others wait
/// for it (then answer from the table). A leaf lock; never held across the listing.
#[derive(Debug, Default)]
pub(super) struct ListingFlights {
    inflight: Mutex<HashMap<u64, Arc<Flight>>>,
}

#[derive(Debug, Default)]
struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

/// The leader's claim on a listing; dropping it wakes the waiters.
pub(super) struct FlightLead<'a> {
    flights: &'a ListingFlights,
    ino: u64,
    flight: Arc<Flight>,
}

impl ListingFlights {
    /// Lead the listing of `ino` (`Some`), or wait for the one in flight and return `None`.
    pub(super) fn begin(&self, ino: u64) -> Option<FlightLead<'_>> {
        let flight = {
            let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&ino) {
                Some(f) => f.clone(),
                None => {
                    let f = Arc::new(Flight::default());
                    m.insert(ino, f.clone());
                    return Some(FlightLead {
                        flights: self,
                        ino,
                        flight: f,
                    });
                }
            }
        };
        let mut done = flight.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = flight.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        None
    }
}

impl Drop for FlightLead<'_> {
    fn drop(&mut self) {
        self.flights
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.ino);
        *self.flight.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.flight.cv.notify_all();
    }
}
