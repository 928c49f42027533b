//! A log run's plan (`logs --dry-run`): what a log run would do now, changing nothing: which live files are
//! due to rotate (and by which trigger's settings), which rotated files wait to ship and where,
//! read by a helper that takes no lock and writes nothing.

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;

use crate::docker::DockerError;
use crate::logs::naming;
use crate::logs::scripts::{self, Rotation};
use crate::logs::volume::{dir_owner, log_container, Runner};
use crate::ops::Session;
use crate::settings::LogsSettings;

/// A file, with its size.
#[derive(Debug, Clone, Serialize)]
pub struct Sized {
    /// Its name in the log directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a log run would do now (the `logs --dry-run` JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct LogsPlan {
    /// Always true.
    pub dry_run: bool,
    /// The container's name.
    pub container: String,
    /// The log directory.
    pub dir: String,
    /// Live files due to rotate.
    pub would_rotate: Vec<Sized>,
    /// Rotated files waiting to ship.
    pub waiting: Vec<Sized>,
    /// Files left alone, and why.
    pub skipped: Vec<String>,
    /// Where they would ship.
    pub ship_to: Option<String>,
    /// How the app would be told to reopen its files (when rotating).
    pub reopen: Option<String>,
    /// Whether the run rotates.
    #[serde(skip)]
    pub rotate: bool,
}

/// The plan; see the module doc.
pub async fn plan(session: &Session, s: &LogsSettings) -> Result<LogsPlan> {
    let engine = session.engine().await?;
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
    let ran = run.run(scripts::plan(&s.dir, &rotation)).await?;
    if ran.code != 0 {
        return Err(DockerError::HelperFailed {
            container: info.name.clone(),
            action: format!("listing the logs in {}", s.dir),
            code: ran.code,
            output: ran.stderr_tail.trim().to_string(),
        }
        .into());
    }
    let records = scripts::records(&ran.stdout);
    let due = scripts::sized(&records, "DUE");
    let waiting = scripts::files(&records);
    let skipped: Vec<String> = scripts::tagged(&records, "SKIPPED")
        .map(str::to_string)
        .collect();
    let ship_to = s.ship.as_ref().map(|x| x.dest.to_string());
    let files = |v: &[(u64, String)]| {
        v.iter()
            .map(|(size, name)| Sized {
                name: name.clone(),
                size: *size,
            })
            .collect::<Vec<_>>()
    };
    Ok(LogsPlan {
        dry_run: true,
        container: info.name.clone(),
        dir: s.dir.clone(),
        would_rotate: files(&due),
        waiting: files(&waiting),
        skipped,
        ship_to,
        reopen: s.rotate.then(|| s.reopen.to_string()),
        rotate: s.rotate,
    })
}
