//! Hooks in other containers around a backup (`--exec-before`, `--exec-after`, config
//! `exec_before`/`exec_after`) on a real engine: they run in order, in their own containers, the
//! before-hooks ahead of the stops and the backup, the after-hooks once the containers run again;
//! a failing before-hook backs up nothing and still runs the after-hooks and starts nothing it did
//! not stop; the after-hooks run when the backup fails and when the run is stopped by SIGTERM.

mod common;

use common::dest::Dest;
use common::App;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The log the hooks append to in `cache`, a line each.
fn log(cache: &App) -> String {
    cache.sh("cat /tmp/hooks 2>/dev/null || true")
}

#[test]
fn hooks_run_in_order_in_their_containers_around_the_stops_and_the_backup() {
    // The app and the cache share the app's volume: what the before-hook writes there is backed
    // up, and the after-hook removes it. (The cache, declared last, is removed first.)
    let app = App::running("hooks-app", &["/srv/media"]);
    let cache = App::create_with(
        "hooks-cache",
        &["--volumes-from", &app.name],
        common::image(),
    );
    cache.start();
    let dest = Dest::local();
    let url = dest.url();
    let before1 = format!(
        "{}:echo before-1 >> /tmp/hooks; touch /srv/media/flushed",
        cache.name
    );
    let before2 = format!("{}:echo before-2 >> /tmp/hooks", cache.name);
    let after = format!(
        "{}:echo after >> /tmp/hooks; rm /srv/media/flushed",
        cache.name
    );
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--json",
        "--stop",
        "--stop-timeout",
        "1",
        "--exec-before",
        &before1,
        "--exec-before",
        &before2,
        "--exec-after",
        &after,
    ]);
    let done = json(&r.ok());
    assert_eq!(log(&cache), "before-1\nbefore-2\nafter\n");
    assert!(dest
        .archive_names(&done["backup"])
        .contains(&"srv/media/flushed".to_string()));
    assert_eq!(cache.sh("ls /srv/media"), "");
    // The app was stopped and runs again.
    assert!(done["downtime_seconds"].is_number(), "{done}");
    assert_eq!(
        common::docker(&["inspect", "-f", "{{.State.Running}}", &app.name]).trim(),
        "true"
    );
}

#[test]
fn a_failing_before_hook_backs_up_nothing_and_the_after_hooks_still_run() {
    let app = App::running("hooks-fail", &["/srv/media"]);
    let cache = App::running("hooks-fail-cache", &[]);
    let dest = Dest::local();
    let url = dest.url();
    let started = common::docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]);
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--stop",
        "--exec-before",
        &format!(
            "{}:echo before >> /tmp/hooks; echo cache is read-only >&2; exit 4",
            cache.name
        ),
        "--exec-before",
        &format!("{}:echo never >> /tmp/hooks", cache.name),
        "--exec-after",
        &format!("{}:echo after >> /tmp/hooks", cache.name),
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    for want in [
        cache.name.as_str(),
        "exec-before hook",
        "cache is read-only",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.stderr);
    }
    assert_eq!(log(&cache), "before\nafter\n");
    assert!(
        !std::path::Path::new(&url).exists() || dest.names().is_empty(),
        "nothing is written"
    );
    // It failed before the stops: the app never stopped.
    assert_eq!(
        common::docker(&["inspect", "-f", "{{.State.StartedAt}}", &app.name]),
        started
    );

    // A backup that fails (here: a path the app does not have) still runs them.
    let r = dest.run(&[
        "backup",
        &app.name,
        "--to",
        &url,
        "--path",
        "/nowhere",
        "--exec-after",
        &format!("{}:echo after-failed >> /tmp/hooks", cache.name),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(log(&cache), "before\nafter\nafter-failed\n");
}

#[test]
fn after_hooks_run_when_the_backup_is_stopped_by_sigterm() {
    let app = App::running("hooks-term", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let cache = App::running("hooks-term-cache", &[]);
    let dest = Dest::local();
    let url = dest.url();
    let point = format!("written-{}", app.name);
    let mut run = common::fault::Faulted::start(
        &[
            "backup",
            &app.name,
            "--to",
            &url,
            "--exec-before",
            &format!("{}:echo before >> /tmp/hooks", cache.name),
            "--exec-after",
            &format!("{}:echo after >> /tmp/hooks", cache.name),
        ],
        &point,
        &[],
    );
    run.reached(&point);
    assert_eq!(log(&cache), "before\n");
    run.signal("TERM");
    let (code, stderr) = run.finish();
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(log(&cache), "before\nafter\n");
    let listed = json(&dest.run(&["list", "--to", &url, "--json"]).ok());
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0, "{listed}");
}

#[test]
fn a_config_job_runs_its_hooks_and_a_bad_one_is_named() {
    let app = App::running("hooks-job", &["/srv/media"]);
    let cache = App::running("hooks-job-cache", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("backups");
    let job = |hooks: &str| common::media_job(tmp.path(), &dest, &app.name, hooks);
    let cfg = job(&format!(
        "exec_before = [\"{c}:echo job-before >> /tmp/hooks\"]\nexec_after = [\"{c}:echo job-after >> /tmp/hooks\"]\n",
        c = cache.name
    ));
    common::dockyard(&["run", "--config", cfg.to_str().unwrap()]).ok();
    assert_eq!(log(&cache), "job-before\njob-after\n");
    assert_eq!(common::list(&dest).len(), 1);
    let cfg = job("exec_before = [\"no command\"]\n");
    let r = common::dockyard(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("job \"media\": exec_before: \"no command\" is not CONTAINER:COMMAND"),
        "{}",
        r.stderr
    );
}
