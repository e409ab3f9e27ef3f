//! Silence and cuts on a connection (field knobs, `stall.rs`, `read_faults.rs`): an
//! [`Interrupt`] a response may carry, holding a connection silent for a while or until the
//! client closes (watched with `poll(POLLRDHUP)`, never reading the client's bytes, never
//! longer than [`MAX_HOLD`]), and resetting it (RST, not FIN).

use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Longest a stall holds a connection ("forever" = until the client closes, or this).
pub const MAX_HOLD: Duration = Duration::from_secs(15 * 60);

/// Where a response stops, for how long, and whether it then resets instead of finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupt {
    /// Body bytes sent before the silence; `None`: nothing, not even the status line.
    pub after: Option<u64>,
    /// How long the silence lasts; `None`: until the client closes (at most [`MAX_HOLD`]).
    pub hold: Option<Duration>,
    /// Reset the connection after the silence instead of sending the rest.
    pub cut: bool,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The time was up and the client is still there.
    Elapsed,
    /// The client closed (or reset) the connection.
    Closed,
}

/// Stay silent on `stream` for `hold` (`None`: until the client closes, at most
/// [`MAX_HOLD`]), watching for the client closing without reading anything it sent.
pub fn hold(stream: &TcpStream, hold: Option<Duration>) -> Held {
    let limit = hold.unwrap_or(MAX_HOLD).min(MAX_HOLD);
    let end = Instant::now() + limit;
    loop {
        let now = Instant::now();
        if now >= end {
            return Held::Elapsed;
        }
        let wait = (end - now).min(Duration::from_millis(200));
        if peer_closed(stream, wait) {
            return Held::Closed;
        }
    }
}

/// Whether the peer closed or reset `stream`, waiting up to `wait` for it.
fn peer_closed(stream: &TcpStream, wait: Duration) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let mut fds = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd for the lifetime of the call.
        let n = unsafe { libc::poll(&mut fds, 1, wait.as_millis() as libc::c_int) };
        n > 0 && fds.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        std::thread::sleep(wait);
        false
    }
}

/// Reset (RST) rather than close (FIN): the client sees "connection reset".
pub(super) fn reset(stream: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        let lg = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a valid, owned socket descriptor with a correctly sized
        // `linger` value; failure only means a FIN instead of an RST.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &lg as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}
