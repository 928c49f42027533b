//! Jobs around a backup, against a real engine: retention (prune) on a real destination, tagged
//! snapshots, stopping the app for a consistent backup and starting it again on every way out,
//! and hooks.

mod common;

use common::{dest_dir, docker, dockyard, list, sigterm, start_slow_backup, App};

fn running(app: &App) -> bool {
    docker(&["inspect", "-f", "{{.State.Running}}", &app.name]).trim() == "true"
}

/// `dockyard backup <app> --to <dest> --stop --stop-timeout 1 <extra...>`.
fn backup_stopped(app: &App, dest: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "backup",
        &app.name,
        "--to",
        dest,
        "--stop",
        "--stop-timeout",
        "1",
    ];
    args.extend_from_slice(extra);
    dockyard(&args)
}

#[test]
fn prune_removes_exactly_what_the_dry_run_said_and_keeps_snapshots() {
    let app = App::running("prune", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    // The snapshot is the oldest: keep-last would not keep it, its tag does.
    dockyard(&["snapshot", &app.name, "--tag", "pre-upgrade", "--to", d]).ok();
    for _ in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(1100)); // distinct timestamps
        dockyard(&["backup", &app.name, "--to", d]).ok();
    }
    assert_eq!(list(&dest).len(), 5);

    let dry = dockyard(&[
        "prune",
        "--to",
        d,
        "--keep-last",
        "2",
        "--dry-run",
        "--json",
    ])
    .ok();
    let dry: serde_json::Value = serde_json::from_str(&dry).unwrap();
    let mut keep: Vec<String> = dry["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["keep"] == true)
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dry["removed"], 2, "{dry}");
    assert_eq!(list(&dest).len(), 5, "a dry run removed something");

    let out = dockyard(&["prune", "--to", d, "--keep-last", "2"]).ok();
    assert!(out.contains("removed 2 of 5"), "{out}");
    let mut left: Vec<String> = list(&dest)
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    keep.sort();
    left.sort();
    assert_eq!(
        left, keep,
        "prune removed something other than what the dry run said"
    );
    assert!(
        list(&dest).iter().any(|m| m["tags"][0] == "pre-upgrade"),
        "the snapshot was pruned"
    );
    // Archives and indexes went with their manifests.
    let files = common::files(&dest);
    assert_eq!(files.len(), 9, "{files:?}");

    let none = dockyard(&["prune", "--to", d]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr.contains("prune needs a policy"),
        "{}",
        none.stderr
    );
}

#[test]
fn snapshot_records_image_and_inspect_data_and_needs_a_tag() {
    let app = App::running("snap", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let untagged = dockyard(&["snapshot", &app.name, "--to", d]);
    assert_eq!(untagged.code, 2, "{}", untagged.stderr);
    let out = dockyard(&[
        "snapshot",
        &app.name,
        "--tag",
        "pre-upgrade",
        "--to",
        d,
        "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let snap = &v["backup"]["snapshot"];
    let id = docker(&["inspect", "-f", "{{.Id}}", &app.name]);
    assert_eq!(snap["inspect"]["Id"], id.trim(), "{snap}");
    assert!(snap["image_digests"].is_array());
    assert_eq!(v["backup"]["tags"][0], "pre-upgrade");
}

#[test]
fn backup_with_stop_stops_and_starts_the_app_and_reports_downtime() {
    let app = App::running("stop", &["/srv/media"]);
    let worker = App::running("stop-worker", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let before = docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let out = backup_stopped(&app, d, &["--stop-also", &worker.name]).ok();
    assert!(
        out.contains("stopped for") && out.contains("started again"),
        "{out}"
    );
    assert!(running(&app) && running(&worker));
    assert_ne!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]),
        before,
        "the app was not actually stopped"
    );
    assert_eq!(list(&dest).len(), 1);
}

#[test]
fn a_failure_while_stopped_still_starts_the_app_again() {
    let app = App::running("stopfail", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let r = backup_stopped(
        &app,
        d,
        &["--helper-image", "dockyard-test/no-such-image:0"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        running(&app),
        "the app was left stopped after a failed backup"
    );
    assert!(list(&dest).is_empty());
    assert!(app.helpers().is_empty());
}

#[test]
fn a_failing_pre_hook_stops_the_backup_with_a_clear_error() {
    let app = App::running("hook", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let r = backup_stopped(&app, d, &["--pre-hook", "echo dump failed >&2; exit 7"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("pre-hook")
            && r.stderr.contains("exit 7")
            && r.stderr.contains("dump failed"),
        "{}",
        r.stderr
    );
    assert!(running(&app));
    assert!(
        list(&dest).is_empty(),
        "a backup was taken after a failed pre-hook"
    );
    // A working pre-hook's output is part of the backup.
    dockyard(&[
        "backup",
        &app.name,
        "--to",
        d,
        "--pre-hook",
        "echo dumped > /srv/media/db.json",
        "--post-hook",
        "rm /srv/media/db.json",
    ])
    .ok();
    assert_eq!(list(&dest).len(), 1);
    assert_eq!(
        app.sh("ls /srv/media").trim(),
        "",
        "the post-hook did not run"
    );
    // A failing post-hook (it runs after the restart) is an error, and the app is running.
    let r = backup_stopped(&app, d, &["--post-hook", "exit 4"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("post-hook"), "{}", r.stderr);
    assert!(running(&app), "a failing post-hook left the app stopped");
}

#[test]
fn sigterm_while_stopped_starts_the_app_again() {
    let app = App::running("stopterm", &["/srv/media"]);
    let (_tmp, dest) = dest_dir();
    let child = start_slow_backup(&app, &dest, &["--stop", "--stop-timeout", "1"]);
    assert!(
        !running(&app),
        "the app should be stopped while the backup writes"
    );
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(running(&app), "SIGTERM left the app stopped");
    assert!(list(&dest).is_empty());
    assert!(common::files(&dest).is_empty(), "partial file left");
}

/// A config with one backup job for `app` to `dest` (retention keep_last 1) and a metrics file.
fn config(dir: &std::path::Path, app: &App, dest: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("dockyard.toml");
    std::fs::write(
        &path,
        format!(
            "metrics_file = \"{m}\"\nlock_dir = \"{l}\"\n[destinations.local]\nurl = \"{d}\"\n\
             [jobs.media]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\nschedule = \"0 15 2 * * *\"\n\
             [jobs.media.retention]\nkeep_last = 1\n",
            m = dir.join("dockyard.prom").display(),
            l = dir.join("locks").display(),
            d = dest.display(),
            c = app.name
        ),
    )
    .unwrap();
    path
}

#[test]
fn run_executes_the_config_jobs_with_retention_and_metrics() {
    let app = App::running("run", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (tmp, dest) = dest_dir();
    let cfg = config(tmp.path(), &app, &dest);
    let c = cfg.to_str().unwrap();
    dockyard(&["run", "--config", c]).ok();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = dockyard(&["run", "media", "--config", c, "--json"]).ok();
    // JSON Lines: the job's event, then the run's summary, last.
    let events = common::json_lines(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["job", "summary"], "{out}");
    assert_eq!(
        (&events[0]["job"], &events[0]["ok"], &events[1]["ok"]),
        (&"media".into(), &true.into(), &true.into()),
        "{out}"
    );
    let finished = events[0]["finished"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(finished).is_ok() && finished.ends_with('Z'),
        "{finished}"
    );
    assert_eq!(
        list(&dest).len(),
        1,
        "retention keep_last 1 was not applied"
    );
    let metrics = std::fs::read_to_string(tmp.path().join("dockyard.prom")).unwrap();
    assert!(
        metrics.contains("dockyard_job_success{job=\"media\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("dockyard_job_last_success_timestamp_seconds{job=\"media\"}"));

    let unknown = dockyard(&["run", "nosuchjob", "--config", c]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no job named \"nosuchjob\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn an_overlapping_run_is_refused_and_a_dead_holders_lock_is_taken_over() {
    let app = App::running("runlock", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let cfg = config(tmp.path(), &app, &dest);
    let c = cfg.to_str().unwrap();
    let locks = tmp.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = locks.join("media.lock");
    let now = chrono::Utc::now().to_rfc3339();
    std::fs::write(&lock, format!("pid 4242 since {now}\n")).unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    let r = dockyard(&["run", "--config", c]);
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(
        r.stderr.contains("already running") && r.stderr.contains("pid 4242"),
        "{}",
        r.stderr
    );
    assert!(list(&dest).is_empty());
    let metrics = std::fs::read_to_string(tmp.path().join("dockyard.prom")).unwrap();
    assert!(
        metrics.contains("dockyard_job_success{job=\"media\"} 0"),
        "{metrics}"
    );
    // A holder stuck for over a day is taken over even though it still holds the lock.
    std::fs::write(&lock, "pid 4242 since 2026-01-01T00:00:00+00:00\n").unwrap();
    let r = dockyard(&["run", "--config", c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("held for over 24 hours"), "{}", r.stderr);
    assert_eq!(list(&dest).len(), 1);
    // A clean end leaves an empty lock file, so nothing is "taken over" next time...
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "");
    // ...while a holder killed with SIGKILL leaves its line (its lock is free, its pid dead).
    drop(held);
    std::fs::write(&lock, format!("pid 4242 since {now}\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = dockyard(&["run", "--config", c]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("taking over the lock"), "{}", r.stderr);
}

#[test]
fn unknown_config_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[jobs.media]\ncontainer = \"x\"\ndestinations = []\nkeep_daily = 3\n",
    )
    .unwrap();
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("keep_daily") && r.stderr.contains(cfg.to_str().unwrap()),
        "{}",
        r.stderr
    );
}

#[test]
fn daemon_runs_a_job_on_its_schedule_and_stops_cleanly_on_sigterm_mid_job() {
    let app = App::running("daemon", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=12 2>/dev/null");
    let (tmp, dest) = dest_dir();
    let cfg = tmp.path().join("dockyard.toml");
    std::fs::write(
        &cfg,
        format!(
            "metrics_file = \"{m}\"\nlock_dir = \"{l}\"\nstate_dir = \"{l}\"\n[destinations.local]\nurl = \"{d}\"\n\
             [jobs.every-second]\ncontainer = \"{c}\"\ndestinations = [\"local\"]\nschedule = \"* * * * * *\"\nlevel = 19\n",
            m = tmp.path().join("dockyard.prom").display(),
            l = tmp.path().join("locks").display(),
            d = dest.display(),
            c = app.name
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dockyard"))
        .args([
            "daemon",
            "--config",
            cfg.to_str().unwrap(),
            "--log-json",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // At least two scheduled runs complete...
    let limit = std::time::Duration::from_secs(90);
    common::wait_until("the daemon ran the job twice", limit, || {
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        list(&dest).len() >= 2
    });
    // ...then SIGTERM while the next one is writing.
    common::wait_until("a third run is writing", limit, || {
        common::files(&dest).iter().any(|f| f.ends_with(".partial"))
    });
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    // --log-json: every line on stderr is JSON, the final error included.
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        logged
            .iter()
            .any(|l| l["fields"]["message"] == "job finished"),
        "{stderr}"
    );
    let last = logged.last().unwrap();
    assert_eq!(last["fields"]["exit_code"], 130, "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log: {stderr}"
    );
    // --json: JSON Lines of events naming the job, ending with the error.
    let events = common::json_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(events
        .iter()
        .any(|e| e["type"] == "scheduled" && e["job"] == "every-second"));
    assert!(events
        .iter()
        .any(|e| e["type"] == "job" && e["job"] == "every-second" && e["ok"] == true));
    let last = events.last().unwrap();
    assert_eq!(
        (
            &last["type"],
            &last["error"]["exit_code"],
            &last["error"]["category"]
        ),
        (&"error".into(), &130.into(), &"interrupted".into()),
        "{last}"
    );
    assert!(
        !common::files(&dest).iter().any(|f| f.ends_with(".partial")),
        "a partial backup was left: {:?}",
        common::files(&dest)
    );
    assert!(app.helpers().is_empty(), "helper left after SIGTERM");
    let metrics = std::fs::read_to_string(tmp.path().join("dockyard.prom")).unwrap();
    assert!(
        metrics.contains("dockyard_job_success{job=\"every-second\"} 1"),
        "{metrics}"
    );
}

#[test]
fn restore_with_stop_restores_a_stopped_app_and_starts_it_again() {
    let app = App::running("rstop", &["/srv/media"]);
    app.sh("echo one > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    app.sh("echo two > /srv/media/a");
    let before = docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]);
    let out = dockyard(&[
        "restore",
        &app.name,
        "--from",
        d,
        "--stop",
        "--stop-timeout",
        "1",
        "--no-safety-backup",
    ])
    .ok();
    assert!(out.contains("started again"), "{out}");
    assert!(running(&app));
    assert_ne!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]),
        before
    );
    assert_eq!(app.sh("cat /srv/media/a"), "one\n");
}

#[test]
fn a_job_with_two_destinations_stops_the_app_and_runs_its_hooks_once() {
    let app = App::running("oneguard", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let job = TwoDestinations::new(&app);
    let (tmp, first, second) = (&job.tmp, &job.first, &job.second);
    let path = job.config(
        "stop_during_backup = true\nstop_timeout = 1\n\
         pre_hook = \"echo pre >> /srv/media/hooks\"\npost_hook = \"echo post >> /srv/media/hooks\"\n",
    );
    let out = dockyard(&["run", "--config", path.to_str().unwrap(), "--json"]).ok();
    let events = common::json_lines(&out);
    let dests = events[0]["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 2, "{out}");
    assert!(dests.iter().all(|d| d["ok"] == true), "{out}");
    assert_eq!((list(first).len(), list(second).len()), (1, 1));
    // One guard for the job: the hooks ran once around both backups, not once per destination.
    assert_eq!(app.sh("cat /srv/media/hooks"), "pre\npost\n");
    assert!(running(&app), "the app was left stopped");
    // The file's lock_dir holds every lock of the run: the job's and the container's.
    let id = docker(&["inspect", "-f", "{{.Id}}", &app.name]);
    let locks = tmp.path().join("locks");
    for name in [
        "media.lock".to_string(),
        format!("containers/{}.lock", id.trim()),
    ] {
        assert!(
            locks.join(&name).exists(),
            "no {name} in {}",
            locks.display()
        );
    }
}

#[test]
fn a_job_that_ends_first_never_starts_the_container_another_job_stopped() {
    let a = App::running("side-a", &["/srv/media"]);
    let b = App::running("side-b", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let path = tmp.path().join("dockyard.toml");
    let job = |name: &str, app: &App| {
        format!(
            "[jobs.{name}]\ncontainer = \"{}\"\ndestinations = [\"local\"]\nstop_during_backup = true\nstop_timeout = 1\n",
            app.name
        )
    };
    std::fs::write(
        &path,
        format!(
            "parallel_jobs = 2\nlock_dir = \"{l}\"\nstate_dir = \"{l}\"\n[destinations.local]\nurl = \"{d}\"\n{}{}",
            job("a", &a),
            job("b", &b),
            l = tmp.path().join("locks").display(),
            d = dest.display(),
        ),
    )
    .unwrap();
    let (pa, pb) = (format!("written-{}", a.name), format!("written-{}", b.name));
    let mut run = common::fault::Faulted::start(
        &["run", "--config", path.to_str().unwrap()],
        &format!("{pa},{pb}"),
        &[],
    );
    // Both containers are stopped, both archives written; job a finishes first.
    run.reached(&pa);
    run.reached(&pb);
    assert!(!running(&a) && !running(&b));
    run.release(&pa);
    common::wait_until(
        "job a's backup is listed and its container runs again",
        std::time::Duration::from_secs(120),
        || {
            running(&a)
                && list(&dest)
                    .iter()
                    .any(|m| m["container"] == a.name.as_str())
        },
    );
    // Job b's container stays stopped until job b is done with it.
    assert!(
        !running(&b),
        "job a started the container job b had stopped, in the middle of b's backup"
    );
    run.release(&pb);
    let (code, stderr) = run.finish();
    assert_eq!(code, 0, "{stderr}");
    assert!(running(&b));
    assert_eq!(list(&dest).len(), 2);
}

#[test]
fn a_guard_failure_is_reported_for_every_destination_of_the_job() {
    let app = App::running("guardfail", &["/srv/media"]);
    let job = TwoDestinations::new(&app);
    let (first, second) = (&job.first, &job.second);
    let missing = common::unique("gone");
    let config = |extra: &str| job.config(extra);
    // A container to stop that is not there: nothing is backed up, and both destinations say so.
    let path = config(&format!(
        "stop_during_backup = true\nstop_timeout = 1\nstop_also = [\"{missing}\"]\n"
    ));
    let r = dockyard(&["run", "--config", path.to_str().unwrap(), "--json"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let events = common::json_lines(&r.stdout);
    let dests = events[0]["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 2, "{}", r.stdout);
    for d in dests {
        assert_eq!(d["ok"], false, "{}", r.stdout);
        assert!(
            d["error"].as_str().unwrap().contains(&missing),
            "{}",
            r.stdout
        );
    }
    assert!(running(&app), "the app was left stopped");
    assert_eq!((list(first).len(), list(second).len()), (0, 0));
    // A post-hook failing after both backups: they are written and reported, the job fails.
    let path = config("post_hook = \"exit 5\"\n");
    let r = dockyard(&["run", "--config", path.to_str().unwrap(), "--json"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    let events = common::json_lines(&r.stdout);
    let job = &events[0];
    assert_eq!(job["ok"], false, "{}", r.stdout);
    assert!(
        job["error"].as_str().unwrap().contains("post-hook"),
        "{}",
        r.stdout
    );
    let dests = job["destinations"].as_array().unwrap();
    assert_eq!(dests.len(), 2, "{}", r.stdout);
    assert!(
        dests.iter().all(|d| d["ok"] == true && d["id"].is_string()),
        "{}",
        r.stdout
    );
    assert_eq!((list(first).len(), list(second).len()), (1, 1));
}

/// A job `media` of one app to two local destinations, `one` and `two`, locks and state in the
/// same temporary directory.
struct TwoDestinations {
    app: String,
    tmp: tempfile::TempDir,
    first: std::path::PathBuf,
    second: std::path::PathBuf,
}

impl TwoDestinations {
    fn new(app: &App) -> TwoDestinations {
        let (tmp, first) = dest_dir();
        let second = tmp.path().join("second");
        std::fs::create_dir_all(&second).unwrap();
        TwoDestinations {
            app: app.name.clone(),
            tmp,
            first,
            second,
        }
    }

    /// Writes the config, with `extra` (TOML keys of the job) at the end; returns its path.
    fn config(&self, extra: &str) -> std::path::PathBuf {
        let path = self.tmp.path().join("dockyard.toml");
        std::fs::write(
            &path,
            format!(
                "lock_dir = \"{l}\"\nstate_dir = \"{l}\"\n[destinations.one]\nurl = \"{a}\"\n\
                 [destinations.two]\nurl = \"{b}\"\n[jobs.media]\ncontainer = \"{c}\"\n\
                 destinations = [\"one\", \"two\"]\n{extra}",
                l = self.tmp.path().join("locks").display(),
                a = self.first.display(),
                b = self.second.display(),
                c = self.app
            ),
        )
        .unwrap();
        path
    }
}
