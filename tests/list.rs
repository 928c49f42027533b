//! `dockyard list` as a person reads it: columns as wide as their content, each backup's paths in
//! one order whatever the manifest's, and an empty answer that says why. `list` and `verify` read
//! from `--from` as well as `--to`.

mod common;

use common::{dest_dir, dockyard};

/// A real (forged) backup dated 2026-01-01, tagged `nightly`.
fn manifest(dir: &std::path::Path, id: &str, container: &str, paths: &[&str]) {
    let created = "2026-01-01T00:00:00Z".parse().unwrap();
    common::forge::write_backup_at(dir, id, container, paths, Vec::new(), created, &["nightly"]);
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
    // The size column is as wide as its one value, a plain backup says `-` under ENCRYPTED; the
    // paths sorted whatever the manifest says.
    assert!(
        lines[1].starts_with(&format!("{id}  2026-01-01 00:00:00  ")),
        "{out}"
    );
    assert!(
        lines[1].ends_with(" B  full  -          /srv/logs,/srv/media  nightly"),
        "{out}"
    );
    assert_eq!(lines[0].find("PATHS"), lines[1].find("/srv/logs"), "{out}");
}

#[test]
fn an_empty_list_says_why() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    // A directory that does not exist is no empty destination: a typo, most likely.
    let r = dockyard(&["list", "--to", d]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains(d) && r.stderr.contains("does not exist"),
        "{}",
        r.stderr
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

#[test]
fn a_manifest_whose_name_and_content_disagree_is_reported_and_never_listed_or_verified() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    manifest(&dest, "web-20260101T000000Z-00aa", "web", &["/srv/media"]);
    // Named as web's newest backup, but a backup of shop inside: an attacker's or a bad copy.
    manifest(&dest, "web-20260105T000000Z-00ee", "shop", &["/srv/media"]);
    let r = common::dockyard_env(
        &["list", "--to", d, "--container", "web"],
        &[("RUST_LOG", "dockyard=warn")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("web-20260101T000000Z-00aa"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("00ee"), "{}", r.stdout);
    assert!(
        r.stderr.contains("web-20260105T000000Z-00ee.json")
            && r.stderr
                .contains("its name says container \"web\" but it holds a backup of \"shop\""),
        "{}",
        r.stderr
    );
    let json = common::one_document(&dockyard(&["list", "--json", "--to", d]).ok());
    assert_eq!(json["backups"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(
        json["rejected"][0]["object"], "web-20260105T000000Z-00ee.json",
        "{json}"
    );
    // Nor is it shop's: shop has no backup here.
    let out = dockyard(&["list", "--to", d, "--container", "shop"]).ok();
    assert!(out.starts_with("no backups of container shop"), "{out}");
    let r = dockyard(&["verify", "latest", "--container", "shop", "--to", d]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn oversized_manifest_objects_are_reported_and_the_rest_listed_in_bounded_memory() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    manifest(&dest, "web-20260101T000000Z-00aa", "web", &["/srv/media"]);
    manifest(
        &dest,
        "db-20260102T000000Z-00bb",
        "db",
        &["/var/lib/postgresql"],
    );
    // Named like manifests: one of 2 MiB, one over the old 16 MiB limit, and twenty of 15 MiB
    // (sparse, so the disk holds nothing; a reader still sees every byte).
    let mut big = vec![("web-20260103T000000Z-0002.json".to_string(), 2u64 << 20)];
    big.push(("web-20260103T000000Z-0017.json".to_string(), 17 << 20));
    for i in 0..20 {
        big.push((format!("web-20260104T0000{i:02}Z-0015.json"), 15 << 20));
    }
    for (name, len) in &big {
        let f = std::fs::File::create(dest.join(name)).unwrap();
        f.set_len(*len).unwrap();
    }
    let (code, stdout, stderr, rss_kib) =
        common::measure::run_measured(&["list", "--to", d, "--json"], &[]);
    eprintln!(
        "list of {} oversized manifests: peak RSS {} MiB",
        big.len(),
        rss_kib / 1024
    );
    assert_eq!(code, 0, "{stderr}");
    let json = common::one_document(&stdout);
    let listed: Vec<&str> = json["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["web-20260101T000000Z-00aa", "db-20260102T000000Z-00bb"],
        "{json}"
    );
    let rejected = json["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), big.len(), "{json}");
    for (name, _) in &big {
        let r = rejected
            .iter()
            .find(|r| r["object"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not reported: {json}"));
        assert!(r["reason"].as_str().unwrap().contains("1 MiB"), "{r}");
    }
    assert!(rss_kib < 64 * 1024, "peak RSS {} MiB", rss_kib / 1024);
    let text = dockyard(&["list", "--to", d]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("web-20260101T000000Z-00aa")
            && text.stderr.contains("web-20260103T000000Z-0002.json"),
        "{}{}",
        text.stdout,
        text.stderr
    );
}

#[test]
fn list_and_verify_read_from_from_as_well_as_to() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let id = "web-20260101T000000Z-00dd";
    manifest(&dest, id, "web", &["/srv/media"]);
    for flag in ["--from", "--to"] {
        let out = dockyard(&["verify", id, flag, d]).ok();
        assert!(out.starts_with(&format!("ok {id} ")), "{flag}: {out}");
        let out = dockyard(&["list", flag, d]).ok();
        assert!(out.contains(id), "{flag}: {out}");
    }
    // --help names both, on one option.
    for cmd in ["verify", "list"] {
        let help = dockyard(&[cmd, "--help"]).ok();
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("--to"))
            .unwrap_or_else(|| panic!("{cmd}: no --to in {help}"));
        assert!(
            help.contains(": --from]") && line.contains("<DEST>"),
            "{cmd}: {help}"
        );
    }
}
