//! Randomized model test: random sequences of create, write, append, rename, unlink and mkdir
//! are applied to the mount and to a local temp dir; after uploads settle, SharePoint's tree
//! (read through the emulator's admin API, not the mount) must equal the local dir.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const DIRS: [&str; 4] = ["", "d1", "d1/d2", "e f"];
const NAMES: [&str; 4] = ["a.txt", "B.bin", "c d.dat", "é.txt"];

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize),
    Write {
        dir: usize,
        name: usize,
        len: usize,
        seed: u8,
    },
    Append {
        dir: usize,
        name: usize,
        len: usize,
        seed: u8,
    },
    Rename {
        from: (usize, usize),
        to: (usize, usize),
    },
    Unlink(usize, usize),
    RenameDir(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let loc = (0..DIRS.len(), 0..NAMES.len());
    prop_oneof![
        (1..DIRS.len()).prop_map(Op::Mkdir),
        (loc.clone(), 0..300_000usize, any::<u8>()).prop_map(|((dir, name), len, seed)| {
            Op::Write {
                dir,
                name,
                len,
                seed,
            }
        }),
        (loc.clone(), 0..50_000usize, any::<u8>()).prop_map(|((dir, name), len, seed)| {
            Op::Append {
                dir,
                name,
                len,
                seed,
            }
        }),
        (loc.clone(), loc.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        loc.prop_map(|(d, n)| Op::Unlink(d, n)),
        (1..DIRS.len(), 1..DIRS.len()).prop_map(|(a, b)| Op::RenameDir(a, b)),
    ]
}

fn rel(dir: usize, name: usize) -> String {
    if DIRS[dir].is_empty() {
        NAMES[name].to_string()
    } else {
        format!("{}/{}", DIRS[dir], NAMES[name])
    }
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Apply `op` under `root`; returns whether it was applicable (its parent folders exist,
/// its source exists). Inapplicable ops are skipped on both sides.
fn apply(root: &Path, op: &Op) -> std::io::Result<()> {
    match op {
        Op::Mkdir(d) => fs::create_dir(root.join(DIRS[*d])),
        Op::Write {
            dir,
            name,
            len,
            seed,
        } => fs::write(root.join(rel(*dir, *name)), content(*len, *seed)),
        Op::Append {
            dir,
            name,
            len,
            seed,
        } => fs::OpenOptions::new()
            .append(true)
            .open(root.join(rel(*dir, *name)))?
            .write_all(&content(*len, *seed)),
        Op::Rename { from, to } => {
            fs::rename(root.join(rel(from.0, from.1)), root.join(rel(to.0, to.1)))
        }
        Op::Unlink(d, n) => fs::remove_file(root.join(rel(*d, *n))),
        Op::RenameDir(a, b) => fs::rename(root.join(DIRS[*a]), root.join(DIRS[*b])),
    }
}

fn applicable(model: &Path, op: &Op) -> bool {
    let exists = |d: usize| DIRS[d].is_empty() || model.join(DIRS[d]).is_dir();
    match op {
        Op::Mkdir(d) => {
            let parent = Path::new(DIRS[*d])
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            !model.join(DIRS[*d]).exists() && model.join(parent).is_dir()
        }
        Op::Write { dir, .. } => exists(*dir),
        Op::Append { dir, name, .. } | Op::Unlink(dir, name) => {
            exists(*dir) && model.join(rel(*dir, *name)).is_file()
        }
        Op::Rename { from, to } => {
            exists(from.0) && exists(to.0) && model.join(rel(from.0, from.1)).is_file()
        }
        Op::RenameDir(a, b) => {
            let (a, b) = (DIRS[*a], DIRS[*b]);
            let parent = Path::new(b)
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default();
            model.join(a).is_dir()
                && !model.join(b).exists()
                && model.join(parent).is_dir()
                && !b.starts_with(&format!("{a}/"))
        }
    }
}

fn local_files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().to_string(),
                    qxh(&p),
                );
            }
        }
    }
    out
}

#[test]
fn random_operation_sequences_leave_sharepoint_equal_to_the_model() {
    let emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    let models = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        max_shrink_iters: 30,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0u32);
    let result = runner.run(&proptest::collection::vec(op(), 5..30), |ops| {
        case.set(case.get() + 1);
        let name = format!("case{}", case.get());
        let model = models.path().join(&name);
        let mount = m.path(&name);
        fs::create_dir(&model).unwrap();
        fs::create_dir(&mount).unwrap();
        for op in &ops {
            if !applicable(&model, op) {
                continue;
            }
            apply(&model, op).unwrap();
            if let Err(e) = apply(&mount, op) {
                return Err(TestCaseError::fail(format!(
                    "{op:?} failed on the mount: {e}"
                )));
            }
        }
        m.settle(Duration::from_secs(60));
        let want = local_files(&model);
        let got: BTreeMap<String, String> = emu
            .items()
            .into_iter()
            .filter(|i| i["folder"] != true)
            .filter_map(|i| {
                let r = i["rel"]
                    .as_str()?
                    .strip_prefix(&format!("{name}/"))?
                    .to_string();
                Some((
                    r,
                    i["quickXorHash"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        prop_assert_eq!(&got, &want, "ops: {:?}", ops);
        // The mount shows the same content.
        prop_assert_eq!(local_files(&mount), want);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\nlog tail:\n{}", tail(&m.log_text(), 30));
    }
    assert_no_violations(&emu);
}
