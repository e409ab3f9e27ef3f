//! Fragment PUTs with an idle timeout (field-reference entry 20: "fragment PUTs that connect
//! and are never answered").
//!
//! reqwest's blocking client bounds a request with one deadline from its start, so a PUT of a
//! big fragment over a slow link needs a long one, and a PUT the server stopped reading, or
//! read and never answered, then holds its worker for the whole of it (10 minutes). Here the
//! PUT runs on reqwest's async client, on one private runtime thread per transport, with a
//! request body that reports each chunk the connection takes ([`idle::Progress`]) and a
//! watchdog that abandons the request — dropping its connection — once nothing moved for the
//! idle timeout, or once no answer came `answer_wait` after the last byte (longer for a
//! final fragment, whose commit may take minutes on a big file; entry 12). The caller gets a
//! [`RemoteError::Transport`], from which the upload worker already resumes (it asks the
//! session's `nextExpectedRanges`).
//!
//! The async client is configured like the blocking one (`Http::client_builder`: the same
//! roots, `ca_file`, proxy, no redirects, user agent) and is built on first use. Upload URLs
//! never reach a log or an error: the caller passes the loggable form.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::header::HeaderMap;

use super::error::transport_error;
use super::idle::Progress;
use crate::remote::{FragmentBody, RemoteError};

/// Pieces read ahead of the connection (each at most `remote::PIECE`, 256 KiB): with the one
/// hyper is writing, what an upload holds in memory.
const IN_FLIGHT: usize = 2;
/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(200);
/// Most bytes of an answer kept (fragment answers are small JSON).
const MAX_ANSWER: usize = 1024 * 1024;

/// A PUT's answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The runtime thread and the async client on it.
pub struct Transfers {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    client: reqwest::Client,
    /// The runtime's handle: the calling thread waits on the body channel through it.
    handle: tokio::runtime::Handle,
}

impl Transfers {
    /// Start the runtime thread and build the client on it.
    pub fn start(builder: reqwest::ClientBuilder) -> Result<Transfers, RemoteError> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("shareuplift-transfers".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    match builder.build() {
                        Ok(c) => {
                            let handle = tokio::runtime::Handle::current();
                            if ready_tx.send(Ok((c, handle))).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(transport_error(e).to_string()));
                            return;
                        }
                    }
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| {
                RemoteError::Transport(format!("cannot start the transfer thread: {e}"))
            })?;
        let (client, handle) = ready_rx
            .recv()
            .map_err(|_| RemoteError::Transport("the transfer thread died".into()))?
            .map_err(|e| RemoteError::Transport(format!("cannot set up HTTPS: {e}")))?;
        Ok(Transfers {
            jobs,
            client,
            handle,
        })
    }

    /// PUT `body` to `url` with `headers`; abandoned when nothing moves for `idle`, when no
    /// answer comes `answer_wait` after the last byte, or after `whole`.
    ///
    /// The body is read (and paced) here, on the calling thread, piece by piece, and handed
    /// to the request on the runtime through a channel of [`IN_FLIGHT`] pieces: the calling
    /// thread feeds it while the runtime sends, so a blocking pace or a slow disk holds this
    /// upload only. The time each piece was taken is noted on the body (its `SendLog`).
    pub fn put(
        &self,
        url: &str,
        headers: HeaderMap,
        body: &FragmentBody,
        idle: Duration,
        answer_wait: Duration,
        whole: Duration,
    ) -> Result<Answer, RemoteError> {
        let progress = Arc::new(Progress::default());
        let pacing = Arc::new(AtomicBool::new(false));
        let len = body.len();
        let (pieces_tx, pieces_rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let req = self
            .client
            .put(url)
            .headers(headers)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .timeout(whole)
            .body(reqwest::Body::wrap(ChannelBody {
                pieces: pieces_rx,
                remaining: len,
                progress: progress.clone(),
            }));
        let (tx, rx) = std_mpsc::sync_channel(1);
        // Dropped when the job ends: the feeder stops even though the connection task may
        // still hold the body (and its channel) a while.
        let (over_tx, over_rx) = tokio::sync::oneshot::channel::<()>();
        let watched = progress.clone();
        let paced = pacing.clone();
        let job = async move {
            let _over = over_tx;
            let work = exchange(req, &watched);
            let watchdog = async {
                loop {
                    tokio::time::sleep(TICK).await;
                    // Waiting for the pace is not a stall.
                    if paced.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Some(why) = watched.overdue(idle, answer_wait) {
                        return why;
                    }
                }
            };
            let out = first_of(work, watchdog).await;
            let _ = tx.send(out);
        };
        self.jobs
            .send(Box::pin(job))
            .map_err(|_| RemoteError::Transport("the transfer thread stopped".into()))?;
        let mut feeder = Feeder {
            handle: &self.handle,
            pieces: pieces_tx,
            over: over_rx,
            ended: false,
        };
        feeder.feed(body, &pacing, &progress);
        drop(feeder);
        // The job always ends (watchdog, or `whole`); the margin only guards a lost thread.
        match rx.recv_timeout(whole + idle + Duration::from_secs(5)) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Outcome::Failed(e))) => Err(local_or(body, e)),
            Ok(Err(Outcome::Stalled(why))) => Err(local_or(
                body,
                RemoteError::Transport(format!("timed out: {why}")),
            )),
            Err(_) => Err(RemoteError::Transport(
                "timed out: the transfer thread did not answer".into(),
            )),
        }
    }
}

/// The calling thread's side of a body: pieces go into the request's channel until the body
/// is all sent or the request is over.
struct Feeder<'a> {
    handle: &'a tokio::runtime::Handle,
    pieces: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    /// Closed when the request's job ends (answer, failure or watchdog).
    over: tokio::sync::oneshot::Receiver<()>,
    ended: bool,
}

impl Feeder<'_> {
    /// Hand `piece` to the request; false once the request is over (answered early, failed,
    /// abandoned). Waits while the connection has not taken the pieces before it.
    fn send(&mut self, piece: io::Result<Bytes>) -> bool {
        if self.ended {
            return false;
        }
        let (pieces, over) = (&self.pieces, &mut self.over);
        let sent = self.handle.block_on(async move {
            let mut send = std::pin::pin!(pieces.send(piece));
            std::future::poll_fn(|cx: &mut Context<'_>| {
                if let Poll::Ready(r) = send.as_mut().poll(cx) {
                    return Poll::Ready(r.is_ok());
                }
                if Pin::new(&mut *over).poll(cx).is_ready() {
                    return Poll::Ready(false);
                }
                Poll::Pending
            })
            .await
        });
        if !sent {
            self.ended = true;
        }
        sent
    }

    /// Read `body` piece by piece (each paced first) into the request until it is all sent,
    /// the request is over, or the file cannot be read. Notes on the body when the connection
    /// took each piece.
    fn feed(&mut self, body: &FragmentBody, pacing: &AtomicBool, progress: &Progress) {
        body.start_send();
        let mut pieces = body.pieces();
        let mut last = Instant::now();
        loop {
            pacing.store(true, Ordering::Relaxed);
            let next = pieces.next();
            pacing.store(false, Ordering::Relaxed);
            // The pace (or the disk) held us, not the connection: the idle clock starts again.
            progress.sent(0);
            let Some(piece) = next else { break };
            let failed = match &piece {
                Ok(_) => false,
                Err(e) => {
                    body.note_local_error(e.to_string());
                    true
                }
            };
            if !self.send(piece) {
                return;
            }
            let now = Instant::now();
            body.note_piece(now.saturating_duration_since(last));
            last = now;
            if failed {
                return;
            }
        }
        body.note_finished(last);
    }
}

/// A read error of the body's own file wins over what it did to the request.
fn local_or(body: &FragmentBody, e: RemoteError) -> RemoteError {
    match body.send_log().local_error {
        Some(local) => RemoteError::Transport(format!("request body: {local}")),
        None => e,
    }
}

/// Why a PUT ended without an answer.
enum Outcome {
    Failed(RemoteError),
    Stalled(String),
}

/// Send the request and read the whole answer, noting progress.
async fn exchange(req: reqwest::RequestBuilder, progress: &Progress) -> Result<Answer, Outcome> {
    let fail = |e: reqwest::Error| Outcome::Failed(transport_error(e));
    let mut resp = req.send().await.map_err(fail)?;
    progress.answered();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(fail)? {
        progress.answered();
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(Outcome::Failed(RemoteError::Protocol(
                "upload session: answer larger than 1 MiB".into(),
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Run `work` unless `watchdog` finishes first (then `work` is dropped: its connection closes).
async fn first_of<W, D>(work: W, watchdog: D) -> Result<Answer, Outcome>
where
    W: Future<Output = Result<Answer, Outcome>>,
    D: Future<Output = String>,
{
    let mut work = std::pin::pin!(work);
    let mut watchdog = std::pin::pin!(watchdog);
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(r) = work.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Poll::Ready(why) = watchdog.as_mut().poll(cx) {
            return Poll::Ready(Err(Outcome::Stalled(why)));
        }
        Poll::Pending
    })
    .await
}

/// The request body on the runtime side: the pieces the calling thread reads (`feed`), each
/// passed on as the connection asks for it; asking for the next one means the previous one was
/// taken (hyper asks for more only when it can write it).
struct ChannelBody {
    pieces: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
    progress: Arc<Progress>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match this.pieces.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(piece))) => {
                let n = (piece.len() as u64).min(this.remaining);
                this.remaining -= n;
                this.progress.sent(n);
                if this.remaining == 0 {
                    this.progress.body_done();
                }
                Poll::Ready(Some(Ok(Frame::data(piece))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                Poll::Ready(Some(Err(io::Error::other("the request body ended early"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Instant;

    fn transfers() -> Transfers {
        Transfers::start(reqwest::Client::builder().connect_timeout(Duration::from_secs(2)))
            .unwrap()
    }

    /// A server that accepts and then does `serve` on the connection.
    fn server(serve: impl FnOnce(std::net::TcpStream) + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                serve(s);
            }
        });
        format!("http://{addr}/upload/x")
    }

    #[test]
    fn a_server_that_stops_reading_costs_the_idle_timeout() {
        let t = transfers();
        let url = server(|s| {
            std::thread::sleep(Duration::from_secs(20));
            drop(s);
        });
        let started = Instant::now();
        let body = FragmentBody::bytes(0, vec![7u8; 64 << 20]); // far more than the socket buffers hold
        let err = t
            .put(
                &url,
                HeaderMap::new(),
                &body,
                Duration::from_millis(700),
                Duration::from_secs(60),
                Duration::from_secs(60),
            )
            .unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, RemoteError::Transport(_)), "{err}");
        assert!(err.to_string().contains("upload stalled"), "{err}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn an_answer_that_never_comes_costs_the_answer_wait() {
        let t = transfers();
        let url = server(|mut s| {
            let mut buf = [0u8; 65536];
            // Read head and body, answer nothing.
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let started = Instant::now();
        let err = t
            .put(
                &url,
                HeaderMap::new(),
                &FragmentBody::bytes(0, vec![1u8; 100_000]),
                Duration::from_secs(30),
                Duration::from_millis(800),
                Duration::from_secs(60),
            )
            .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    /// A server that reads a `len`-byte body after the head and answers 202.
    fn answering_server(len: usize) -> String {
        server(move |mut s| {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            while !got.windows(4).any(|w| w == b"\r\n\r\n")
                || got.len() < len + got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4
            {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let body = b"{}";
            let _ = write!(
                s,
                "HTTP/1.1 202 Accepted\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        })
    }

    /// Waiting for the pace (a bandwidth limit) is not a stall, however long.
    #[test]
    fn a_slow_pace_is_not_a_stall() {
        struct Slow;
        impl crate::upload::byte_pace::BytePace for Slow {
            fn take(&self, _bytes: u64) {
                std::thread::sleep(Duration::from_millis(600));
            }
        }
        let t = transfers();
        let len = 3 * crate::remote::PIECE;
        let url = answering_server(len);
        let body = FragmentBody::bytes(0, vec![3u8; len]).with_pace(Arc::new(Slow));
        let a = t
            .put(
                &url,
                HeaderMap::new(),
                &body,
                Duration::from_millis(400),
                Duration::from_secs(5),
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(a.status, 202);
        let log = body.send_log();
        assert_eq!(log.gaps.len(), 3);
        assert!(log.finished.is_some() && log.local_error.is_none());
    }

    #[test]
    fn a_normal_answer_comes_back_whole() {
        let t = transfers();
        let url = server(|mut s| {
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            // Read until the 300,000-byte body after the head is in.
            while !got.windows(4).any(|w| w == b"\r\n\r\n")
                || got.len()
                    < 300_000 + got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4
            {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
            }
            let body = b"{\"nextExpectedRanges\":[\"300000-\"]}";
            let _ = write!(
                s,
                "HTTP/1.1 202 Accepted\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        });
        let a = t
            .put(
                &url,
                HeaderMap::new(),
                &FragmentBody::bytes(0, vec![2u8; 300_000]),
                Duration::from_secs(5),
                Duration::from_secs(5),
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(a.status, 202);
        assert!(String::from_utf8_lossy(&a.body).contains("300000-"));
    }
}
