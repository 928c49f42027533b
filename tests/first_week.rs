//! The sharp edges an operator meets in the first week, against a real engine: a URL typo, a job
//! whose container is gone, numbers that must add up, a destination that does not exist, and a
//! restore that does what a careful person expects (excluded names kept, another container's
//! backup only when named, open files, `--include`, `dump`).

mod common;

use std::process::Command;

use common::sinks::Http;
use common::{dest_dir, dockyard, dockyard_cmd, json_lines, list, local_config, App};

#[test]
fn a_url_with_a_missing_slash_is_a_usage_error_and_writes_nothing() {
    let app = App::created("typo", &["/srv/media"]);
    let cwd = tempfile::tempdir().unwrap();
    for typo in ["s3:/bucket/web", "ssh:/host/dir", "file:/var/backups"] {
        let out = dockyard_cmd(&["backup", &app.name, "--to", typo], &[])
            .current_dir(cwd.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{typo}: {stderr}");
        assert!(
            stderr.contains("s3://bucket/prefix") && stderr.contains("ssh://host/dir"),
            "{typo}: {stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "a directory was made"
    );
}

#[test]
fn a_job_whose_container_is_gone_fails_as_the_job_and_no_destination_is_blamed() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    let gone = common::unique("gone");
    let cfg = local_config(
        tmp.path(),
        &dest,
        &format!("[jobs.media]\ncontainer = \"{gone}\"\ndestinations = [\"local\"]\n"),
    );
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let events = json_lines(&r.stdout);
    let job = events.iter().find(|e| e["type"] == "job").unwrap();
    assert_eq!(job["ok"], false);
    assert_eq!(
        job["destinations"].as_array().map_or(0, |d| d.len()),
        0,
        "{job}"
    );
    assert!(job["error"].as_str().unwrap().contains(&gone), "{job}");
}

#[test]
fn the_numbers_add_up_a_failed_destination_a_log_job_and_a_skipped_job() {
    let app = App::running("numbers", &["/srv/media", "/srv/logs"]);
    app.sh("dd if=/dev/urandom of=/srv/media/a bs=1k count=64 2>/dev/null; echo line > /srv/logs/app.log");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    std::fs::write(tmp.path().join("a-file"), "not a directory").unwrap();
    let http = Http::start();
    let cfg = local_config(
        tmp.path(),
        &dest,
        &format!(
            "[destinations.broken]\nurl = \"{}\"\n\
             [jobs.media]\ncontainer = \"{c}\"\ndestinations = [\"local\", \"broken\"]\n\
             [logs.logs]\ncontainer = \"{c}\"\ndestination = \"local\"\nreopen = \"copytruncate\"\nsettle = 0\n\
             [notify]\nwebhook = \"{}/hook\"\non_success = true\n",
            tmp.path().join("a-file/backups").display(),
            http.base,
            c = app.name
        ),
    );
    let c = cfg.to_str().unwrap();
    let r = dockyard(&["run", "--config", c, "--json"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let events = json_lines(&r.stdout);
    let job = |name: &str| {
        events
            .iter()
            .find(|e| e["type"] == "job" && e["job"] == name)
            .unwrap()
            .clone()
    };
    let media = job("media");
    let written = list(&dest)[0]["size"].as_u64().unwrap();
    assert_eq!(media["bytes"], written, "the local copy's bytes: {media}");
    let logs = job("logs");
    assert_eq!(logs["ok"], true, "{logs}");
    assert_eq!(logs["destinations"][0]["destination"], "local", "{logs}");
    assert!(logs["bytes"].as_u64().unwrap() >= 5, "{logs}");
    let hooks = http.to("/hook");
    let body = |job: &str| {
        hooks
            .iter()
            .map(|h| h.json())
            .find(|b| b["job"] == job)
            .unwrap()
    };
    assert_eq!(body("media")["bytes"], written);
    assert_eq!(body("logs")["bytes"], logs["bytes"]);

    // Another run holds the job's lock: skipped, said so, and when it began.
    let lock = tmp.path().join("locks/media.lock");
    // An hour ago (a fixed date would pass the 24 hours after which a lock is taken over).
    let since = chrono::Utc::now().timestamp() - 3600;
    std::fs::write(&lock, format!("owner otherhost 4242 0 otherrun {since}\n")).unwrap();
    let holder = Command::new("flock")
        .args([lock.to_str().unwrap(), "sleep", "300"])
        .spawn()
        .unwrap();
    common::wait_until(
        "the lock is held",
        std::time::Duration::from_secs(30),
        || {
            !Command::new("flock")
                .args(["-n", lock.to_str().unwrap(), "true"])
                .status()
                .unwrap()
                .success()
        },
    );
    let r = dockyard(&["run", "media", "--config", c]);
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stdout.contains("job media: skipped"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "pid 4242 on otherhost, since {}",
            chrono::DateTime::from_timestamp(since, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
        )),
        "{}",
        r.stdout
    );
    let skipped = http
        .to("/hook")
        .into_iter()
        .map(|h| h.json())
        .rfind(|b| b["job"] == "media")
        .unwrap();
    assert_eq!(skipped["result"], "skipped", "{skipped}");
    assert!(
        skipped["title"].as_str().unwrap().contains("skipped"),
        "{skipped}"
    );
}

#[test]
fn a_destination_that_does_not_exist_is_said_to_not_exist() {
    let app = App::created("nodest", &["/srv/media"]);
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-dir");
    let m = missing.to_str().unwrap();
    for args in [
        vec!["list", "--to", m],
        vec!["restore", &app.name, "--from", m],
        vec!["verify", "latest", "--to", m],
    ] {
        let r = dockyard(&args);
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("does not exist"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(!missing.exists());
}

#[test]
fn a_restore_keeps_what_the_backup_left_out() {
    let app = App::running("keep-excluded", &["/srv/media"]);
    app.sh(
        "cd /srv/media && mkdir -p docs cache/thumbs && echo v1 > docs/a.txt && \
         echo old-scratch > docs/b.tmp && echo c1 > cache/thumbs/t1",
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&[
        "backup",
        &app.name,
        "--to",
        d,
        "--exclude",
        "*.tmp",
        "--exclude",
        "/srv/media/cache/**",
    ])
    .ok();
    assert_eq!(list(&dest)[0]["exclude"][0], "*.tmp");
    app.sh(
        "cd /srv/media && echo v2 > docs/a.txt && echo live-scratch > docs/b.tmp && \
         echo c2 > cache/thumbs/t2 && mkdir -p gone && echo deep > gone/c.tmp && echo new > docs/new.txt",
    );
    let inode = app.sh("stat -c %i /srv/media/docs/b.tmp");
    // The dry run says what stays.
    let dry = dockyard(&["restore", &app.name, "--from", d, "--dry-run"]).ok();
    assert!(
        dry.contains("- docs/new.txt") && dry.contains("kept as they are"),
        "{dry}"
    );
    assert!(!dry.contains("b.tmp"), "{dry}");
    let r = dockyard(&["restore", &app.name, "--from", d, "--no-safety-backup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tree = app
        .sh("cd /srv/media && find . -type f | sort && cat docs/a.txt docs/b.tmp cache/thumbs/t2");
    assert_eq!(
        tree,
        "./cache/thumbs/t1\n./cache/thumbs/t2\n./docs/a.txt\n./docs/b.tmp\n./gone/c.tmp\nv1\nlive-scratch\nc2\n",
    );
    assert_eq!(
        app.sh("stat -c %i /srv/media/docs/b.tmp"),
        inode,
        "the same file"
    );
}

#[test]
fn another_containers_backup_needs_its_name() {
    let gu = App::running("gu", &["/srv/media"]);
    gu.sh("echo gu > /srv/media/a");
    let web = App::running("web2", &["/srv/media"]);
    web.sh("echo web > /srv/media/a");
    let before = web.tree("/srv/media");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &gu.name, "--to", d]).ok();
    let id = list(&dest)[0]["id"].as_str().unwrap().to_string();
    let r = dockyard(&["restore", &web.name, "--from", d, "--backup", &id]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("is of container {:?}", gu.name))
            && r.stderr.contains(&format!("--container {}", gu.name)),
        "{}",
        r.stderr
    );
    web.assert_as_before("/srv/media", &before);
    let r = dockyard(&[
        "restore",
        &web.name,
        "--from",
        d,
        "--backup",
        &id,
        "--container",
        &gu.name,
        "--no-safety-backup",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(web.sh("cat /srv/media/a"), "gu\n");
}

#[test]
fn files_the_app_holds_open_are_not_swapped_away_under_it() {
    // The app writes its log through a descriptor it keeps open, as Gunicorn does.
    let app = App::running_sh(
        "openlog",
        &["-v", "/srv/logs"],
        "exec 3>>/srv/logs/app.log; while :; do echo tick >&3; sleep 1; done",
    );
    common::wait_until("the app writes", std::time::Duration::from_secs(30), || {
        app.sh("cat /srv/logs/app.log").contains("tick")
    });
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let r = dockyard(&["restore", &app.name, "--from", d, "--no-safety-backup"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("/srv/logs/app.log")
            && r.stderr.contains("--stop")
            && r.stderr.contains("--allow-open-files"),
        "{}",
        r.stderr
    );
    assert!(!app.sh("ls -a /srv/logs").contains(".dockyard-restore"));
    let r = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--no-safety-backup",
        "--stop",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn include_restores_only_what_matches_and_dump_writes_one_file() {
    let app = App::running("include", &["/srv/media"]);
    app.sh(
        "cd /srv/media && mkdir -p photos/2024 docs && echo jpg1 > photos/2024/a.jpg && \
         echo txt1 > docs/a.txt && echo keep > docs/keep.txt",
    );
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = list(&dest)[0]["id"].as_str().unwrap().to_string();
    app.sh(
        "cd /srv/media && echo jpg2 > photos/2024/a.jpg && echo txt2 > docs/a.txt && \
         echo live > photos/2024/b.jpg && echo added > docs/new.txt",
    );
    // One file, by hand: checked as it streams.
    let out = dockyard_cmd(&["dump", &id, "/srv/media/docs/a.txt", "--to", d], &[])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"txt1\n");
    let r = dockyard(&["dump", &id, "/srv/media/docs/none.txt", "--to", d]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    let dry = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--include",
        "*.jpg",
        "--dry-run",
    ])
    .ok();
    assert!(dry.contains("0 to remove"), "{dry}");
    let r = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--include",
        "*.jpg",
        "--no-safety-backup",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let files =
        app.sh("cd /srv/media && find . -type f | sort && cat photos/2024/a.jpg docs/a.txt");
    assert_eq!(
        files,
        "./docs/a.txt\n./docs/keep.txt\n./docs/new.txt\n./photos/2024/a.jpg\n./photos/2024/b.jpg\njpg1\ntxt2\n",
    );
}

#[test]
fn a_backup_through_the_agent_shows_what_it_has_read_and_how_far_it_is() {
    let app = App::running("progress", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=96 2>/dev/null");
    let (_tmp, dest) = dest_dir();
    // On a terminal (a pty, as `script` gives one) the live line is drawn.
    let cmd = format!(
        "{} backup {} --to {} --level 12",
        env!("CARGO_BIN_EXE_dockyard"),
        app.name,
        dest.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // "read 41.00 MiB of ~96.00 MiB (42%)": bytes read, and a total from the agent's count.
    let seen = screen
        .split("read ")
        .skip(1)
        .any(|s| !s.starts_with("0 B") && s.contains(" of ~96.") && s.contains("%)"));
    assert!(seen, "no progress with a total: {screen}");
}
