//! Built-in local SharePoint Online / Microsoft Graph emulator: a product part used by the
//! demo and by every test that talks HTTP, as strict as SharePoint about upload rules and able
//! to inject the faults real tenants produce.
//!
//! It owns one HTTP/1.1 listener on 127.0.0.1 (never any other address; it makes no outgoing
//! connections) serving: `/auth/{tenant}/oauth2/v2.0/token` (`auth`), `/v1.0/...` Graph sites,
//! drives and items (`graph_api`), `/upload/{session}` upload URLs (`upload`), `/download/...`
//! pre-authenticated downloads, and `/_admin/...` (`admin`). Content lives under the data
//! directory (`store`); faults are described in `faults`; latency, the request budget, the
//! delta knobs and the per-kind counters in `field`, and the upload and library faults of the
//! field reference (entries 10–14, 21–23) in `field_faults`; the change feed in `delta`; name
//! comparison and the tenant's name rules in `collation`. The tenant is identified by the
//! reserved host name `emulator.sharepoint.test`, which is only an identifier and is never
//! resolved. Credentials are random per start unless given; the ready file that carries them
//! is written atomically with mode 0600.
//!
//! Threads: one accept thread, one per connection, and a persister that writes `meta.json`
//! after changes (debounced to 200 ms) and expires idle sessions. [`Emulator`] stops all of
//! them on `stop()` or `Drop`.

pub mod admin;
pub mod auth;
pub mod budget;
pub mod collation;
pub mod delta;
pub mod enrich;
pub mod errors;
pub mod faults;
pub mod field;
pub mod field_faults;
pub mod graph_api;
pub mod http;
pub mod profile;
pub mod quickxor_ref;
pub mod read_faults;
pub mod shares;
pub mod stall;
pub mod state;
pub mod store;
pub mod tls;
pub mod upload;

use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faults::{FaultConfig, FaultState};
use field::{FieldConfig, FieldState, Gate};
use http::{BodyReader, Handler, RateLimiter, Reply, Request, Server};
use state::{lock, EmulatorState, Stats, Violation};
use store::{random_string, Store, ALNUM, HOST};

/// Fixed application (client) id of the emulated app registration.
pub const CLIENT_ID: &str = "5e1d0f00-e3b1-4c1a-9d7e-0000000e3001";
/// Tenant name reported in [`EmulatorInfo`] (any tenant segment is accepted).
pub const TENANT: &str = "emulator.onmicrosoft.com";
/// The user of the password grant.
pub const USERNAME: &str = "uploader@emulator.test";

/// How to start the emulator.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Where content and metadata live (created 0700).
    pub data_dir: PathBuf,
    /// 0 = any free port.
    pub port: u16,
    /// Fault configuration as JSON (see [`faults`]), or None.
    pub faults_json: Option<String>,
    /// Password of the test user; random (24 alphanumerics) when None.
    pub password: Option<String>,
    /// Client secret of the app; random when None.
    pub client_secret: Option<String>,
    /// Field conditions as JSON (see [`field`]: latency, budget, delta knobs), or None.
    pub field_json: Option<String>,
    /// PEM file of a client certificate registered for the app (certificate sign-in).
    pub client_certificate: Option<PathBuf>,
}

/// What a client needs to talk to a running emulator (written to the ready file as JSON).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EmulatorInfo {
    pub port: u16,
    pub graph_url: String,
    pub authority_url: String,
    pub admin_url: String,
    pub site_url: String,
    pub folder_url: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// One stored item as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminItem {
    pub drive: String,
    pub path: String,
    pub folder: bool,
    pub size: u64,
    pub quick_xor_hash: Option<String>,
    pub mtime: String,
    pub id: String,
    /// Checked out to the uploader (a library that requires check-out): nobody else sees it.
    #[serde(default)]
    pub checked_out: bool,
}

/// A running emulator; stops when dropped.
pub struct Emulator {
    info: EmulatorInfo,
    shared: Arc<EmulatorState>,
    server: Server,
    stop: Arc<AtomicBool>,
    persister: Option<JoinHandle<()>>,
}

struct App(Arc<EmulatorState>);

impl Handler for App {
    fn handle(&self, req: &Request, body: &mut BodyReader<'_>) -> Reply {
        let shared = &*self.0;
        let arrived = Instant::now();
        let kind = field::classify(req);
        let metered = field::metered(req);
        let (inside, late, latency) = {
            let f = lock(&shared.field);
            (
                metered && f.inside_retry_after(arrived),
                metered && f.late_inside_retry_after(arrived),
                f.config().latency(),
            )
        };
        shared.stat(|s| {
            s.requests += 1;
            if let Some(k) = kind {
                *k(&mut s.by_kind) += 1;
            }
            if inside {
                s.requests_inside_retry_after += 1;
            }
            if late {
                s.requests_inside_retry_after_late += 1;
            }
        });
        if kind.is_none() {
            return admin::handle_admin(shared, req, body);
        }
        // Sleeps on this connection's own thread: concurrent requests wait in parallel.
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let mut rate_headers = Vec::new();
        if metered {
            let gate = lock(&shared.field).admit(Instant::now(), req);
            match gate {
                Gate::Admit { units, headers } => {
                    shared.stat(|s| s.budget_units_admitted += u64::from(units));
                    rate_headers = headers;
                }
                Gate::Throttle { units, response } => {
                    shared.stat(|s| {
                        s.budget_refused += 1;
                        s.budget_units_refused += u64::from(units);
                    });
                    return self.answered(Reply::Respond(response), metered);
                }
                Gate::Blocked(response) => {
                    shared.stat(|s| s.blocked_refused += 1);
                    return self.answered(Reply::Respond(response), metered);
                }
            }
        }
        // Entry 20: a stall before handling (the client may give up meanwhile), or after it.
        let stall = stall::decide(shared, req);
        if let Some(r) = stall::before(shared, stall, body) {
            return r;
        }
        let reply = self.route(req, body);
        let reply = stall::after(shared, stall, req, reply);
        let reply = match reply {
            Reply::Respond(mut r) => {
                r.headers.extend(rate_headers);
                Reply::Respond(r)
            }
            other => other,
        };
        self.answered(reply, metered)
    }
}

impl App {
    /// Note the Retry-After window of a 429/503 we are about to send.
    fn answered(&self, reply: Reply, metered: bool) -> Reply {
        if let Reply::Respond(r) = &reply {
            if metered && (r.status == 429 || r.status == 503) {
                let secs = r
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok());
                if let Some(secs) = secs {
                    lock(&self.0.field).gave_retry_after(Instant::now(), secs);
                }
            }
        }
        reply
    }

    fn route(&self, req: &Request, body: &mut BodyReader<'_>) -> Reply {
        let shared = &*self.0;
        let p = req.path.as_str();
        if p.starts_with("/upload/") {
            upload::handle_upload_url(shared, req, body)
        } else if p == "/v1.0/me" {
            auth::handle_me(shared, req)
        } else if p == "/v1.0" || p.starts_with("/v1.0/") {
            graph_api::handle_graph(shared, req, body)
        } else if p.starts_with("/auth/") {
            auth::handle_token(shared, req, body)
        } else if p.starts_with("/download/") {
            graph_api::handle_download(shared, req)
        } else {
            Reply::Respond(errors::ApiError::not_found("Unknown endpoint.").to_response())
        }
    }
}

fn persist(shared: &EmulatorState) {
    let snapshot = {
        let mut store = lock(&shared.store);
        if !store.take_dirty() {
            return;
        }
        (store.meta_path(), store.snapshot())
    };
    if let Err(e) = store::write_atomic(&snapshot.0, &snapshot.1) {
        log::warn!("emulator: could not write {}: {e}", snapshot.0.display());
    }
}

impl Emulator {
    /// Open the data directory, bind 127.0.0.1:`port` and serve on background threads.
    pub fn start(opts: EmulatorOptions) -> io::Result<Emulator> {
        let config = match &opts.faults_json {
            Some(j) => FaultConfig::from_json(j)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            None => FaultConfig::default(),
        };
        let store = Store::open(&opts.data_dir)?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))?;
        let port = listener.local_addr()?.port();
        let base_url = format!("http://127.0.0.1:{port}");
        let info = EmulatorInfo {
            port,
            graph_url: format!("{base_url}/v1.0"),
            authority_url: format!("{base_url}/auth"),
            admin_url: format!("{base_url}/_admin"),
            site_url: format!("https://{HOST}/sites/Team"),
            folder_url: format!("https://{HOST}/sites/Team/Shared Documents/Uploads"),
            tenant: TENANT.into(),
            client_id: CLIENT_ID.into(),
            client_secret: opts
                .client_secret
                .clone()
                .unwrap_or_else(|| random_string(24, ALNUM)),
            username: USERNAME.into(),
            password: opts
                .password
                .clone()
                .unwrap_or_else(|| random_string(24, ALNUM)),
        };
        let field_cfg = match &opts.field_json {
            Some(j) => FieldConfig::from_json(j)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            None => FieldConfig::default(),
        };
        let limiter = Arc::new(RateLimiter::default());
        limiter.set_rate(config.bandwidth_bytes_per_sec);
        let shared = Arc::new(EmulatorState {
            info: info.clone(),
            base_url,
            store: Mutex::new(store.with_name_rules(collation::NameRules::of(&field_cfg))),
            sessions: Mutex::new(HashMap::new()),
            faults: Mutex::new(FaultState::new(config)),
            field: Mutex::new(FieldState::new(field_cfg)),
            tokens: Mutex::new(HashMap::new()),
            signin: Mutex::new(auth::SignInState::with_certificate(
                opts.client_certificate.as_deref(),
            )?),
            downloads: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            journal: Mutex::default(),
            limiter: limiter.clone(),
        });
        persist(&shared);
        let server = Server::start(listener, Arc::new(App(shared.clone())), limiter)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (shared.clone(), stop.clone());
        let persister = std::thread::Builder::new()
            .name("emu-persist".into())
            .spawn(move || {
                let mut ticks = 0u32;
                while !stop2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    persist(&s2);
                    field_faults::tick(&s2);
                    ticks += 1;
                    if ticks.is_multiple_of(5) {
                        upload::sweep_expired(&s2);
                    }
                }
            })?;
        log::info!("emulator listening on 127.0.0.1:{port}");
        Ok(Emulator {
            info,
            shared,
            server,
            stop,
            persister: Some(persister),
        })
    }

    pub fn info(&self) -> &EmulatorInfo {
        &self.info
    }

    /// Stop serving, reset open connections, write the metadata one last time.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.shutdown();
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.persister.take() {
            let _ = t.join();
        }
        persist(&self.shared);
    }

    /// Replace the fault configuration (as `POST /_admin/faults`).
    pub fn set_faults(&self, json: &str) -> Result<(), String> {
        self.shared.set_faults(FaultConfig::from_json(json)?);
        Ok(())
    }

    /// Merge field knobs (as `POST /_admin/field`); returns the resulting configuration.
    pub fn set_field(&self, json: &str) -> Result<FieldConfig, String> {
        let patch: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let cfg = self.shared.field().merged(&patch)?;
        self.shared.set_field(cfg.clone());
        Ok(cfg)
    }

    /// The current field knobs.
    pub fn field(&self) -> FieldConfig {
        self.shared.field()
    }

    /// Make every delta token issued so far answer 410 resyncRequired.
    pub fn expire_delta_tokens(&self) {
        lock(&self.shared.store).changes_mut().expire_tokens();
    }

    /// Drive-relative paths of the open (unexpired) upload sessions, sorted.
    pub fn open_session_paths(&self) -> Vec<String> {
        upload::open_session_paths(&self.shared)
    }

    /// The current fault configuration (with remaining script counts).
    pub fn faults(&self) -> FaultConfig {
        self.shared.faults()
    }

    /// Every stored item of every drive (as `GET /_admin/items`).
    pub fn items(&self) -> Vec<AdminItem> {
        let store = lock(&self.shared.store);
        store
            .all_items()
            .into_iter()
            .map(|(drive, path, it)| AdminItem {
                drive,
                path,
                folder: it.folder,
                size: it.size,
                quick_xor_hash: it.qxh.clone(),
                mtime: store::fmt_time(it.fs_modified),
                id: it.id.clone(),
                checked_out: it.checked_out,
            })
            .collect()
    }

    /// Protocol violations recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        lock(&self.shared.journal).violations.clone()
    }

    /// Legal but notable events (first 416s after partial acceptance, ...).
    pub fn events(&self) -> Vec<Violation> {
        lock(&self.shared.journal).events.clone()
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Write `info` as JSON to `path` atomically, readable by the owner only.
pub fn write_ready_file(path: &Path, info: &EmulatorInfo) -> io::Result<()> {
    use std::io::Write;
    let data = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    let tmp = path.with_extension("tmp-ready");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Start, write the ready file once listening, serve until SIGINT/SIGTERM, then stop.
pub fn run_foreground(opts: EmulatorOptions, ready_file: Option<&Path>) -> io::Result<()> {
    // SAFETY: installs a handler that only stores to an atomic (async-signal-safe).
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_signal;
        libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as *const () as libc::sighandler_t);
    }
    let emu = Emulator::start(opts)?;
    if let Some(p) = ready_file {
        write_ready_file(p, emu.info())?;
    }
    eprintln!(
        "emulator ready: graph {} (site {}, user {})",
        emu.info().graph_url,
        emu.info().site_url,
        emu.info().username
    );
    while !SIGNALLED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    emu.stop();
    Ok(())
}
