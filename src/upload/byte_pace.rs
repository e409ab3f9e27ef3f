//! The hook for a mount-wide bandwidth limit: [`BytePace`] is asked for every piece of a
//! fragment body before the piece is handed to the connection (`remote::FragmentBody`), and
//! may block until the piece may go. [`NoPace`] (the default) never waits.
//!
//! Where the wait happens: the pieces of a fragment are read, and paced, on the upload
//! worker's own thread — the thread that called `Remote::upload_fragment` and waits for its
//! answer anyway — and handed to the transfer runtime (`graph/transfer.rs`) through a
//! two-piece channel. A `take` that blocks for seconds therefore holds only its own upload;
//! the other transfers on the runtime thread keep moving. Time spent inside `take` does not
//! count as a stalled transfer (the idle watchdog looks away while a body is being paced).
//!
//! Contract for implementations: `take(n)` returns once `n` more bytes may be sent; it is
//! called with `n` ≤ `remote::PIECE` (256 KiB), from several threads at once.

/// Paces the bytes of fragment bodies (a mount-wide bandwidth limit).
pub trait BytePace: Send + Sync {
    /// Block until `bytes` more bytes may be sent.
    fn take(&self, bytes: u64);
}

/// No limit: `take` returns at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPace;

impl BytePace for NoPace {
    fn take(&self, _bytes: u64) {}
}

/// The default pace, shared: [`NoPace`].
pub fn no_pace() -> std::sync::Arc<dyn BytePace> {
    std::sync::Arc::new(NoPace)
}
