//! Scale (issue 13): a restore's dry run of an archive with a million entries into an empty
//! target, with dockyard's peak RSS measured (GNU time), since the diff must not hold the listings.

mod common;

use common::measure::run_measured;
use common::{dest_dir, forge, App};

#[test]
fn a_dry_run_of_a_million_entries_stays_within_64_mib() {
    const DIRS: usize = 1000;
    const PER_DIR: usize = 1000;
    let target = App::created("scale-dry", &["/srv/media"]);
    let id = format!("{}-20261128T000000Z-0001", target.name);
    let mut tar = Vec::with_capacity((DIRS * (PER_DIR + 1) + 1) * 512);
    tar.extend(forge::header(b"srv/media/", b'5', 0, 0o755));
    for d in 0..DIRS {
        tar.extend(forge::header(
            format!("srv/media/thumbs-{d:04}/").as_bytes(),
            b'5',
            0,
            0o755,
        ));
        for f in 0..PER_DIR {
            tar.extend(forge::header(
                format!("srv/media/thumbs-{d:04}/t{f:04}.jpg").as_bytes(),
                b'0',
                0,
                0o644,
            ));
        }
    }
    let (_tmp, dest) = dest_dir();
    forge::write_backup(&dest, &id, &target.name, &["/srv/media"], tar);
    let d = dest.to_str().unwrap();

    let (code, stdout, stderr, rss_kib) = run_measured(
        &["restore", &target.name, "--from", d, "--dry-run", "--json"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    eprintln!(
        "restore --dry-run of {} entries: peak RSS {} MiB",
        DIRS * (PER_DIR + 1),
        rss_kib / 1024
    );
    let doc = common::one_document(&stdout);
    let path = &doc["paths"][0];
    let entries = (DIRS * (PER_DIR + 1)) as u64;
    assert_eq!(path["add_total"], entries, "{path:#}");
    assert_eq!(path["remove_total"], 0);
    assert_eq!(path["add"].as_array().unwrap().len(), 1000);
    assert_eq!(path["add"][0], "thumbs-0000");
    assert!(
        rss_kib <= 64 * 1024,
        "peak RSS {} MiB for {entries} entries",
        rss_kib / 1024
    );
}
