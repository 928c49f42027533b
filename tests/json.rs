//! The JSON contract (docs/json.md): every command with `--json`, on success and on failure,
//! writes exactly one JSON document on stdout (`run` and `daemon`: JSON Lines) with the documented
//! fields, and the exit code the error object names.

mod common;

use common::{dest_dir, dockyard, json_lines, one_document, App, Run};
use serde_json::Value;

/// Asserts `r` printed one document with every field in `fields`, and returns it.
fn document(what: &str, r: &Run, fields: &[&str]) -> Value {
    let v = one_document(&r.stdout);
    for f in fields {
        assert!(v.get(f).is_some(), "{what}: no field {f:?} in {v}");
    }
    v
}

/// Asserts `r` failed with `code` and printed the one error document saying so.
fn error(what: &str, r: &Run, code: i32, category: &str) -> Value {
    assert_eq!(r.code, code, "{what}: {}", r.stderr);
    let v = document(what, r, &["error"]);
    let e = &v["error"];
    assert_eq!(e["exit_code"], code, "{what}: {v}");
    assert_eq!(e["category"], category, "{what}: {v}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{what}: {v}");
    v
}

#[test]
fn every_command_writes_one_document_with_the_documented_fields() {
    let app = App::running("json", &["/srv/media", "/srv/logs"]);
    app.sh("echo photo > /srv/media/a.jpg; echo line > /srv/logs/app.log");
    let (tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let shipped = tmp.path().join("shipped");
    let s = shipped.to_str().unwrap();
    let c = app.name.as_str();

    let b = dockyard(&["backup", c, "--to", d, "--json"]);
    let v = document(
        "backup",
        &b,
        &["result", "seconds", "destination", "backup"],
    );
    let id = v["backup"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["backup"]["format"], 2);
    let snap = dockyard(&["snapshot", c, "--tag", "pre-upgrade", "--to", d, "--json"]);
    let v = document("snapshot", &snap, &["result", "backup"]);
    assert!(v["backup"]["snapshot"]["inspect"].is_object(), "{v}");

    let l = dockyard(&["list", "--to", d, "--json"]);
    let v = document("list", &l, &["backups", "rejected"]);
    assert_eq!(v["backups"].as_array().unwrap().len(), 2, "{v}");
    let created = v["backups"][0]["created"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'),
        "{created}"
    );

    let r = dockyard(&["verify", &id, "--to", d, "--json"]);
    let v = document("verify", &r, &["id", "ok", "size", "sha256", "entries"]);
    assert_eq!(v["ok"], true);

    let r = dockyard(&[
        "restore",
        c,
        "--from",
        d,
        "--archive",
        &id,
        "--dry-run",
        "--json",
    ]);
    let v = document(
        "restore --dry-run",
        &r,
        &["dry_run", "backup", "into", "paths"],
    );
    assert_eq!(v["dry_run"], true);
    let r = dockyard(&["restore", c, "--from", d, "--archive", &id, "--json"]);
    let v = document(
        "restore",
        &r,
        &[
            "result",
            "restored",
            "into",
            "safety_backup",
            "old_contents",
        ],
    );
    assert!(v["safety_backup"]["undo"]
        .as_str()
        .unwrap()
        .contains("dockyard restore"));

    let r = dockyard(&[
        "prune",
        "--to",
        d,
        "--keep-last",
        "1",
        "--dry-run",
        "--json",
    ]);
    let v = document("prune", &r, &["dry_run", "removed", "backups"]);
    assert_eq!(v["removed"], 0, "a dry run removed something: {v}");

    let r = dockyard(&["logs", c, "--to", s, "--reopen", "none", "--json"]);
    let v = document("logs", &r, &["container", "dir", "report"]);
    assert_eq!(v["report"]["shipped"].as_array().unwrap().len(), 1, "{v}");

    // Failures: the same one document, naming exit code and category.
    error(
        "backup of a missing container",
        &dockyard(&["backup", "no-such-container-xyz", "--to", d, "--json"]),
        3,
        "docker",
    );
    error(
        "restore of an unknown id",
        &dockyard(&[
            "restore",
            c,
            "--from",
            d,
            "--archive",
            "json-nope",
            "--json",
        ]),
        2,
        "usage",
    );
    error(
        "prune without a policy",
        &dockyard(&["prune", "--to", d, "--json"]),
        2,
        "usage",
    );
    error(
        "an unknown flag",
        &dockyard(&["list", "--to", d, "--frobnicate", "--json"]),
        2,
        "usage",
    );
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    error(
        "a destination that is a file",
        &dockyard(&["backup", c, "--to", file.to_str().unwrap(), "--json"]),
        4,
        "destination",
    );

    // A backup that fails verification: "ok": false with the reason, and exit code 5.
    let archive = dest.join(format!("{id}.tar.zst"));
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let r = dockyard(&["verify", &id, "--to", d, "--json"]);
    let v = error("verify of a damaged backup", &r, 5, "verify");
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["reason"].as_str().unwrap().contains(&id), "{v}");
}

#[test]
fn run_writes_json_lines_ending_with_the_summary_or_the_error() {
    let app = App::running("jsonrun", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.good]\ncontainer = \"{}\"\ndestinations = [\"local\"]\n\
             [jobs.bad]\ncontainer = \"no-such-container-xyz\"\ndestinations = [\"local\"]\n",
            app.name
        ),
    );
    let r = dockyard(&["run", "--config", cfg.to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let events = json_lines(&r.stdout);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["job", "job", "summary", "error"], "{}", r.stdout);
    let job = |name: &str| events.iter().find(|e| e["job"] == name).unwrap();
    assert_eq!(job("good")["ok"], true);
    assert_eq!(job("bad")["ok"], false);
    assert!(job("bad")["destinations"][0]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-container-xyz"));
    assert_eq!(events[2]["failed"], serde_json::json!(["bad"]));
    assert_eq!(events[3]["error"]["exit_code"], 3);
    // Said once on stderr, with the container's name.
    assert_eq!(
        r.stderr.matches("no such container").count(),
        1,
        "{}",
        r.stderr
    );
}

#[test]
fn stderr_has_no_colour_codes_when_it_is_not_a_terminal() {
    let r = dockyard(&["backup", "no-such-container-xyz", "--to", "/tmp/x"]);
    assert_eq!(r.code, 3);
    assert!(!r.stderr.contains('\u{1b}'), "{:?}", r.stderr);
    let r = dockyard(&[
        "backup",
        "no-such-container-xyz",
        "--to",
        "/tmp/x",
        "--log-json",
    ]);
    let last: Value = serde_json::from_str(r.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["fields"]["exit_code"], 3, "{}", r.stderr);
    assert_eq!(last["level"], "ERROR");
}
