//! Odd mount shapes (issue 9, points 14-15), against a real engine: a volume mounted inside
//! another, and a single file bind-mounted from the host.

mod common;

use common::{dest_dir, dockyard, list, App};

#[test]
fn nested_mounts_are_backed_up_once_and_restored_around_each_other() {
    let app = App::running("nested", &["/srv", "/srv/media"]);
    app.sh(
        "echo top > /srv/a && mkdir /srv/sub && echo s > /srv/sub/x && echo photo > /srv/media/b",
    );
    let before = app.tree("/srv");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let m = &list(&dest)[0];
    let paths: Vec<&str> = m["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["/srv", "/srv/media"]);
    // /srv, a, sub, sub/x + /srv/media, b: the nested volume's files are stored once.
    assert_eq!(m["entries"], 6, "{m}");

    app.sh(
        "rm -r /srv/a /srv/sub /srv/media/b && echo new > /srv/new && echo new > /srv/media/new",
    );
    // With a safety backup (of the same path set) ...
    let out = dockyard(&["restore", &app.name, "--from", d]).ok();
    assert!(out.contains("safety backup of what was there"), "{out}");
    assert_eq!(app.tree("/srv"), before);
    let safety = list(&dest)
        .into_iter()
        .find(|m| m["tags"][0] == "pre-restore")
        .expect("a safety backup");
    assert_eq!(safety["paths"].as_array().unwrap().len(), 2, "{safety}");
    // ... and without one, the swap leaves the nested mount point in place.
    app.sh("rm -r /srv/a && echo again > /srv/again");
    dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--archive",
        m["id"].as_str().unwrap(),
        "--no-safety-backup",
    ])
    .ok();
    assert_eq!(app.tree("/srv"), before);
    assert!(app.helpers().is_empty());
}

#[test]
fn a_single_file_bind_mount_is_backed_up_saved_and_restored() {
    let host = tempfile::tempdir().unwrap();
    let conf = host.path().join("app.conf");
    std::fs::write(&conf, "setting = 1\n").unwrap();
    let bind = format!("{}:/etc/app.conf", conf.display());
    let app = App::create_with(
        "onefile",
        &["-v", &bind, "-v", "/srv/media"],
        common::image(),
    );
    app.start();
    app.sh("echo photo > /srv/media/p");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = list(&dest)[0]["id"].as_str().unwrap().to_string();

    std::fs::write(&conf, "setting = 2\n").unwrap();
    let out = dockyard(&["restore", &app.name, "--from", d, "--archive", &id]).ok();
    assert!(
        out.contains("/etc/app.conf is a single-file bind mount"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "setting = 1\n");
    let leftovers: Vec<_> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec!["app.conf"], "staged file left beside it");
    // The safety backup holds the file as it was.
    let safety = list(&dest)
        .into_iter()
        .find(|m| m["tags"][0] == "pre-restore")
        .expect("a safety backup");
    assert!(
        safety["paths"].to_string().contains("/etc/app.conf"),
        "{safety}"
    );
    common::docker(&["restart", "-t", "0", &app.name]);
    assert_eq!(app.sh("cat /etc/app.conf"), "setting = 1\n");
    let sid = safety["id"].as_str().unwrap();
    dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--archive",
        sid,
        "--no-safety-backup",
    ])
    .ok();
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "setting = 2\n");
    assert!(app.helpers().is_empty());
}
