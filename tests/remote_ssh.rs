//! Backups to another host over SSH, against a real sshd on 127.0.0.1 reached through a Host alias:
//! the round trip, a run killed mid-upload, a connection lost mid-read (exit 4, said once), and each
//! way the connection can be refused.

mod common;

use common::peers::{pairs, ssh, ssh_env};
use common::{dockyard_cmd, dockyard_env, unique, App, Run, FIXTURE};

/// A fresh remote directory under the login user's home, removed when dropped.
struct RemoteDir {
    rel: String,
}

impl RemoteDir {
    fn new() -> RemoteDir {
        RemoteDir {
            rel: unique("ssh-dest"),
        }
    }
    fn url(&self) -> String {
        format!("ssh://dockyard-test/~/{}", self.rel)
    }
    fn files(&self) -> Vec<String> {
        let out = ssh(&format!("ls -A {} 2>/dev/null; true", self.rel));
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ssh")
            .args([
                "-F",
                &common::peers::ssh_config(),
                "dockyard-test",
                &format!("rm -rf {}", self.rel),
            ])
            .output();
    }
}

fn run(args: &[&str]) -> Run {
    let env = ssh_env();
    dockyard_env(args, &pairs(&env))
}

fn listed(url: &str) -> Vec<serde_json::Value> {
    common::backups(&run(&["list", "--json", "--to", url]).ok())
}

#[test]
fn ssh_round_trip_backup_list_verify_restore() {
    let app = App::running("ssh-rt", &["/srv/media", "/srv/logs"]);
    app.sh(FIXTURE);
    let dir = RemoteDir::new();
    let url = dir.url();

    let out = run(&["backup", &app.name, "--to", &url]).ok();
    assert!(out.contains(&format!("at {url}")), "{out}");
    let m = listed(&url);
    assert_eq!(m.len(), 1, "{m:?}");
    let id = m[0]["id"].as_str().unwrap();
    // Three objects under final names (the index, the manifest, the archive), all private, no
    // temp file.
    assert_eq!(
        dir.files(),
        vec![
            format!("{id}.index.zst"),
            format!("{id}.json"),
            format!("{id}.tar.zst")
        ]
    );
    let modes = ssh(&format!("stat -c '%a %s' {}/{id}.tar.zst", dir.rel));
    assert_eq!(
        modes.trim(),
        format!("600 {}", m[0]["size"].as_u64().unwrap())
    );
    assert!(run(&["verify", id, "--to", &url]).ok().starts_with("ok "));

    let fresh = App::created("ssh-rt-new", &["/srv/media", "/srv/logs"]);
    run(&[
        "restore",
        &fresh.name,
        "--from",
        &url,
        "--container",
        &app.name,
    ])
    .ok();
    fresh.start();
    for path in ["/srv/media", "/srv/logs"] {
        assert_eq!(fresh.tree(path), app.tree(path), "{path} differs");
    }
    assert!(app.helpers().is_empty() && fresh.helpers().is_empty());
}

#[test]
fn ssh_killed_mid_upload_is_invisible_and_cleaned_by_the_next_run() {
    let app = App::running("ssh-kill", &["/srv/media", "/srv/logs"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=48 2>/dev/null; echo x > /srv/logs/l");
    let dir = RemoteDir::new();
    let url = dir.url();
    let env = ssh_env();
    let mut child = dockyard_cmd(
        &[
            "backup",
            &app.name,
            "--to",
            &url,
            "--level",
            "19",
            "--path",
            "/srv/media",
        ],
        &pairs(&env),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    common::wait_until(
        "the upload started",
        std::time::Duration::from_secs(60),
        || {
            assert!(child.try_wait().unwrap().is_none(), "backup ended too soon");
            dir.files().iter().any(|f| f.ends_with(".partial"))
        },
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(listed(&url).is_empty(), "a killed backup is listed");
    assert!(
        dir.files().iter().all(|f| f.starts_with('.')),
        "a file under a final name: {:?}",
        dir.files()
    );
    // The remote `cat` ends when its pipe closes (sshd notices when it next writes): the
    // temp file stays locked until then.
    let partial = dir
        .files()
        .into_iter()
        .find(|f| f.ends_with(".partial"))
        .expect("a temp file");
    common::wait_until(
        "the remote writer let go of its temp file",
        std::time::Duration::from_secs(60),
        || {
            !std::process::Command::new("pgrep")
                .args(["-f", &partial])
                .status()
                .unwrap()
                .success()
        },
    );
    run(&["backup", &app.name, "--to", &url, "--path", "/srv/logs"]).ok();
    let left = dir.files();
    assert!(
        !left.iter().any(|f| f.ends_with(".partial")),
        "stale temp file not removed: {left:?}"
    );
    assert_eq!(listed(&url).len(), 1);
    assert!(app.helpers().is_empty(), "stale helper not removed");
}

/// Backs up to `url` expecting a destination error whose message contains every one of `wants`.
fn refused(what: &str, url: &str, wants: &[&str]) {
    let app = App::created(what, &["/srv/media"]);
    let r = run(&["backup", &app.name, "--to", url]);
    assert_eq!(r.code, 4, "{url}: {}", r.stderr);
    for want in wants {
        assert!(
            r.stderr.contains(want),
            "{url}: missing {want:?} in: {}",
            r.stderr
        );
    }
    assert!(app.helpers().is_empty(), "helper left behind");
}

#[test]
fn unknown_host_key_is_refused_not_accepted() {
    refused(
        "ssh-unknown",
        "ssh://dockyard-test-unknown-key/~/never",
        &[
            "dockyard-test-unknown-key",
            "not in known_hosts",
            "never accepts",
        ],
    );
}

#[test]
fn changed_host_key_is_refused_loudly() {
    refused(
        "ssh-changed",
        "ssh://dockyard-test-changed-key/~/never",
        &["dockyard-test-changed-key", "has CHANGED"],
    );
}

#[test]
fn rejected_key_names_the_host_and_what_to_check() {
    refused(
        "ssh-auth",
        "ssh://dockyard-test-stranger/~/never",
        &[
            "authentication to dockyard-test-stranger failed",
            "IdentityFile",
        ],
    );
}

#[test]
fn unreachable_host_says_so() {
    refused(
        "ssh-down",
        "ssh://dockyard-test-unreachable/~/never",
        &[
            "cannot reach dockyard-test-unreachable",
            "Connection refused",
        ],
    );
}

#[test]
fn remote_path_without_permission_names_it() {
    refused(
        "ssh-perm",
        "ssh://dockyard-test/root/dockyard-forbidden",
        &[
            "ssh://dockyard-test/root/dockyard-forbidden",
            "Permission denied",
            "may write there",
        ],
    );
}

#[test]
fn a_connection_lost_mid_read_is_a_destination_error_said_once_and_changes_nothing() {
    let app = App::running("ssh-cut", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=400 2>/dev/null");
    let dir = RemoteDir::new();
    let url = dir.url();
    run(&["backup", &app.name, "--to", &url, "--level", "1"]).ok();
    let id = listed(&url)[0]["id"].as_str().unwrap().to_string();
    app.sh("echo after > /srv/media/after");
    let before = app.tree("/srv/media");
    let reader = format!("cat -- {id}.tar.zst");
    let env = ssh_env();
    for args in [
        vec!["verify", &id, "--to", &url],
        vec!["restore", &app.name, "--from", &url, "--no-safety-backup"],
    ] {
        // dockyard stops 16 MiB into its read of the archive; then the remote reader dies, as
        // when the NAS or the link goes away.
        let mut run = common::fault::Faulted::start(&args, "read-midway", &pairs(&env));
        run.reached("read-midway");
        let killed = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &reader])
            .status()
            .unwrap();
        assert!(killed.success(), "no remote reader of {id} to cut");
        run.release("read-midway");
        let (code, stderr) = run.finish();
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot read {id}.tar.zst on dockyard-test")),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.matches(&url).count(), 1, "said twice: {stderr}");
        assert!(!stderr.contains("verification"), "{args:?}: {stderr}");
    }
    app.assert_as_before("/srv/media", &before);
}
