//! The `.control` grammar, shared by the filesystem (which parses each written line) and the
//! CLI client (`crate::control`, which writes them): one command per line, `retry PATH`,
//! `retry --all`, `discard PATH`, `discard --all`, `drain`, `bwlimit LIMIT`, `bwlimit reset`;
//! paths relative to the mount root. A `bwlimit` value is checked here (`upload::bwlimit`), so
//! the CLI reports a bad one before writing it.
//!
//! Pure: no I/O, no locks. [`ControlCommand::line`] and [`ControlCommand::parse`] are inverse,
//! so the client can never write a line the filesystem does not understand.

use std::fmt;

use crate::upload::bwlimit::Timetable;

/// The argument that means "every failed or incomplete upload".
const ALL: &str = "--all";
/// The `bwlimit` argument that goes back to the configured limit.
const RESET: &str = "reset";

/// One `.control` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// Queue again a failed or incomplete upload (`None`: all of them).
    Retry(Option<String>),
    /// Remove a failed or incomplete upload from the spool (`None`: all of them).
    Discard(Option<String>),
    /// Refuse new writes, finish the queue, then unmount.
    Drain,
    /// Replace the upload bandwidth limit until the unmount (`None`: back to the configured).
    Bwlimit(Option<Timetable>),
}

impl ControlCommand {
    /// Parse one line: `retry PATH`, `retry --all`, `discard PATH`, `discard --all`, `drain`.
    /// Paths are relative to the mount root (a leading `/` is ignored).
    pub fn parse(line: &str) -> Result<ControlCommand, String> {
        let line = line.trim();
        let (verb, arg) = match line.split_once(char::is_whitespace) {
            Some((v, a)) => (v, a.trim()),
            None => (line, ""),
        };
        let target = |arg: &str| -> Result<Option<String>, String> {
            match arg {
                "" => Err(format!("{verb}: give a path or {ALL}")),
                ALL => Ok(None),
                p => Ok(Some(p.trim_start_matches('/').to_string())),
            }
        };
        match verb {
            "retry" => Ok(ControlCommand::Retry(target(arg)?)),
            "discard" => Ok(ControlCommand::Discard(target(arg)?)),
            "drain" if arg.is_empty() => Ok(ControlCommand::Drain),
            "bwlimit" if arg.is_empty() => Err(format!(
                "bwlimit: give a rate (4MiB), off, a timetable (08:00,2MiB 19:00,off) or {RESET}"
            )),
            "bwlimit" if arg == RESET => Ok(ControlCommand::Bwlimit(None)),
            "bwlimit" => Timetable::parse(arg)
                .map(|t| ControlCommand::Bwlimit(Some(t)))
                .map_err(|e| format!("bwlimit: {e}")),
            _ => Err(format!("unknown command {line:?}")),
        }
    }

    /// The line that [`parse`](Self::parse) reads back as this command (without newline).
    pub fn line(&self) -> String {
        let with = |verb: &str, target: &Option<String>| match target {
            Some(p) => format!("{verb} {p}"),
            None => format!("{verb} {ALL}"),
        };
        match self {
            ControlCommand::Retry(t) => with("retry", t),
            ControlCommand::Discard(t) => with("discard", t),
            ControlCommand::Drain => "drain".to_string(),
            ControlCommand::Bwlimit(Some(t)) => format!("bwlimit {t}"),
            ControlCommand::Bwlimit(None) => format!("bwlimit {RESET}"),
        }
    }
}

impl fmt::Display for ControlCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_commands_parse() {
        use ControlCommand::*;
        for (line, want) in [
            (
                "retry Docs/a b.bin\n",
                Ok(Retry(Some("Docs/a b.bin".into()))),
            ),
            ("retry --all", Ok(Retry(None))),
            ("discard /x.bin", Ok(Discard(Some("x.bin".into())))),
            ("discard --all", Ok(Discard(None))),
            ("drain", Ok(Drain)),
            ("bwlimit reset", Ok(Bwlimit(None))),
            (
                "bwlimit 4MiB",
                Ok(Bwlimit(Some(Timetable::parse("4MiB").unwrap()))),
            ),
            (
                "bwlimit  08:00,2M   19:00,off \n",
                Ok(Bwlimit(Some(
                    Timetable::parse("08:00,2MiB 19:00,off").unwrap(),
                ))),
            ),
        ] {
            assert_eq!(ControlCommand::parse(line), want, "{line}");
        }
        for bad in [
            "retry",
            "frobnicate x",
            "drain now",
            "",
            "bwlimit",
            "bwlimit 2X",
        ] {
            assert!(ControlCommand::parse(bad).is_err(), "{bad}");
        }
        let e = ControlCommand::parse("bwlimit 25:00,1M").unwrap_err();
        assert!(
            e.starts_with("bwlimit: \"25:00\" is not a time of day"),
            "{e}"
        );
    }

    #[test]
    fn lines_parse_back_to_their_command() {
        use ControlCommand::*;
        for cmd in [
            Retry(Some("Docs/a b.bin".into())),
            Retry(None),
            Discard(Some("x.bin".into())),
            Discard(None),
            Drain,
            Bwlimit(None),
            Bwlimit(Some(
                Timetable::parse("Mon-08:00,1.5M Sat-00:00,off").unwrap(),
            )),
        ] {
            assert_eq!(ControlCommand::parse(&cmd.line()), Ok(cmd.clone()), "{cmd}");
        }
    }
}
