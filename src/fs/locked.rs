//! What the namespace does with files SharePoint reports locked (field reference entry 23:
//! checked out, or open in another app), without holding a FUSE thread while the lock lasts.
//!
//! - **Unlink**: the local view changes at once (the caller has already removed the node);
//!   the delete in SharePoint becomes the upload queue's (`upload::pending_ops`), retried at
//!   most 15 s apart until the lock is released, shown in `.status` meanwhile. Listings hide
//!   the item while its delete waits. A 404 from the delete is the goal reached.
//! - **Rename**: answered EBUSY ("Device or resource busy"), with a `.status` notice saying
//!   why. Not deferred: while a rename waits the server still has the item under its old
//!   name, so reads, edits and later renames of the new name would each need translating —
//!   a half-done rename is worse than a clear refusal the user can repeat once the file is
//!   closed.
//!
//! Locks: none of its own; called without the core lock (the queue calls take only the
//! queue's leaf locks).

use log::info;

use super::{Fs, FsError, FsResult};
use crate::remote::{RemoteError, RemoteItem};

impl Fs {
    /// Delete `path` in SharePoint for an unlink whose node is already gone here. A locked
    /// file's delete is handed to the queue; other errors reach the caller.
    pub(super) fn delete_on_server(&self, path: &str) -> FsResult<()> {
        match self.remote().delete(path) {
            Ok(()) | Err(RemoteError::NotFound(_)) => Ok(()),
            Err(e @ RemoteError::Locked(_)) => {
                self.queue.defer_delete(path, &e);
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A rename SharePoint refused because the file is locked: say so in `.status` and answer
    /// EBUSY.
    pub(super) fn rename_refused(&self, from: &str, to: &str, err: RemoteError) -> FsError {
        let message = format!(
            "rename {from} -> {to} refused: the file is locked in SharePoint (checked out or \
             open in another app); nothing changed, try again once it is closed"
        );
        info!("{message} ({err})");
        self.queue.notice(&message);
        err.into()
    }

    /// A listing of the folder `parent` without the items deleted here whose delete in
    /// SharePoint still waits for a lock.
    pub(super) fn hide_waiting_deletes(
        &self,
        parent: &str,
        items: Vec<RemoteItem>,
    ) -> Vec<RemoteItem> {
        items
            .into_iter()
            .filter(|it| !self.queue.hides(&super::names::join(parent, &it.name)))
            .collect()
    }
}
