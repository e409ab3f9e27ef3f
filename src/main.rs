//! Command-line entry point: parses arguments, sets up logging and hands off to the library.
//! Exit codes: 0 success, 1 runtime failure (for `wait`: an upload failed), 2 bad
//! configuration or usage, 3 `wait` timed out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use shareuplift::config::{FileConfig, ModeValue, MountConfig, SizeValue};
use shareuplift::fs::{ControlCommand, STATUS_JSON_NAME, STATUS_NAME};

#[derive(Parser)]
#[command(
    name = "shareuplift",
    version,
    about = "Copy files to SharePoint as to a disk"
)]
struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Append log lines to FILE instead of stderr; reopened on SIGHUP (logrotate).
    #[arg(long, global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount a SharePoint folder and stay in the foreground until unmounted.
    Mount(Box<MountArgs>),
    /// Run the built-in local SharePoint emulator.
    Emulator(EmulatorArgs),
    /// Print the quickXorHash of local files (compare with SharePoint's file.hashes).
    Quickxor { files: Vec<PathBuf> },
    /// Print the upload status of a mount (its .status file).
    Status {
        /// The mount point.
        mountpoint: PathBuf,
        /// Print .status.json instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Block until the uploads of PATHs (files in a mount, or a mount root for everything)
    /// are done (exit 0) or failed (exit 1, reasons printed); exit 3 on timeout.
    Wait {
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Queue failed or incomplete uploads again (PATHs in a mount, or --all MOUNTPOINT).
    Retry(KeptArgs),
    /// Remove failed or incomplete uploads from the spool (PATHs, or --all MOUNTPOINT).
    Discard(KeptArgs),
    /// Refuse new writes, finish the upload queue, then unmount (same as SIGUSR1).
    Drain {
        mountpoint: PathBuf,
        /// Also wait, at most this many seconds, until the mount is gone (exit 3 if it is not;
        /// for a unit's ExecStop).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Sign in with a device code (auth = "device_code") and save the tokens for the mount.
    Login(ConfigArgs),
    /// Remove the saved sign-in of a configuration.
    Logout(ConfigArgs),
    /// Sign in and resolve site, library and folder as a mount would, one line per step;
    /// exit 0 only when a mount would work.
    Check {
        #[command(flatten)]
        args: ConfigArgs,
        /// Also create and delete a zero-byte probe file in the folder.
        #[arg(long)]
        write: bool,
    },
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file (the mount's).
    #[arg(long, short = 'c')]
    config: PathBuf,
}

impl ConfigArgs {
    fn graph_config(&self) -> Result<shareuplift::graph::GraphConfig, String> {
        let file = FileConfig::load(&self.config).map_err(|e| e.to_string())?;
        let cfg =
            MountConfig::resolve(file, &|k| std::env::var(k).ok()).map_err(|e| e.to_string())?;
        Ok(shareuplift::mount::graph_config(&cfg))
    }
}

#[derive(Args)]
struct KeptArgs {
    /// Every failed or incomplete upload of the mount given as PATH.
    #[arg(long)]
    all: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct MountArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Where to mount.
    mountpoint: PathBuf,
    #[arg(long)]
    site_url: Option<String>,
    #[arg(long)]
    folder_url: Option<String>,
    #[arg(long)]
    username: Option<String>,
    /// Prefer SHAREUPLIFT_PASSWORD: flags are visible in the process list.
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// Prefer SHAREUPLIFT_CLIENT_SECRET: flags are visible in the process list.
    #[arg(long)]
    client_secret: Option<String>,
    #[arg(long)]
    graph_url: Option<String>,
    #[arg(long)]
    authority_url: Option<String>,
    /// Fragment size, e.g. 10MiB (a multiple of 320 KiB, under 60 MiB).
    #[arg(long)]
    chunk_size: Option<String>,
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    spool_dir: Option<PathBuf>,
    /// replace, rename or fail.
    #[arg(long)]
    conflict: Option<String>,
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Seconds finished uploads stay in .status.
    #[arg(long)]
    status_retention: Option<u64>,
    /// Idle lifetime of an upload session on the service, seconds (stale-session wait).
    #[arg(long)]
    session_idle_secs: Option<u64>,
    /// Let other users access the mount.
    #[arg(long)]
    allow_other: bool,
    /// Most bytes the spool may hold, e.g. 20GiB (default: keep max(1 GiB, 5%) free).
    #[arg(long)]
    spool_max: Option<String>,
    /// fsync blocks until the file's current content is committed in SharePoint.
    #[arg(long)]
    fsync_barrier: bool,
    /// device_code, client_secret, certificate or password (default: inferred).
    #[arg(long)]
    auth: Option<String>,
    /// global, usgov, usgov-dod or china.
    #[arg(long)]
    cloud: Option<String>,
    /// Extra trusted root CA certificate(s), PEM.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Go to the background once the mount answers; the exit code says whether it came up.
    #[arg(long)]
    daemon: bool,
    /// Owner (uid) every file and folder reports (default: the mounting user).
    #[arg(long)]
    uid: Option<u32>,
    /// Group (gid) every file and folder reports (default: the mounting user's).
    #[arg(long)]
    gid: Option<u32>,
    /// Octal umask applied to every mode, e.g. 077 (default: none).
    #[arg(long)]
    umask: Option<String>,
    /// Octal mode of files, e.g. 0640 (default: 0644).
    #[arg(long)]
    file_mode: Option<String>,
    /// Octal mode of folders, e.g. 0750 (default: 0755).
    #[arg(long)]
    dir_mode: Option<String>,
}

#[derive(Args)]
struct EmulatorArgs {
    /// Directory for the emulator's content.
    #[arg(long)]
    data: PathBuf,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write URLs and test credentials here as JSON once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Fault injection settings as JSON.
    #[arg(long)]
    faults: Option<String>,
    /// Field conditions as JSON (latency, request budget, delta knobs; see emulator::field).
    #[arg(long)]
    field: Option<String>,
    /// Answer every request (but /_admin) after this many milliseconds (overrides --field).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Add a uniform random 0..=N ms to the latency (overrides --field).
    #[arg(long)]
    latency_jitter_ms: Option<u64>,
    /// Request budget: a token bucket of N requests/s, 429 when empty (overrides --field).
    #[arg(long)]
    budget_per_sec: Option<f64>,
    /// PEM of a client certificate registered for the app (certificate sign-in).
    #[arg(long)]
    client_certificate: Option<PathBuf>,
}

impl EmulatorArgs {
    /// `--field` with the single-knob flags merged in.
    fn field_json(&self) -> Result<Option<String>, String> {
        let mut v: serde_json::Value = match &self.field {
            Some(j) => serde_json::from_str(j).map_err(|e| format!("--field: {e}"))?,
            None => serde_json::json!({}),
        };
        if !v.is_object() {
            return Err("--field must be a JSON object".into());
        }
        if let Some(n) = self.latency_ms {
            v["latency_ms"] = n.into();
        }
        if let Some(n) = self.latency_jitter_ms {
            v["latency_jitter_ms"] = n.into();
        }
        if let Some(n) = self.budget_per_sec {
            v["budget_per_sec"] = n.into();
        }
        Ok(Some(v.to_string()))
    }
}

impl MountArgs {
    fn overrides(&self) -> FileConfig {
        FileConfig {
            site_url: self.site_url.clone(),
            folder_url: self.folder_url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            graph_url: self.graph_url.clone(),
            authority_url: self.authority_url.clone(),
            chunk_size: self.chunk_size.clone().map(SizeValue::Text),
            workers: self.workers,
            spool_dir: self.spool_dir.clone(),
            conflict: self.conflict.clone(),
            max_attempts: self.max_attempts,
            status_retention: self.status_retention,
            session_idle_secs: self.session_idle_secs,
            allow_other: self.allow_other.then_some(true),
            spool_max: self.spool_max.clone().map(SizeValue::Text),
            fsync_barrier: self.fsync_barrier.then_some(true),
            auth: self.auth.clone(),
            cloud: self.cloud.clone(),
            ca_file: self.ca_file.clone(),
            uid: self.uid,
            gid: self.gid,
            umask: self.umask.clone().map(ModeValue::Text),
            file_mode: self.file_mode.clone().map(ModeValue::Text),
            dir_mode: self.dir_mode.clone().map(ModeValue::Text),
            ..FileConfig::default()
        }
    }
}

/// Parse the command line; the mount(8) helper shape (`shareuplift CONFIG MOUNTPOINT -o
/// OPTS`, see `fstab.rs`) is first rewritten into the equivalent `mount --daemon` command.
fn parse_cli() -> Result<Cli, ExitCode> {
    use shareuplift::fstab::{helper_command_line, FlagKind};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = Cli::command();
    let mut subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    subs.push("help".into());
    let mount = cmd.find_subcommand("mount");
    let flag_of = |name: &str| -> Option<FlagKind> {
        cmd.get_arguments()
            .chain(mount.into_iter().flat_map(|m| m.get_arguments()))
            .find(|a| a.get_long() == Some(name))
            .map(|a| {
                if a.get_action().takes_values() {
                    FlagKind::Value
                } else {
                    FlagKind::Switch
                }
            })
    };
    match helper_command_line(&argv, &subs, &flag_of) {
        Ok(Some(args)) => Ok(Cli::parse_from(args)),
        Ok(None) => Ok(Cli::parse()),
        Err(e) => {
            eprintln!("shareuplift: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse_cli() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = shareuplift::logging::init(cli.verbose, cli.log_file.as_deref()) {
        eprintln!("shareuplift: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Mount(args) => {
            let file = match &args.config {
                Some(p) => match FileConfig::load(p) {
                    Ok(f) => f,
                    Err(e) => return fatal(2, &e.to_string()),
                },
                None => FileConfig::default(),
            };
            let merged = file.overlay(args.overrides());
            let cfg = match MountConfig::resolve(merged, &|k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => return fatal(2, &e.to_string()),
            };
            if args.daemon {
                // Before any thread starts; the parent exits here with the mount's outcome.
                if let Err(e) = shareuplift::service::daemonize() {
                    return fatal(1, &e);
                }
            }
            match shareuplift::mount::run(cfg, &args.mountpoint) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(1, &e.to_string()),
            }
        }
        Command::Emulator(a) => {
            let field_json = match a.field_json() {
                Ok(f) => f,
                Err(e) => return fatal(2, &format!("emulator: {e}")),
            };
            let opts = shareuplift::emulator::EmulatorOptions {
                data_dir: a.data,
                port: a.port,
                faults_json: a.faults,
                field_json,
                client_certificate: a.client_certificate,
                ..Default::default()
            };
            match shareuplift::emulator::run_foreground(opts, a.ready_file.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(1, &format!("emulator: {e}")),
            }
        }
        Command::Quickxor { files } => {
            for f in &files {
                match shareuplift::quickxor::quickxor_file(f) {
                    Ok(h) if files.len() == 1 => println!("{h}"),
                    Ok(h) => println!("{h}  {}", f.display()),
                    Err(e) => return fatal(1, &format!("{}: {e}", f.display())),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Status { mountpoint, json } => {
            let name = if json { STATUS_JSON_NAME } else { STATUS_NAME };
            match std::fs::read_to_string(mountpoint.join(name)) {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(1, &format!("{}: {e}", mountpoint.join(name).display())),
            }
        }
        Command::Wait { timeout, paths } => wait_command(&paths, timeout),
        Command::Retry(args) => kept_command(ControlCommand::Retry, &args),
        Command::Discard(args) => kept_command(ControlCommand::Discard, &args),
        Command::Drain {
            mountpoint,
            timeout,
        } => match shareuplift::control::locate(&mountpoint) {
            Ok((root, _)) => match shareuplift::control::send(&root, &ControlCommand::Drain) {
                Ok(()) => match timeout.map(std::time::Duration::from_secs) {
                    Some(t) if !shareuplift::service::wait_unmounted(&root, t) => {
                        eprintln!("shareuplift: {} still draining", root.display());
                        ExitCode::from(3)
                    }
                    _ => ExitCode::SUCCESS,
                },
                Err(e) => fatal(1, &e),
            },
            Err(e) => fatal(2, &e),
        },
        Command::Login(args) => match args.graph_config() {
            Err(e) => fatal(2, &e),
            Ok(g) => match shareuplift::graph::login(&g, &mut std::io::stdout()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fatal(1, &e),
            },
        },
        Command::Logout(args) => match args.graph_config() {
            Err(e) => fatal(2, &e),
            Ok(g) => match shareuplift::graph::logout(&g) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(1, &e),
            },
        },
        Command::Check { args, write } => match args.graph_config() {
            Err(e) => {
                println!("FAIL configuration: {e}");
                ExitCode::from(2)
            }
            Ok(g) => {
                if shareuplift::graph::check(&g, write, &mut |line| println!("{line}")) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
        },
    }
}

/// Send `verb REL` (or `verb --all`) for each path to its mount's `.control`.
fn kept_command(verb: fn(Option<String>) -> ControlCommand, args: &KeptArgs) -> ExitCode {
    for p in &args.paths {
        let (root, rel) = match shareuplift::control::locate(p) {
            Ok(x) => x,
            Err(e) => return fatal(2, &e),
        };
        let cmd = verb((!args.all && !rel.is_empty()).then_some(rel));
        if let Err(e) = shareuplift::control::send(&root, &cmd) {
            return fatal(1, &e);
        }
    }
    ExitCode::SUCCESS
}

fn wait_command(paths: &[PathBuf], timeout: Option<u64>) -> ExitCode {
    use shareuplift::control::{locate, wait, WaitOutcome};
    // Group paths by mount root, waiting on each mount in turn.
    let mut groups: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for p in paths {
        let (root, rel) = match locate(p) {
            Ok(x) => x,
            Err(e) => return fatal(2, &e),
        };
        match groups.iter_mut().find(|(r, _)| *r == root) {
            Some((_, rels)) if !rel.is_empty() && !rels.is_empty() => rels.push(rel),
            Some((_, rels)) => rels.clear(),
            None if rel.is_empty() => groups.push((root, Vec::new())),
            None => groups.push((root, vec![rel])),
        }
    }
    let deadline = timeout.map(|s| std::time::Instant::now() + std::time::Duration::from_secs(s));
    let mut failed = false;
    for (root, rels) in &groups {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        match wait(Path::new(root), rels, left) {
            Ok(WaitOutcome::Done) => {}
            Ok(WaitOutcome::Failed(list)) => {
                for (path, reason) in list {
                    eprintln!("shareuplift: {path}: {reason}");
                }
                failed = true;
            }
            Ok(WaitOutcome::TimedOut(list)) => {
                for path in list.iter().filter(|p| !p.is_empty()) {
                    eprintln!("shareuplift: {path}: still uploading");
                }
                eprintln!("shareuplift: wait timed out");
                return ExitCode::from(3);
            }
            Err(e) => return fatal(1, &e),
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line on stderr (and in the log file, if logging goes to one: stderr is then not it).
fn fatal(code: u8, msg: &str) -> ExitCode {
    if shareuplift::logging::logs_to_file() {
        log::error!("{msg}");
    }
    eprintln!("shareuplift: {msg}");
    ExitCode::from(code)
}
