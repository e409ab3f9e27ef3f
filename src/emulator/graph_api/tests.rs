//! Unit tests of the route parser (every addressing form, refused paths) and of `Range`
//! parsing for downloads.

use super::*;

fn item(drive: DriveSel, base: Base, rel: &[&str], op: ItemOp) -> Route {
    Route::Item {
        drive,
        base,
        rel: rel.iter().map(|s| s.to_string()).collect(),
        op,
    }
}

#[test]
fn routes() {
    let d = || DriveSel::Id("b!x".into());
    for (path, want) in [
        (
            "/sites/emulator.sharepoint.test:/sites/Team",
            Route::SiteByPath {
                host: "emulator.sharepoint.test".into(),
                path: "/sites/Team".into(),
            },
        ),
        (
            "/sites/emulator.sharepoint.test:/sites/Team:",
            Route::SiteByPath {
                host: "emulator.sharepoint.test".into(),
                path: "/sites/Team".into(),
            },
        ),
        ("/sites/a,b,c", Route::Site("a,b,c".into())),
        ("/sites/a%2Cb/drives", Route::SiteDrives("a,b".into())),
        ("/drives/b!x", Route::Drive(d())),
        ("/drives/b!x/root", item(d(), Base::Root, &[], ItemOp::Item)),
        (
            "/drives/b!x/root/children",
            item(d(), Base::Root, &[], ItemOp::Children),
        ),
        (
            "/drives/b!x/root:/Uploads/a%20b.txt",
            item(d(), Base::Root, &["Uploads", "a b.txt"], ItemOp::Item),
        ),
        (
            "/drives/b!x/root:/Uploads/a%20b.txt:",
            item(d(), Base::Root, &["Uploads", "a b.txt"], ItemOp::Item),
        ),
        (
            "/drives/b!x/root:/Up/%C3%A9%23%25.bin:/createUploadSession",
            item(
                d(),
                Base::Root,
                &["Up", "é#%.bin"],
                ItemOp::CreateUploadSession,
            ),
        ),
        (
            "/sites/s/drive/items/ID1:/x.bin:/content",
            item(
                DriveSel::Default,
                Base::Id("ID1".into()),
                &["x.bin"],
                ItemOp::Content,
            ),
        ),
        (
            "/sites/s/drives/b!x/items/ID1/children",
            item(d(), Base::Id("ID1".into()), &[], ItemOp::Children),
        ),
        (
            "/drives/b!x/items/ID1/createUploadSession",
            item(
                d(),
                Base::Id("ID1".into()),
                &[],
                ItemOp::CreateUploadSession,
            ),
        ),
    ] {
        assert_eq!(parse_route(path), Ok(want), "{path}");
    }
    for bad in [
        "/me/drive",
        "/drives/b!x/rootx",
        "/drives/b!x/root:/a:/bogus",
        "/drives/b!x/root:/a/%2E%2E/b",
        "/drives/b!x/root:/%FF",
    ] {
        assert!(parse_route(bad).is_err(), "{bad}");
    }
}

#[test]
fn ranges() {
    for (v, want) in [
        ("bytes=0-9", Ok(Some((0, 10)))),
        ("bytes=90-", Ok(Some((90, 10)))),
        ("bytes=-5", Ok(Some((95, 5)))),
        ("bytes=95-200", Ok(Some((95, 5)))),
        ("bytes=100-", Err(Unsatisfiable)),
        ("bytes=5-1", Err(Unsatisfiable)),
        ("items=0-1", Ok(None)),
    ] {
        assert_eq!(parse_range(v, 100), want, "{v}");
    }
}
