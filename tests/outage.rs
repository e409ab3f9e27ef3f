//! Network loss: with SharePoint unreachable, writes still land in the spool (lookups answer
//! from the cache), the upload shows as retrying, and it completes when SharePoint returns.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;
use shareuplift::emulator::{Emulator, EmulatorOptions};

#[test]
fn writes_survive_an_outage_and_upload_when_sharepoint_returns() {
    let mut emu = Emu::start(None);
    let m = Mount::start(&emu, "");
    fs::create_dir(m.path("out")).unwrap();
    let _ = fs::read_dir(m.path("out")).unwrap().count();
    let info = emu.info.clone();
    emu.stop();
    // Let the cached listing go stale, so lookups really try the network.
    std::thread::sleep(Duration::from_secs(3));

    let src = emu.dir.path().join("during.bin");
    random_file(&src, 5 * 1024 * 1024, 77);
    let t = Instant::now();
    sh(&format!(
        "cp '{}' '{}'",
        src.display(),
        m.path("out/during.bin").display()
    ));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "cp waited for the network"
    );
    assert_eq!(
        fs::metadata(m.path("out/during.bin")).unwrap().len(),
        5 * 1024 * 1024
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let u = m.upload("out/during.bin").expect("status entry");
        if u["state"] == "retrying" {
            assert!(
                u["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("connection"),
                "{u}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never shown retrying: {u}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SharePoint comes back on the same address with the same content.
    let back = Emulator::start(EmulatorOptions {
        data_dir: emu.dir.path().join("emu"),
        port: info.port,
        password: Some(info.password.clone()),
        client_secret: Some(info.client_secret.clone()),
        ..Default::default()
    })
    .expect("restart emulator");
    m.wait_state("out/during.bin", "done", Duration::from_secs(120));
    let item = back
        .items()
        .into_iter()
        .find(|i| i.path == "Uploads/out/during.bin")
        .expect("uploaded after the outage");
    assert_eq!(item.quick_xor_hash.as_deref(), Some(qxh(&src).as_str()));
    assert!(back.violations().is_empty(), "{:?}", back.violations());
}
