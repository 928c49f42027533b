//! Every backup restorable, every restore safe (issue 9, points 1-6), against a real engine: files
//! of 8 GiB and more, odd entries of every kind, xattrs and exact times, and archives written by
//! someone who can write the destination and fix the manifest's checksums.

mod common;

use common::forge;
use common::{dest_dir, dockyard, getxattr, list, setxattr, App};

fn id_of(dest: &std::path::Path) -> String {
    list(dest)[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_file_of_8_gib_and_the_files_after_it_survive_backup_and_restore() {
    let app = App::running("big", &["/srv/media"]);
    // A sparse 8200 MiB disk image ending in a marker, and a small file packed after it: the
    // engine sends the image's size as a PAX record (it does not fit the ustar field).
    app.sh(
        "truncate -s 8200M /srv/media/disk.img && \
         printf END | dd of=/srv/media/disk.img bs=1 seek=$((8200 * 1048576 - 3)) conv=notrunc 2>/dev/null && \
         echo after > /srv/media/zz-after.txt",
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let m = &list(&dest)[0];
    assert_eq!(m["entries"], 3, "{m}");
    assert!(m["tar_bytes"].as_u64().unwrap() > 8200 << 20, "{m}");
    let id = m["id"].as_str().unwrap();
    assert!(dockyard(&["verify", id, "--to", d]).ok().starts_with("ok "));

    let fresh = App::created("big-new", &["/srv/media"]);
    dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--container",
        &app.name,
    ])
    .ok();
    fresh.start();
    assert_eq!(
        fresh.sh("stat -c %s /srv/media/disk.img").trim(),
        (8200u64 << 20).to_string()
    );
    assert_eq!(fresh.sh("tail -c 3 /srv/media/disk.img"), "END");
    assert_eq!(fresh.sh("cat /srv/media/zz-after.txt"), "after\n");
}

#[test]
fn odd_entries_round_trip_exactly() {
    let app = App::running("odd", &["/srv/media"]);
    app.sh(r#"set -e
cd /srv/media
D1=$(printf 'd%.0s' $(seq 1 150)); D2=$(printf 'e%.0s' $(seq 1 150))
mkdir -p "$D1/$D2"
echo deep > "$D1/$D2/$(printf 'f%.0s' $(seq 1 120))"
echo id > bigid && chown 3000000:3000001 bigid
echo old > old && touch -d "1965-03-04 05:06:07" old
ln old hardlink-to-old
echo fut > future && touch -d "2300-01-01 00:00:00" future
printf x > "$(printf 'bad\377name')"
mkfifo fifo && chown 1000:1000 fifo
mkdir emptydir olddir
touch -d "1960-01-01 00:00:00" olddir
touch -d "1999-01-01 00:00:00" emptydir "$D1/$D2" "$D1"
"#);
    let before = app.tree("/srv/media");
    for want in [
        "3000000 3000001",
        "-152391233",
        "10413792000",
        "bad",
        " P ",
        " 2 ",
    ] {
        assert!(before.contains(want), "fixture lacks {want:?}:\n{before}");
    }
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let fresh = App::created("odd-new", &["/srv/media"]);
    dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--container",
        &app.name,
    ])
    .ok();
    fresh.start();
    assert_eq!(fresh.tree("/srv/media"), before);
}

#[test]
fn capabilities_and_exact_times_reach_the_restored_files() {
    // security.capability, as `setcap cap_net_bind_service=+ep` writes it (the engine carries
    // this xattr), set on the volume's file from the host.
    let cap: &[u8] = &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let app = App::running("xattr", &["/srv/media"]);
    app.sh("cp /bin/busybox /srv/media/server && chmod 755 /srv/media/server");
    let file = app.mount_source("/srv/media").join("server");
    setxattr(&file, "security.capability", cap);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let fresh = App::created("xattr-new", &["/srv/media"]);
    dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--container",
        &app.name,
        "--keep-capabilities",
    ])
    .ok();
    let restored = fresh.mount_source("/srv/media").join("server");
    assert_eq!(
        getxattr(&restored, "security.capability").as_deref(),
        Some(cap),
        "the capability was dropped although --keep-capabilities"
    );

    // Times with nanoseconds, as a PAX record (the engine's own export keeps whole seconds, so
    // such a time comes from another tool's archive): restored to the nanosecond.
    let (_tmp2, dest2) = dest_dir();
    let target = App::created("frac", &["/srv/media"]);
    let id = format!("{}-20261128T000000Z-0001", target.name);
    let mut tar = forge::header(b"srv/media/", b'5', 0, 0o755);
    tar.extend(forge::pax(&[("mtime", b"1600000000.123456789")]));
    tar.extend(forge::file(b"srv/media/frac.txt", b"frac\n", 0o644));
    forge::write_backup(&dest2, &id, &target.name, &["/srv/media"], tar);
    let d2 = dest2.to_str().unwrap();
    dockyard(&["restore", &target.name, "--from", d2]).ok();
    target.start();
    assert_eq!(
        target.sh("stat -c %y /srv/media/frac.txt").trim(),
        "2020-09-13 12:26:40.123456789 +0000"
    );
}

#[test]
fn file_capabilities_are_dropped_at_restore_and_named_unless_kept() {
    // cap_setuid,cap_setgid=ep: whoever runs the file may become root on the host (a bind mount).
    let cap: &[u8] = &[
        1, 0, 0, 2, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let app = App::running("caps", &["/srv/media"]);
    app.sh("cp /bin/busybox /srv/media/rootme && echo plain > /srv/media/plain");
    setxattr(
        &app.mount_source("/srv/media").join("rootme"),
        "security.capability",
        cap,
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = id_of(&dest);

    let v = dockyard(&["verify", &id, "--to", d]).ok();
    assert!(
        v.contains("srv/media/rootme") && v.contains("--keep-capabilities"),
        "{v}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&dockyard(&["verify", &id, "--to", d, "--json"]).ok()).unwrap();
    assert_eq!(
        v["privileged_xattrs"],
        serde_json::json!(["srv/media/rootme"]),
        "{v}"
    );
    let dry = dockyard(&["restore", &app.name, "--from", d, "--dry-run"]).ok();
    assert!(
        dry.contains("srv/media/rootme") && dry.contains("--keep-capabilities"),
        "{dry}"
    );

    for agent in ["auto", "never"] {
        let fresh = App::created(&format!("caps-{agent}"), &["/srv/media"]);
        let out = dockyard(&[
            "restore",
            &fresh.name,
            "--from",
            d,
            "--backup",
            &id,
            "--agent",
            agent,
            "--force",
        ])
        .ok();
        assert!(
            out.contains("srv/media/rootme") && out.contains("--keep-capabilities"),
            "--agent {agent}: {out}"
        );
        let restored = fresh.mount_source("/srv/media").join("rootme");
        assert_eq!(
            getxattr(&restored, "security.capability"),
            None,
            "--agent {agent}: the capability reached the restored file"
        );
        fresh.start();
        assert_eq!(fresh.sh("cat /srv/media/plain"), "plain\n");
    }
    let fresh = App::created("caps-json", &["/srv/media"]);
    let out = dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--backup",
        &id,
        "--json",
        "--force",
    ])
    .ok();
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        r["dropped_xattrs"],
        serde_json::json!(["srv/media/rootme"]),
        "{r}"
    );
}

#[test]
fn an_archive_that_smuggles_entries_past_its_headers_is_refused_and_writes_nothing() {
    let app = App::running("smuggle", &["/srv/media"]);
    app.sh("echo mine > /srv/media/keep");
    let before = app.tree("/srv/media");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    // A PAX size (honoured by tar readers that read it) over a ustar size of 0 (the header
    // dockyard 0.1 passed on): the data is a whole further entry that verify never saw.
    let mut smuggled = forge::file(b"evil.txt", b"pwned", 0o644);
    smuggled.resize(1024, 0);
    let mut tar = forge::header(b"srv/media/", b'5', 0, 0o755);
    tar.extend(forge::pax(&[("size", b"1024")]));
    tar.extend(forge::header(b"srv/media/innocent", b'0', 0, 0o644));
    tar.extend(smuggled);
    let id = format!("{}-20261128T000000Z-beef", app.name);
    forge::write_backup(&dest, &id, &app.name, &["/srv/media"], tar);

    let v = dockyard(&["verify", &id, "--to", d]);
    assert_eq!(v.code, 5, "{}", v.stderr);
    assert!(
        v.stderr.contains("srv/media/innocent") && v.stderr.contains("disagrees"),
        "{}",
        v.stderr
    );
    let r = dockyard(&["restore", &app.name, "--from", d, "--archive", &id]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(app.tree("/srv/media"), before, "the volume changed");
    let found = app.sh("find / -name evil.txt 2>/dev/null; ls -a /srv/media");
    assert!(
        !found.contains("evil.txt") && !found.contains(".dockyard-restore"),
        "{found}"
    );
    assert!(app.helpers().is_empty());
}

#[test]
fn device_nodes_are_refused_and_set_id_bits_stripped_unless_allowed() {
    let app = App::running("dev", &["/srv/media"]);
    app.sh(
        "mknod /srv/media/null c 1 3 && chmod 666 /srv/media/null && \
         cp /bin/busybox /srv/media/suid && chmod 4755 /srv/media/suid && \
         echo plain > /srv/media/plain",
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = id_of(&dest);
    let v = dockyard(&["verify", &id, "--to", d]).ok();
    assert!(
        v.contains("device node") && v.contains("srv/media/null"),
        "{v}"
    );
    assert!(
        v.contains("set-user-ID") && v.contains("srv/media/suid"),
        "{v}"
    );

    let fresh = App::created("dev-new", &["/srv/media"]);
    let r = dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--archive",
        &id,
        "--force",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("srv/media/null") && r.stderr.contains("--allow-devices"),
        "{}",
        r.stderr
    );
    fresh.start();
    assert_eq!(
        fresh.sh("ls -A /srv/media"),
        "",
        "a refused restore wrote something"
    );

    let out = dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--archive",
        &id,
        "--allow-devices",
        "--force",
    ])
    .ok();
    assert!(
        out.contains("removed set-user-ID") && out.contains("srv/media/suid"),
        "{out}"
    );
    assert_eq!(
        fresh.sh("stat -c '%a %F' /srv/media/suid /srv/media/null"),
        "755 regular file\n666 character special file\n"
    );
    dockyard(&[
        "restore",
        &fresh.name,
        "--from",
        d,
        "--archive",
        &id,
        "--allow-devices",
        "--keep-setuid",
        "--no-safety-backup",
        "--force",
    ])
    .ok();
    assert_eq!(fresh.sh("stat -c %a /srv/media/suid").trim(), "4755");
}

#[test]
fn a_manifest_path_with_dot_dot_is_refused_and_the_other_volume_is_untouched() {
    let app = App::running("dotdot", &["/srv/media", "/srv/logs"]);
    app.sh("echo photo > /srv/media/p.jpg && echo line > /srv/logs/app.log");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--path", "/srv/media", "--to", d]).ok();
    let id = id_of(&dest);
    // The attacker points the backup's path at the other volume (the archive is unchanged, so
    // its checksum still matches).
    let manifest = dest.join(format!("{id}.json"));
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["paths"][0]["path"] = "/srv/media/../logs".into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();

    let logs_before = app.tree("/srv/logs");
    let v = dockyard(&["verify", &id, "--to", d]);
    assert_eq!(v.code, 5, "{}", v.stderr);
    assert!(v.stderr.contains("/srv/media/../logs"), "{}", v.stderr);
    let r = dockyard(&["restore", &app.name, "--from", d, "--archive", &id]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(app.tree("/srv/logs"), logs_before);
    let l = dockyard(&["list", "--to", d]);
    assert!(l.stdout.contains("no backups"), "{}", l.stdout);
    assert!(l.stderr.contains("not a normalised"), "{}", l.stderr);
}

#[test]
fn a_future_dated_backup_is_never_latest_nor_the_keep_within_anchor() {
    let app = App::running("future", &["/srv/media"]);
    app.sh("echo v1 > /srv/media/f");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    app.sh("echo v2 > /srv/media/f");
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let real = id_of(&dest);
    // A copy dated in 2100: a clock jump, or a forged manifest.
    let forged = format!("{}-21000101T000000Z-f00d", app.name);
    std::fs::copy(
        dest.join(format!("{real}.tar.zst")),
        dest.join(format!("{forged}.tar.zst")),
    )
    .unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join(format!("{real}.json"))).unwrap()).unwrap();
    m["id"] = forged.clone().into();
    m["archive"] = format!("{forged}.tar.zst").into();
    m.as_object_mut().unwrap().remove("index");
    m["created"] = "2100-01-01T00:00:00Z".into();
    std::fs::write(
        dest.join(format!("{forged}.json")),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();

    let dry = dockyard(&["restore", &app.name, "--from", d, "--dry-run"]).ok();
    assert!(dry.contains(&format!("restoring {real} into")), "{dry}");
    let l = dockyard(&["list", "--to", d]);
    assert!(l.stdout.contains("(dated in the future)"), "{}", l.stdout);
    let prune = dockyard(&[
        "prune",
        "--to",
        d,
        "--keep-within",
        "1h",
        "--dry-run",
        "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&prune).unwrap();
    assert_eq!(
        v["removed"], 0,
        "keep-within anchored on the forged date: {v}"
    );
    let reasons = v["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == forged.as_str())
        .unwrap()["reasons"]
        .to_string();
    assert!(reasons.contains("future"), "{reasons}");
    // Named, it is still restorable.
    let named = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--archive",
        &forged,
        "--dry-run",
    ]);
    assert_eq!(named.code, 0, "{}", named.stderr);
}

#[test]
fn a_restore_checks_the_whole_archive_while_staging_and_changes_nothing_when_it_fails() {
    // Restore reads the archive once per path: staging itself must refuse what `verify` would,
    // wherever in the archive it is, before any safety backup and before the swap.
    let app = App::running("onepass", &["/srv/media"]);
    app.sh("echo mine > /srv/media/keep");
    let before = app.tree("/srv/media");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let mut tar = forge::header(b"srv/media/", b'5', 0, 0o755);
    for i in 0..300 {
        tar.extend(forge::file(
            format!("srv/media/f{i:03}").as_bytes(),
            b"fine\n",
            0o644,
        ));
    }
    let good = tar.clone();
    tar.extend(forge::file(
        b"etc/cron.d/evil",
        b"* * * * * root sh\n",
        0o644,
    ));
    let outside = format!("{}-20261128T000000Z-0001", app.name);
    forge::write_backup(&dest, &outside, &app.name, &["/srv/media"], tar);
    // A sound archive whose manifest claims one entry more than it holds.
    let miscounted = format!("{}-20261128T000001Z-0002", app.name);
    forge::write_backup(&dest, &miscounted, &app.name, &["/srv/media"], good);
    let path = dest.join(format!("{miscounted}.json"));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["entries"] = serde_json::json!(m["entries"].as_u64().unwrap() + 1);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();

    for (id, why) in [
        (&outside, "outside every path"),
        (&miscounted, "content mismatch"),
    ] {
        let r = dockyard(&["restore", &app.name, "--from", d, "--archive", id]);
        assert_eq!(r.code, 5, "{}", r.stderr);
        assert!(
            r.stderr.contains(id.as_str())
                && r.stderr.contains("failed verification")
                && r.stderr.contains(why),
            "{}",
            r.stderr
        );
        app.assert_as_before("/srv/media", &before);
        assert_eq!(list(&dest).len(), 2, "a safety backup was taken");
    }
}
