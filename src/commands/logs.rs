//! `dockyard logs [rotate|ship]`: rotate the app's log files inside its volume without restarting
//! it, and ship rotated files, zstd-compressed, to a destination under deterministic keys.
//!
//! One run: a helper script takes the lock in the log directory, renames due files (or copies and
//! truncates them) and lists every rotated file; the app is told to reopen; after a short settle
//! time each rotated file is streamed out of the (exited) helper through zstd into the destination,
//! read back and checked; a second script deletes exactly the files that shipped and are still the
//! size that shipped, and releases the lock.

use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::Ctx;
use crate::destination::{DestError, Destination};
use crate::docker::{ContainerInfo, DockerError, Engine};
use crate::error::Failure;
use crate::logs::held_open::{self, Holder};
use crate::logs::naming::{self, Rotated};
use crate::logs::reopen::Reopen;
use crate::logs::scripts::{self, Rotation};
use crate::logs::volume::{dir_owner, log_container, Runner};
use crate::owner::{Liveness, Owner};
use crate::pipeline::streams::{CountingReader, ReadAhead};
use crate::pipeline::{stream_into, Broken};
use crate::progress::Progress;
use crate::settings::{LogsSettings, ShipSettings};
use crate::shell::Script;

/// A lock older than this is taken over even if its holder may be alive elsewhere.
const LOCK_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// What one run did, for the summary.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    rotated: Vec<String>,
    shipped: Vec<String>,
    deleted: Vec<String>,
    kept: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
    pruned: Vec<String>,
    /// Log bytes shipped (before compression).
    shipped_bytes: u64,
    /// Processes still holding a rotated file open after the reopen.
    held_open: Vec<Holder>,
}

/// Runs `dockyard logs`, `logs rotate` or `logs ship` as `s` says, and prints what it did.
pub async fn run(ctx: &Ctx, s: LogsSettings) -> Result<()> {
    if s.dry_run {
        return super::logs_plan::run(ctx, &s).await;
    }
    let (container, report) = execute(ctx, &s).await?;
    print_report(ctx, &container, &s, &report);
    failures(&container, &s, &report)
}

/// The same for `dockyard run`: prints nothing.
pub async fn run_quiet(ctx: &Ctx, s: LogsSettings) -> Result<u64> {
    let (container, report) = execute(ctx, &s).await?;
    failures(&container, &s, &report)?;
    Ok(report.shipped_bytes)
}

/// Rotation or shipping failures as the run's error (the files stay for the next run).
fn failures(container: &str, s: &LogsSettings, report: &Report) -> Result<()> {
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

/// Rotates and ships; returns the container's name and what happened.
async fn execute(ctx: &Ctx, s: &LogsSettings) -> Result<(String, Report)> {
    let engine = ctx.engine().await?;
    engine.remove_stale_helpers().await?;
    let (info, image) = log_container(engine, s).await?;
    let _lock = super::prepare_container(ctx, engine, &info, &image, "logs").await?;
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

    let begun = begin(&run, &s.dir, &owner, rotation.as_ref()).await?;
    let helper = begun.helper.clone().expect("kept");
    let records = scripts::records(&begun.stdout);
    let result = carry_on(
        &run,
        s,
        dest.as_deref(),
        &helper,
        &records,
        ctx.output.progress,
    )
    .await;
    let _ = engine.remove_helper(&helper).await;
    let (mut report, shipped, surplus) = match result {
        Ok(r) => r,
        Err(e) => {
            // Release the lock; delete nothing.
            let _ = run
                .script(scripts::finish(&s.dir, &owner, &[], &[]), false)
                .await;
            return Err(e);
        }
    };
    let fin = run
        .script(scripts::finish(&s.dir, &owner, &shipped, &surplus), false)
        .await?;
    if fin.code != 0 {
        return Err(DockerError::HelperFailed {
            container: info.name.clone(),
            action: format!("deleting shipped logs in {}", s.dir),
            code: fin.code,
            output: fin.stderr,
        }
        .into());
    }
    let fin_records = scripts::records(&fin.stdout);
    report.deleted = scripts::tagged(&fin_records, "DELETED")
        .map(str::to_string)
        .collect();
    if let (Some(dest), Some(age)) = (dest.as_deref(), s.ship.as_ref().and_then(|x| x.prune_after))
    {
        report.pruned = prune_shipped(dest, &info.name, age).await?;
    }
    report.kept = scripts::tagged(&fin_records, "KEPT")
        .map(str::to_string)
        .collect();
    for skipped in &report.skipped {
        tracing::warn!(container = %info.name, dir = %s.dir, "skipped {skipped}");
    }
    Ok((info.name.clone(), report))
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
) -> Result<crate::docker::ScriptRun> {
    let info = run.info;
    let mut stale: Option<String> = None;
    loop {
        let ran = run
            .script(scripts::begin(dir, owner, stale.as_deref(), rotation), true)
            .await?;
        if ran.code == 0 {
            return Ok(ran);
        }
        if let Some(h) = &ran.helper {
            run.engine.remove_helper(h).await?;
        }
        if ran.code != scripts::LOCKED {
            return Err(DockerError::HelperFailed {
                container: info.name.clone(),
                action: format!("locking and rotating the logs in {dir}"),
                code: ran.code,
                output: ran.stderr.trim().to_string(),
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
    let level = s.ship.as_ref().map(|x| x.level).unwrap_or(3);
    let total = files.iter().map(|(size, _)| size).sum();
    let progress = Progress::sized(
        format!("ship logs of {}", info.name),
        Some(total),
        show_progress,
    );
    for (_, r) in files {
        let key = naming::ship_key(&info.name, &r);
        let path = format!("{}/{}", s.dir, r.name);
        let counter = progress.read.clone();
        match ship_file(engine, helper, &path, dest, &key, level, counter).await {
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
        .exec_script(&info.id, &script, run.user.as_deref())
        .await
    {
        Ok((0, out)) => out,
        Ok((code, _)) => {
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

/// Deletes `container`'s shipped logs rotated more than `age` seconds ago; returns their keys.
async fn prune_shipped(dest: &dyn Destination, container: &str, age: u64) -> Result<Vec<String>> {
    let cutoff = Utc::now() - chrono::Duration::seconds(age as i64);
    let mut pruned = Vec::new();
    for key in dest
        .list(&format!("logs/{container}/"))
        .await?
        .into_iter()
        .map(|e| e.name)
    {
        let file = key.rsplit('/').next().unwrap_or("");
        let old = file
            .strip_suffix(".zst")
            .and_then(naming::parse_rotated)
            .is_some_and(|r| r.at < cutoff);
        if old {
            dest.delete(&key).await?;
            pruned.push(key);
        }
    }
    Ok(pruned)
}

/// Tells the app to reopen its files.
async fn reopen(engine: &Engine, info: &ContainerInfo, how: &Reopen) -> Result<()> {
    match how {
        Reopen::Signal(sig) if info.running => Ok(engine.signal(&info.id, sig).await?),
        Reopen::Exec(cmd) if info.running => {
            let (code, out) = engine.exec(&info.id, cmd).await?;
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

/// Streams one file out of `helper`, through zstd, into `dest` as `key`, then reads the object back
/// and checks its sha256. Returns the file's size in bytes.
async fn ship_file(
    engine: &Engine,
    helper: &str,
    path: &str,
    dest: &dyn Destination,
    key: &str,
    level: i32,
    counter: Arc<AtomicU64>,
) -> Result<u64> {
    let reader = ReadAhead::new(
        tokio::runtime::Handle::current(),
        engine.download(helper, path),
    );
    let upload = dest.put(key).await?;
    let shipped = stream_into(upload, move |writer| -> io::Result<(u64, _)> {
        let mut archive = tar::Archive::new(reader);
        let mut entry = archive
            .entries()?
            .next()
            .ok_or_else(|| io::Error::other("the engine sent an empty archive"))??;
        // Only a regular file ships: a symlink planted after the listing is not followed.
        if !entry.header().entry_type().is_file() {
            return Err(io::Error::other(
                "it is no longer a regular file (a symlink or something else); not shipped",
            ));
        }
        let mut encoder = zstd::stream::write::Encoder::new(writer, level)?;
        encoder.include_checksum(true)?;
        let raw = io::copy(&mut CountingReader::new(&mut entry, counter), &mut encoder)?;
        Ok((raw, encoder.finish()?))
    })
    .await;
    let (upload, raw, want) = match shipped {
        Ok(done) => done,
        Err(Broken::Destination(e)) => return Err(e.into()),
        Err(Broken::Producer(e)) => {
            return Err(e).with_context(|| format!("read {path} from the volume"))
        }
    };
    upload.commit().await?;
    let got = read_back_sha(dest, key).await?;
    if got != want {
        return Err(anyhow::anyhow!(
            "{}: {key} reads back with sha256 {got}, {want} was written",
            dest.describe()
        ));
    }
    Ok(raw)
}

async fn read_back_sha(dest: &dyn Destination, key: &str) -> Result<String, DestError> {
    let mut reader = dest.get(key).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).await.map_err(|error| DestError::Io {
            dest: dest.describe(),
            action: format!("read back {key}"),
            error,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn print_report(ctx: &Ctx, container: &str, s: &LogsSettings, r: &Report) {
    if ctx.output.json {
        ctx.json(&json!({"container": container, "dir": s.dir, "report": r}));
        return;
    }
    let dest = s.ship.as_ref().map(|x: &ShipSettings| x.dest.to_string());
    ctx.say(&format!(
        "logs of {container} ({}): rotated {}, shipped {}{}, deleted {}, kept {}, failed {}, skipped {}, pruned {}",
        s.dir,
        r.rotated.len(),
        r.shipped.len(),
        dest.map(|d| format!(" to {d}")).unwrap_or_default(),
        r.deleted.len(),
        r.kept.len(),
        r.failed.len(),
        r.skipped.len(),
        r.pruned.len()
    ));
}
