//! What a destination holds after interruptions and odd input (issue 9, points 16-19), written
//! once and run against the local directory, sshd and Garage: an archive whose manifest was never
//! written is removed once its run is gone (and only then); directories are private whatever the
//! umask; the writability probe never writes through a planted symlink; a remote path full of
//! shell syntax is just a name; a closed stdout is a normal end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::dest::Dest;
use common::peers::{pairs, ssh, ssh_env, S3};
use common::{dest_dir, dockyard_cmd, dockyard_env, unique, App};

fn ids(dest: &Dest) -> Vec<String> {
    let out = dest.run(&["list", "--json", "--to", &dest.url()]).ok();
    common::backups(&out)
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Backups A and B exist. B's manifest was never written and its run is gone (killed between the
/// two); C is written by a run still alive (this test); D is an old dockyard 0.1 orphan with no
/// record at all. The next prune removes B and D, and leaves A and C.
fn orphans_are_removed_once_their_run_is_gone(dest: Dest) {
    let app = App::running("orphan", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let url = dest.url();
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    dest.run(&["backup", &app.name, "--to", &url]).ok();
    let mut listed = ids(&dest);
    listed.sort();
    let (a, b) = (listed[0].clone(), listed[1].clone());
    assert_eq!(
        dest.names().len(),
        6,
        "two whole backups leave their archives, indexes and manifests, nothing else: {:?}",
        dest.names()
    );
    // B: archive without manifest, its run (a dead pid on this host) recorded as pending.
    dest.remove(&format!("{b}.json"));
    dest.write(
        &format!("{b}.pending"),
        &format!("{} 999999999 1 deadbeef 1700000000", hostname()),
    );
    // C: written right now by a live process.
    let c = format!("{}-20991231T000000Z-cccc", app.name);
    dest.copy(&format!("{a}.tar.zst"), &format!("{c}.tar.zst"));
    dest.write(
        &format!("{c}.pending"),
        &format!(
            "{} {} 0 live {}",
            hostname(),
            std::process::id(),
            chrono::Utc::now().timestamp()
        ),
    );
    // D: dockyard 0.1 left it a year ago, without any record.
    let d = format!("{}-20251001T000000Z-dddd", app.name);
    dest.copy(&format!("{a}.tar.zst"), &format!("{d}.tar.zst"));

    dest.run(&["prune", "--to", &url, "--keep-last", "9"]).ok();
    let names = dest.names();
    let want = vec![
        format!("{a}.index.zst"),
        format!("{a}.json"),
        format!("{a}.tar.zst"),
        format!("{c}.pending"),
        format!("{c}.tar.zst"),
    ];
    assert_eq!(names, want, "{}", dest.url());
    assert_eq!(ids(&dest), vec![a]);
}

#[test]
fn local_orphans_are_removed_once_their_run_is_gone() {
    let (tmp, path) = dest_dir();
    orphans_are_removed_once_their_run_is_gone(Dest::Local(tmp, path));
}

#[test]
fn ssh_orphans_are_removed_once_their_run_is_gone() {
    orphans_are_removed_once_their_run_is_gone(Dest::Ssh(unique("ssh-orphan")));
}

#[test]
fn s3_orphans_are_removed_once_their_run_is_gone() {
    orphans_are_removed_once_their_run_is_gone(Dest::S3(S3::garage(), unique("s3-orphan")));
}

#[test]
fn destination_directories_are_private_whatever_the_umask() {
    let app = App::running("umask", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("new/deeper");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} backup {} --to {} >/dev/null",
            env!("CARGO_BIN_EXE_dockyard"),
            app.name,
            dest.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    for d in [tmp.path().join("new"), dest.clone()] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
    }

    // Over SSH, with a path full of shell syntax: it is only a name, and it is private too.
    let rel = format!("{}\"b$(touch PWNED)'c", unique("ssh-quote"));
    let url = format!("ssh://dockyard-test/~/{rel}/sub");
    let env = ssh_env();
    let r = dockyard_env(&["backup", &app.name, "--to", &url], &pairs(&env));
    let quoted = format!("'{}'", rel.replace('\'', "'\\''"));
    let seen = ssh(&format!(
        "stat -c '%a' {quoted} {quoted}/sub; find {quoted}/sub -type f | wc -l; ls ~ | grep -c '^PWNED$' || true; rm -rf {quoted}"
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(seen, "700\n700\n3\n0\n", "modes, objects, PWNED");
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        3,
        "only the archive, its index and its manifest"
    );
}

#[test]
fn a_closed_stdout_is_a_normal_end() {
    // More listing than a pipe holds, and a reader that stops after one line.
    let (_tmp, dest) = dest_dir();
    std::fs::create_dir_all(&dest).unwrap();
    for i in 0..3000 {
        let id = format!("web-20260101T{:06}Z-{:04x}", i % 240000, i);
        let m = serde_json::json!({
            "id": id, "container": "web", "container_id": "c", "image": "i", "image_id": "i",
            "host": "h", "paths": [{"path": "/srv/media", "mount": {"destination": "/srv/media", "type": "volume"}}],
            "created": "2026-01-01T00:00:00Z", "tags": [], "tool_version": "0", "size": 1,
            "sha256": "00", "tar_bytes": 1, "entries": 1, "level": 3, "archive": format!("{id}.tar.zst")
        });
        std::fs::write(dest.join(format!("{id}.json")), m.to_string()).unwrap();
    }
    let mut child = dockyard_cmd(&["list", "--to", dest.to_str().unwrap()], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("ID"), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_writability_probe_never_writes_through_a_planted_symlink() {
    // Whoever can write the backup directory plants `.dockyard-probe-<pid>` (0.1's name: the pid
    // is dockyard's, which `exec` keeps) as a symlink to a file only root may write. The probe
    // must not truncate it, and must leave nothing of its own behind.
    let app = App::running("probe", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    std::fs::create_dir(&dest).unwrap();
    let victim = tmp.path().join("shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ln -s "$1" "$2/.dockyard-probe-$$" && exec "$3" backup "$4" --to "$2" >/dev/null"#)
        .args(["sh", victim.to_str().unwrap(), dest.to_str().unwrap()])
        .args([env!("CARGO_BIN_EXE_dockyard"), &app.name])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n");
    let mut left: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dockyard-probe-"))
        .collect();
    assert_eq!(left.len(), 1, "only the planted link: {left:?}");
    left.retain(|n| {
        std::fs::symlink_metadata(dest.join(n))
            .unwrap()
            .is_symlink()
    });
    assert_eq!(left.len(), 1, "the planted link is still a link");
}
