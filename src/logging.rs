//! Where log lines go and how they look: stderr with millisecond timestamps (a terminal),
//! `--log-file FILE` (appended, reopened on SIGHUP so logrotate can move it away), or the
//! journal when systemd started us (`$JOURNAL_STREAM` names our stderr): then each line is
//! `<N>message` with the syslog level N (3 error, 4 warning, 6 info, 7 debug) and no
//! timestamp, because journald adds its own and parses the prefix.
//!
//! Filters: `RUST_LOG` if set, else `warn,shareuplift=info` raised by `-v`/`-vv`; the HTTP
//! stack's modules stay at warn whatever is asked, since they may print upload URLs (which
//! are capabilities).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The open log file and its path, for [`reopen_log`].
static LOG_FILE: Mutex<Option<(PathBuf, Arc<Mutex<File>>)>> = Mutex::new(None);

/// A log file shared between the logger and [`reopen_log`].
struct SharedFile(Arc<Mutex<File>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Is stderr the journal stream systemd connected (`$JOURNAL_STREAM` = `DEV:INODE`)?
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The syslog priority of a level, for journald's `<N>` prefix.
pub fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Set up the logger. `log_file`: append there instead of stderr.
pub fn init(verbose: u8, log_file: Option<&Path>) -> Result<(), String> {
    let mut b = env_logger::Builder::new();
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => b.parse_filters(&spec),
        _ => b.parse_filters(&format!("warn,shareuplift={level}")),
    };
    // HTTP stack internals may print URLs, and upload URLs are capabilities: keep them quiet
    // whatever the user asked for.
    for m in ["reqwest", "hyper", "hyper_util", "h2", "rustls"] {
        b.filter_module(m, log::LevelFilter::Warn);
    }
    if let Some(path) = log_file {
        let f = open_append(path).map_err(|e| format!("--log-file {}: {e}", path.display()))?;
        let shared = Arc::new(Mutex::new(f));
        *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((path.to_path_buf(), shared.clone()));
        b.target(env_logger::Target::Pipe(Box::new(SharedFile(shared))));
        b.format_timestamp_millis();
    } else if stderr_is_journal() {
        b.format(|out, record| {
            writeln!(
                out,
                "<{}>{}",
                syslog_priority(record.level()),
                record.args()
            )
        });
    } else {
        b.format_timestamp_millis();
    }
    b.try_init().map_err(|e| e.to_string())
}

/// Do log lines go to a `--log-file`?
pub fn logs_to_file() -> bool {
    LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Reopen the log file (after logrotate moved it). False when logging is not to a file.
pub fn reopen_log() -> bool {
    let guard = LOG_FILE.lock().unwrap_or_else(|e| e.into_inner());
    let Some((path, shared)) = guard.as_ref() else {
        return false;
    };
    match open_append(path) {
        Ok(f) => *shared.lock().unwrap_or_else(|e| e.into_inner()) = f,
        // Keep writing to the old file rather than losing lines.
        Err(e) => eprintln!("shareuplift: cannot reopen {}: {e}", path.display()),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(syslog_priority(log::Level::Error), 3);
        assert_eq!(syslog_priority(log::Level::Warn), 4);
        assert_eq!(syslog_priority(log::Level::Info), 6);
        assert_eq!(syslog_priority(log::Level::Debug), 7);
    }
}
