//! The README's recovery by hand, run as written on a real backup: an archive is a plain tar in
//! zstd that `sha256sum`, `zstd -dc | tar -x` and `tar -xO` read without dockyard.

mod common;

use std::process::Command;

use common::{dest_dir, dockyard, list, App};

fn sh(script: &str, dir: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_archive_restores_by_hand_with_sha256sum_zstd_and_tar() {
    let app = App::running("by-hand", &["/srv/media"]);
    app.sh(
        "mkdir -p /srv/media/docs && echo contract > /srv/media/docs/contract.pdf && \
         dd if=/dev/urandom of=/srv/media/photo.jpg bs=1k count=300 2>/dev/null && \
         chown 1000:1000 /srv/media/photo.jpg",
    );
    let (_tmp, dest) = dest_dir();
    dockyard(&["backup", &app.name, "--to", dest.to_str().unwrap()]).ok();
    let m = &list(&dest)[0];
    let archive = m["archive"].as_str().unwrap();
    let sum = sh(&format!("sha256sum {archive}"), &dest);
    assert_eq!(sum.split_whitespace().next(), m["sha256"].as_str());
    sh(
        &format!("mkdir restore && zstd -dc {archive} | tar -x -C restore --numeric-owner"),
        &dest,
    );
    let one = sh(
        &format!("zstd -dc {archive} | tar -xO srv/media/docs/contract.pdf"),
        &dest,
    );
    assert_eq!(one, "contract\n");
    let live = app.sh("md5sum /srv/media/photo.jpg | cut -c1-32");
    let restored = sh("md5sum restore/srv/media/photo.jpg | cut -c1-32", &dest);
    assert_eq!(live, restored);
    assert_eq!(
        sh("stat -c %u restore/srv/media/photo.jpg", &dest).trim(),
        "1000"
    );
}
