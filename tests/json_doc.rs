//! docs/json.md's examples are the outcome types, rendered: each documented document's example
//! block is what the type it names serialises to (with the renderer's `version` first), field for
//! field and in order. A field added to a type without its documentation, or documented and
//! gone, fails here.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use dockyard::archive::listing::Diff;
use dockyard::archive::verify::Report as Checked;
use dockyard::jobs::{DestResult, JobResult};
use dockyard::logs::held_open::Holder;
use dockyard::manifest::{Manifest, MountRecord, PathRecord, PLAIN_FORMAT};
use dockyard::ops::backup::{Backed, DryRun as BackupDryRun};
use dockyard::ops::list::{Listing, Rejected};
use dockyard::ops::logs::{LogsPlan, LogsRun, Report, Sized};
use dockyard::ops::prune::{Pruned, Verdict};
use dockyard::ops::restore::{DryRun, PathDiff, Restored, SafetyBackup};
use dockyard::ops::restore_db::RestoredDb;
use dockyard::ops::verify::Verified;
use dockyard::render::{event, versioned};
use serde_json::Value;

/// The first `json` block after each `### ` heading of docs/json.md, by heading.
fn examples() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json.md"))
        .expect("docs/json.md");
    let mut out = BTreeMap::new();
    let mut heading = None;
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(b) = block.as_mut() {
            if line == "```" {
                let h: String = heading.take().expect("a heading before the block");
                out.insert(h, block.take().unwrap());
            } else {
                b.push_str(line);
                b.push('\n');
            }
        } else if let Some(h) = line.strip_prefix("### ") {
            heading = Some(h.to_string());
        } else if line == "```json" && heading.is_some() {
            block = Some(String::new());
        }
    }
    out
}

fn manifest() -> Manifest {
    Manifest {
        format: PLAIN_FORMAT,
        id: "web-20261128T103934Z-4f2a".into(),
        container: "web".into(),
        engine: None,
        container_id: "0f3c9e2b7a41".into(),
        image: "hello_django:latest".into(),
        image_id: "sha256:5d1e".into(),
        host: "docker1".into(),
        paths: vec![PathRecord {
            path: "/srv/media".into(),
            mount: MountRecord {
                destination: "/srv/media".into(),
                kind: "volume".into(),
                volume: Some("web_media".into()),
            },
        }],
        created: Utc.with_ymd_and_hms(2026, 11, 28, 10, 39, 34).unwrap(),
        tags: vec![],
        tool_version: "0.3.0".into(),
        size: 1_048_576,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        tar_bytes: 3_145_728,
        entries: 120,
        level: 3,
        archive: "web-20261128T103934Z-4f2a.tar.zst".into(),
        snapshot: None,
        exclude: vec![],
        encryption: None,
        index: None,
        parent: None,
        chain: None,
        deleted: None,
        dumps: vec![],
    }
}

/// Every documented example, from its type.
fn rendered() -> Vec<(&'static str, Value)> {
    let m = manifest();
    let json = |v: &dyn Erased| versioned(v.value());
    vec![
        (
            "`backup`, `snapshot`",
            json(&Backed {
                result: "ok",
                seconds: 2.5,
                destination: "/var/backups/dockyard".into(),
                downtime_seconds: None,
                backup: m.clone(),
                incremental: None,
            }),
        ),
        (
            "`list`",
            json(&Listing {
                backups: vec![m.clone()],
                rejected: vec![Rejected {
                    object: "web-20261127T023000Z-1b2c.json".into(),
                    reason: "path \"/srv/../etc\" is not a clean absolute path".into(),
                }],
                others: Default::default(),
            }),
        ),
        (
            "`verify`",
            json(&Verified::new(
                &m.id,
                Checked {
                    size: m.size,
                    sha256: m.sha256.clone(),
                    tar_bytes: m.tar_bytes,
                    entries: m.entries,
                    devices: vec![],
                    setid: vec![],
                    privileged_xattrs: vec![],
                    roots: vec![],
                },
            )),
        ),
        (
            "`restore-db` (and `restore-db --dry-run`)",
            json(&RestoredDb {
                result: "ok",
                backup: m.id.clone(),
                dump: "dumps/db/app.sql".into(),
                kind: "postgres".into(),
                size: 18432,
                container: "db".into(),
                target: Some("app".into()),
                target_before: Some("absent".into()),
                would_refuse: false,
                seconds: 1.4,
            }),
        ),
        (
            "`restore`",
            json(&Restored {
                result: "ok",
                restored: m.id.clone(),
                into: "web".into(),
                paths: vec!["/srv/media".into()],
                safety_backup: Some(SafetyBackup {
                    id: "web-20261128T110002Z-91c0".into(),
                    destination: "/var/backups/dockyard".into(),
                    undo: "dockyard restore web --from /var/backups/dockyard --backup web-20261128T110002Z-91c0".into(),
                    size: 1_040_000,
                    seconds: 2.1,
                }),
                stripped_setid: vec![],
                dropped_xattrs: vec![],
                skipped: vec![],
                notes: vec![],
                recovered: vec![],
                old_contents: "deleted".into(),
                downtime_seconds: None,
            }),
        ),
        (
            "`restore --dry-run`",
            json(&DryRun {
                dry_run: true,
                backup: m.id.clone(),
                into: "web".into(),
                paths: vec![PathDiff::new(
                    "/srv/media".into(),
                    Diff {
                        added: vec!["srv/media/new.jpg".into()],
                        changed: vec![],
                        removed: vec!["srv/media/later.jpg".into()],
                        totals: [1, 0, 1],
                    },
                    0,
                )],
                files: vec![],
                safety: "a safety backup (tag pre-restore) of /srv/media would first be written to /var/backups/dockyard".into(),
                setid: vec![],
                devices: vec![],
                privileged_xattrs: vec![],
                keep_setid: false,
                keep_capabilities: false,
            }),
        ),
        (
            "`backup --dry-run`",
            json(&BackupDryRun {
                dry_run: true,
                container: "web".into(),
                running: true,
                paths: m.paths.clone(),
                destination: "/var/backups/dockyard".into(),
                would_write: [m.archive.clone(), format!("{}.json", m.id)],
                backups_of_container_there: Some(3),
                destination_error: None,
                stop: vec![],
                pre_hook: None,
                post_hook: None,
                exec_before: vec!["web:touch /srv/maintenance".into()],
                exec_after: vec!["web:rm -f /srv/maintenance".into()],
                helper_image: "hello_django:latest".into(),
                level: 3,
                tags: vec![],
                dumps: vec!["db:postgres:app".into()],
                failed: None,
            }),
        ),
        (
            "`logs --dry-run` (and `logs rotate|ship --dry-run`)",
            json(&LogsPlan {
                dry_run: true,
                container: "web".into(),
                dir: "/srv/logs".into(),
                would_rotate: vec![Sized {
                    name: "gunicorn.log".into(),
                    size: 10_485_760,
                }],
                waiting: vec![],
                skipped: vec![],
                ship_to: Some("s3://logs/web".into()),
                reopen: Some("signal HUP".into()),
                rotate: true,
            }),
        ),
        (
            "`prune`",
            json(&Pruned {
                dry_run: false,
                removed: 1,
                backups: vec![
                    Verdict {
                        container: "web".into(),
                        id: m.id.clone(),
                        keep: true,
                        reasons: vec!["daily 1".into()],
                        created: String::new(),
                    },
                    Verdict {
                        container: "web".into(),
                        id: "web-20261120T023000Z-77d1".into(),
                        keep: false,
                        reasons: vec![],
                        created: String::new(),
                    },
                ],
                dest: String::new(),
            }),
        ),
        (
            "`logs`, `logs rotate`, `logs ship`",
            json(&LogsRun {
                container: "web".into(),
                dir: "/srv/logs".into(),
                report: Report {
                    rotated: vec!["gunicorn.log.20261128T103934Z".into()],
                    shipped: vec!["web/gunicorn.log.20261128T103934Z.zst".into()],
                    deleted: vec!["gunicorn.log.20261128T103934Z".into()],
                    kept: vec![],
                    failed: vec![],
                    skipped: vec![],
                    pruned: vec![],
                    shipped_bytes: 10_485_760,
                    held_open: vec![Holder {
                        pid: "1".into(),
                        command: "gunicorn".into(),
                        file: "/srv/logs/gunicorn.log.20261128T103934Z".into(),
                    }],
                },
            }),
        ),
        (
            "`job` events",
            event("job", Some("media"), Erased::value(&JobResult {
                job: "media".into(),
                ok: true,
                skipped: false,
                error: None,
                seconds: 3.2,
                bytes: 1_048_576,
                finished: Utc.with_ymd_and_hms(2026, 11, 28, 2, 30, 3).unwrap(),
                destinations: vec![DestResult {
                    destination: "offsite".into(),
                    ok: true,
                    error: None,
                    id: Some(m.id.clone()),
                    bytes: 1_048_576,
                    pruned: 1,
                }],
            })),
        ),
    ]
}

/// Any serialisable value, for one list of differently typed examples.
trait Erased {
    fn value(&self) -> Value;
}

impl<T: serde::Serialize> Erased for T {
    fn value(&self) -> Value {
        serde_json::to_value(self).expect("serialisable")
    }
}

#[test]
fn every_documented_example_is_its_type_rendered() {
    let docs = examples();
    let mut wrong = Vec::new();
    for (heading, value) in rendered() {
        let shown = serde_json::to_string_pretty(&value).unwrap();
        match docs.get(heading) {
            None => wrong.push(format!(
                "### {heading}: no ```json example; it renders as\n{shown}"
            )),
            Some(text) => {
                let documented: Value = serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("### {heading}: the example is not JSON: {e}"));
                // String equality: the same fields, values and order.
                if serde_json::to_string(&documented).unwrap()
                    != serde_json::to_string(&value).unwrap()
                {
                    wrong.push(format!(
                        "### {heading}: documented\n{text}renders as\n{shown}"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
