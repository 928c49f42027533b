//! Archives forged by whoever can write the destination (issue 21, points 6 and 12), against a
//! real engine: headers that would make the reader hold gigabytes, and names that appear twice,
//! on which `verify` and a restore must agree.

mod common;

use std::io::Write;

use common::measure::run_measured;
use common::{dest_dir, forge, App};

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
