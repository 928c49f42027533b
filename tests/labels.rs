//! Containers that opt in with labels (`dockyard.enable=true`) on a real engine: `run` backs them
//! up and ships their logs beside the config file's jobs, a bad label fails only its container's
//! job (naming the container and the key), a label job that clashes with a file job fails naming
//! both, `config check` lists label jobs beside file jobs, and the daemon takes up containers
//! created and removed after it started. Each test's containers carry a `dockyard.instance` of
//! their own, which its config names, so tests running side by side never see each other's.

mod common;

use std::path::Path;

use common::daemon::Daemon;
use common::{
    dest_dir, docker, dockyard, job_events, list, local_config, one_document, unique, App,
};
use serde_json::Value;

/// A config with one local destination, `[labels] instance = INSTANCE`, and `jobs`.
fn config(tmp: &Path, dest: &Path, instance: &str, jobs: &str) -> std::path::PathBuf {
    local_config(
        tmp,
        dest,
        &format!("[labels]\ninstance = \"{instance}\"\n{jobs}"),
    )
}

/// A running container from the test image with a volume at `/srv/media` and `/srv/logs`, the
/// opt-in label, this test's instance and `labels`.
fn labelled(what: &str, instance: &str, labels: &[&str]) -> App {
    let mut extra = vec![
        "-v".to_string(),
        "/srv/media".to_string(),
        "-v".to_string(),
        "/srv/logs".to_string(),
        "--label".to_string(),
        "dockyard.enable=true".to_string(),
        "--label".to_string(),
        format!("dockyard.instance={instance}"),
    ];
    for l in labels {
        extra.push("--label".into());
        extra.push(l.to_string());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let app = App::create_with(what, &extra, common::image());
    app.start();
    app
}

#[test]
fn run_backs_up_labelled_containers_beside_file_jobs_and_a_bad_label_fails_only_its_own() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let good = labelled(
        "lbl-good",
        &instance,
        &[
            "dockyard.to=local",
            "dockyard.paths=/srv/media",
            "dockyard.tags=from-labels,nightly",
            "dockyard.keep-last=1",
            "dockyard.logs.to=local",
            "dockyard.logs.path=/srv/logs",
        ],
    );
    good.sh("echo photo > /srv/media/a.jpg; echo 'GET / 200' > /srv/logs/app.log");
    let bad = labelled(
        "lbl-bad",
        &instance,
        &["dockyard.to=local", "dockyard.keep-dayly=7"],
    );
    let file = App::running("lbl-file", &["/srv/media"]);
    let cfg = config(
        tmp.path(),
        &dest,
        &instance,
        &format!(
            "[jobs.files]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n",
            file.name
        ),
    );
    let cfg = cfg.to_str().unwrap();
    for _ in 0..2 {
        let r = dockyard(&["run", "--config", cfg, "--json"]);
        assert_eq!(
            r.code, 2,
            "the bad label's job fails: {}\n{}",
            r.stdout, r.stderr
        );
        let jobs = job_events(&r.stdout);
        let names: Vec<&String> = jobs.keys().collect();
        let mut want = [
            "files".to_string(),
            bad.name.clone(),
            good.name.clone(),
            format!("{}.logs", good.name),
        ];
        want.sort();
        assert_eq!(names, want.iter().collect::<Vec<_>>(), "{}", r.stdout);
        assert_eq!(jobs["files"]["ok"], true);
        assert_eq!(jobs[&good.name]["ok"], true, "{}", r.stdout);
        assert_eq!(
            jobs[&format!("{}.logs", good.name)]["ok"],
            true,
            "{}",
            r.stdout
        );
        let error = jobs[&bad.name]["error"].as_str().unwrap();
        assert!(
            error.contains(&bad.name) && error.contains("dockyard.keep-dayly"),
            "{error}"
        );
    }
    // The labelled container's backup has its paths and tags, and keep-last=1 pruned the first.
    let all = list(&dest);
    let of = |c: &str| {
        all.iter()
            .filter(|m| m["container"] == c)
            .cloned()
            .collect::<Vec<_>>()
    };
    let good_backups = of(&good.name);
    assert_eq!(good_backups.len(), 1, "keep-last=1: {all:?}");
    assert_eq!(good_backups[0]["paths"][0]["path"], "/srv/media");
    let tags: Vec<&str> = good_backups[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tags.contains(&"from-labels") && tags.contains(&"nightly"),
        "{tags:?}"
    );
    assert_eq!(of(&file.name).len(), 2, "the file job has no retention");
    assert!(of(&bad.name).is_empty());
    // The log was shipped.
    let shipped = std::process::Command::new("find")
        .arg(dest.join("logs"))
        .output()
        .unwrap();
    let shipped = String::from_utf8_lossy(&shipped.stdout);
    assert!(
        shipped.contains(&good.name) && shipped.contains("app.log"),
        "{shipped}"
    );
}

#[test]
fn a_label_job_that_clashes_with_a_file_job_fails_naming_both_and_the_file_job_runs() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let web = labelled("lbl-clash", &instance, &["dockyard.to=local"]);
    let cfg = config(
        tmp.path(),
        &dest,
        &instance,
        &format!(
            "[jobs.media]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n",
            web.name
        ),
    );
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let jobs = job_events(&r.stdout);
    assert_eq!(jobs["media"]["ok"], true);
    let error = jobs[&web.name]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("{:?}", web.name)) && error.contains("\"media\""),
        "{error}"
    );
    assert_eq!(list(&dest).len(), 1, "only the file job's backup");
    // `run JOB` takes a label job's name too, and a name no job has lists those there are.
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "nope"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("\"nope\"") && r.stderr.contains("media") && r.stderr.contains(&web.name),
        "{}",
        r.stderr
    );
}

#[test]
fn config_check_lists_label_jobs_beside_file_jobs() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let web = labelled(
        "lbl-check",
        &instance,
        &["dockyard.to=local", "dockyard.schedule=30 2 * * *"],
    );
    let bad = labelled("lbl-check-bad", &instance, &["dockyard.to=offsite"]);
    let file = App::running("lbl-check-file", &["/srv/media"]);
    let cfg = config(
        tmp.path(),
        &dest,
        &instance,
        &format!(
            "[jobs.files]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n",
            file.name
        ),
    );
    let r = dockyard(&[
        "config",
        "check",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let doc = one_document(&r.stdout);
    let job = |name: &str| {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no job {name}: {doc}"))
    };
    assert_eq!(job("files")["source"], "file");
    let w = job(&web.name);
    assert_eq!(
        (
            &w["source"],
            &w["kind"],
            &w["container_found"],
            &w["schedule"]
        ),
        (
            &Value::from("labels"),
            &Value::from("backup"),
            &Value::from(true),
            &Value::from("30 2 * * *")
        )
    );
    let b = job(&bad.name);
    assert_eq!(b["kind"], "invalid");
    let problems = doc["problems"].to_string();
    assert!(
        problems.contains("dockyard.to")
            && problems.contains("offsite")
            && problems.contains(&bad.name),
        "{problems}"
    );
    // The text report says which jobs come from labels.
    let r = dockyard(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(
        r.stdout
            .contains(&format!("job {} (backup, from labels)", web.name)),
        "{}",
        r.stdout
    );
}

#[test]
fn the_daemon_takes_up_labelled_containers_created_and_removed_after_it_started() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let cfg = config(tmp.path(), &dest, &instance, "");
    let daemon = Daemon::start(&cfg, &[("RUST_LOG", "dockyard=info")]);
    // Every second: the test waits for the first run, not for a time.
    let web = labelled(
        "lbl-daemon",
        &instance,
        &["dockyard.to=local", "dockyard.schedule=* * * * * *"],
    );
    web.sh("echo v1 > /srv/media/a.txt");
    let mut seen = Vec::new();
    let mut found = false;
    loop {
        let e = daemon.next();
        seen.push(e.clone());
        if e["type"] == "labels" && e["job"] == web.name.as_str() {
            assert_eq!(e["change"], "found", "{e}");
            found = true;
        }
        if e["type"] == "job" && e["job"] == web.name.as_str() {
            assert!(found, "found before it ran: {seen:?}");
            assert_eq!(e["ok"], true, "{e}");
            break;
        }
    }
    assert!(list(&dest)
        .iter()
        .any(|m| m["container"] == web.name.as_str()));
    // Removed: said, and no longer run.
    let name = web.name.clone();
    drop(web);
    loop {
        let e = daemon.next();
        if e["type"] == "labels" && e["job"] == name.as_str() {
            assert_eq!(e["change"], "removed", "{e}");
            break;
        }
    }
    let rest = daemon.stop();
    assert!(
        !rest
            .iter()
            .any(|e| e["type"] == "scheduled" && e["job"] == name.as_str()),
        "{rest:?}"
    );
}

#[test]
fn labels_reach_only_containers_that_let_them_for_dumps_and_hooks() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    // A container of this dockyard's that lets labels reach it, and one that does not.
    let cache = App::create_with(
        "lbl-cache",
        &[
            "--label",
            "dockyard.reachable=true",
            "--label",
            &format!("dockyard.instance={instance}"),
        ],
        common::image(),
    );
    cache.start();
    let victim = App::running("lbl-victim", &[]);
    let hooks = |target: &str| {
        [
            format!("dockyard.dump={target}:exec:echo 'row 1'"),
            format!("dockyard.exec-before.1={target}:echo before >> /tmp/hooks"),
            format!("dockyard.exec-after={target}:echo after >> /tmp/hooks"),
        ]
    };
    let [dump, before, after] = hooks(&cache.name);
    let web = labelled(
        "lbl-dump",
        &instance,
        &["dockyard.to=local", &dump, &before, &after],
    );
    let [dump, before, _] = hooks(&victim.name);
    let evil = labelled("lbl-evil", &instance, &["dockyard.to=local", &before]);
    let thief = labelled("lbl-thief", &instance, &["dockyard.to=local", &dump]);
    let stopper = labelled(
        "lbl-stopper",
        &instance,
        &[
            "dockyard.to=local",
            "dockyard.stop=true",
            &format!("dockyard.stop-also={}", victim.name),
        ],
    );
    let cfg = config(tmp.path(), &dest, &instance, "");
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(
        r.code, 2,
        "{}
{}",
        r.stdout, r.stderr
    );
    let jobs = job_events(&r.stdout);
    assert_eq!(jobs[&web.name]["ok"], true, "{}", r.stdout);
    for (app, key) in [
        (&evil, "dockyard.exec-before"),
        (&thief, "dockyard.dump"),
        (&stopper, "dockyard.stop-also"),
    ] {
        let error = jobs[&app.name]["error"].as_str().unwrap();
        assert!(
            error.contains(key)
                && error.contains(&victim.name)
                && error.contains("dockyard.reachable=true"),
            "{error}"
        );
    }
    // Nothing ran in, was read from or stopped the container that did not let labels reach it.
    assert_eq!(
        victim.sh("cat /tmp/hooks 2>/dev/null || echo none"),
        "none\n"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &victim.name]).trim(),
        "true"
    );
    let backups = list(&dest);
    assert_eq!(backups.len(), 1, "{backups:?}");
    let m = &backups[0];
    assert_eq!(m["container"], web.name.as_str());
    assert_eq!(m["dumps"][0]["container"], cache.name.as_str(), "{m}");
    assert_eq!(m["dumps"][0]["size"], 6, "{m}");
    assert_eq!(cache.sh("cat /tmp/hooks"), "before\nafter\n");
}

#[test]
fn run_job_runs_the_job_named_though_another_job_of_the_file_cannot_be_lowered() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let app = App::running("lbl-named", &["/srv/media"]);
    let cfg = config(
        tmp.path(),
        &dest,
        &instance,
        &format!(
            "[jobs.good]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n\
             [jobs.secret]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n\
             passphrase_file = \"{}/missing\"\n",
            app.name,
            app.name,
            tmp.path().display()
        ),
    );
    let cfg = cfg.to_str().unwrap();
    let r = dockyard(&["run", "--config", cfg, "good"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(list(&dest).len(), 1);
    // Named, it fails as before, naming the file.
    let r = dockyard(&["run", "--config", cfg, "secret"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);
}

#[test]
fn the_daemon_catches_up_a_labelled_job_whose_run_was_missed() {
    let instance = unique("inst");
    let tmp = tempfile::tempdir().unwrap();
    let (_d, dest) = dest_dir();
    let cfg = config(tmp.path(), &dest, &instance, "");
    // Yearly, last run two years ago (the record the daemon keeps, as it writes it).
    let web = labelled(
        "lbl-catch",
        &instance,
        &[
            "dockyard.to=local",
            "dockyard.schedule=0 3 1 1 *",
            "dockyard.catch-up=true",
        ],
    );
    let stamps = tmp.path().join("state/last-run");
    std::fs::create_dir_all(&stamps).unwrap();
    let then = chrono::Utc::now() - chrono::Duration::days(730);
    std::fs::write(stamps.join(&web.name), format!("{}\n", then.to_rfc3339())).unwrap();
    let daemon = Daemon::start(&cfg, &[]);
    loop {
        let e = daemon.next();
        if e["type"] == "job" && e["job"] == web.name.as_str() {
            assert_eq!(e["ok"], true, "{e}");
            break;
        }
    }
    daemon.stop();
    assert_eq!(list(&dest).len(), 1);
}
