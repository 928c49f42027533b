//! `dockyard config check`: the config file checked the way cron and the daemon will meet it:
//! parsed and validated, every job's container (and paths) found on the engine, every destination
//! reached and written (a probe object written and deleted), and the effective jobs printed with
//! their next run times. Every problem is named; the exit code is the first problem's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Value};

use super::Ctx;
use crate::destination::DestSpec;
use crate::error::{describe, Category, Failure};
use crate::outcome::categorize;
use crate::settings::{JobPlan, Jobs};

/// Something that would make a job fail.
struct Problem {
    category: Category,
    text: String,
}

/// Checks the file at `path`; see the module doc.
pub async fn run(ctx: &Ctx, lowered: &Jobs) -> Result<()> {
    let path = lowered.config.as_path();
    let plans = &crate::labels::all_plans(ctx, lowered).await?;
    // The file's jobs come first (merge keeps them first; `config check` names none).
    let from_file = lowered.plans.len();
    let mut problems = Vec::new();
    let notifier = match &lowered.notifier {
        Ok(n) => n.clone(),
        Err(e) => {
            problems.push(Problem {
                category: e.category,
                text: format!("[notify]: {e}"),
            });
            None
        }
    };
    let mut jobs = Vec::new();
    // Each job's next run as a person reads it (weekday first), for the text report.
    let mut next_runs = Vec::new();
    let mut dests: BTreeMap<String, DestSpec> = BTreeMap::new();
    for (i, plan) in plans.iter().enumerate() {
        let source = if i < from_file { "file" } else { "labels" };
        let (kind, container, paths, targets) = match plan {
            JobPlan::Invalid {
                name,
                container,
                error,
                category,
                ..
            } => {
                problems.push(Problem {
                    category: *category,
                    text: error.clone(),
                });
                jobs.push(json!({
                    "job": name,
                    "kind": "invalid",
                    "source": source,
                    "container": container,
                    "engine": plan.engine(),
                    "error": error,
                }));
                next_runs.push(None);
                continue;
            }
            JobPlan::Backup { backups, .. } => (
                "backup",
                backups[0].1.container.clone(),
                backups[0].1.paths.clone(),
                backups
                    .iter()
                    .map(|(n, s)| (n.clone(), s.dest.clone(), s.encryption.clone()))
                    .collect::<Vec<_>>(),
            ),
            JobPlan::Logs {
                settings,
                destination,
                ..
            } => (
                "logs",
                settings.container.clone(),
                vec![settings.dir.clone()],
                settings
                    .ship
                    .iter()
                    .map(|s| (destination.clone(), s.dest.clone(), s.encryption.clone()))
                    .collect(),
            ),
        };
        let found = check_container(
            ctx,
            plan.engine(),
            plan.name(),
            &container,
            &paths,
            &mut problems,
        )
        .await;
        for (name, spec, _) in &targets {
            dests.insert(name.clone(), spec.clone());
        }
        // Which destinations get encrypted copies, and for whom (fingerprints, never keys).
        let encrypted: BTreeMap<&str, Vec<String>> = targets
            .iter()
            .filter_map(|(n, _, e)| e.as_ref().map(|e| (n.as_str(), e.fingerprints())))
            .collect();
        let mut job = json!({
            "job": plan.name(),
            "kind": kind,
            "source": source,
            "engine": plan.engine(),
            "container": container,
            "container_found": found,
            "paths": paths,
            "destinations": targets.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>(),
            "encrypted_to": encrypted,
        });
        if let Some(sc) = plan.schedule() {
            let timing = &sc.timing;
            let next = timing.next_after(Utc::now());
            job["schedule"] = timing.schedule.as_str().into();
            job["timezone"] = timing.zone.to_string().into();
            job["next"] = json!(next);
            job["next_local"] = json!(next.map(|n| timing.local(n)));
            job["catch_up"] = sc.catch_up.into();
            next_runs.push(next.map(|n| timing.wall(n)));
            if next.is_none() {
                problems.push(Problem {
                    category: Category::Usage,
                    text: format!(
                        "job {}: schedule {:?} never fires again",
                        plan.name(),
                        timing.schedule.as_str()
                    ),
                });
            }
        }
        if job.get("schedule").is_none() {
            next_runs.push(None);
        }
        jobs.push(job);
    }
    let mut destinations = Vec::new();
    for (name, spec) in &dests {
        let result = check_destination(spec).await;
        if let Err(e) = &result {
            problems.push(Problem {
                category: categorize(e),
                text: format!("destination {name} ({spec}): {}", describe(e)),
            });
        }
        destinations.push(json!({
            "destination": name,
            "url": spec.to_string(),
            "ok": result.is_ok(),
            "error": result.err().map(|e| describe(&e)),
        }));
    }
    let notify_targets: Vec<String> = notifier
        .iter()
        .flat_map(|n| n.targets.iter().map(|t| t.describe()))
        .collect();
    // The first problem's category decides the exit code; every problem is named.
    let failure = problems.first().map(|first| {
        Failure::new(
            first.category,
            format!(
                "{} problem(s) in {}: {}",
                problems.len(),
                path.display(),
                problems
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    });
    if ctx.output.json {
        let mut report = json!({
            "config": path.display().to_string(),
            "ok": problems.is_empty(),
            "jobs": jobs,
            "destinations": destinations,
            "notify": notify_targets,
            "problems": problems.iter().map(|p| p.text.clone()).collect::<Vec<_>>(),
        });
        // The report is the one document, so it carries the error every failing command's has.
        if let Some(f) = &failure {
            report["error"] = crate::render::error_body(f.category, &f.message);
        }
        ctx.json(&report);
    } else {
        say_text(
            ctx,
            path,
            &jobs,
            &next_runs,
            &destinations,
            &notify_targets,
            &problems,
        );
    }
    match failure {
        None => Ok(()),
        Some(f) => Err(f.into()),
    }
}

/// Finds the container and checks each path lies in one of its mounts; returns whether found.
async fn check_container(
    ctx: &Ctx,
    engine: Option<&str>,
    job: &str,
    container: &str,
    paths: &[String],
    problems: &mut Vec<Problem>,
) -> bool {
    let info = match ctx
        .engine_named(engine.unwrap_or(crate::ops::DEFAULT_ENGINE))
        .await
    {
        Ok(engine) => engine.inspect(container).await.map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            problems.push(Problem {
                category: categorize(&e),
                text: format!("job {job}: {}", describe(&e)),
            });
            return false;
        }
    };
    for path in paths {
        if !info.mounts.iter().any(|m| m.contains(path)) {
            problems.push(Problem {
                category: Category::Usage,
                text: format!(
                    "job {job}: {path} is not in a volume or bind mount of container {container} (its mounts: {})",
                    info.mounts
                        .iter()
                        .map(|m| m.destination.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    true
}

/// Reaches a destination and writes, then deletes, a small probe object there.
async fn check_destination(spec: &DestSpec) -> Result<()> {
    let dest = spec.open().await;
    dest.prepare().await?;
    let name = format!("dockyard-config-check-{:016x}.probe", rand::random::<u64>());
    let mut upload = dest.put(&name).await?;
    upload
        .write(Bytes::from_static(b"dockyard config check\n"))
        .await?;
    upload.commit().await?;
    dest.delete(&name).await?;
    Ok(())
}

/// The text report: each job, each destination, the notification targets, and `ok` when there is
/// no problem (problems are the command's error, on stderr).
fn say_text(
    ctx: &Ctx,
    path: &Path,
    jobs: &[Value],
    next_runs: &[Option<String>],
    destinations: &[Value],
    notify: &[String],
    problems: &[Problem],
) {
    ctx.say(&format!("config {}", path.display()));
    for (j, next) in jobs.iter().zip(next_runs) {
        let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
        let list = |k: &str| {
            let items: Vec<&str> = j[k]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            items.join(", ")
        };
        let paths = if list("paths").is_empty() {
            "every mount".to_string()
        } else {
            list("paths")
        };
        if j["kind"] == "invalid" {
            ctx.say(&format!(
                "job {} ({}): INVALID (the error below says why)",
                s("job"),
                s("source")
            ));
            continue;
        }
        ctx.say(&format!(
            "job {} ({}{}): container {}{}{}, {paths} -> {}",
            s("job"),
            s("kind"),
            if j["source"] == "labels" {
                ", from labels"
            } else {
                ""
            },
            s("container"),
            j["engine"]
                .as_str()
                .map(|e| format!(" on engine {e}"))
                .unwrap_or_default(),
            if j["container_found"] == true {
                ""
            } else {
                " (NOT FOUND)"
            },
            if list("destinations").is_empty() {
                "rotate only".to_string()
            } else {
                list("destinations")
            }
        ));
        if let Some(enc) = j["encrypted_to"].as_object().filter(|e| !e.is_empty()) {
            let each: Vec<String> = enc
                .iter()
                .map(|(d, who)| match who.as_array() {
                    Some(w) if w.len() == 1 && w[0] == "passphrase" => {
                        format!("{d} (with a passphrase)")
                    }
                    w => format!("{d} (to {} recipient(s))", w.map_or(0, Vec::len)),
                })
                .collect();
            ctx.say(&format!("  encrypted with age at {}", each.join(", ")));
        }
        match j.get("schedule") {
            Some(sched) => ctx.say(&format!(
                "  schedule {sched}: next {}{}",
                next.as_deref().unwrap_or("never"),
                if j["catch_up"] == true {
                    " (catch_up)"
                } else {
                    ""
                }
            )),
            None => ctx.say("  no schedule: only `dockyard run` runs it"),
        }
    }
    for d in destinations {
        ctx.say(&format!(
            "destination {} ({}): {}",
            d["destination"].as_str().unwrap_or_default(),
            d["url"].as_str().unwrap_or_default(),
            match d["error"].as_str() {
                None => "reachable, writable".to_string(),
                Some(e) => format!("FAILED: {e}"),
            }
        ));
    }
    if !notify.is_empty() {
        ctx.say(&format!("notify: {}", notify.join(", ")));
    }
    // Problems are the error, said once on stderr.
    if problems.is_empty() {
        ctx.say("ok");
    }
}
