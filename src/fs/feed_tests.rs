//! Unit tests of `feed.rs`: the id map's resolution, moved subtrees, unknown parents, deletes by
//! id against re-creates, duplicates, local content, child counts.

use super::*;
use crate::fs::inode::{InodeTable, LocalFile};
use std::time::SystemTime;

fn file(id: &str, name: &str, size: u64) -> RemoteItem {
    RemoteItem {
        id: id.into(),
        name: name.into(),
        is_folder: false,
        size,
        mtime: SystemTime::UNIX_EPOCH,
        etag: Some(format!("{id}-{size}")),
        quick_xor_hash: None,
        web_url: None,
    }
}

fn folder(id: &str, name: &str) -> RemoteItem {
    RemoteItem {
        is_folder: true,
        size: 0,
        ..file(id, name, 0)
    }
}

fn changed(item: RemoteItem, parent: &str) -> DeltaChange {
    DeltaChange::Changed {
        item,
        parent_id: Some(parent.into()),
        child_count: None,
    }
}

fn deleted(id: &str, parent: &str) -> DeltaChange {
    DeltaChange::Deleted {
        id: id.into(),
        parent_id: Some(parent.into()),
    }
}

fn round(changes: Vec<DeltaChange>) -> DeltaRound {
    DeltaRound {
        changes,
        root_id: Some("R".into()),
        token: "t".into(),
    }
}

/// Root listed with Docs/ (listed: a.txt, Sub/ (listed: deep.txt)) and Other/ (not
/// listed) and top.txt.
fn state() -> State {
    let mut st = State {
        table: InodeTable::new(),
        handles: HashMap::new(),
        next_fh: 1,
    };
    let now = Instant::now();
    merge_listing(
        &mut st,
        ROOT_INO,
        "",
        &[
            folder("D", "Docs"),
            folder("O", "Other"),
            file("T", "top.txt", 1),
        ],
        now,
    );
    let docs = st.table.ino_of("Docs").unwrap();
    merge_listing(
        &mut st,
        docs,
        "Docs",
        &[file("A", "a.txt", 1), folder("S", "Sub")],
        now,
    );
    let sub = st.table.ino_of("Docs/Sub").unwrap();
    merge_listing(&mut st, sub, "Docs/Sub", &[file("E", "deep.txt", 2)], now);
    st
}

fn id_at(st: &State, path: &str) -> Option<String> {
    let n = st.table.get(st.table.ino_of(path)?)?;
    node_id(n).map(str::to_string)
}

#[test]
fn paths_resolve_through_parent_ids() {
    let mut st = state();
    let a = st.table.ino_of("Docs/a.txt").unwrap();
    let docs = st.table.ino_of("Docs").unwrap();
    let out = apply(
        &mut st,
        &round(vec![
            changed(file("A", "a.txt", 9), "D"),
            changed(file("N", "new.txt", 3), "D"),
            changed(file("X", "x.txt", 3), "O"),
            changed(file("Y", "y.txt", 3), "R"),
        ]),
        Instant::now(),
    );
    assert_eq!(st.table.get(a).unwrap().remote.as_ref().unwrap().size, 9);
    assert_eq!(id_at(&st, "Docs/new.txt").as_deref(), Some("N"));
    assert_eq!(id_at(&st, "y.txt").as_deref(), Some("Y"));
    assert!(
        st.table.ino_of("Other/x.txt").is_none(),
        "Other is not listed: found when it is"
    );
    assert_eq!(
        out.forget,
        vec![
            Forget::Inode(a),
            Forget::Entry(docs, "new.txt".into()),
            Forget::Entry(ROOT_INO, "y.txt".into()),
        ]
    );
    assert!(out.relist.is_empty(), "every parent was known");
}

#[test]
fn a_renamed_or_moved_folder_carries_its_subtree() {
    let mut st = state();
    let sub = st.table.ino_of("Docs/Sub").unwrap();
    let deep = st.table.ino_of("Docs/Sub/deep.txt").unwrap();
    let docs = st.table.ino_of("Docs").unwrap();
    // Renamed alone (entry 2): nothing for deep.txt.
    let out = apply(
        &mut st,
        &round(vec![changed(folder("S", "Renamed"), "D")]),
        Instant::now(),
    );
    assert_eq!(st.table.ino_of("Docs/Renamed"), Some(sub));
    assert_eq!(st.table.get(deep).unwrap().path, "Docs/Renamed/deep.txt");
    assert!(st.table.ino_of("Docs/Sub").is_none());
    assert!(st.table.get(sub).unwrap().listed.is_some(), "listing kept");
    assert_eq!(
        out.forget,
        vec![
            Forget::Entry(docs, "Sub".into()),
            Forget::Entry(docs, "Renamed".into()),
        ]
    );
    // Moved into the root, then Docs moved into Other (not listed: kept, with its tree).
    apply(
        &mut st,
        &round(vec![
            changed(folder("S", "Renamed"), "R"),
            changed(folder("D", "Docs"), "O"),
        ]),
        Instant::now(),
    );
    assert_eq!(st.table.get(deep).unwrap().path, "Renamed/deep.txt");
    assert_eq!(st.table.ino_of("Other/Docs"), Some(docs));
    assert_eq!(id_at(&st, "Other/Docs/a.txt").as_deref(), Some("A"));
    // A file edited under the moved folder resolves to its new path.
    apply(
        &mut st,
        &round(vec![changed(file("E", "deep.txt", 7), "S")]),
        Instant::now(),
    );
    assert_eq!(st.table.get(deep).unwrap().remote.as_ref().unwrap().size, 7);
}

#[test]
fn unknown_parents_are_never_ignored() {
    let mut st = state();
    let docs = st.table.ino_of("Docs").unwrap();
    // A folder made through the mount: held, listed, no id yet.
    let made = st.table.upsert("Made", NodeKind::Dir);
    st.table.get_mut(made).unwrap().listed = Some(Instant::now());
    // Docs moved somewhere the mount does not know; a file created in an unknown folder.
    let out = apply(
        &mut st,
        &round(vec![
            changed(folder("D", "Docs"), "ELSEWHERE"),
            changed(file("Z", "z.txt", 1), "UNKNOWN"),
        ]),
        Instant::now(),
    );
    assert!(st.table.ino_of("Docs").is_none() && st.table.ino_of("Docs/a.txt").is_none());
    assert!(out.forget.contains(&Forget::Entry(ROOT_INO, "Docs".into())));
    assert_eq!(
        out.relist,
        vec![made],
        "the held folder of unknown id is listed again"
    );
    assert!(st.table.get(docs).is_none());
    // Without the mount root's id, the root is such a folder too.
    let mut st = state();
    let mut r = round(vec![changed(file("Z", "z.txt", 1), "UNKNOWN")]);
    r.root_id = None;
    assert_eq!(apply(&mut st, &r, Instant::now()).relist, vec![ROOT_INO]);
    // A drive root (no parent id) is outside the mount: nothing to list.
    let mut st = state();
    let r = round(vec![DeltaChange::Changed {
        item: folder("DRIVE", "root"),
        parent_id: None,
        child_count: Some(1),
    }]);
    assert_eq!(apply(&mut st, &r, Instant::now()), Applied::default());
}

#[test]
fn deletes_go_by_id_and_re_creates_win_in_either_order() {
    let orders: [&[usize]; 3] = [&[0, 1], &[1, 0], &[1]];
    for order in orders {
        let mut st = state();
        let old = st.table.ino_of("top.txt").unwrap();
        let all = [deleted("T", "R"), changed(file("T2", "top.txt", 5), "R")];
        let changes = order.iter().map(|i| all[*i].clone()).collect();
        let out = apply(&mut st, &round(changes), Instant::now());
        let now = st.table.ino_of("top.txt").expect("the new file shows");
        assert_eq!(id_at(&st, "top.txt").as_deref(), Some("T2"), "{order:?}");
        assert_ne!(now, old, "a new item is a new inode ({order:?})");
        assert!(st.table.get(old).is_none());
        assert!(out
            .forget
            .contains(&Forget::Entry(ROOT_INO, "top.txt".into())));
    }
    // A late delete of the old id never removes the new file.
    let mut st = state();
    apply(
        &mut st,
        &round(vec![changed(file("T2", "top.txt", 5), "R")]),
        Instant::now(),
    );
    apply(&mut st, &round(vec![deleted("T", "R")]), Instant::now());
    assert_eq!(id_at(&st, "top.txt").as_deref(), Some("T2"));
    // A folder's delete takes its subtree; its children's deletes then find nothing.
    let out = apply(
        &mut st,
        &round(vec![
            deleted("D", "R"),
            deleted("A", "D"),
            deleted("E", "S"),
        ]),
        Instant::now(),
    );
    assert!(st.table.ino_of("Docs").is_none());
    assert!(st.table.ino_of("Docs/Sub/deep.txt").is_none());
    assert!(out.relist.is_empty(), "{out:?}");
}

#[test]
fn the_last_occurrence_wins_and_parents_may_come_later() {
    let mut st = state();
    let out = apply(
        &mut st,
        &round(vec![
            changed(file("F", "in-new.txt", 1), "NEW"),
            changed(file("A", "first.txt", 1), "D"),
            changed(folder("NEW", "New"), "R"),
            deleted("A", "D"),
            changed(file("A", "a.txt", 4), "D"),
        ]),
        Instant::now(),
    );
    assert_eq!(id_at(&st, "Docs/a.txt").as_deref(), Some("A"));
    assert!(st.table.ino_of("Docs/first.txt").is_none());
    assert_eq!(
        st.table
            .get(st.table.ino_of("Docs/a.txt").unwrap())
            .unwrap()
            .remote
            .as_ref()
            .unwrap()
            .size,
        4
    );
    assert_eq!(id_at(&st, "New").as_deref(), Some("NEW"));
    assert!(
        st.table.ino_of("New/in-new.txt").is_none(),
        "New is not listed: its file is found when it is"
    );
    assert!(out.relist.is_empty(), "the parent came later in the round");
}

#[test]
fn local_content_is_never_clobbered() {
    let mut st = state();
    let a = st.table.ino_of("Docs/a.txt").unwrap();
    st.table.get_mut(a).unwrap().local = Some(LocalFile {
        spool: "/spool/a".into(),
        size: 3,
        mtime: SystemTime::UNIX_EPOCH,
        writers: 0,
        dirty: false,
        queued: true,
        queued_mtime: None,
        failed: None,
        base_etag: None,
    });
    let sub = st.table.ino_of("Docs/Sub").unwrap();
    apply(
        &mut st,
        &round(vec![
            changed(file("A", "a.txt", 99), "D"),
            changed(folder("D", "Moved"), "R"),
            deleted("S", "D"),
        ]),
        Instant::now(),
    );
    let n = st.table.get(a).unwrap();
    assert_eq!(
        n.path, "Docs/a.txt",
        "a folder with pending content is not moved"
    );
    assert_eq!(n.remote.as_ref().unwrap().size, 1);
    assert!(st.table.get(sub).is_none(), "the rest is applied");
    // A delete of the folder keeps the pending file and the folder above it.
    apply(&mut st, &round(vec![deleted("D", "R")]), Instant::now());
    assert_eq!(st.table.ino_of("Docs/a.txt"), Some(a));
    assert!(st
        .table
        .get(st.table.ino_of("Docs").unwrap())
        .unwrap()
        .listed
        .is_none());
}

#[test]
fn a_missing_delete_shows_in_the_folder_child_count() {
    let mut st = state();
    let docs = st.table.ino_of("Docs").unwrap();
    let r = |n| {
        round(vec![DeltaChange::Changed {
            item: folder("D", "Docs"),
            parent_id: Some("R".into()),
            child_count: Some(n),
        }])
    };
    assert!(apply(&mut st, &r(2), Instant::now()).relist.is_empty());
    assert_eq!(apply(&mut st, &r(1), Instant::now()).relist, vec![docs]);
    // Listed again: the child the server no longer has goes, the kernel is told.
    let forget = merge_listing(&mut st, docs, "Docs", &[folder("S", "Sub")], Instant::now());
    assert_eq!(forget, vec![Forget::Entry(docs, "a.txt".into())]);
    assert!(st.table.ino_of("Docs/a.txt").is_none());
    assert!(st.table.ino_of("Docs/Sub/deep.txt").is_some());
    // A listing finding another item under a known name: a new inode.
    let sub = st.table.ino_of("Docs/Sub").unwrap();
    let forget = merge_listing(
        &mut st,
        docs,
        "Docs",
        &[folder("S2", "Sub")],
        Instant::now(),
    );
    assert_eq!(forget, vec![Forget::Entry(docs, "Sub".into())]);
    assert_ne!(st.table.ino_of("Docs/Sub"), Some(sub));
    assert!(st.table.ino_of("Docs/Sub/deep.txt").is_none());
}

#[test]
fn stale_folder_forgets_its_children() {
    let mut st = state();
    let sub = st.table.ino_of("Docs/Sub").unwrap();
    let f = stale_folder(&mut st, sub);
    assert_eq!(
        f,
        vec![Forget::Inode(sub), Forget::Entry(sub, "deep.txt".into())]
    );
    assert!(st.table.get(sub).unwrap().listed.is_none());
}
