//! Archives forged by whoever can write the destination (issue 21, points 6 and 12), against a
//! real engine: headers that would make the reader hold gigabytes, and names that appear twice,
//! on which `verify` and a restore must agree.

mod common;

use std::io::Write;

use common::measure::run_measured;
use common::{dest_dir, dockyard, forge, App};

/// 256 MiB: well over the 1 MiB limit, and enough that reading it whole shows in the peak RSS.
const HUGE: u64 = 256 << 20;

/// Writes `len` bytes: `byte` repeated (in 1 MiB pieces), then `tail`.
fn stream(w: &mut dyn Write, byte: u8, len: u64, tail: &[u8]) {
    let chunk = vec![byte; 1 << 20];
    let mut left = len - tail.len() as u64;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    w.write_all(tail).unwrap();
}

/// Pads data of `len` bytes to a whole block.
fn pad(w: &mut dyn Write, len: u64) {
    w.write_all(&vec![0u8; ((512 - len % 512) % 512) as usize])
        .unwrap();
}

#[test]
fn huge_pax_and_long_name_headers_are_refused_before_they_are_read() {
    let app = App::running("huge", &["/srv/media"]);
    app.sh("echo mine > /srv/media/keep");
    let before = app.tree("/srv/media");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let pax_id = format!("{}-20261128T000000Z-0001", app.name);
    forge::write_streamed_backup(&dest, &pax_id, &app.name, &["/srv/media"], 2, |w| {
        w.write_all(&forge::header(b"srv/media/", b'5', 0, 0o755))
            .unwrap();
        // One record, `<len> comment=aaaa…\n`, HUGE bytes long.
        let prefix = format!("{HUGE} comment=");
        w.write_all(&forge::header(b"././@PaxHeader", b'x', HUGE, 0o644))
            .unwrap();
        w.write_all(prefix.as_bytes()).unwrap();
        stream(w, b'a', HUGE - prefix.len() as u64, b"\n");
        pad(w, HUGE);
        w.write_all(&forge::file(b"srv/media/f", b"x", 0o644))
            .unwrap();
    });
    let name_id = format!("{}-20261128T000001Z-0002", app.name);
    forge::write_streamed_backup(&dest, &name_id, &app.name, &["/srv/media"], 2, |w| {
        w.write_all(&forge::header(b"srv/media/", b'5', 0, 0o755))
            .unwrap();
        w.write_all(&forge::header(b"././@LongLink", b'L', HUGE, 0o644))
            .unwrap();
        stream(w, b'n', HUGE, b"\0");
        pad(w, HUGE);
        w.write_all(&forge::header(b"srv/media/short", b'0', 0, 0o644))
            .unwrap();
    });

    for (id, what) in [(&pax_id, "PAX header"), (&name_id, "GNU long name")] {
        let (code, _, stderr, rss_kib) = run_measured(&["verify", id, "--to", d], &[]);
        eprintln!("verify {what}: peak RSS {} MiB", rss_kib / 1024);
        assert_eq!(code, 5, "{stderr}");
        assert!(
            stderr.contains(id.as_str())
                && stderr.contains("unsafe")
                && stderr.contains(what)
                && stderr.contains(&format!("{HUGE} bytes"))
                && stderr.contains("1 MiB"),
            "{stderr}"
        );
        assert!(stderr.len() < 2048, "{} bytes of stderr", stderr.len());
        assert!(
            rss_kib < 100 * 1024,
            "verify of a {what} of {HUGE} bytes: peak RSS {} MiB",
            rss_kib / 1024
        );
        let (code, _, stderr, rss_kib) =
            run_measured(&["restore", &app.name, "--from", d, "--backup", id], &[]);
        assert_eq!(code, 5, "{stderr}");
        assert!(stderr.len() < 2048, "{} bytes of stderr", stderr.len());
        assert!(
            rss_kib < 100 * 1024,
            "restore: peak RSS {} MiB",
            rss_kib / 1024
        );
        app.assert_as_before("/srv/media", &before);
    }
}

/// A backup of `/srv/media` holding `tar` (its root directory first), named for `app`.
fn forged(app: &App, dest: &std::path::Path, n: u32, tar: &[Vec<u8>]) -> String {
    let id = format!("{}-20261128T00000{n}Z-000{n}", app.name);
    let mut all = forge::header(b"srv/media/", b'5', 0, 0o755);
    for entry in tar {
        all.extend_from_slice(entry);
    }
    forge::write_backup(dest, &id, &app.name, &["/srv/media"], all);
    id
}

#[test]
fn a_file_after_a_symlink_of_its_name_replaces_the_symlink_as_tar_does() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    for agent in ["auto", "never"] {
        let app = App::created(&format!("relink-{agent}"), &["/srv/media"]);
        let id = forged(
            &app,
            &dest,
            1,
            &[
                forge::symlink(b"srv/media/l", b"/etc/passwd"),
                forge::file(b"srv/media/l", b"mine\n", 0o644),
            ],
        );
        let v = dockyard(&["verify", &id, "--to", d]).ok();
        assert!(v.starts_with("ok "), "{v}");
        dockyard(&[
            "restore", &app.name, "--from", d, "--backup", &id, "--agent", agent,
        ])
        .ok();
        app.start();
        assert_eq!(
            app.sh("stat -c %F /srv/media/l; cat /srv/media/l; head -c 5 /etc/passwd"),
            "regular file\nmine\nroot:",
            "--agent {agent}"
        );
    }
}

#[test]
fn a_file_over_a_directory_of_the_archive_is_refused_by_verify_and_restore() {
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    for agent in ["auto", "never"] {
        let app = App::running(&format!("dirfile-{agent}"), &["/srv/media"]);
        app.sh("echo mine > /srv/media/keep");
        let before = app.tree("/srv/media");
        let id = forged(
            &app,
            &dest,
            2,
            &[
                forge::header(b"srv/media/d/", b'5', 0, 0o755),
                forge::file(b"srv/media/d/child", b"child\n", 0o644),
                forge::file(b"srv/media/d", b"file\n", 0o644),
            ],
        );
        let v = dockyard(&["verify", &id, "--to", d]);
        assert_eq!(v.code, 5, "{}{}", v.stdout, v.stderr);
        assert!(
            v.stderr.contains("unsafe entry \"srv/media/d\"") && v.stderr.contains("directory"),
            "{}",
            v.stderr
        );
        let r = dockyard(&[
            "restore", &app.name, "--from", d, "--backup", &id, "--agent", agent,
        ]);
        assert_eq!(r.code, 5, "--agent {agent}: {}", r.stderr);
        assert!(r.stderr.contains("srv/media/d"), "{}", r.stderr);
        app.assert_as_before("/srv/media", &before);
    }
}

#[test]
fn an_archive_holding_dockyards_work_directory_is_refused_and_changes_nothing() {
    // Whoever can write the store forges a backup whose path holds `.dockyard-restore/...`: once
    // staged and swapped it would land on the restore's own work directory.
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    for agent in ["auto", "never"] {
        let app = App::running(&format!("workname-{agent}"), &["/srv/media"]);
        app.sh("echo mine > /srv/media/keep");
        let before = app.tree("/srv/media");
        let id = forged(
            &app,
            &dest,
            3,
            &[
                forge::header(b"srv/media/.dockyard-restore/", b'5', 0, 0o700),
                forge::file(b"srv/media/.dockyard-restore/0-phase", b"swapped\n", 0o600),
                forge::file(b"srv/media/a", b"a\n", 0o644),
            ],
        );
        let v = dockyard(&["verify", &id, "--to", d]);
        assert_eq!(v.code, 5, "{}{}", v.stdout, v.stderr);
        assert!(
            v.stderr
                .contains("unsafe entry \"srv/media/.dockyard-restore\"")
                && v.stderr.contains("work directory"),
            "{}",
            v.stderr
        );
        let r = dockyard(&[
            "restore", &app.name, "--from", d, "--backup", &id, "--agent", agent,
        ]);
        assert_eq!(r.code, 5, "--agent {agent}: {}", r.stderr);
        assert!(r.stderr.contains(".dockyard-restore"), "{}", r.stderr);
        app.assert_as_before("/srv/media", &before);
        // Every later run of that container goes on as before.
        let b = dockyard(&["backup", &app.name, "--to", d]);
        assert_eq!(b.code, 0, "{}", b.stderr);
    }
}
