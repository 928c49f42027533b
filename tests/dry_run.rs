//! `--dry-run` for `backup` and `logs`: they say what would be read and written where, and change
//! nothing anywhere (no archive, no helper left, no rotated or state file, no upload).

mod common;

use common::{dest_dir, dockyard, App};

#[test]
fn backup_dry_run_names_paths_mounts_and_objects_and_writes_nothing() {
    let app = App::running("dry-backup", &["/srv/media", "/srv/logs"]);
    app.sh("echo a > /srv/media/a; echo l > /srv/logs/x.log");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let out = dockyard(&["backup", &app.name, "--to", d, "--dry-run", "--tag", "t1"]).ok();
    for want in [
        format!("would back up container {} (running):", app.name),
        "  /srv/logs (from volume ".into(),
        "  /srv/media (from volume ".into(),
        format!("to local directory {d}: {}-", app.name),
        ".tar.zst and ".into(),
        "(it holds 0 backup(s) of this container)".into(),
        "zstd level 3, tags t1; nothing was written".into(),
    ] {
        assert!(out.contains(want.as_str()), "no {want:?} in:\n{out}");
    }
    assert!(!dest.exists(), "the destination was created");
    assert!(app.helpers().is_empty(), "a helper was left");

    let json = dockyard(&[
        "backup",
        &app.name,
        "--to",
        d,
        "--dry-run",
        "--json",
        "--path",
        "/srv/media",
    ])
    .ok();
    let doc = common::one_document(&json);
    assert_eq!(doc["dry_run"], true);
    assert_eq!(doc["paths"].as_array().unwrap().len(), 1);
    assert_eq!(doc["paths"][0]["path"], "/srv/media");
    let names: Vec<&str> = doc["would_write"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names[0].ends_with(".tar.zst") && names[1].ends_with(".json"),
        "{names:?}"
    );
    assert!(!dest.exists());
}

#[test]
fn logs_dry_run_says_what_would_rotate_and_ship_and_changes_nothing() {
    let app = App::running("dry-logs", &["/srv/logs"]);
    app.sh(
        "head -c 4096 /dev/zero | tr '\\0' x > /srv/logs/app.log; echo small > /srv/logs/tiny.log; \
         echo old > /srv/logs/app.log.20260101T000000.000Z",
    );
    let before = app.tree("/srv/logs");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let out = dockyard(&[
        "logs",
        &app.name,
        "--to",
        d,
        "--min-size",
        "1k",
        "--dry-run",
    ])
    .ok();
    for want in [
        "would rotate in /srv/logs of ",
        "app.log (4.00 KiB), then signal:USR1",
        &format!("would ship to {d}: app.log (4.00 KiB), app.log.20260101T000000.000Z (4 B)"),
        "nothing was changed",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(
        !out.contains("tiny.log"),
        "tiny.log is under --min-size:\n{out}"
    );
    assert_eq!(app.tree("/srv/logs"), before, "the log directory changed");
    assert!(!dest.exists(), "the destination was written");
    assert!(app.helpers().is_empty(), "a helper was left");
    let json = dockyard(&["logs", "rotate", &app.name, "--dry-run", "--json"]).ok();
    let doc = common::one_document(&json);
    assert_eq!(doc["would_rotate"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(doc["ship_to"], serde_json::Value::Null);
    assert_eq!(app.tree("/srv/logs"), before);
}
