//! The credentials vault as an operator meets it: the master key file, a
//! wrong key, keys from the environment, and a master-key rotation killed
//! half-way and resumed while the server keeps serving.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use common::{Proc, call, error_line, local_addr, patchbay, run, serve};
use serde_json::json;

fn stripe(secret: &str) -> serde_json::Value {
    json!({ "values": { "publishableKey": "pk_1", "secretKey": secret, "webhookSecret": format!("whsec_{secret}") } })
}

#[test]
fn a_wrong_master_key_stops_the_server_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let (mut p, admin) = serve(dir.path(), addr, &[]);
    let (_, t) = common::tenant(addr, &admin.unwrap(), "acme");
    assert_eq!(
        call(
            addr,
            "PUT",
            "/api/integrations/gateway_stripe/credentials",
            &t,
            Some(&stripe("sk_keep"))
        )
        .0,
        200
    );
    assert!(p.stop().success());

    let key = dir.path().join("master.key");
    let original = std::fs::read(&key).unwrap();
    let db = dir.path().join("patchbay.db");
    let db_before = std::fs::read(&db).unwrap();
    // Another key in its place.
    std::fs::remove_file(&key).unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let out = run(patchbay(
        &[
            "keys",
            "rotate",
            "--data-dir",
            nowhere.path().join("none").to_str().unwrap(),
        ],
        Path::new("/"),
    ));
    assert!(error_line(&out).contains("no Patchbay database at"));
    assert!(
        !nowhere.path().join("none").exists(),
        "administrative commands create nothing"
    );
    let other = tempfile::tempdir().unwrap();
    let (mut q, _) = serve(other.path(), local_addr(), &[]);
    assert!(q.stop().success());
    std::fs::copy(other.path().join("master.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wrong_key = std::fs::read(&key).unwrap();

    let out = run(patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    ));
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(line.contains("does not match this database"), "{line}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        db_before,
        "the database file is untouched"
    );
    assert_eq!(
        std::fs::read(&key).unwrap(),
        wrong_key,
        "the key file is untouched"
    );

    // A lost key file is not replaced by a new one.
    std::fs::remove_file(&key).unwrap();
    let out = run(patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    ));
    assert!(error_line(&out).contains("does not exist"));
    assert!(!key.exists());

    // The right key, from the environment instead of the file, serves again.
    std::fs::write(&key, &original).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    ));
    let line = error_line(&out);
    assert!(
        line.contains("readable by others") && line.contains("chmod 600"),
        "{line}"
    );
    let inline: String = String::from_utf8(original)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = patchbay(
        &[
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        Path::new("/"),
    );
    cmd.env("PATCHBAY_MASTER_KEY", &inline);
    let mut p = Proc::spawn(cmd);
    p.ready(addr);
    let (status, masked, _) = call(
        addr,
        "GET",
        "/api/integrations/gateway_stripe/credentials",
        &t,
        None,
    );
    assert_eq!(
        (status, masked["values"]["publishableKey"].as_str()),
        (200, Some("pk_1"))
    );
    assert!(p.stop().success());
    assert!(
        !p.stderr().contains(&inline[..20]),
        "the key never reaches the log"
    );
}

#[test]
fn a_rotation_killed_half_way_resumes_and_everything_still_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let addr = local_addr();
    let (mut server, admin) = serve(dir.path(), addr, &[]);
    let admin = admin.unwrap();
    let mut tenants = Vec::new();
    for n in 0..30 {
        let (_, t) = common::tenant(addr, &admin, &format!("tenant-{n}"));
        assert_eq!(
            call(
                addr,
                "PUT",
                "/api/integrations/gateway_stripe/credentials",
                &t,
                Some(&stripe(&format!("sk_{n}")))
            )
            .0,
            200
        );
        let s3 = json!({ "values": { "region": "eu", "bucket": format!("b{n}"), "accessKeyId": "AK", "secretAccessKey": format!("s3_{n}") } });
        assert_eq!(
            call(
                addr,
                "PUT",
                "/api/integrations/storage_s3/credentials",
                &t,
                Some(&s3)
            )
            .0,
            200
        );
        tenants.push(t);
    }
    let key = dir.path().join("master.key");
    let keys_before = std::fs::read_to_string(&key).unwrap();
    let data = dir.path().to_str().unwrap().to_owned();

    // Kill the rotation once it is well under way.
    let mut rotation = Proc::spawn(patchbay(
        &[
            "keys",
            "rotate",
            "--data-dir",
            &data,
            "--batch-size",
            "1",
            "--pause-ms",
            "25",
        ],
        Path::new("/"),
    ));
    patchbay_testkit::wait_for(
        "the rotation to be under way",
        Duration::from_secs(60),
        || (rotation.stdout().matches("new data key version").count() >= 8).then_some(()),
    );
    rotation.signal("-KILL");
    rotation.wait(Duration::from_secs(10));
    let mid = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        mid.lines().filter(|l| !l.starts_with('#')).count(),
        2,
        "new and old key both kept mid-way"
    );
    assert!(!rotation.stdout().contains("rotation complete"));

    // The server still serves every credential in the half-rotated state.
    for (n, t) in tenants.iter().enumerate() {
        let (status, m, text) = call(
            addr,
            "GET",
            "/api/integrations/gateway_stripe/credentials",
            t,
            None,
        );
        assert_eq!(status, 200, "{text}");
        assert_eq!(m["values"]["publishableKey"], "pk_1", "tenant {n}");
    }

    // Run it again: it resumes and finishes.
    let out = run(patchbay(
        &["keys", "rotate", "--data-dir", &data],
        Path::new("/"),
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("continuing the rotation") && stdout.contains("rotation complete"),
        "{stdout}"
    );
    let after = std::fs::read_to_string(&key).unwrap();
    let remaining: Vec<&str> = after.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(remaining.len(), 1);
    assert!(
        !keys_before.contains(remaining[0]),
        "the new key replaced the old one"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Every credential still decrypts, through the server that ran throughout…
    for t in &tenants {
        assert_eq!(
            call(
                addr,
                "GET",
                "/api/integrations/storage_s3/credentials",
                t,
                None
            )
            .0,
            200
        );
        assert_eq!(
            call(
                addr,
                "PUT",
                "/api/integrations/gateway_stripe/state",
                t,
                Some(&json!({ "status": "enabled" }))
            )
            .0,
            200,
            "enabling decrypts to check required fields"
        );
    }
    assert!(server.stop().success());
    // …and through a server started afresh with the new key only.
    let (mut server, _) = serve(dir.path(), addr, &[]);
    for t in &tenants {
        assert_eq!(
            call(
                addr,
                "GET",
                "/api/integrations/gateway_stripe/credentials",
                t,
                None
            )
            .0,
            200
        );
    }
    assert!(server.stop().success());
}
