//! `dockyard logs [rotate|ship]`: rotate the app's log files inside its volume without restarting
//! it, and ship rotated files, zstd-compressed, to a destination under deterministic keys.
//!
//! One run: a helper script takes the lock in the log directory, renames due files (or copies and
//! truncates them) and lists every rotated file; the app is told to reopen; after a short settle
//! time each rotated file is streamed out of the (exited) helper through zstd into the destination,
//! read back and checked; a second script deletes exactly the files that shipped and are still the
//! size that shipped, and releases the lock.

use std::io;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::Ctx;
use crate::archive::streams::{self, ReadAhead};
use crate::destination::{pump, DestError, Destination};
use crate::docker::{ContainerInfo, DockerError, Engine};
use crate::error::Failure;
use crate::logs::naming::{self, Rotated};
use crate::logs::reopen::Reopen;
use crate::logs::scripts::{self, Rotation};
use crate::settings::{LogsSettings, ShipSettings};

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
    pruned: Vec<String>,
}

/// Runs `dockyard logs`, `logs rotate` or `logs ship` as `s` says.
pub async fn run(ctx: &Ctx, s: LogsSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    engine.remove_stale_helpers().await?;
    let info = engine.inspect(&s.container).await?;
    if !info.mounts.iter().any(|m| m.contains(&s.dir)) {
        return Err(Failure::usage(format!(
            "{} of container {:?} is not inside a volume or bind mount; rotating it would be lost with the container",
            s.dir, info.name
        ))
        .into());
    }
    let dest = match &s.ship {
        Some(ship) => {
            let d = ship.dest.open().await;
            d.prepare().await?;
            d.remove_stale().await?;
            Some(d)
        }
        None => None,
    };
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let owner = format!(
        "{} {} {}",
        crate::host::hostname(),
        std::process::id(),
        Utc::now().timestamp()
    );
    let now = Utc::now();
    let rotation = s.rotate.then(|| Rotation {
        patterns: s.patterns.clone(),
        stamp: naming::stamp(now),
        now: now.timestamp(),
        min_size: s.min_size,
        max_age: s.max_age,
        method: s.reopen.clone(),
    });

    let begun = begin(engine, &info, &image, &s.dir, &owner, rotation.as_ref()).await?;
    let helper = begun.helper.clone().expect("kept");
    let result = carry_on(engine, &info, &s, dest.as_deref(), &helper, &begun.stdout).await;
    let _ = engine.remove_helper(&helper).await;
    let (mut report, shipped, surplus) = match result {
        Ok(r) => r,
        Err(e) => {
            // Release the lock; delete nothing.
            let _ = engine
                .run_script(
                    &info,
                    &image,
                    scripts::finish(&s.dir, &owner, &[], &[]),
                    false,
                )
                .await;
            return Err(e);
        }
    };
    let fin = engine
        .run_script(
            &info,
            &image,
            scripts::finish(&s.dir, &owner, &shipped, &surplus),
            false,
        )
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
    report.deleted = scripts::tagged(&fin.stdout, "DELETED")
        .map(|n| n.trim_matches('\'').to_string())
        .collect();
    if let (Some(dest), Some(age)) = (dest.as_deref(), s.ship.as_ref().and_then(|x| x.prune_after))
    {
        report.pruned = prune_shipped(dest, &info.name, age).await?;
    }
    report.kept = scripts::tagged(&fin.stdout, "KEPT")
        .map(|n| n.trim_matches('\'').to_string())
        .collect();
    print_report(ctx, &info.name, &s, &report);
    if !report.failed.is_empty() {
        return Err(anyhow::Error::new(DestError::Unusable {
            dest: s
                .ship
                .as_ref()
                .map(|x| x.dest.to_string())
                .unwrap_or_default(),
            message: format!(
                "{} rotated file(s) of {:?} did not ship and stay in {} for the next run: {}",
                report.failed.len(),
                info.name,
                s.dir,
                report.failed.join(", ")
            ),
        }));
    }
    Ok(())
}

/// The begin script, with lock takeover: a lock whose holder is gone (dead pid on this host) or
/// older than [`LOCK_LIMIT`] is taken over with a warning; a live one is a clear error.
async fn begin(
    engine: &Engine,
    info: &ContainerInfo,
    image: &str,
    dir: &str,
    owner: &str,
    rotation: Option<&Rotation>,
) -> Result<crate::docker::ScriptRun> {
    let mut stale: Option<String> = None;
    loop {
        let run = engine
            .run_script(
                info,
                image,
                scripts::begin(dir, owner, stale.as_deref(), rotation),
                true,
            )
            .await?;
        if run.code == 0 {
            return Ok(run);
        }
        if let Some(h) = &run.helper {
            engine.remove_helper(h).await?;
        }
        if run.code != scripts::LOCKED {
            return Err(DockerError::HelperFailed {
                container: info.name.clone(),
                action: format!("locking and rotating the logs in {dir}"),
                code: run.code,
                output: run.stderr.trim().to_string(),
            }
            .into());
        }
        let holder = scripts::tagged(&run.stdout, "LOCKED")
            .next()
            .unwrap_or("")
            .to_string();
        let mut parts = holder.split_whitespace();
        let (host, pid, since) = (
            parts.next().unwrap_or("?").to_string(),
            parts.next().and_then(|p| p.parse::<u32>().ok()),
            parts.next().and_then(|t| t.parse::<i64>().ok()),
        );
        let age = since
            .map(|t| Utc::now().timestamp() - t)
            .unwrap_or(i64::MAX);
        let gone =
            host == crate::host::hostname() && pid.is_some_and(|p| !crate::host::process_alive(p));
        if stale.is_none() && (gone || age > LOCK_LIMIT.as_secs() as i64) {
            tracing::warn!(container = %info.name, dir, holder = %holder, "taking over a stale log lock (its holder is gone or it is too old)");
            stale = Some(holder);
            continue;
        }
        return Err(Failure::busy(format!(
            "another dockyard run holds the log lock of {dir} in container {:?} (host {host}, pid {}, for {}s); wait for it, or remove {dir}/{}/lock if that run is gone",
            info.name,
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            if age == i64::MAX { 0 } else { age },
            scripts::STATE_DIR
        ))
        .into());
    }
}

type Carried = (Report, Vec<(String, u64, String)>, Vec<String>);

/// Reopen, settle, ship (or pick the surplus to delete). Returns the report, what shipped
/// (name, size, key) and the surplus rotated files to delete.
async fn carry_on(
    engine: &Engine,
    info: &ContainerInfo,
    s: &LogsSettings,
    dest: Option<&dyn Destination>,
    helper: &str,
    begin_out: &str,
) -> Result<Carried> {
    let mut report = Report {
        rotated: scripts::tagged(begin_out, "ROTATED")
            .map(str::to_string)
            .collect(),
        ..Default::default()
    };
    if !report.rotated.is_empty() {
        reopen(engine, info, &s.reopen).await?;
        if dest.is_some() {
            tokio::time::sleep(s.settle).await;
        }
    }
    let files: Vec<(u64, Rotated)> = scripts::files(begin_out)
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
    for (_, r) in files {
        let key = naming::ship_key(&info.name, &r);
        let path = format!("{}/{}", s.dir, r.name);
        match ship_file(engine, helper, &path, dest, &key, level).await {
            Ok(raw) => {
                report.shipped.push(key.clone());
                shipped.push((r.name.clone(), raw, key));
            }
            Err(e) => {
                tracing::warn!(file = %r.name, error = %format!("{e:#}"), "did not ship; it stays for the next run");
                report.failed.push(format!("{} ({e:#})", r.name));
            }
        }
    }
    Ok((report, shipped, Vec::new()))
}

/// Deletes `container`'s shipped logs rotated more than `age` seconds ago; returns their keys.
async fn prune_shipped(dest: &dyn Destination, container: &str, age: u64) -> Result<Vec<String>> {
    let cutoff = Utc::now() - chrono::Duration::seconds(age as i64);
    let mut pruned = Vec::new();
    for key in dest.list_under(&format!("logs/{container}")).await? {
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
) -> Result<u64> {
    let reader = ReadAhead::new(
        tokio::runtime::Handle::current(),
        engine.download(helper, path),
    );
    let (writer, rx) = streams::channel();
    let packer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
        let mut archive = tar::Archive::new(reader);
        let mut entry = archive
            .entries()?
            .next()
            .ok_or_else(|| io::Error::other("the engine sent an empty archive"))??;
        let mut encoder = zstd::stream::write::Encoder::new(writer, level)?;
        encoder.include_checksum(true)?;
        let raw = io::copy(&mut entry, &mut encoder)?;
        encoder.finish()?.close()?;
        Ok(raw)
    });
    let mut upload = dest.put(key).await?;
    let (packed, want) = match pump(upload.as_mut(), rx, packer).await {
        Ok(r) => r,
        Err(e) => {
            upload.abort().await;
            return Err(e.into());
        }
    };
    let raw = match packed {
        Ok(raw) => raw,
        Err(e) => {
            upload.abort().await;
            return Err(e).with_context(|| format!("read {path} from the volume"));
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
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|source| DestError::Io {
                dest: dest.describe(),
                action: format!("read back {key}"),
                source,
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
        super::print_json(&json!({"container": container, "dir": s.dir, "report": r}));
        return;
    }
    let dest = s.ship.as_ref().map(|x: &ShipSettings| x.dest.to_string());
    println!(
        "logs of {container} ({}): rotated {}, shipped {}{}, deleted {}, kept {}, failed {}, pruned {}",
        s.dir,
        r.rotated.len(),
        r.shipped.len(),
        dest.map(|d| format!(" to {d}")).unwrap_or_default(),
        r.deleted.len(),
        r.kept.len(),
        r.failed.len(),
        r.pruned.len()
    );
}
