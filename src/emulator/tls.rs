//! An optional TLS front for the emulator: a rustls listener on 127.0.0.1 that forwards each
//! connection's plaintext to the emulator's own HTTP port. It lets tests (and the demo) reach
//! the emulator over HTTPS with a private CA, to check certificate trust (`SSL_CERT_FILE`,
//! `ca_file`) end to end, without changing the emulator's std::net server.
//!
//! One thread per connection pumps both directions with short read timeouts (no async
//! runtime). Certificates are PEM files; the key may be PKCS#8, PKCS#1 or SEC1.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long each side is polled before the other is looked at.
const POLL: Duration = Duration::from_millis(5);

/// A running TLS front; stops accepting when dropped.
pub struct TlsFront {
    pub port: u16,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn config(cert: &Path, key: &Path) -> io::Result<Arc<ServerConfig>> {
    let bad = |what: &Path, e: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {e}", what.display()),
        )
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Listen on 127.0.0.1:`port` (0 = any) and forward to 127.0.0.1:`backend`.
pub fn start(backend: u16, port: u16, cert: &Path, key: &Path) -> io::Result<TlsFront> {
    let cfg = config(cert, key)?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let accept = std::thread::Builder::new()
        .name("emu-tls".into())
        .spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let cfg = cfg.clone();
                        let _ = std::thread::Builder::new()
                            .name("emu-tls-conn".into())
                            .spawn(move || {
                                if let Err(e) = serve(sock, cfg, backend) {
                                    log::debug!("emulator tls: connection ended: {e}");
                                }
                            });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        log::warn!("emulator tls: accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(TlsFront {
        port,
        stop,
        accept: Some(accept),
    })
}

fn idle(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn serve(sock: TcpStream, cfg: Arc<ServerConfig>, backend: u16) -> io::Result<()> {
    sock.set_nonblocking(false)?;
    let conn = ServerConnection::new(cfg).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        // A client that refuses our certificate ends here, with an alert.
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let mut back = TcpStream::connect(("127.0.0.1", backend))?;
    tls.sock.set_read_timeout(Some(POLL))?;
    back.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => back.write_all(&buf[..n])?,
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
        match back.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                return Ok(());
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
            }
            Err(e) if idle(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}
