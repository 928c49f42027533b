//! Defaults an operator relies on without reading the manual (issue 9, points 20-24), against a
//! real engine and Garage: a retried restore, a read-only source, the shipped example config, a
//! destination that is down, and secrets in a snapshot.

mod common;

use common::forge;
use common::peers::{pairs, var, S3};
use common::{dest_dir, dockyard, dockyard_env, list, unique, App};

#[test]
fn a_retried_restore_never_brings_back_the_state_it_escaped() {
    let app = App::running("retry", &["/srv/media"]);
    app.sh("echo good > /srv/media/f");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    app.sh("echo broken > /srv/media/f");

    let dry = dockyard(&["restore", &app.name, "--from", d, "--dry-run"]).ok();
    assert!(
        dry.contains(&format!(
            "a safety backup (tag pre-restore) of /srv/media would first be written to {d}"
        )),
        "{dry}"
    );
    let out = dockyard(&["restore", &app.name, "--from", d, "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let safety = v["safety_backup"]["id"].as_str().unwrap().to_string();
    let undo = v["safety_backup"]["undo"].as_str().unwrap().to_string();
    assert_eq!(
        undo,
        format!("dockyard restore {} --from {d} --backup {safety}", app.name)
    );
    assert_eq!(app.sh("cat /srv/media/f"), "good\n");

    // Retrying `latest` restores the backup again, not the safety backup of the broken state.
    app.sh("echo broken-again > /srv/media/f");
    let out = dockyard(&["restore", &app.name, "--from", d]).ok();
    assert!(out.contains("to undo: dockyard restore"), "{out}");
    assert_eq!(app.sh("cat /srv/media/f"), "good\n");

    // The printed undo command works as printed.
    let args: Vec<&str> = undo.split(' ').skip(1).collect();
    dockyard(&[&args[..], &["--no-safety-backup"]].concat()).ok();
    assert_eq!(app.sh("cat /srv/media/f"), "broken\n");
}

#[test]
fn a_read_only_source_restores_with_the_safety_backup_written_elsewhere() {
    let app = App::running("ro-src", &["/srv/media"]);
    app.sh("echo good > /srv/media/f");
    let rw = S3::garage();
    let ro = S3 {
        key_id: var("DOCKYARD_TEST_S3_RO_KEY_ID"),
        secret: var("DOCKYARD_TEST_S3_RO_SECRET"),
        ..rw.clone()
    };
    let prefix = unique("ro-src");
    let url = format!("s3://{}/{prefix}", rw.bucket);
    let env = rw.env();
    dockyard_env(&["backup", &app.name, "--to", &url], &pairs(&env)).ok();
    app.sh("echo broken > /srv/media/f");

    // A disaster-recovery key that may only read: the safety backup cannot go there.
    let env = ro.env();
    let r = dockyard_env(&["restore", &app.name, "--from", &url], &pairs(&env));
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("--safety-backup-to"), "{}", r.stderr);
    assert_eq!(
        app.sh("cat /srv/media/f"),
        "broken\n",
        "a failed restore changed the volume"
    );

    // Elsewhere it works; and an old safety backup of this container there expires.
    let (_tmp, local) = dest_dir();
    let old = format!("{}-20261101T000000Z-0ld0", app.name);
    forge::write_backup_at(
        &local,
        &old,
        &app.name,
        &["/srv/media"],
        forge::header(b"srv/media/", b'5', 0, 0o755),
        chrono::Utc::now() - chrono::Duration::days(10),
        &["pre-restore"],
    );
    let r = dockyard_env(
        &[
            "restore",
            &app.name,
            "--from",
            &url,
            "--safety-backup-to",
            local.to_str().unwrap(),
        ],
        &pairs(&env),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(app.sh("cat /srv/media/f"), "good\n");
    let here = list(&local);
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(here[0]["tags"][0], "pre-restore");
    assert_ne!(
        here[0]["id"],
        old.as_str(),
        "the expired safety backup is still there"
    );
    rw.clear(&prefix);
}

/// `config/dockyard.toml` as shipped, pointed at a test container and local directories.
fn shipped_config(app: &App, dir: &std::path::Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dockyard.toml"))
            .unwrap();
    let mut c: toml::Value = toml::from_str(&text).unwrap();
    let t = c.as_table_mut().unwrap();
    t.insert(
        "metrics_file".into(),
        dir.join("m.prom").display().to_string().into(),
    );
    t.insert(
        "lock_dir".into(),
        dir.join("locks").display().to_string().into(),
    );
    t.remove("logs");
    t.remove("notify");
    let dests = t["destinations"].as_table_mut().unwrap();
    dests["offsite"]["url"] = dir.join("offsite").display().to_string().into();
    dests["local"]["url"] = dir.join("local").display().to_string().into();
    let job = t["jobs"]["media"].as_table_mut().unwrap();
    job.insert("container".into(), app.name.clone().into());
    job.insert("pre_hook".into(), "true".into());
    job.insert("post_hook".into(), "true".into());
    let path = dir.join("dockyard.toml");
    std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
    path
}

#[test]
fn the_shipped_example_config_prunes_what_its_policy_says() {
    let app = App::running("shipped", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = shipped_config(&app, tmp.path());
    let local = tmp.path().join("local");
    // A year and a half of nightly backups, tagged `nightly` as the example config tags them.
    let now = chrono::Utc::now();
    for day in 1..=550 {
        let at = now - chrono::Duration::days(day);
        let id = format!("{}-{}-{:04x}", app.name, at.format("%Y%m%dT%H%M%SZ"), day);
        forge::write_backup_at(
            &local,
            &id,
            &app.name,
            &["/srv/media"],
            forge::header(b"srv/media/", b'5', 0, 0o755),
            at,
            &["nightly"],
        );
    }
    for _ in 0..2 {
        dockyard(&["run", "media", "--config", cfg.to_str().unwrap()]).ok();
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let left = list(&local);
    // keep_last 3, daily 14, weekly 8, monthly 12, yearly 3, within 2d: a few dozen remain, the
    // newest ones among them, and nothing older than a year (yearly keeps the newest of 2025,
    // which monthly keeps too).
    assert!((25..=45).contains(&left.len()), "{} left", left.len());
    let oldest = left
        .iter()
        .map(|m| m["created"].as_str().unwrap().to_string())
        .min()
        .unwrap();
    let a_year_ago = (now - chrono::Duration::days(366)).to_rfc3339();
    assert!(oldest > a_year_ago, "oldest kept: {oldest}");
    assert!(left.iter().any(|m| m["tags"][0] == "nightly"));
}

#[test]
fn a_destination_that_is_down_does_not_stop_the_others() {
    let app = App::running("multi", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("local");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "metrics_file = \"{m}\"\nlock_dir = \"{l}\"\n\
             [destinations.offsite]\nurl = \"s3://down/x\"\ns3_endpoint = \"http://127.0.0.1:9\"\n\
             [destinations.local]\nurl = \"{d}\"\n\
             [jobs.media]\ncontainer = \"{c}\"\ndestinations = [\"offsite\", \"local\"]\n",
            m = tmp.path().join("m.prom").display(),
            l = tmp.path().join("locks").display(),
            d = local.display(),
            c = app.name
        ),
    )
    .unwrap();
    let r = dockyard_env(
        &["run", "--config", cfg.to_str().unwrap(), "--json"],
        &[
            ("AWS_ACCESS_KEY_ID", "x"),
            ("AWS_SECRET_ACCESS_KEY", "y"),
            ("AWS_REGION", "garage"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert_ne!(r.code, 0, "{}", r.stderr);
    let events = common::json_lines(&r.stdout);
    let v = events
        .iter()
        .find(|e| e["type"] == "job" && e["job"] == "media")
        .expect("a job event");
    let dests = &v["destinations"];
    assert_eq!(dests[0]["destination"], "offsite");
    assert_eq!(dests[0]["ok"], false, "{v}");
    assert_eq!(dests[1]["destination"], "local");
    assert_eq!(dests[1]["ok"], true, "{v}");
    assert_eq!(list(&local).len(), 1, "no local copy was made");
    assert!(
        r.stderr.contains("1 of 2 destinations failed (offsite)"),
        "{}",
        r.stderr
    );
    let metrics = std::fs::read_to_string(tmp.path().join("m.prom")).unwrap();
    assert!(
        metrics.contains("dockyard_destination_success{job=\"media\",destination=\"local\"} 1")
            && metrics
                .contains("dockyard_destination_success{job=\"media\",destination=\"offsite\"} 0"),
        "{metrics}"
    );
}

#[test]
fn a_snapshot_keeps_the_environment_names_but_not_the_secrets() {
    let app = App::create_with(
        "snapenv",
        &[
            "-v",
            "/srv/media",
            "-e",
            "SECRET_KEY=hunter2-very-secret",
            "-e",
            "DEBUG=1",
        ],
        common::image(),
    );
    app.start();
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
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
    let on_disk: String = std::fs::read_dir(&dest)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "json").then(|| std::fs::read_to_string(p).unwrap())
        })
        .collect();
    let listed = dockyard(&["list", "--to", d, "--json"]).ok();
    for (what, text) in [("output", &out), ("manifest", &on_disk), ("list", &listed)] {
        assert!(!text.contains("hunter2"), "the secret is in the {what}");
        assert!(
            text.contains("SECRET_KEY=<redacted hmac-sha256:"),
            "{what}: {text}"
        );
    }
    let out = dockyard(&[
        "snapshot",
        &app.name,
        "--tag",
        "pre-upgrade",
        "--to",
        d,
        "--include-env",
        "--json",
    ])
    .ok();
    assert!(out.contains("SECRET_KEY=hunter2-very-secret"), "{out}");
}

#[test]
fn no_log_level_shows_the_apps_environment() {
    let secret = format!("hunter2-{}", unique("pw"));
    let app = App::create_with(
        "traceenv",
        &[
            "-v",
            "/srv/media",
            "-e",
            &format!("APP_DB_PASSWORD={secret}"),
        ],
        common::image(),
    );
    app.start();
    app.sh("echo photo > /srv/media/p.jpg");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let runs = [
        (vec!["-vv", "backup", &app.name, "--to", d], vec![]),
        (
            vec!["-vv", "snapshot", &app.name, "--tag", "t", "--to", d],
            vec![],
        ),
        (
            vec!["backup", &app.name, "--to", d, "--agent", "never"],
            vec![("RUST_LOG", "trace")],
        ),
        (
            vec!["-vv", "restore", &app.name, "--from", d, "--dry-run"],
            vec![("RUST_LOG", "debug,bollard=trace,bollard::docker=trace")],
        ),
    ];
    for (args, env) in runs {
        let run = dockyard_env(&args, &env);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        // The traces are there (so the check below means something), the value is not.
        assert!(
            run.stderr.contains("DEBUG"),
            "{args:?} {env:?} traced nothing:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains(&secret) && !run.stdout.contains(&secret),
            "{args:?} {env:?} showed the app's environment"
        );
    }
}
