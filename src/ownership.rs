//! Who the mount says owns its files, and with which modes: the `uid`, `gid`, `umask`,
//! `file_mode` and `dir_mode` options of a shared mount. SharePoint has no POSIX owners or
//! modes, so these are what every node reports; `chmod`/`chown` stay accepted and ignored.
//!
//! The kernel enforces them: the mount always uses `default_permissions`, so with
//! `allow_other` another user is refused (EACCES) by the modes shown here, before any request
//! reaches the filesystem. Without `allow_other` only the mounting user can enter the mount
//! at all, whatever these say.
//!
//! Defaults: the mounting user's uid and gid, files 0644 and folders 0755 (what the core
//! reports); `umask` is applied last, to everything including `.status` (0444) and `.control`
//! (0200), so `umask=077` makes the whole mount private to its owner.

/// The ownership options, as configured (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub umask: Option<u32>,
    pub file_mode: Option<u32>,
    pub dir_mode: Option<u32>,
}

impl Ownership {
    /// The permission bits to report for a node the core gives `perm`.
    /// `virtual_file`: `.status`/`.control`, whose modes are fixed (only `umask` applies).
    pub fn perm(&self, is_dir: bool, virtual_file: bool, perm: u16) -> u16 {
        let base = if virtual_file {
            u32::from(perm)
        } else if is_dir {
            self.dir_mode.unwrap_or(u32::from(perm))
        } else {
            self.file_mode.unwrap_or(u32::from(perm))
        };
        ((base & !self.umask.unwrap_or(0)) & 0o7777) as u16
    }
}

/// Parse a mode or umask: octal digits (`"077"`, `"0o640"`, `"0640"`), at most 0o7777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    let v = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{t:?} is not an octal mode (e.g. 022, 0640)"))?;
    if v > 0o7777 {
        return Err(format!("{t:?} is larger than 7777"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_umask() {
        let none = Ownership::default();
        assert_eq!(none.perm(false, false, 0o644), 0o644);
        assert_eq!(none.perm(true, false, 0o755), 0o755);
        let private = Ownership {
            umask: Some(0o077),
            ..Ownership::default()
        };
        assert_eq!(private.perm(false, false, 0o644), 0o600);
        assert_eq!(private.perm(true, false, 0o755), 0o700);
        assert_eq!(private.perm(false, true, 0o444), 0o400);
        let modes = Ownership {
            file_mode: Some(0o664),
            dir_mode: Some(0o2775),
            umask: Some(0o002),
            ..Ownership::default()
        };
        assert_eq!(modes.perm(false, false, 0o644), 0o664);
        assert_eq!(modes.perm(true, false, 0o755), 0o2775);
        assert_eq!(modes.perm(false, true, 0o200), 0o200);
    }

    #[test]
    fn parse_modes() {
        for (t, want) in [
            ("077", 0o77),
            ("0o640", 0o640),
            ("0640", 0o640),
            ("7777", 0o7777),
        ] {
            assert_eq!(parse_mode(t), Ok(want), "{t}");
        }
        for t in ["8", "abc", "17777", ""] {
            assert!(parse_mode(t).is_err(), "{t}");
        }
    }
}
