//! `dockyard logs --dry-run`: what a log run would do now, changing nothing: which live files are
//! due to rotate (and by which trigger's settings), which rotated files wait to ship and where,
//! read by a helper that takes no lock and writes nothing.

use anyhow::Result;
use chrono::Utc;
use indicatif::HumanBytes;
use serde_json::json;

use super::Ctx;
use crate::docker::DockerError;
use crate::logs::naming;
use crate::logs::scripts::{self, Rotation};
use crate::logs::volume::{dir_owner, log_container, Runner};
use crate::settings::LogsSettings;

/// Reports the plan; see the module doc.
pub async fn run(ctx: &Ctx, s: &LogsSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    let (info, image) = log_container(engine, s).await?;
    let run = Runner {
        engine,
        info: &info,
        image: &image,
        user: dir_owner(engine, &info, &s.dir).await?,
    };
    let now = Utc::now();
    let rotation = Rotation {
        patterns: if s.rotate {
            s.patterns.clone()
        } else {
            Vec::new()
        },
        stamp: naming::stamp(now),
        now: now.timestamp(),
        min_size: s.min_size,
        max_age: s.max_age,
        method: s.reopen.clone(),
    };
    let ran = run.script(scripts::plan(&s.dir, &rotation), false).await?;
    if ran.code != 0 {
        return Err(DockerError::HelperFailed {
            container: info.name.clone(),
            action: format!("listing the logs in {}", s.dir),
            code: ran.code,
            output: ran.stderr.trim().to_string(),
        }
        .into());
    }
    let records = scripts::records(&ran.stdout);
    let due = scripts::sized(&records, "DUE");
    let waiting = scripts::files(&records);
    let skipped: Vec<&str> = scripts::tagged(&records, "SKIPPED").collect();
    let ship_to = s.ship.as_ref().map(|x| x.dest.to_string());
    if ctx.output.json {
        let files = |v: &[(u64, String)]| {
            v.iter()
                .map(|(size, name)| json!({"name": name, "size": size}))
                .collect::<Vec<_>>()
        };
        ctx.json(&json!({
            "dry_run": true,
            "container": info.name,
            "dir": s.dir,
            "would_rotate": files(&due),
            "waiting": files(&waiting),
            "skipped": skipped,
            "ship_to": ship_to,
            "reopen": s.rotate.then(|| s.reopen.to_string()),
        }));
        return Ok(());
    }
    let list = |v: &[(u64, String)]| {
        v.iter()
            .map(|(size, name)| format!("{name} ({})", HumanBytes(*size)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if s.rotate {
        ctx.say(&format!(
            "would rotate in {} of {}: {}",
            s.dir,
            info.name,
            if due.is_empty() {
                "nothing is due".to_string()
            } else {
                format!("{}, then {}", list(&due), s.reopen)
            }
        ));
    }
    for why in &skipped {
        ctx.say(&format!("would skip {why}"));
    }
    match &ship_to {
        Some(to) => {
            let mut all = due.clone();
            all.extend(waiting.iter().cloned());
            ctx.say(&format!(
                "would ship to {to}: {}",
                if all.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} (deleted here once each is verified there)", list(&all))
                }
            ));
        }
        None if !waiting.is_empty() => {
            ctx.say(&format!("rotated files kept here: {}", list(&waiting)))
        }
        None => {}
    }
    ctx.say("nothing was changed");
    Ok(())
}
