//! `.status` that stays small (issue 19), on a real mount: with the summary threshold set low
//! (`status_summary_at = 20`, `status_max_done = 25`), 30 files make `.status.json` list only
//! the last done uploads and sum up the rest, `.status.all.json` and `status --all` list every
//! retained one, the done entries kept are bounded by count, and `wait` (a path and the whole
//! mount) still answers from the summary form. Also a folder renamed with its many files keeps
//! every name reachable (the inode table's per-folder index).

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

const FILES: usize = 30;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run shareuplift");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn many_done_uploads_are_summed_up_and_listed_on_demand() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "status_summary_at = 20\nstatus_max_done = 25");
    fs::create_dir(m.path("many")).expect("mkdir");
    for i in 0..FILES {
        write_file(
            &m.path(&format!("many/f{i:02}.txt")),
            format!("file {i}").as_bytes(),
        );
    }
    let st = m.settle(Duration::from_secs(60));
    assert_eq!(
        emu.items().iter().filter(|i| i["folder"] == false).count(),
        FILES
    );

    // Summary form: 25 done kept (the bound), 10 listed (the last ones), all counted.
    let summary = &st["done_summary"];
    assert_eq!(summary["count"], 25, "{st:#}");
    assert_eq!(summary["listed"], 10, "{st:#}");
    assert_eq!(summary["since_start"], FILES as u64, "{st:#}");
    assert_eq!(summary["full_list"], ".status.all.json");
    assert_eq!(st["totals"]["done"], 25);
    let listed = st["uploads"].as_array().expect("uploads");
    assert_eq!(listed.len(), 10, "{st:#}");
    assert!(listed.iter().all(|u| u["state"] == "done"));
    let text = m.status_text();
    assert!(text.contains("done: 25 ("), "{text}");
    assert!(text.contains("the last 10 listed"), "{text}");

    // The full list on demand: the file and the CLI.
    let all: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(m.path(".status.all.json")).expect("read"))
            .expect("json");
    assert_eq!(all["uploads"].as_array().map(Vec::len), Some(25), "{all:#}");
    assert!(all.get("done_summary").is_none());
    let mnt = m.path("").display().to_string();
    let (ok, out) = run(&["status", "--all", &mnt]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("done ")).count(),
        25,
        "{out}"
    );
    let (ok, out) = run(&["status", "--all", "--json", &mnt]);
    assert!(ok && out.contains("\"uploads\""), "{out}");
    let (ok, out) = run(&["status", &mnt]);
    assert!(ok && out.contains("the last 10 listed"), "{out}");

    // `wait` answers from the summary form: an early file (no longer listed) and the mount.
    let early = m.path("many/f00.txt").display().to_string();
    let (ok, out) = run(&["wait", "--timeout", "30", &early]);
    assert!(ok, "wait for a done file not listed: {out}");
    let (ok, out) = run(&["wait", "--timeout", "30", &mnt]);
    assert!(ok, "wait for the whole mount: {out}");

    // A new upload is listed (busy entries are never summed up) and ends done.
    write_file(&m.path("late.txt"), b"late");
    let st = m.settle(Duration::from_secs(60));
    let late = st["uploads"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["path"] == "late.txt").cloned())
        .expect("late.txt listed among the last done");
    assert_eq!(late["state"], "done");
    assert_eq!(st["done_summary"]["since_start"], FILES as u64 + 1);
    m.unmount();
}

#[test]
fn a_renamed_folder_keeps_every_name() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    fs::create_dir(m.path("big")).expect("mkdir");
    for i in 0..300 {
        write_file(&m.path(&format!("big/n{i}.txt")), b"x");
    }
    m.settle(Duration::from_secs(120));
    fs::rename(m.path("big"), m.path("Moved")).expect("rename");
    let mut names: Vec<String> = fs::read_dir(m.path("moved"))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 300);
    assert!(m.path("MOVED/n299.txt").exists());
    assert!(!m.path("big").exists());
    assert!(!m.path("moved/missing.txt").exists());
    m.settle(Duration::from_secs(120));
    let on_server = emu
        .items()
        .iter()
        .filter(|i| i["rel"].as_str().is_some_and(|r| r.starts_with("Moved/")))
        .count();
    assert_eq!(on_server, 300);
    m.unmount();
}
