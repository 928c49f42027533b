//! Log runs: rotate the app's log files inside its volume without restarting
//! it, and ship rotated files, zstd-compressed, to a destination under deterministic keys.
//!
//! One run: a helper script takes the lock in the log directory, renames due files (or copies and
//! truncates them) and lists every rotated file; the app is told to reopen; after a short settle
//! time each rotated file is streamed out of the (exited) helper through zstd into the destination,
//! read back and checked; a second script deletes exactly the files that shipped and are still the
//! size that shipped, and releases the lock.

mod plan;
mod ship;

use std::time::Duration;

use anyhow::Result;
use chrono::Utc;

use super::prepare::prepare_container;
use super::Session;
use crate::destination::{DestError, Destination};
use crate::docker::exec::PARSED;
use crate::docker::{Capture, ContainerInfo, DockerError, Engine, ExecOutput, Helper};
use crate::error::Failure;
use crate::logs::held_open::{self, Holder};
use crate::logs::naming::{self, Rotated};
use crate::logs::reopen::Reopen;
use crate::logs::scripts::{self, Rotation};
use crate::logs::volume::{dir_owner, log_container, Runner};
use crate::owner::{Liveness, Owner};
use crate::progress::Progress;
use crate::settings::LogsSettings;
use crate::shell::Script;

use crate::encryption::Age;
use crate::pipeline::Transform;
pub use plan::{plan, LogsPlan, Sized};
use ship::{prune_shipped, ship_file, Packing};
use std::sync::Arc;

/// A lock older than this is taken over even if its holder may be alive elsewhere.
const LOCK_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// What one run did, for the summary.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// Files rotated this run.
    pub rotated: Vec<String>,
    /// Files shipped and verified at the destination.
    pub shipped: Vec<String>,
    /// Files deleted here once shipped.
    pub deleted: Vec<String>,
    /// Rotated files kept here.
    pub kept: Vec<String>,
    /// Files that did not rotate or ship (they stay for the next run).
    pub failed: Vec<String>,
    /// Files left alone, and why.
    pub skipped: Vec<String>,
    /// Shipped files removed at the destination by age.
    pub pruned: Vec<String>,
    /// Log bytes shipped (before compression).
    pub shipped_bytes: u64,
    /// Processes still holding a rotated file open after the reopen.
    pub held_open: Vec<Holder>,
}

/// What one log run did (the `logs` JSON document, docs/json.md).
#[derive(Debug, serde::Serialize)]
pub struct LogsRun {
    /// The container's name.
    pub container: String,
    /// The log directory.
    pub dir: String,
    /// What happened to each file.
    pub report: Report,
}

impl LogsRun {
    /// Rotation or shipping failures as the run's error (the files stay for the next run).
    pub fn failures(&self, s: &LogsSettings) -> Result<()> {
        let (container, report) = (&self.container, &self.report);
        if report.failed.is_empty() {
            return Ok(());
        }
        Err(anyhow::Error::new(DestError::Unusable {
            dest: s
                .ship
                .as_ref()
                .map(|x| x.dest.to_string())
                .unwrap_or_else(|| format!("{} of {container:?}", s.dir)),
            message: format!(
                "{} log file(s) of {container:?} did not rotate or ship; they stay in {} for the next run: {}",
                report.failed.len(),
                s.dir,
                report.failed.join(", ")
            ),
        }))
    }
}

/// The name a container's logs are shipped under: `<engine>.<container>` with several engines.
fn shipped_as(s: &LogsSettings, container: &str) -> String {
    crate::manifest::id_stem(&crate::manifest::qualified(
        s.on_engine.as_deref(),
        container,
    ))
}

/// Rotates and ships as `s` says; prints nothing. Files that did not rotate or ship are in the
/// outcome ([`LogsRun::failures`]).
pub async fn run(session: &Session, engine: &Engine, s: &LogsSettings) -> Result<LogsRun> {
    engine.remove_stale_helpers().await?;
    let (info, image) = log_container(engine, s).await?;
    let _lock = prepare_container(session, engine, &info, &image, "logs").await?;
    let dest = match &s.ship {
        Some(ship) => {
            let d = ship.dest.open().await;
            d.prepare().await?;
            d.remove_stale().await?;
            Some(d)
        }
        None => None,
    };
    let user = dir_owner(engine, &info, &s.dir).await?;
    let run = Runner {
        engine,
        info: &info,
        image: &image,
        user,
    };
    let owner = Owner::current().to_string();
    let now = Utc::now();
    let rotation = s.rotate.then(|| Rotation {
        patterns: s.patterns.clone(),
        stamp: naming::stamp(now),
        now: now.timestamp(),
        min_size: s.min_size,
        max_age: s.max_age,
        method: s.reopen.clone(),
    });

    let (begun, helper) = match begin(&run, &s.dir, &owner, rotation.as_ref()).await {
        Ok(begun) => begun,
        Err(e) => {
            // The script may have taken the lock before what it said was refused (more records
            // than dockyard reads): release it, deleting nothing. A lock another run holds is
            // not ours to release, and the script leaves it.
            let _ = run.run(scripts::finish(&s.dir, &owner, &[], &[])).await;
            return Err(e);
        }
    };
    let records = scripts::records(&begun.stdout);
    let result = carry_on(
        &run,
        s,
        dest.as_deref(),
        helper.id(),
        &records,
        session.progress,
    )
    .await;
    let _ = helper.remove().await;
    let (mut report, shipped, surplus) = match result {
        Ok(r) => r,
        Err(e) => {
            // Release the lock; delete nothing.
            let _ = run.run(scripts::finish(&s.dir, &owner, &[], &[])).await;
            return Err(e);
        }
    };
    let fin = run
        .run(scripts::finish(&s.dir, &owner, &shipped, &surplus))
        .await?;
    if fin.code != 0 {
        return Err(DockerError::HelperFailed {
            container: info.name.clone(),
            action: format!("deleting shipped logs in {}", s.dir),
            code: fin.code,
            output: fin.stderr_tail,
        }
        .into());
    }
    let fin_records = scripts::records(&fin.stdout);
    report.deleted = scripts::tagged(&fin_records, "DELETED")
        .map(str::to_string)
        .collect();
    if let (Some(dest), Some(age)) = (dest.as_deref(), s.ship.as_ref().and_then(|x| x.prune_after))
    {
        report.pruned = prune_shipped(dest, &shipped_as(s, &info.backup_name()), age).await?;
    }
    report.kept = scripts::tagged(&fin_records, "KEPT")
        .map(str::to_string)
        .collect();
    for skipped in &report.skipped {
        tracing::warn!(container = %info.name, dir = %s.dir, "skipped {skipped}");
    }
    Ok(LogsRun {
        container: info.name.clone(),
        dir: s.dir.clone(),
        report,
    })
}

/// A lock owner as dockyard 0.1 wrote it (`<host> <pid> <since>`); such locks outlive an upgrade
/// in the volume.
fn legacy_owner(text: &str) -> Option<Owner> {
    let mut parts = text.split_whitespace();
    let (host, pid, since) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Owner::parse(&format!("{host} {pid} 0 legacy {since}"))
}

/// The begin script, with lock takeover: a lock whose holder is gone (the owner rule: a dead
/// process on this host, or older than [`LOCK_LIMIT`] elsewhere) is taken over with a warning; a
/// live one is a clear error.
async fn begin(
    run: &Runner<'_>,
    dir: &str,
    owner: &str,
    rotation: Option<&Rotation>,
) -> Result<(ExecOutput, Helper)> {
    let info = run.info;
    let mut stale: Option<String> = None;
    loop {
        let (ran, helper) = run
            .run_kept(scripts::begin(dir, owner, stale.as_deref(), rotation))
            .await?;
        if ran.code == 0 {
            return Ok((ran, helper));
        }
        helper.remove().await?;
        if ran.code != scripts::LOCKED {
            return Err(DockerError::HelperFailed {
                container: info.name.clone(),
                action: format!("locking and rotating the logs in {dir}"),
                code: ran.code,
                output: ran.stderr_tail.trim().to_string(),
            }
            .into());
        }
        let records = scripts::records(&ran.stdout);
        let holder = scripts::tagged(&records, "LOCKED")
            .next()
            .unwrap_or("")
            .to_string();
        let held_by = Owner::parse(&holder).or_else(|| legacy_owner(&holder));
        let gone = match &held_by {
            Some(o) => o.liveness(LOCK_LIMIT.as_secs() as i64) == Liveness::Gone,
            // Not dockyard's owner format (or an older dockyard's): only its age could tell.
            None => false,
        };
        if stale.is_none() && gone {
            tracing::warn!(container = %info.name, dir, holder = %holder, "taking over a stale log lock (its holder is gone or it is too old)");
            stale = Some(holder);
            continue;
        }
        let (host, pid, age) = match &held_by {
            Some(o) => (
                o.host.clone(),
                o.pid.to_string(),
                Utc::now().timestamp() - o.since,
            ),
            None => ("?".into(), "?".into(), 0),
        };
        return Err(Failure::busy(format!(
            "another dockyard run holds the log lock of {dir} in container {:?} (host {host}, pid {pid}, for {age}s); wait for it, or remove {dir}/{}/lock if that run is gone",
            info.name,
            scripts::STATE_DIR
        ))
        .into());
    }
}

type Carried = (Report, Vec<(String, u64, String)>, Vec<String>);

/// Reopen, settle, ship (or pick the surplus to delete). Returns the report, what shipped
/// (name, size, key) and the surplus rotated files to delete.
async fn carry_on(
    run: &Runner<'_>,
    s: &LogsSettings,
    dest: Option<&dyn Destination>,
    helper: &str,
    records: &[String],
    show_progress: bool,
) -> Result<Carried> {
    let mut report = Report {
        rotated: scripts::tagged(records, "ROTATED")
            .map(str::to_string)
            .collect(),
        failed: scripts::tagged(records, "FAILED")
            .map(str::to_string)
            .collect(),
        skipped: scripts::tagged(records, "SKIPPED")
            .map(str::to_string)
            .collect(),
        ..Default::default()
    };
    let (engine, info) = (run.engine, run.info);
    if !report.rotated.is_empty() {
        reopen(engine, info, &s.reopen).await?;
        if dest.is_some() {
            tokio::time::sleep(s.settle).await;
        }
        report.held_open = held_open(run, s, dest.is_some()).await;
    }
    let files: Vec<(u64, Rotated)> = scripts::files(records)
        .into_iter()
        .filter_map(|(size, name)| Some((size, naming::parse_rotated(&name)?)))
        .collect();
    let mut shipped = Vec::new();
    let Some(dest) = dest else {
        let all: Vec<Rotated> = files.into_iter().map(|(_, r)| r).collect();
        let surplus = match s.keep_local {
            Some(keep) => naming::surplus(&all, keep)
                .into_iter()
                .map(|r| r.name)
                .collect(),
            None => Vec::new(),
        };
        return Ok((report, shipped, surplus));
    };
    let packing = Packing {
        level: s.ship.as_ref().map(|x| x.level).unwrap_or(3),
        transform: s
            .ship
            .as_ref()
            .and_then(|x| x.encryption.clone())
            .map(|seal| Arc::new(Age::sealing(seal)) as Arc<dyn Transform>),
    };
    let total = files.iter().map(|(size, _)| size).sum();
    let progress = Progress::sized(
        format!("ship logs of {}", info.name),
        Some(total),
        show_progress,
    );
    for (_, r) in files {
        let key = naming::ship_key(
            &shipped_as(s, &info.backup_name()),
            &r,
            packing.transform.is_some(),
        );
        let path = format!("{}/{}", s.dir, r.name);
        let counter = progress.read.clone();
        match ship_file(engine, helper, &path, dest, &key, &packing, counter).await {
            Ok(raw) => {
                report.shipped_bytes += raw;
                report.shipped.push(key.clone());
                shipped.push((r.name.clone(), raw, key));
            }
            Err(e) => {
                tracing::warn!(file = %r.name, error = %format!("{e:#}"), "did not ship; it stays for the next run");
                report.failed.push(format!("{} ({e:#})", r.name));
            }
        }
    }
    progress.finish();
    Ok((report, shipped, Vec::new()))
}

/// Processes in the running app that still hold a rotated file open after the reopen, each with a
/// warning: a writer keeps writing into a file about to ship (or be deleted), and `tail -f` goes
/// silent (`tail -F` follows the new file). Best effort: an app without /bin/sh is not checked.
async fn held_open(run: &Runner<'_>, s: &LogsSettings, settled: bool) -> Vec<Holder> {
    let info = run.info;
    if !info.running || s.reopen == Reopen::CopyTruncate {
        return Vec::new();
    }
    if !settled {
        // Give the app a moment to act on the reopen before looking.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let script = Script {
        name: "dockyard-held-open",
        text: crate::shell::HELD_OPEN,
        args: Vec::new(),
    };
    let listed = match run
        .engine
        .run_in(
            &info.id,
            &script,
            run.user.as_deref(),
            Capture::Parse(PARSED),
        )
        .await
    {
        Ok(out) if out.code == 0 => out.stdout,
        Ok(ExecOutput { code, .. }) => {
            tracing::debug!(container = %info.name, code, "could not list open files; not checked");
            return Vec::new();
        }
        Err(e) => {
            tracing::debug!(container = %info.name, error = %e, "could not list open files; not checked");
            return Vec::new();
        }
    };
    let holders = held_open::holders(&listed, &s.dir);
    for h in &holders {
        tracing::warn!(
            container = %info.name,
            pid = %h.pid,
            "process {} ({}) still has {} open after the reopen: a writer keeps writing into the rotated file (its lines ship late or are lost), and `tail -f` stops showing new lines; follow logs with `tail -F`, and check the reopen method (--reopen)",
            h.pid,
            h.command,
            h.file
        );
    }
    holders
}

/// Tells the app to reopen its files.
async fn reopen(engine: &Engine, info: &ContainerInfo, how: &Reopen) -> Result<()> {
    match how {
        Reopen::Signal(sig) if info.running => Ok(engine.signal(&info.id, sig).await?),
        Reopen::Exec(cmd) if info.running => {
            let ran = engine.exec_shell(&info.id, cmd).await?;
            let (code, out) = (ran.code, ran.stderr_tail);
            if code != 0 {
                return Err(DockerError::HelperFailed {
                    container: info.name.clone(),
                    action: format!("running the reopen command {cmd:?}"),
                    code,
                    output: out.trim().to_string(),
                }
                .into());
            }
            Ok(())
        }
        Reopen::Signal(_) | Reopen::Exec(_) => {
            tracing::info!(container = %info.name, "not running: nothing to tell to reopen");
            Ok(())
        }
        Reopen::CopyTruncate | Reopen::None => Ok(()),
    }
}
