//! `dockyard backup`: a container's volumes, streamed by the engine through zstd into a destination.
//!
//! Data path: helper container (`VolumesFrom=<app>:ro`, never started) → engine archive stream per
//! path → `archive::pack` (tar rewrite + zstd, on a blocking thread) → bounded channel →
//! `Destination::put` → commit → manifest. The archive's commit and the manifest are one
//! critical section (a signal waits for both), and the manifest never depends on removing the
//! helper, which happens last and on every way out.

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::HumanBytes;
use serde_json::json;

use super::quiesce::{self, Quiesce};
use super::Ctx;
use crate::agent::host::{self, Archive, Ended, Unavailable};
use crate::agent::{PackJob, PackPath};
use crate::archive::pack::{pack, PackStats, Source};
use crate::destination::Destination;
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec, Mount};
use crate::error::Failure;
use crate::manifest::{self, Manifest, MountRecord, Object, PathRecord, SnapshotRecord, Store};
use crate::pipeline::streams::{CountingReader, ReadAhead};
use crate::pipeline::{stream_into, Broken};
use crate::progress::Progress;
use crate::settings::BackupSettings;
use crate::values::AgentMode;

/// Runs `dockyard backup` (or `snapshot`), prints its summary and returns the backup written.
pub async fn run(ctx: &Ctx, s: BackupSettings) -> Result<super::Outcome> {
    if s.dry_run {
        dry_run(ctx, &s).await?;
        return Ok(super::Outcome::default());
    }
    let dest = s.dest.to_string();
    let (m, secs, downtime) = run_job(ctx, s).await?;
    print_summary(ctx, &m, secs, &dest, downtime);
    Ok(super::Outcome {
        backup: Some((m.id, m.size)),
    })
}

/// Pre-hook, stop, backup, start again, post-hook; returns the manifest, the seconds the backup
/// took and the downtime if containers were stopped. Prints nothing.
pub async fn run_job(ctx: &Ctx, s: BackupSettings) -> Result<(Manifest, f64, Option<f64>)> {
    let engine = ctx.engine().await?;
    let info = engine.inspect(&s.container).await?;
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let _lock = super::prepare_container(ctx, engine, &info, &image, "backup").await?;
    let quiet = Quiesce {
        container: &s.container,
        stop: &s.stop,
        stop_timeout: s.stop_timeout,
        pre_hook: s.pre_hook.as_deref(),
        post_hook: s.post_hook.as_deref(),
    };
    let ((m, secs), downtime) =
        quiesce::around(engine, quiet, backup(ctx, engine, &s, ctx.output.progress)).await?;
    Ok((m, secs, downtime))
}

/// `backup --dry-run`: the paths and the mounts they come from, what would be written where, and
/// what would be stopped or run around it. Reads the engine and lists the destination; writes
/// nothing and creates no helper.
async fn dry_run(ctx: &Ctx, s: &BackupSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    let info = engine.inspect(&s.container).await?;
    let paths = select_paths(&info, &s.paths)?;
    let dest = s.dest.open().await;
    let listed = Store::new(dest.clone()).manifests().await;
    let id = manifest::new_id(&info.name, Utc::now());
    let objects = [manifest::archive_name(&id), manifest::manifest_name(&id)];
    let held = listed.as_ref().ok().map(|ids| {
        ids.iter()
            .filter(|id| manifest::id_container(id).is_some_and(|c| c == info.name))
            .count()
    });
    if ctx.output.json {
        ctx.json(&json!({
            "dry_run": true,
            "container": info.name,
            "running": info.running,
            "paths": paths,
            "destination": dest.describe(),
            "would_write": objects,
            "backups_of_container_there": held,
            "destination_error": listed.as_ref().err().map(|e| e.to_string()),
            "stop": s.stop,
            "pre_hook": s.pre_hook,
            "post_hook": s.post_hook,
            "helper_image": s.helper_image.clone().unwrap_or_else(|| info.image.clone()),
            "level": s.compression.level,
            "tags": s.tags,
        }));
    } else {
        ctx.say(&format!(
            "would back up container {} ({}):",
            info.name,
            if info.running {
                "running"
            } else {
                "not running"
            }
        ));
        for p in &paths {
            let from = match &p.mount.volume {
                Some(v) => format!("volume {v}"),
                None => format!("{} mount", p.mount.kind),
            };
            ctx.say(&format!(
                "  {} (from {from} at {})",
                p.path, p.mount.destination
            ));
        }
        ctx.say(&format!(
            "to {}: {} and {}{}",
            dest.describe(),
            objects[0],
            objects[1],
            match held {
                Some(n) => format!(" (it holds {n} backup(s) of this container)"),
                None => String::new(),
            }
        ));
        if !s.stop.is_empty() {
            ctx.say(&format!(
                "stopping {} during the backup (then starting them again)",
                s.stop.join(", ")
            ));
        }
        for (when, hook) in [("before", &s.pre_hook), ("after", &s.post_hook)] {
            if let Some(h) = hook {
                ctx.say(&format!("running {h:?} in {} {when} it", info.name));
            }
        }
        ctx.say(&format!(
            "zstd level {}{}; nothing was written",
            s.compression.level,
            if s.tags.is_empty() {
                String::new()
            } else {
                format!(", tags {}", s.tags.join(", "))
            }
        ));
    }
    listed.map(|_| ()).map_err(Into::into)
}

/// Prints the one-line (or JSON) summary of a finished backup; `downtime` if containers were stopped.
pub fn print_summary(ctx: &Ctx, m: &Manifest, secs: f64, dest: &str, downtime: Option<f64>) {
    if ctx.output.json {
        ctx.json(
            &json!({"result": "ok", "seconds": secs, "destination": dest,
            "downtime_seconds": downtime, "backup": m}),
        );
        return;
    }
    if let Some(d) = downtime {
        ctx.say(&format!("containers stopped for {d:.1}s and started again"));
    }
    let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
    ctx.say(&format!(
        "backed up {} ({}): {} entries, {} read, {} written in {:.1}s ({}/s); id {} at {}",
        m.container,
        paths.join(", "),
        m.entries,
        HumanBytes(m.tar_bytes),
        HumanBytes(m.size),
        secs,
        HumanBytes((m.tar_bytes as f64 / secs.max(0.001)) as u64),
        m.id,
        dest
    ));
}

/// Backs up the container `s` names; returns the manifest written and the seconds it took. The
/// caller holds the container's lock.
pub async fn backup(
    ctx: &Ctx,
    engine: &Engine,
    s: &BackupSettings,
    show_progress: bool,
) -> Result<(Manifest, f64)> {
    let info = engine.inspect(&s.container).await?;
    let paths = select_paths(&info, &s.paths)?;
    let dest = s.dest.open().await;
    dest.prepare().await?;
    let store = Store::new(dest.clone());
    store.sweep().await?;
    engine.remove_stale_helpers().await?;

    let wire_before = engine.wire();
    let created = Utc::now();
    let id = manifest::new_id(&info.name, created);
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let progress = Progress::start(format!("backup {}", info.name), show_progress);
    let draft = store.begin(&id);
    let name = draft.name(Object::Archive);
    let job = Job {
        engine,
        info: &info,
        image: &image,
        paths: &paths,
        dest: dest.as_ref(),
        name: &name,
        s,
        progress: &progress,
    };
    let streamed = write_archive(&job).await;
    let secs = progress.elapsed().as_secs_f64();
    progress.finish();
    let (upload, stats, sha256) = streamed?;

    let mut m = Manifest {
        format: crate::manifest::FORMAT,
        id: id.clone(),
        container: info.name.clone(),
        container_id: info.id.clone(),
        image: info.image.clone(),
        image_id: info.image_id.clone(),
        host: crate::owner::hostname(),
        paths,
        created,
        tags: s.tags.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        size: stats.size,
        sha256,
        tar_bytes: stats.tar_bytes,
        entries: stats.entries,
        level: s.compression.level,
        archive: name.clone(),
        snapshot: None,
        exclude: s.exclude.patterns().to_vec(),
    };
    if s.snapshot {
        let mut inspect = info.inspect.clone();
        if !s.include_env {
            let key = env_key().map_err(|e| {
                anyhow::anyhow!(
                    "cannot read or make the key snapshots hash environment values with ({e}); set DOCKYARD_STATE_DIR to a writable directory"
                )
            })?;
            redact_env(&mut inspect, &key, &info.id);
        }
        m.snapshot = Some(SnapshotRecord {
            image_digests: engine.image_digests(&info.image_id).await?,
            inspect,
        });
    }
    // From the archive's commit to the manifest's, a signal waits, so a stopped run leaves a whole
    // backup. A killed one leaves its pending record naming it, so the next run can remove an
    // archive that never got its manifest.
    let stored = draft.commit(upload, &m, ctx.critical.enter()).await;
    if let Err(e) = stored {
        return Err(e).context(format!(
            "backup {id} to {}: could not be completed",
            dest.describe()
        ));
    }
    tracing::info!(id = %m.id, container = %m.container, size = m.size, "backup complete");
    if let (Some((r0, s0)), Some((r1, s1))) = (wire_before, engine.wire()) {
        // A remote engine: what the backup cost on the network, beside the archive's size.
        tracing::info!(
            received = r1 - r0,
            sent = s1 - s0,
            archive = m.size,
            "bytes over ssh to and from the remote engine"
        );
    }
    Ok((m, secs))
}

/// Replaces the values of the container's environment (`Config.Env`: passwords, `SECRET_KEY`)
/// with a keyed hash (HMAC-SHA256 under `key`, a secret only this host holds, of the container
/// id `salt`, the name and the value), keeping the names: a snapshot never stores secrets in
/// clear, nor anything a guess at a short value could be checked against without the key, but
/// still shows which variables were set and whether a value changed between snapshots.
pub fn redact_env(inspect: &mut serde_json::Value, key: &[u8], salt: &str) {
    use hmac::{Hmac, Mac};
    let Some(env) = inspect
        .pointer_mut("/Config/Env")
        .and_then(|e| e.as_array_mut())
    else {
        return;
    };
    for item in env.iter_mut() {
        let Some(text) = item.as_str() else { continue };
        let (name, value) = text.split_once('=').unwrap_or((text, ""));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
        mac.update(format!("{salt}\0{name}\0{value}").as_bytes());
        *item = serde_json::Value::String(format!(
            "{name}=<redacted hmac-sha256:{}>",
            &hex::encode(mac.finalize().into_bytes())[..16]
        ));
    }
}

/// This host's key for [`redact_env`]: 32 random bytes in `<state dir>/env-key` (mode 0600),
/// made on first use.
pub fn env_key() -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = crate::last_run::state_dir(None).join("env-key");
    if let Ok(key) = std::fs::read(&path) {
        if key.len() == 32 {
            return Ok(key);
        }
    }
    let key: [u8; 32] = rand::random();
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    // Another run may have made one meanwhile: the first one stays.
    if std::fs::hard_link(&tmp, &path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return std::fs::read(&path);
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(key.to_vec())
}

/// One archive to write: what from, where to, how.
struct Job<'a> {
    engine: &'a Engine,
    info: &'a ContainerInfo,
    /// The helper image.
    image: &'a str,
    paths: &'a [PathRecord],
    dest: &'a dyn Destination,
    /// The archive's object name.
    name: &'a str,
    s: &'a BackupSettings,
    progress: &'a Progress,
}

/// What [`write_archive`] returns: the upload to commit, the stats and the archive's sha256.
type Written = (Box<dyn crate::destination::Upload>, PackStats, String);

/// Writes the archive through the agent when it can run in the helper, else through the engine's
/// archive endpoint; one log line says which and why. On failure the upload is aborted.
async fn write_archive(job: &Job<'_>) -> Result<Written> {
    let why = match job.s.agent {
        AgentMode::Never => Unavailable("--agent never".into()),
        AgentMode::Auto => match through_agent(job).await? {
            Ok(written) => return Ok(written),
            Err(why) => why,
        },
    };
    tracing::info!(container = %job.info.name, "backing up through the engine's archive endpoint: {why}");
    let helper = job
        .engine
        .create_helper(HelperSpec::archive(job.info, job.image, true))
        .await?;
    let streamed = stream_archive(job, &helper).await;
    // The streams are closed: the engine removes a helper only once no read from it is open.
    if let Err(e) = job.engine.remove_helper(&helper).await {
        tracing::warn!(helper = %helper, error = %e, "could not remove the helper container; the next run will");
    }
    streamed
}

/// Runs `agent pack` in a helper and streams its compressed archive into the destination. The
/// inner `Err` means the agent could not run (nothing was uploaded) and says why.
async fn through_agent(job: &Job<'_>) -> Result<Result<Written, Unavailable>> {
    let pack_job = PackJob {
        paths: job
            .paths
            .iter()
            .map(|p| PackPath {
                path: p.path.clone(),
                nested: nested_mounts(job.info, &p.path)
                    .into_iter()
                    .map(|n| String::from_utf8_lossy(&n).into_owned())
                    .collect(),
            })
            .collect(),
        level: job.s.compression.level,
        exclude: job.s.exclude.patterns().to_vec(),
    };
    let counters = host::Counters {
        read: job.progress.read.clone(),
        total: job.progress.total.clone(),
    };
    let (packing, archive) =
        match host::start_pack(job.engine, job.info, job.image, &pack_job, counters).await {
            Ok(p) => p,
            Err(why) => return Ok(Err(why)),
        };
    tracing::info!(container = %job.info.name, "backing up through dockyard's agent in the helper");
    let upload = match job.dest.put(job.name).await {
        Ok(u) => u,
        Err(e) => {
            packing.abandon(job.engine).await;
            return Err(e.into());
        }
    };
    let source: Box<dyn std::io::Read + Send> = match archive {
        Archive::Attach(stream) => {
            Box::new(ReadAhead::new(tokio::runtime::Handle::current(), stream))
        }
        Archive::Pipe(path) => Box::new(crate::agent::pipe::Reader::new(path)),
    };
    let mut reader = CountingReader::new(source, job.progress.written.clone());
    let streamed = stream_into(upload, move |mut writer| {
        let n = crate::pipeline::streams::copy_chunks(&mut reader, &mut writer)?;
        Ok((n, writer))
    })
    .await;
    let what = || format!("back up container {:?} through the agent", job.info.name);
    let (upload, size, sha256) = match streamed {
        Ok(done) => done,
        Err(broken) => {
            packing.abandon(job.engine).await;
            return Err(match broken {
                Broken::Destination(e) => anyhow::Error::from(e).context(format!(
                    "backup of {} to {}",
                    job.info.name,
                    job.dest.describe()
                )),
                Broken::Producer(e) => DockerError::Api {
                    action: what(),
                    message: e.to_string(),
                }
                .into(),
            });
        }
    };
    match packing.finish(job.engine, size).await {
        Ok(Ended::Done(r)) => Ok(Ok((
            upload,
            PackStats {
                tar_bytes: r.tar_bytes,
                entries: r.entries,
                size,
            },
            sha256,
        ))),
        Ok(Ended::NeverRan(why)) => {
            upload.abort().await;
            tracing::warn!(container = %job.info.name, "dockyard's agent could not run in the helper: {why}");
            Ok(Err(why))
        }
        Ok(Ended::Failed(message)) => {
            upload.abort().await;
            Err(DockerError::Api {
                action: what(),
                message,
            }
            .into())
        }
        Err(e) => {
            upload.abort().await;
            Err(e.into())
        }
    }
}

/// Streams every path through the packer into `dest` as object `name`, and returns the upload
/// (for the caller to commit), the pack stats and the archive's hex sha256 (hashed here, beside
/// the packer thread). On failure the upload is aborted.
async fn stream_archive(job: &Job<'_>, helper: &str) -> Result<Written> {
    let Job {
        engine,
        info,
        paths,
        dest,
        name,
        s,
        progress,
        ..
    } = *job;
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| {
            let stream = engine.download(helper, &p.path);
            let reader = ReadAhead::new(tokio::runtime::Handle::current(), stream);
            Source {
                path: p.path.clone(),
                reader: Box::new(CountingReader::new(reader, progress.read.clone())),
                exclude: nested_mounts(info, &p.path),
                globs: s.exclude.clone(),
            }
        })
        .collect();
    let upload = dest.put(name).await?;
    let compression = s.compression;
    let written = progress.written.clone();
    match stream_into(upload, move |writer| {
        pack(sources, writer, compression, Some(written))
    })
    .await
    {
        Ok(done) => Ok(done),
        Err(Broken::Destination(e)) => {
            Err(e).context(format!("backup of {} to {}", info.name, dest.describe()))
        }
        Err(Broken::Producer(e)) => {
            let listed: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
            Err(DockerError::Api {
                action: format!(
                    "stream {} out of container {:?}",
                    listed.join(", "),
                    info.name
                ),
                message: e.to_string(),
            }
            .into())
        }
    }
}

/// Mount points of `info` strictly inside `path`, relative to it: each is another volume (or
/// bind mount), backed up as a path of its own, never as part of `path`.
pub fn nested_mounts(info: &ContainerInfo, path: &str) -> Vec<Vec<u8>> {
    let below = format!("{}/", path.trim_end_matches('/'));
    info.mounts
        .iter()
        .filter_map(|m| m.destination.strip_prefix(&below))
        .filter(|rel| !rel.is_empty())
        .map(|rel| rel.trim_end_matches('/').as_bytes().to_vec())
        .collect()
}

/// Picks the paths to back up: every volume and bind mount by default, else each `--path`, which
/// must lie inside a mount. Errors name the container, the path and its mounts.
pub fn select_paths(info: &ContainerInfo, wanted: &[String]) -> Result<Vec<PathRecord>, Failure> {
    let mounts: Vec<&Mount> = info
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" || m.kind == "bind")
        .collect();
    if mounts.is_empty() {
        return Err(Failure::usage(format!(
            "container {:?} has no volumes or bind mounts; dockyard backs up volumes, and there is nothing to back up",
            info.name
        )));
    }
    let record = |m: &Mount| MountRecord {
        destination: m.destination.clone(),
        kind: m.kind.clone(),
        volume: m.volume.clone(),
    };
    if wanted.is_empty() {
        // In path order (the engine's order varies), so manifests and output are stable.
        let mut all: Vec<PathRecord> = mounts
            .iter()
            .map(|m| PathRecord {
                path: m.destination.clone(),
                mount: record(m),
            })
            .collect();
        all.sort_by(|a, b| a.path.cmp(&b.path));
        return Ok(all);
    }
    let mut out: Vec<PathRecord> = Vec::new();
    for path in wanted {
        let mount = mounts
            .iter()
            .filter(|m| m.contains(path))
            .max_by_key(|m| m.destination.len())
            .ok_or_else(|| {
                let list: Vec<String> = mounts.iter().map(|m| format!("{} ({})", m.destination, m.kind)).collect();
                Failure::usage(format!(
                    "path {path} of container {:?} is not inside a volume or bind mount; its mounts are: {}",
                    info.name,
                    list.join(", ")
                ))
            })?;
        // Nested paths are fine when the inner one is a mount of its own (the outer path leaves it
        // out); within one mount they would store the same files twice.
        if let Some(other) = out.iter().find(|o| {
            (nested(&o.path, path) || nested(path, &o.path))
                && o.mount.destination == mount.destination
        }) {
            return Err(Failure::usage(format!(
                "--path {path} overlaps --path {}; give one of them",
                other.path
            )));
        }
        out.push(PathRecord {
            path: path.clone(),
            mount: record(mount),
        });
    }
    Ok(out)
}

fn nested(outer: &str, inner: &str) -> bool {
    inner.starts_with(&format!("{outer}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(mounts: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "id".into(),
            name: "web".into(),
            image: "img".into(),
            image_id: "sha256:x".into(),
            running: true,
            mounts: mounts
                .iter()
                .map(|(d, k)| Mount {
                    destination: d.to_string(),
                    kind: k.to_string(),
                    volume: None,
                    source: String::new(),
                    rw: true,
                })
                .collect(),
            inspect: serde_json::Value::Null,
        }
    }

    #[test]
    fn defaults_to_every_volume_and_bind_mount() {
        let i = info(&[
            ("/srv/media", "volume"),
            ("/srv/logs", "bind"),
            ("/tmp", "tmpfs"),
        ]);
        let got: Vec<String> = select_paths(&i, &[])
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(got, vec!["/srv/logs", "/srv/media"]);
    }

    #[test]
    fn path_inside_a_mount_maps_to_that_mount() {
        let i = info(&[("/srv/media", "volume"), ("/srv/media/thumbs", "volume")]);
        let got = select_paths(&i, &["/srv/media/thumbs/small".into()]).unwrap();
        assert_eq!(got[0].mount.destination, "/srv/media/thumbs");
    }

    #[test]
    fn unmounted_path_names_container_path_and_mounts() {
        let i = info(&[("/srv/media", "volume")]);
        let err = select_paths(&i, &["/srv/mediaX".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/srv/mediaX")
                && err.contains("\"web\"")
                && err.contains("/srv/media (volume)"),
            "{err}"
        );
    }

    #[test]
    fn no_mounts_is_an_error_naming_the_container() {
        let err = select_paths(&info(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("\"web\" has no volumes"), "{err}");
    }

    #[test]
    fn overlapping_paths_are_refused_unless_the_inner_one_is_its_own_mount() {
        let i = info(&[("/srv", "volume")]);
        assert!(select_paths(&i, &["/srv".into(), "/srv/a".into()]).is_err());
        let i = info(&[("/srv", "volume"), ("/srv/media", "volume")]);
        let got = select_paths(&i, &["/srv".into(), "/srv/media".into()]).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(nested_mounts(&i, "/srv"), vec![b"media".to_vec()]);
        assert!(nested_mounts(&i, "/srv/media").is_empty());
    }

    #[test]
    fn snapshot_env_values_are_redacted_but_names_kept() {
        let mut v =
            serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2", "DEBUG=", "PATH=/bin"]}});
        redact_env(&mut v, b"key", "cid");
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("/bin"),
            "{text}"
        );
        assert!(
            text.contains("SECRET_KEY=<redacted hmac-sha256:") && text.contains("DEBUG=<redacted"),
            "{text}"
        );
        let mut again = serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2"]}});
        redact_env(&mut again, b"key", "cid");
        assert_eq!(again["Config"]["Env"][0], v["Config"]["Env"][0]);
        // Without the key a guess cannot be checked: another key gives another hash.
        let mut other = serde_json::json!({"Config": {"Env": ["SECRET_KEY=hunter2"]}});
        redact_env(&mut other, b"another key", "cid");
        assert_ne!(other["Config"]["Env"][0], v["Config"]["Env"][0]);
    }
}
