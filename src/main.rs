//! Command-line entry point: parses arguments, sets up logging and hands off to the library.
//! Exit codes: 0 success, 1 runtime failure (for `wait`: an upload failed), 2 bad
//! configuration or usage, 3 `wait` timed out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use shareuplift::config::{FileConfig, ModeValue, MountConfig, SizeValue};
use shareuplift::fs::{
    ControlCommand, STATUS_ALL_JSON_NAME, STATUS_ALL_NAME, STATUS_JSON_NAME, STATUS_NAME,
};

/// `--version`: the crate version and the git commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SHAREUPLIFT_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "shareuplift",
    version = VERSION,
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
    Quickxor {
        /// Local files to hash.
        files: Vec<PathBuf>,
    },
    /// Print the upload status of a mount (its .status file), or watch it live (--watch).
    Status {
        /// The mount point (or any path inside the mount, with --watch).
        mountpoint: PathBuf,
        /// Print .status.json instead of the table [default: off].
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// List every retained upload (.status.all), even above `status_summary_at` entries,
        /// where .status lists only the last done ones [default: off].
        #[arg(long, conflicts_with = "watch")]
        all: bool,
        /// Redraw a live view twice a second (a bar per uploading file, counts, rate, ETA;
        /// plain lines when stdout is not a terminal) until the mount goes away [default: off].
        #[arg(long)]
        watch: bool,
        /// With --watch: stop once nothing is queued, uploading or open for writing (exit 1
        /// if failed or incomplete uploads are listed) [default: off, run until unmounted].
        #[arg(long, requires = "watch")]
        until_idle: bool,
    },
    /// Block until the uploads of PATHs (files in a mount, or a mount root for everything)
    /// are done (exit 0) or failed (exit 1, reasons printed); exit 3 on timeout.
    Wait {
        /// Give up after this many seconds [default: wait for ever].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Show one bar for the bytes of everything waited on (plain `wait:` lines when stdout
        /// is not a terminal) [default: off, silent].
        #[arg(long)]
        progress: bool,
        /// Files in a mount, or a mount point for everything it is uploading.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Queue failed or incomplete uploads again (PATHs in a mount, or --all MOUNTPOINT).
    Retry(KeptArgs),
    /// Remove failed or incomplete uploads from the spool (PATHs, or --all MOUNTPOINT).
    Discard(KeptArgs),
    /// Refuse new writes, finish the upload queue, then unmount (same as SIGUSR1).
    Drain {
        /// The mount point.
        mountpoint: PathBuf,
        /// Also wait, at most this many seconds, until the mount is gone (exit 3 if it is not;
        /// for a unit's ExecStop).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Change a mount's upload bandwidth limit until it is unmounted: a rate (4MiB), off, a
    /// timetable (08:00,2MiB 19:00,off), or reset (back to the configured one).
    Bwlimit {
        /// The mount point.
        mountpoint: PathBuf,
        /// The new limit; the words of a timetable may be given as separate arguments.
        #[arg(required = true, num_args = 1..)]
        limit: Vec<String>,
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
    /// Print a shell completion script: `shareuplift completions bash > /etc/bash_completion.d/shareuplift`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these same definitions: `shareuplift man | man -l -`.
    Man(ManArgs),
}

#[derive(Args)]
struct ManArgs {
    /// Write shareuplift.1 and a page per subcommand (shareuplift-mount.1, …) into DIR
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
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
    /// Files in a mount (or, with --all, the mount point).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct MountArgs {
    /// TOML configuration file; flags override its keys (doc/CONFIGURATION.md).
    #[arg(long, short = 'c', value_name = "FILE", help_heading = "Connection")]
    config: Option<PathBuf>,
    /// Where to mount (an empty directory).
    mountpoint: PathBuf,
    /// The site, e.g. https://contoso.sharepoint.com/sites/Team (required).
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    site_url: Option<String>,
    /// Folder to mount: full URL or server-relative path (required).
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    folder_url: Option<String>,
    /// Microsoft Graph endpoint [default: https://graph.microsoft.com/v1.0, or the cloud's].
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    graph_url: Option<String>,
    /// National cloud: global, usgov, usgov-dod or china [default: global].
    #[arg(long, help_heading = "Connection")]
    cloud: Option<String>,
    /// Extra trusted root CA certificate(s), PEM (e.g. a TLS-inspecting proxy's).
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    ca_file: Option<PathBuf>,
    /// Sign-in method: device_code, client_secret, certificate or password [default: inferred].
    #[arg(long, help_heading = "Sign-in")]
    auth: Option<String>,
    /// Account for username/password sign-in (no MFA accounts).
    #[arg(long, help_heading = "Sign-in")]
    username: Option<String>,
    /// Password; prefer SHAREUPLIFT_PASSWORD: flags are visible in the process list.
    #[arg(long, help_heading = "Sign-in")]
    password: Option<String>,
    /// Tenant id or domain [default: {site host's first label}.onmicrosoft.com].
    #[arg(long, help_heading = "Sign-in")]
    tenant: Option<String>,
    /// The Entra ID app registration's client id (required).
    #[arg(long, help_heading = "Sign-in")]
    client_id: Option<String>,
    /// App-only sign-in secret; prefer SHAREUPLIFT_CLIENT_SECRET (process list).
    #[arg(long, help_heading = "Sign-in")]
    client_secret: Option<String>,
    /// Sign-in endpoint [default: https://login.microsoftonline.com, or the cloud's].
    #[arg(long, value_name = "URL", help_heading = "Sign-in")]
    authority_url: Option<String>,
    /// Upload fragment size, a multiple of 320 KiB under 60 MiB [default: 10MiB].
    #[arg(long, value_name = "SIZE", help_heading = "Upload")]
    chunk_size: Option<String>,
    /// Parallel uploads [default: 4].
    #[arg(long, value_name = "N", help_heading = "Upload")]
    workers: Option<usize>,
    /// When the name exists in SharePoint: replace, rename or fail [default: replace].
    #[arg(long, help_heading = "Upload")]
    conflict: Option<String>,
    /// Tries without new bytes acknowledged before an upload is failed [default: 10].
    #[arg(long, value_name = "N", help_heading = "Upload")]
    max_attempts: Option<u32>,
    /// Seconds finished uploads stay listed in .status [default: 600].
    #[arg(long, value_name = "SECONDS", help_heading = "Upload")]
    status_retention: Option<u64>,
    /// Upload bandwidth limit: a rate (2MiB, 512k) or a timetable ("08:00,2MiB 19:00,off")
    /// [default: off].
    #[arg(long, value_name = "LIMIT", help_heading = "Upload")]
    bwlimit: Option<String>,
    /// Seconds an upload session lives idle on the service (stale-session wait) [default: 900].
    #[arg(long, value_name = "SECONDS", help_heading = "Upload")]
    session_idle_secs: Option<u64>,
    /// fsync blocks until the file's current content is committed in SharePoint [default: off].
    #[arg(long, help_heading = "Upload")]
    fsync_barrier: bool,
    /// Private local storage for files until SharePoint has them [default: ~/.cache/shareuplift].
    #[arg(long, value_name = "DIR", help_heading = "Spool")]
    spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold, e.g. 20GiB [default: auto, keep max(1 GiB, 5%) free].
    #[arg(long, value_name = "SIZE", help_heading = "Spool")]
    spool_max: Option<String>,
    /// Let other users access the mount [default: off, private to its owner].
    #[arg(long, help_heading = "Mount")]
    allow_other: bool,
    /// Owner (uid) every file and folder reports [default: the mounting user].
    #[arg(long, value_name = "UID", help_heading = "Mount")]
    uid: Option<u32>,
    /// Group (gid) every file and folder reports [default: the mounting user's].
    #[arg(long, value_name = "GID", help_heading = "Mount")]
    gid: Option<u32>,
    /// Octal umask applied to every mode, e.g. 077 [default: none].
    #[arg(long, value_name = "OCTAL", help_heading = "Mount")]
    umask: Option<String>,
    /// Octal mode of files [default: 0644].
    #[arg(long, value_name = "OCTAL", help_heading = "Mount")]
    file_mode: Option<String>,
    /// Octal mode of folders [default: 0755].
    #[arg(long, value_name = "OCTAL", help_heading = "Mount")]
    dir_mode: Option<String>,
    /// Go to the background once the mount answers; the exit code says whether it came up.
    #[arg(long, help_heading = "Mount")]
    daemon: bool,
    /// Seconds to keep uploading what is queued after `umount`, then exit; 0: exit at once
    /// (uploads resume at the next mount) [default: 30].
    #[arg(long, value_name = "SECONDS", help_heading = "Mount")]
    unmount_drain: Option<u64>,
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
    /// Fault injection settings as JSON (merged over the profile's).
    #[arg(long)]
    faults: Option<String>,
    /// Field conditions as JSON (latency, request budget, delta knobs; see emulator::field;
    /// merged over the profile's).
    #[arg(long)]
    field: Option<String>,
    /// A named set of knobs: `documented` (the service's documented behaviour, the default)
    /// or `field` (every field behaviour at realistic rates, for soaks; see emulator::profile).
    #[arg(long, value_name = "NAME", default_value = "documented")]
    field_profile: String,
    /// Answer every request (but /_admin) after this many milliseconds (overrides --field).
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Add a uniform random 0..=N ms to the latency (overrides --field).
    #[arg(long)]
    latency_jitter_ms: Option<u64>,
    /// The app's budget: N units a second, throttled when spent; refusals cost too
    /// (overrides --field; units and the other budget knobs: see emulator::budget).
    #[arg(long)]
    budget_per_sec: Option<f64>,
    /// PEM of a client certificate registered for the app (certificate sign-in).
    #[arg(long)]
    client_certificate: Option<PathBuf>,
}

impl EmulatorArgs {
    /// The profile's field knobs, `--field` and the single-knob flags merged in.
    fn field_json(&self) -> Result<Option<String>, String> {
        let (profile, _) = shareuplift::emulator::profile::profile(&self.field_profile)?;
        let given: serde_json::Value = match &self.field {
            Some(j) => serde_json::from_str(j).map_err(|e| format!("--field: {e}"))?,
            None => serde_json::json!({}),
        };
        let mut v = shareuplift::emulator::profile::merge(&profile, &given)
            .map_err(|e| format!("--field: {e}"))?;
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

    /// The profile's faults with `--faults` merged in.
    fn faults_json(&self) -> Result<Option<String>, String> {
        let (_, profile) = shareuplift::emulator::profile::profile(&self.field_profile)?;
        let given: serde_json::Value = match &self.faults {
            Some(j) => serde_json::from_str(j).map_err(|e| format!("--faults: {e}"))?,
            None => serde_json::json!({}),
        };
        let v = shareuplift::emulator::profile::merge(&profile, &given)
            .map_err(|e| format!("--faults: {e}"))?;
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
            unmount_drain: self.unmount_drain,
            bwlimit: self.bwlimit.clone(),
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
            let (field_json, faults_json) = match (a.field_json(), a.faults_json()) {
                (Ok(f), Ok(j)) => (f, j),
                (Err(e), _) | (_, Err(e)) => return fatal(2, &format!("emulator: {e}")),
            };
            let opts = shareuplift::emulator::EmulatorOptions {
                data_dir: a.data,
                port: a.port,
                faults_json,
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
        Command::Status {
            mountpoint,
            watch: true,
            until_idle,
            ..
        } => watch_command(&mountpoint, until_idle),
        Command::Status {
            mountpoint,
            json,
            all,
            ..
        } => {
            let name = match (json, all) {
                (false, false) => STATUS_NAME,
                (true, false) => STATUS_JSON_NAME,
                (false, true) => STATUS_ALL_NAME,
                (true, true) => STATUS_ALL_JSON_NAME,
            };
            match std::fs::read_to_string(mountpoint.join(name)) {
                Ok(s) => {
                    print!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => fatal(1, &format!("{}: {e}", mountpoint.join(name).display())),
            }
        }
        Command::Wait {
            timeout,
            progress,
            paths,
        } => wait_command(&paths, timeout, progress),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "shareuplift",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man(a) => {
            let written = match &a.dir {
                Some(dir) => clap_mangen::generate_to(Cli::command(), dir),
                None => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fatal(1, &format!("man: {e}")),
            }
        }
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
        Command::Bwlimit { mountpoint, limit } => bwlimit_command(&mountpoint, &limit.join(" ")),
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

/// `status --watch`: exit 0 when the mount goes away or is idle, 1 when idle with failed or
/// incomplete uploads listed.
fn watch_command(path: &Path, until_idle: bool) -> ExitCode {
    use shareuplift::watch::{watch, WatchEnd};
    let root = match shareuplift::control::locate(path) {
        Ok((root, _)) => root,
        Err(e) => return fatal(2, &e),
    };
    match watch(&root, until_idle) {
        Ok(WatchEnd::Idle { kept: true }) => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fatal(1, &e),
    }
}

fn wait_command(paths: &[PathBuf], timeout: Option<u64>, progress: bool) -> ExitCode {
    use shareuplift::control::{locate, wait_observed, WaitOutcome};
    let mut bar = progress.then(shareuplift::watch::WaitProgress::new);
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
        if let Some(b) = bar.as_mut() {
            b.begin(rels);
        }
        let mut observe = |st: &serde_json::Value| {
            if let Some(b) = bar.as_mut() {
                b.observe(st);
            }
        };
        let outcome = wait_observed(Path::new(root), rels, left, &mut observe);
        if let Some(b) = bar.as_ref() {
            if matches!(outcome, Ok(WaitOutcome::TimedOut(_)) | Err(_)) {
                b.finish(false);
            }
        }
        match outcome {
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
    if let Some(b) = bar.as_ref() {
        b.finish(!failed);
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `shareuplift bwlimit MOUNTPOINT LIMIT` (`control::set_bwlimit`).
fn bwlimit_command(mountpoint: &Path, value: &str) -> ExitCode {
    match shareuplift::control::set_bwlimit(mountpoint, value) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err((code, e)) => fatal(code, &e),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every subcommand, with the subcommand path, that has no help line.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                out.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            undocumented(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_a_description() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "shareuplift", &mut missing);
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }

    #[test]
    fn mount_options_are_grouped() {
        let cmd = Cli::command();
        let mount = cmd.find_subcommand("mount").expect("mount");
        let mut headings = std::collections::BTreeSet::new();
        for a in mount.get_arguments() {
            if a.is_positional() || a.is_global_set() || a.get_id() == "help" {
                continue;
            }
            let h = a
                .get_help_heading()
                .unwrap_or_else(|| panic!("--{} has no help heading", a.get_id()));
            headings.insert(h.to_string());
        }
        let want = ["Connection", "Sign-in", "Upload", "Spool", "Mount"];
        assert_eq!(headings, want.iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn completions_and_man_page_come_from_the_definitions() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shareuplift", &mut out);
            let text = String::from_utf8(out).expect("utf-8");
            assert!(
                text.contains("chunk-size") && text.contains("drain"),
                "{shell}"
            );
        }
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .expect("render");
        let page = String::from_utf8(out).expect("utf-8");
        assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
        assert!(
            page.contains("shareuplift\\-mount") || page.contains("mount"),
            "{page}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        clap_mangen::generate_to(Cli::command(), dir.path()).expect("generate_to");
        let mount_page = std::fs::read_to_string(dir.path().join("shareuplift-mount.1"))
            .expect("shareuplift-mount.1");
        assert!(mount_page.contains("chunk\\-size"), "{mount_page}");
    }

    #[test]
    fn version_names_the_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.ends_with(')') && VERSION.len() > env!("CARGO_PKG_VERSION").len() + 3);
    }
}
