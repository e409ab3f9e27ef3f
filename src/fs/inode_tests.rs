//! Unit tests of the inode table's per-folder index (`inode.rs`): after any sequence of
//! inserts, renames, removals and detaches, the index finds exactly the attached nodes under
//! their folded paths, and `children` agrees with a scan of the whole table.

use super::*;

/// The children of `dir` by a scan of every node (what `children` did before the index).
fn scanned_children(t: &InodeTable, dir: &str) -> Vec<u64> {
    let key = fold(dir);
    let mut v: Vec<u64> = t
        .iter()
        .filter(|(ino, n)| **ino != ROOT_INO && !n.unlinked && fold(n.parent_path()) == key)
        .map(|(ino, _)| *ino)
        .collect();
    v.sort_unstable();
    v
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Index and table agree: every attached node is found under its path, nothing else is
/// indexed, and every folder lists the same children both ways.
fn assert_consistent(t: &InodeTable) {
    let mut indexed = 0;
    for m in t.dirs.values() {
        indexed += m.len();
        assert!(!m.is_empty(), "no empty folder maps are kept");
    }
    let attached: Vec<(&u64, &Node)> = t
        .iter()
        .filter(|(i, n)| **i != ROOT_INO && !n.unlinked)
        .collect();
    assert_eq!(indexed, attached.len(), "one index entry per attached node");
    for (ino, n) in attached {
        assert_eq!(t.ino_of(&n.path), Some(*ino), "{}", n.path);
        let parent = n.parent_path().to_string();
        assert_eq!(
            sorted(t.children(&parent)),
            scanned_children(t, &parent),
            "children of {parent:?}"
        );
    }
    assert_eq!(sorted(t.children("")), scanned_children(t, ""));
}

/// A small deterministic generator (no dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
fn index_stays_consistent_through_random_operations() {
    let names = ["a", "B", "ab", "a b", "a-c", "Ä", "x.txt", "Y.TXT"];
    let mut rng = Lcg(7);
    let mut t = InodeTable::new();
    let path = |rng: &mut Lcg| {
        let depth = 1 + rng.next(3);
        (0..depth)
            .map(|_| names[rng.next(names.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join("/")
    };
    for step in 0..3000 {
        let p = path(&mut rng);
        match rng.next(10) {
            0..=4 => {
                let kind = if rng.next(2) == 0 {
                    NodeKind::Dir
                } else {
                    NodeKind::File
                };
                t.upsert(&p, kind);
            }
            5 | 6 => t.remove_tree(&p),
            7 | 8 => {
                let to = path(&mut rng);
                let (f, o) = (fold(&p), fold(&to));
                // Free: nothing at or below the target (not even a node whose folder is not
                // in the table), as the core guarantees.
                let free = t.ino_of(&to).is_none()
                    && !t
                        .dirs
                        .keys()
                        .any(|k| *k == o || k.starts_with(&format!("{o}/")));
                let inside = o == f || o.starts_with(&format!("{f}/"));
                if t.ino_of(&p).is_some() && free && !inside {
                    t.rename_tree(&p, &to);
                }
            }
            _ => {
                if let Some(ino) = t.ino_of(&p) {
                    t.detach(ino);
                    if rng.next(2) == 0 {
                        t.forget(ino);
                    }
                }
            }
        }
        if step % 50 == 0 {
            assert_consistent(&t);
        }
    }
    assert_consistent(&t);
}

#[test]
fn prefix_siblings_are_not_part_of_a_subtree() {
    let mut t = InodeTable::new();
    let a = t.upsert("a", NodeKind::Dir);
    let inner = t.upsert("a/x", NodeKind::File);
    let deep = t.upsert("a/b/c/d.txt", NodeKind::File); // no node for a/b or a/b/c
    let sib1 = t.upsert("a b", NodeKind::File);
    let sib2 = t.upsert("a-c/x", NodeKind::File);
    let sib3 = t.upsert("ab/x", NodeKind::File);
    t.rename_tree("a", "z");
    assert_eq!(t.ino_of("z"), Some(a));
    assert_eq!(t.ino_of("Z/X"), Some(inner));
    assert_eq!(t.ino_of("z/b/c/d.txt"), Some(deep));
    assert_eq!(t.get(deep).map(|n| n.path.as_str()), Some("z/b/c/d.txt"));
    for (p, ino) in [("a b", sib1), ("a-c/x", sib2), ("ab/x", sib3)] {
        assert_eq!(t.ino_of(p), Some(ino), "{p} untouched");
    }
    t.remove_tree("z");
    assert!(t.get(deep).is_none() && t.get(inner).is_none() && t.get(a).is_none());
    assert_eq!(t.children("a-c"), vec![sib2]);
    assert_consistent(&t);
}

#[test]
fn a_big_folder_is_listed_and_searched_through_its_own_index() {
    let mut t = InodeTable::new();
    t.upsert("big", NodeKind::Dir);
    for i in 0..20_000 {
        t.upsert(&format!("big/f{i}.bin"), NodeKind::File);
    }
    for i in 0..100 {
        t.upsert(&format!("small/f{i}"), NodeKind::File);
    }
    assert_eq!(t.children("BIG").len(), 20_000);
    assert_eq!(t.children("small").len(), 100);
    assert!(t.ino_of("big/missing").is_none());
    assert_eq!(t.clash_of("big/F1.bin"), None, "same fold: not a clash");
}
