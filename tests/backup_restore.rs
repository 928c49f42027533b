//! Stories of the core path against a real Docker Engine: back up, verify, restore, and the ways
//! it must fail cleanly.

mod common;

use common::{dest_dir, dockyard, files, list, start_slow_backup, App, FIXTURE};

#[test]
fn round_trip_into_a_new_container_keeps_bytes_and_metadata() {
    let app = App::running("rt-app", &["/srv/media", "/srv/logs"]);
    app.sh(FIXTURE);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();

    let out = dockyard(&["backup", &app.name, "--to", d]).ok();
    assert!(out.contains(&format!("backed up {}", app.name)), "{out}");
    let listed = list(&dest);
    assert_eq!(listed.len(), 1);
    let m = &listed[0];
    assert_eq!(m["container"], app.name.as_str());
    assert!(m["tar_bytes"].as_u64().unwrap() > 3 * 1024 * 1024, "{m}");
    assert_eq!(m["paths"].as_array().unwrap().len(), 2);
    let id = m["id"].as_str().unwrap();
    let meta = std::fs::metadata(dest.join(format!("{id}.tar.zst"))).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert_eq!(meta.len(), m["size"].as_u64().unwrap());
    assert!(dockyard(&["verify", id, "--to", d]).ok().starts_with("ok "));

    // Restore into a container that was created from the same image and never started.
    let fresh = App::created("rt-new", &["/srv/media", "/srv/logs"]);
    let out = dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--container",
        &app.name,
    ])
    .ok();
    assert!(out.contains("restored"), "{out}");
    fresh.start();
    for path in ["/srv/media", "/srv/logs"] {
        let (want, got) = (app.tree(path), fresh.tree(path));
        assert!(want.lines().count() > 10 || path == "/srv/logs", "{want}");
        assert_eq!(got, want, "restored {path} differs from the original");
    }
    // An empty target takes no safety backup.
    assert_eq!(list(&dest).len(), 1);
    assert!(
        app.helpers().is_empty() && fresh.helpers().is_empty(),
        "helper containers left behind"
    );
}

#[test]
fn restore_over_live_data_removes_extras_after_a_listed_safety_backup() {
    let app = App::running("over", &["/srv/media"]);
    app.sh("echo one > /srv/media/a && mkdir /srv/media/d && echo two > /srv/media/d/b");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let before = app.tree("/srv/media");

    app.sh("echo changed > /srv/media/a && echo extra > /srv/media/extra && rm -r /srv/media/d");
    let dry = dockyard(&["restore", &app.name, "--from", d, "--dry-run"]).ok();
    assert!(
        dry.contains("- extra") && dry.contains("~ a") && dry.contains("+ d/b"),
        "{dry}"
    );
    assert!(
        app.sh("cat /srv/media/extra").contains("extra"),
        "dry run changed the volume"
    );

    dockyard(&["restore", &app.name, "--from", d]).ok();
    assert_eq!(app.tree("/srv/media"), before);
    let listed = list(&dest);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let safety = listed
        .iter()
        .find(|m| m["tags"][0] == "pre-restore")
        .expect("a pre-restore backup is listed");
    // The safety backup holds what was there before the restore.
    let fresh = App::created("over-check", &["/srv/media"]);
    let sid = safety["id"].as_str().unwrap();
    dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--archive",
        sid,
        "--container",
        &app.name,
    ])
    .ok();
    fresh.start();
    assert_eq!(fresh.sh("cat /srv/media/extra"), "extra\n");
    assert!(app.helpers().is_empty());
}

#[test]
fn corrupted_archive_fails_verify_and_restore_without_touching_the_target() {
    let app = App::running("corrupt", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/blob bs=1024 count=512 2>/dev/null");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = list(&dest)[0]["id"].as_str().unwrap().to_string();
    let archive = dest.join(format!("{id}.tar.zst"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&archive, bytes).unwrap();

    let v = dockyard(&["verify", &id, "--to", d]);
    assert_eq!(v.code, 5, "{}", v.stderr);
    assert!(
        v.stderr.contains(&id) && v.stderr.contains("sha256 mismatch"),
        "{}",
        v.stderr
    );

    app.sh("echo new > /srv/media/added-later");
    let before = app.tree("/srv/media");
    // Damage in the middle fails the staging pass; damage at the very first byte fails the
    // planning read: either way the error is the checksum's and nothing changes.
    for damage_at_start in [false, true] {
        if damage_at_start {
            let mut bytes = std::fs::read(&archive).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&archive, bytes).unwrap();
        }
        let r = dockyard(&["restore", &app.name, "--from", d]);
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert!(
            r.stderr.contains("failed verification") && r.stderr.contains("sha256 mismatch"),
            "{}",
            r.stderr
        );
        assert_eq!(
            app.tree("/srv/media"),
            before,
            "a failed restore changed the target"
        );
    }
    assert_eq!(
        list(&dest).len(),
        1,
        "no safety backup should be taken for a bad archive"
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn unknown_container_is_a_docker_error_naming_it() {
    let (_tmp, dest) = dest_dir();
    let name = common::unique("missing");
    let r = dockyard(&["backup", &name, "--to", dest.to_str().unwrap()]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("no such container: \"{name}\"")),
        "{}",
        r.stderr
    );
    assert!(files(&dest).is_empty());
}

#[test]
fn container_without_volumes_is_refused_by_name() {
    let app = App::created("novol", &[]);
    let (_tmp, dest) = dest_dir();
    let r = dockyard(&["backup", &app.name, "--to", dest.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("container \"{}\" has no volumes", app.name)),
        "{}",
        r.stderr
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn unmounted_path_lists_the_mounts() {
    let app = App::created("unmounted", &["/srv/media", "/srv/logs"]);
    let (_tmp, dest) = dest_dir();
    let r = dockyard(&[
        "backup",
        &app.name,
        "--path",
        "/etc",
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    for want in [
        "path /etc",
        &app.name,
        "/srv/media (volume)",
        "/srv/logs (volume)",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?} in: {}", r.stderr);
    }
    assert!(app.helpers().is_empty());
}

#[test]
fn unwritable_destination_is_a_destination_error_and_leaves_no_helper() {
    let app = App::created("unwritable", &["/srv/media"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let dest = file.join("backups");
    let r = dockyard(&["backup", &app.name, "--to", dest.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains(dest.to_str().unwrap()), "{}", r.stderr);
    assert!(app.helpers().is_empty());
}

#[test]
fn unknown_url_scheme_is_a_usage_error() {
    let r = dockyard(&["backup", "whatever", "--to", "ftp://host/dir"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("unknown destination scheme \"ftp\""),
        "{}",
        r.stderr
    );
}

#[test]
fn restore_of_a_path_the_target_lacks_names_container_and_path() {
    let app = App::running("nolack", &["/srv/media"]);
    let other = App::created("lack", &["/srv/logs"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let r = dockyard(&[
        "restore",
        &other.name,
        "--from",
        d,
        "--container",
        &app.name,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&other.name) && r.stderr.contains("/srv/media"),
        "{}",
        r.stderr
    );
}

#[test]
fn sigkill_mid_backup_leaves_nothing_listed_and_the_next_run_cleans_up() {
    let app = App::running("killed", &["/srv/media", "/srv/logs"]);
    app.sh("echo x > /srv/logs/l");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap().to_string();
    let mut child = start_slow_backup(&app, &dest, &[]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert!(list(&dest).is_empty(), "a killed backup is listed");
    let left = files(&dest);
    assert!(
        left.iter().all(|f| f.ends_with(".partial")),
        "file under a final name: {left:?}"
    );
    assert!(
        !app.helpers().is_empty(),
        "the killed run's helper (and its lease) should still be there for the next run to remove"
    );

    dockyard(&["backup", &app.name, "--to", &d, "--path", "/srv/logs"]).ok();
    assert!(
        app.helpers().is_empty(),
        "stale helper not removed by the next run"
    );
    assert!(
        !files(&dest).iter().any(|f| f.ends_with(".partial")),
        "stale temp file not removed: {:?}",
        files(&dest)
    );
    assert_eq!(list(&dest).len(), 1);
}

#[test]
fn sigterm_mid_backup_cleans_up_before_exiting() {
    let app = App::running("termed", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let child = start_slow_backup(&app, &dest, &[]);
    common::sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(app.helpers().is_empty(), "helper left after SIGTERM");
    assert!(
        files(&dest).is_empty(),
        "files left after SIGTERM: {:?}",
        files(&dest)
    );
}
