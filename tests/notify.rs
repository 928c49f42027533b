//! Notifications against real peers on 127.0.0.1 (an HTTP server and an SMTP sink run by the
//! test): a failing job reaches every target with what failed and the command to look further, a
//! succeeding one only when asked, a target that fails once is retried, one that never answers
//! costs at most its timeout and never changes the job's result, and no URL token or password
//! is ever printed. Commands cron runs on their own (`backup`, `snapshot`, `logs`, `prune`) notify
//! too, through the same flags and the config file's `[notify]`.

mod common;

use std::time::{Duration, Instant};

use common::sinks::{Http, Smtp};
use common::{dest_dir, dockyard, dockyard_env, App, Run};

const TOKEN: &str = "T0KEN-s3cr3t-in-the-url";
const PASSWORD: &str = "smtp-pa55word-never-printed";

fn no_secrets(r: &Run) {
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(TOKEN), "a URL token was printed:\n{out}");
        assert!(
            !out.contains(PASSWORD),
            "the SMTP password was printed:\n{out}"
        );
    }
}

#[test]
fn a_failing_job_reaches_every_target_and_a_succeeding_one_stays_quiet() {
    let app = App::running("notify", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let http = Http::start();
    let smtp = Smtp::start();
    let (tmp, dest) = dest_dir();
    let missing = common::unique("gone");
    let b = &http.base;
    let notify = format!(
        "[notify]\nwebhook = \"{b}/flaky/{TOKEN}\"\nntfy = \"{b}/ntfy/{TOKEN}\"\n\
         slack = \"{b}/slack/{TOKEN}\"\ndiscord = \"{b}/discord/{TOKEN}\"\n\
         smtp = \"smtp://ops@127.0.0.1:{}\"\nemail_from = \"dockyard <backup@example.com>\"\n\
         email_to = [\"ops@example.com\", \"oncall@example.com\"]\n",
        smtp.port
    );
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.good]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n\
             [jobs.bad]\ncontainer = \"{missing}\"\ndestinations = [\"local\"]\n{notify}",
            app.name
        ),
    );
    let r = dockyard_env(
        &["run", "--config", cfg.to_str().unwrap()],
        &[("DOCKYARD_SMTP_PASSWORD", PASSWORD)],
    );
    no_secrets(&r);
    assert_eq!(
        r.code, 3,
        "the job's failure decides the exit code: {}",
        r.stderr
    );

    // The webhook answered 503 once and was retried: two requests, both about the failing job.
    let hooks = http.to(&format!("/flaky/{TOKEN}"));
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let body = hooks[1].json();
    assert_eq!(body["job"], "bad");
    assert_eq!(body["container"], missing.as_str());
    assert_eq!(body["result"], "failure");
    assert_eq!(body["ok"], false);
    // The container is gone: the job failed, no destination did.
    assert_eq!(body["destinations"], serde_json::json!([]));
    assert!(body["error"].as_str().unwrap().contains(&missing), "{body}");
    assert!(
        body["command"]
            .as_str()
            .unwrap()
            .starts_with("dockyard run bad --config "),
        "{body}"
    );
    assert!(body["duration_seconds"].as_f64().unwrap() >= 0.0);

    let ntfy = http.to(&format!("/ntfy/{TOKEN}"));
    assert_eq!(ntfy.len(), 1, "{ntfy:?}");
    let title = ntfy[0].header("title").unwrap();
    assert!(title.contains("job bad FAILED"), "{title}");
    assert_eq!(ntfy[0].header("priority"), Some("high"));
    assert!(ntfy[0].body.contains(&missing) && ntfy[0].body.contains("dockyard run bad"));

    let slack = http.to(&format!("/slack/{TOKEN}"));
    assert_eq!(slack.len(), 1);
    assert!(slack[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("job bad FAILED"));
    let discord = http.to(&format!("/discord/{TOKEN}"));
    assert_eq!(discord.len(), 1);
    assert!(discord[0].json()["content"]
        .as_str()
        .unwrap()
        .contains(&missing));

    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(mail.login, Some(("ops".into(), PASSWORD.into())));
    assert_eq!(mail.to, ["<ops@example.com>", "<oncall@example.com>"]);
    assert!(mail.from.contains("backup@example.com"));
    assert!(
        mail.data.contains("Subject: dockyard: job bad FAILED"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("dockyard run bad"), "{}", mail.data);
    // Nothing about the job that succeeded.
    assert!(http.requests().iter().all(|r| !r.body.contains("\"good\"")));
}

#[test]
fn on_success_the_webhook_and_the_mail_get_the_backup_id_bytes_and_destination() {
    let app = App::running("notify-ok", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let http = Http::start();
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.media]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n",
            app.name
        ),
    );
    let smtp = Smtp::start();
    let url = format!("{}/hook/{TOKEN}", http.base);
    let server = format!("smtp://ops@127.0.0.1:{}", smtp.port);
    let r = dockyard_env(
        &[
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--notify-on-success",
            "--notify-smtp",
            &server,
            "--notify-email-from",
            "backup@example.com",
            "--notify-email-to",
            "ops@example.com",
        ],
        &[
            ("DOCKYARD_NOTIFY_WEBHOOK", &url),
            ("DOCKYARD_SMTP_PASSWORD", PASSWORD),
        ],
    );
    no_secrets(&r);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hooks = http.to(&format!("/hook/{TOKEN}"));
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let body = hooks[0].json();
    let listed = common::list(&dest);
    assert_eq!(body["result"], "success");
    assert_eq!(body["backup_id"], listed[0]["id"]);
    assert_eq!(body["destination"], "local");
    assert_eq!(body["bytes"], listed[0]["size"]);
    assert_eq!(body["destinations"][0]["ok"], true);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0]
            .data
            .contains("Subject: dockyard: job media succeeded")
            && mails[0].data.contains(listed[0]["id"].as_str().unwrap()),
        "{}",
        mails[0].data
    );
    // --help shows the variable, never its value.
    let help = dockyard_env(&["run", "--help"], &[("DOCKYARD_NOTIFY_WEBHOOK", &url)]).ok();
    assert!(
        help.contains("DOCKYARD_NOTIFY_WEBHOOK") && !help.contains(TOKEN),
        "{help}"
    );
}

#[test]
fn a_notifier_that_never_answers_costs_at_most_its_timeout_and_not_the_result() {
    let http = Http::start();
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.bad]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n\
             [notify]\nwebhook = \"{}/hang/{TOKEN}\"\ntimeout = \"2s\"\n",
            common::unique("gone"),
            http.base
        ),
    );
    let t0 = Instant::now();
    let r = dockyard_env(&["run", "--config", cfg.to_str().unwrap(), "--json"], &[]);
    let took = t0.elapsed();
    no_secrets(&r);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let job = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["type"] == "job")
        .unwrap();
    let job_secs = job["seconds"].as_f64().unwrap();
    // The job itself, the 2 s budget, and process start-up; not 10 s, not 3 retries of 2 s.
    assert!(
        took < Duration::from_secs_f64(job_secs + 2.0 + 2.5),
        "{took:?} for a {job_secs} s job"
    );
    assert_eq!(http.to(&format!("/hang/{TOKEN}")).len(), 1);
    assert!(
        r.stderr.contains("notification not delivered")
            && r.stderr.contains("webhook at 127.0.0.1"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_bad_notification_url_is_a_usage_error_before_any_job_runs() {
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.x]\ncontainer = \"never-run\"\ndestinations = [\"local\"]\n\
             [notify]\nslack = \"hooks.slack.com/{TOKEN}\"\n"
        ),
    );
    let r = dockyard_env(&["run", "--config", cfg.to_str().unwrap()], &[]);
    no_secrets(&r);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("slack notification URL"), "{}", r.stderr);
    let (tmp2, dest2) = dest_dir();
    let plain = common::local_config(
        tmp2.path(),
        &dest2,
        "[jobs.x]\ncontainer = \"never-run\"\ndestinations = [\"local\"]\n",
    );
    let r = dockyard_env(
        &[
            "run",
            "--config",
            plain.to_str().unwrap(),
            "--notify-smtp",
            "smtp://127.0.0.1:25",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("sender"), "{}", r.stderr);
}

#[test]
fn one_off_commands_from_cron_notify_through_the_flags_or_the_files_notify_section() {
    let app = App::running("notify-oneoff", &["/srv/media", "/srv/logs"]);
    app.sh("echo a > /srv/media/a; echo line > /srv/logs/app.log");
    let http = Http::start();
    let (tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let missing = common::unique("gone");
    let hook = |name: &str| format!("{}/{name}/{TOKEN}", http.base);
    let bodies = |name: &str| -> Vec<serde_json::Value> {
        http.to(&format!("/{name}/{TOKEN}"))
            .iter()
            .map(|r| r.json())
            .collect()
    };

    // backup, with the flags: a success is sent only when asked, with the backup's id and size.
    let r = dockyard(&[
        "backup",
        &app.name,
        "--to",
        d,
        "--notify-webhook",
        &hook("backup"),
        "--notify-on-success",
    ]);
    no_secrets(&r);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let listed = common::list(&dest);
    let sent = bodies("backup");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = &sent[0];
    assert_eq!(body["result"], "success", "{body}");
    assert_eq!(body["job"], "backup", "{body}");
    assert_eq!(body["one_off"], true, "{body}");
    assert_eq!(body["container"], app.name.as_str(), "{body}");
    assert_eq!(body["destination"], d, "{body}");
    assert_eq!(body["backup_id"], listed[0]["id"], "{body}");
    assert_eq!(body["bytes"], listed[0]["size"], "{body}");
    let title = body["title"].as_str().unwrap();
    assert!(
        title.contains(&format!("backup of {} succeeded", app.name)),
        "{title}"
    );

    // The config file's [notify], from --config (a file holding nothing else): a failure names
    // the command, the container and the error, and says how to run it again.
    let cfg = tmp.path().join("notify.toml");
    std::fs::write(&cfg, format!("[notify]\nwebhook = \"{}\"\n", hook("file"))).unwrap();
    let c = cfg.to_str().unwrap();
    let r = dockyard(&["backup", &missing, "--to", d, "--config", c]);
    no_secrets(&r);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let sent = bodies("file");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let body = &sent[0];
    assert_eq!(
        (
            &body["result"],
            &body["ok"],
            &body["job"],
            &body["container"]
        ),
        (
            &"failure".into(),
            &false.into(),
            &"backup".into(),
            &missing.as_str().into()
        ),
        "{body}"
    );
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("no such container") && error.contains(&missing),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("dockyard backup {missing} --to {d}"))
            && !message.contains("--config")
            && message.contains("FAILED"),
        "{message}"
    );

    // snapshot and logs, with the file named by DOCKYARD_CONFIG: the same notice, their own names.
    let env = [("DOCKYARD_CONFIG", c)];
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let r = dockyard_env(
        &[
            "snapshot",
            &app.name,
            "--tag",
            "pre-upgrade",
            "--to",
            file.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(r.code, 4, "{}", r.stderr);
    let r = dockyard_env(
        &[
            "logs",
            &missing,
            "--to",
            tmp.path().join("shipped").to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    let sent = bodies("file");
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        (&sent[1]["job"], &sent[1]["container"], &sent[1]["ok"]),
        (&"snapshot".into(), &app.name.as_str().into(), &false.into()),
        "{}",
        sent[1]
    );
    assert!(
        sent[1]["title"]
            .as_str()
            .unwrap()
            .contains(&format!("snapshot of {} FAILED", app.name)),
        "{}",
        sent[1]
    );
    assert_eq!(
        (&sent[2]["job"], &sent[2]["container"]),
        (&"logs".into(), &missing.as_str().into()),
        "{}",
        sent[2]
    );

    // prune, whose failure is the destination's; a dry run notifies nothing.
    let r = dockyard(&[
        "prune",
        "--to",
        file.to_str().unwrap(),
        "--keep-last",
        "1",
        "--notify-webhook",
        &hook("prune"),
    ]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let sent = bodies("prune");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["job"], "prune", "{}", sent[0]);
    assert!(
        sent[0]["title"].as_str().unwrap().contains("prune")
            && !sent[0]["error"].as_str().unwrap().is_empty(),
        "{}",
        sent[0]
    );
    let r = dockyard(&[
        "backup",
        &app.name,
        "--to",
        d,
        "--dry-run",
        "--notify-on-success",
        "--config",
        c,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(bodies("file").len(), 3, "a dry run notified");
    // The flags are in every one-off command's --help.
    for cmd in ["backup", "snapshot", "logs", "prune"] {
        let help = dockyard(&[cmd, "--help"]).ok();
        assert!(
            help.contains("--notify-webhook") && help.contains("--config"),
            "{cmd}: {help}"
        );
    }
}
