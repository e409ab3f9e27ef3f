//! mount(8) and `/etc/fstab`: `mount -t fuse.shareuplift CONFIG /mnt/sp -o opts` runs
//! `mount.fuse3`, which runs `shareuplift CONFIG /mnt/sp -o opts`. This module turns that
//! argument shape into the ordinary `shareuplift mount --daemon --config CONFIG [flags] /mnt/sp`
//! command line, so the helper shape has no options of its own to drift out of date.
//!
//! Options: every `mount` flag is accepted as `-o key=value` (`workers=2`, `chunk_size=10MiB`,
//! `spool_dir=/var/cache/su`; `_` or `-` alike) and a boolean flag as `-o key`; `allow_other`
//! is that flag. Generic mount(8)/fstab options that need nothing from us are ignored: `rw`,
//! `defaults`, `auto`/`noauto`, `user`/`nouser`/`users`/`owner`, `_netdev`, `nofail`, `x-*`
//! (`x-systemd.automount`, …), `comment=…`, `dev`/`nodev`, `suid`/`nosuid`, `exec`/`noexec`,
//! `atime`/`noatime`/`relatime`/`strictatime`/`nodiratime`, `async`, and
//! `default_permissions` (always on: the kernel checks the modes the mount reports).
//! `uid`, `gid`, `umask`, `file_mode`, `dir_mode` are the `mount` flags of those names
//! (`crate::ownership`). Options that would change what the mount allows and are not
//! supported are refused with one line rather than silently dropped: `ro`, `sync`,
//! `dirsync`, and so is any unknown option. The mount goes to the background once it
//! answers (`--daemon`), so `mount` returns with the mount's outcome as its exit code.

use std::ffi::OsString;

/// What a `mount` flag of the CLI looks like, for translating `-o key[=value]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `--flag VALUE`.
    Value,
    /// `--flag` (a switch).
    Switch,
}

/// Options mount(8) or fstab may pass that need nothing from us.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "_netdev",
    "nofail",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nodiratime",
    "async",
    "default_permissions",
];

/// Options refused with a reason (they would change what the mount allows).
const REFUSED: &[(&str, &str)] = &[
    (
        "ro",
        "read-only mounts are not supported (ShareUplift is for uploading)",
    ),
    (
        "sync",
        "synchronous writes are not supported (use fsync_barrier)",
    ),
    ("dirsync", "synchronous directory updates are not supported"),
];

/// If `argv` has the mount helper's shape (`PROG SOURCE MOUNTPOINT [-o OPTS]...`, SOURCE not
/// a subcommand), the equivalent ordinary command line; `Ok(None)` for any other shape.
/// `flag_of(name)` says whether `--name` is a flag of `mount`, and of which kind.
pub fn helper_command_line(
    argv: &[OsString],
    subcommands: &[String],
    flag_of: &dyn Fn(&str) -> Option<FlagKind>,
) -> Result<Option<Vec<OsString>>, String> {
    let (Some(prog), Some(source), Some(mountpoint)) = (argv.first(), argv.get(1), argv.get(2))
    else {
        return Ok(None);
    };
    let src = source.to_string_lossy();
    let mnt = mountpoint.to_string_lossy();
    if src.starts_with('-') || mnt.starts_with('-') || subcommands.iter().any(|s| *s == src) {
        return Ok(None);
    }
    let mut opts: Vec<String> = Vec::new();
    let mut rest = argv[3..].iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = rest.next() {
        if a == "-o" {
            let v = rest.next().ok_or("-o needs a value")?;
            opts.push(v);
        } else if let Some(v) = a.strip_prefix("-o") {
            opts.push(v.to_string());
        } else if matches!(a.as_str(), "-n" | "-s" | "-f" | "-v") {
            // mount(8)'s no-mtab, sloppy, fake and verbose: nothing to do here.
        } else {
            return Err(format!("unexpected argument {a:?} (expected -o OPTIONS)"));
        }
    }
    let mut out: Vec<OsString> = vec![
        prog.clone(),
        "mount".into(),
        "--daemon".into(),
        "--config".into(),
        source.clone(),
    ];
    for opt in opts
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        if IGNORED.contains(&key)
            || key.starts_with("x-")
            || key == "comment"
            || key == "fsname"
            || key == "subtype"
        {
            continue;
        }
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == key) {
            return Err(format!("mount option {key}: {why}"));
        }
        let flag = key.replace('_', "-");
        match (flag_of(&flag), value) {
            (Some(FlagKind::Value), Some(v)) => {
                out.push(format!("--{flag}").into());
                out.push(v.into());
            }
            (Some(FlagKind::Value), None) => {
                return Err(format!("mount option {key} needs a value ({key}=…)"))
            }
            (Some(FlagKind::Switch), None | Some("true" | "yes" | "1")) => {
                out.push(format!("--{flag}").into())
            }
            (Some(FlagKind::Switch), Some("false" | "no" | "0")) => {}
            (Some(FlagKind::Switch), Some(v)) => {
                return Err(format!(
                    "mount option {key}={v}: expected {key} or {key}=false"
                ))
            }
            (None, _) => return Err(format!("unknown mount option {key:?}")),
        }
    }
    out.push(mountpoint.clone());
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(name: &str) -> Option<FlagKind> {
        match name {
            "workers" | "chunk-size" | "spool-dir" | "log-file" => Some(FlagKind::Value),
            "allow-other" | "fsync-barrier" => Some(FlagKind::Switch),
            _ => None,
        }
    }

    fn run(args: &[&str]) -> Result<Option<Vec<String>>, String> {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let subs = vec!["mount".to_string(), "status".to_string()];
        helper_command_line(&argv, &subs, &flags)
            .map(|o| o.map(|v| v.iter().map(|a| a.to_string_lossy().into_owned()).collect()))
    }

    #[test]
    fn helper_shape_becomes_a_mount_command() {
        let got = run(&[
            "shareuplift",
            "/etc/su/team.toml",
            "/mnt/sp",
            "-o",
            "rw,_netdev,nofail,x-systemd.automount,allow_other,default_permissions",
            "-o",
            "workers=2,chunk_size=320KiB,fsync_barrier=false,nosuid,nodev",
        ])
        .expect("ok")
        .expect("helper shape");
        assert_eq!(
            got,
            [
                "shareuplift",
                "mount",
                "--daemon",
                "--config",
                "/etc/su/team.toml",
                "--allow-other",
                "--workers",
                "2",
                "--chunk-size",
                "320KiB",
                "/mnt/sp"
            ]
        );
        let bare = run(&["shareuplift", "/c.toml", "/mnt/sp"]).expect("ok");
        assert_eq!(bare.expect("shape").len(), 6);
    }

    #[test]
    fn ordinary_command_lines_are_left_alone() {
        for args in [
            &["shareuplift", "status", "/mnt/sp"][..],
            &["shareuplift", "mount", "/mnt/sp"],
            &["shareuplift", "-v", "mount", "/mnt/sp"],
            &["shareuplift", "--help"],
            &["shareuplift"],
        ] {
            assert_eq!(run(args), Ok(None), "{args:?}");
        }
    }

    #[test]
    fn refused_and_unknown_options_say_why() {
        for (opt, want) in [
            ("ro", "read-only"),
            ("sync", "synchronous"),
            ("frobnicate", "unknown mount option \"frobnicate\""),
            ("workers", "needs a value"),
            ("allow_other=maybe", "expected allow_other"),
        ] {
            let e = run(&["shareuplift", "/c.toml", "/mnt", "-o", opt]).expect_err(opt);
            assert!(e.contains(want), "{opt}: {e}");
        }
        assert!(run(&["shareuplift", "/c.toml", "/mnt", "--bogus"]).is_err());
    }
}
