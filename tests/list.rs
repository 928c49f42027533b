//! `dockyard list` as a person reads it: columns as wide as their content, each backup's paths in
//! one order whatever the manifest's, and an empty answer that says why.

mod common;

use common::{dest_dir, dockyard};

/// Writes a manifest (and no archive: `list` reads manifests only) for `container`.
fn manifest(dir: &std::path::Path, id: &str, container: &str, paths: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let paths: Vec<_> = paths
        .iter()
        .map(|p| serde_json::json!({"path": p, "mount": {"destination": p, "type": "volume"}}))
        .collect();
    let m = serde_json::json!({
        "id": id, "container": container, "container_id": "c", "image": "i", "image_id": "i",
        "host": "h", "paths": paths, "created": "2026-01-01T00:00:00Z", "tags": ["nightly"],
        "tool_version": "0", "size": 2048, "sha256": "00", "tar_bytes": 1, "entries": 1,
        "level": 3, "archive": format!("{id}.tar.zst")
    });
    std::fs::write(dir.join(format!("{id}.json")), m.to_string()).unwrap();
}

#[test]
fn columns_fit_their_content_and_paths_keep_one_order() {
    let (_tmp, dest) = dest_dir();
    let id = "web-20260101T000000Z-00aa";
    manifest(&dest, id, "web", &["/srv/media", "/srv/logs"]);
    let out = dockyard(&["list", "--to", dest.to_str().unwrap()]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let width = id.len();
    assert_eq!(
        &lines[0][..width + 2],
        format!("{:<width$}  ", "ID"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{id}  2026-01-01 00:00:00  2.00 KiB  /srv/logs,/srv/media  nightly"
        )),
        "{out}"
    );
}

#[test]
fn an_empty_list_says_why() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let out = dockyard(&["list", "--to", d]).ok();
    assert_eq!(
        out.trim(),
        format!("no backups: directory {d} does not exist")
    );
    manifest(&dest, "web-20260101T000000Z-00aa", "web", &["/srv/media"]);
    manifest(&dest, "web-20260102T000000Z-00bb", "web", &["/srv/media"]);
    manifest(
        &dest,
        "db-20260102T000000Z-00cc",
        "db",
        &["/var/lib/postgresql"],
    );
    let out = dockyard(&["list", "--to", d, "--container", "shop"]).ok();
    assert_eq!(
        out.trim(),
        format!("no backups of container shop at local directory {d}; 3 backup(s) of other containers here: db (1), web (2)")
    );
}
