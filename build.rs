//! Build script: records the git commit for `--version` (`SHAREUPLIFT_GIT_COMMIT`), as
//! `git rev-parse --short HEAD` (with `-dirty` when the work tree has changes), or
//! `unknown` outside a git checkout (a crates.io tarball, a .deb build from an export).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    let version = if dirty && commit != "unknown" {
        format!("{commit}-dirty")
    } else {
        commit
    };
    println!("cargo:rustc-env=SHAREUPLIFT_GIT_COMMIT={version}");
    // Rebuild when HEAD moves (a commit, a checkout); works in worktrees too.
    for path in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
