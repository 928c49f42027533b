//! `dockyard backup`: a container's volumes, streamed by the engine through zstd into a destination.
//!
//! Data path: helper container (`VolumesFrom=<app>:ro`, never started) → engine archive stream per
//! path → `archive::pack` (tar rewrite + zstd, on a blocking thread) → bounded channel →
//! `Destination::put` → commit → manifest. The helper is removed on every way out.

use anyhow::{Context, Result};
use chrono::Utc;
use indicatif::HumanBytes;
use serde_json::json;

use super::Ctx;
use crate::archive::pack::{pack, PackStats, Source};
use crate::archive::streams::{self, CountingReader, ReadAhead};
use crate::destination::{pump, put_bytes, Destination};
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec, Mount};
use crate::error::Failure;
use crate::manifest::{self, Manifest, PathRecord, SnapshotRecord};
use crate::progress::Progress;
use crate::settings::BackupSettings;

/// Runs `dockyard backup` (or `snapshot`) and prints its summary.
pub async fn run(ctx: &Ctx, s: BackupSettings) -> Result<()> {
    run_and_report(ctx, s).await.map(|_| ())
}

/// Pre-hook, stop, backup, start again, post-hook, summary; returns the manifest, the seconds the
/// backup took and the downtime if containers were stopped.
pub async fn run_and_report(ctx: &Ctx, s: BackupSettings) -> Result<(Manifest, f64, Option<f64>)> {
    let engine = ctx.engine().await?;
    if let Some(hook) = &s.pre_hook {
        run_hook(engine, &s.container, hook, "pre-hook").await?;
    }
    let t0 = std::time::Instant::now();
    let stopped = super::stop_all(engine, &s.stop, s.stop_timeout).await;
    let result = match stopped {
        Ok(()) => backup(engine, &s, ctx.output.progress).await,
        Err(e) => Err(e),
    };
    let restarted = engine.restart_stopped().await;
    let downtime = (!s.stop.is_empty()).then(|| t0.elapsed().as_secs_f64());
    let (m, secs) = result?;
    restarted?;
    if let Some(hook) = &s.post_hook {
        run_hook(engine, &s.container, hook, "post-hook").await?;
    }
    print_summary(ctx, &m, secs, &s.dest.to_string(), downtime);
    Ok((m, secs, downtime))
}

/// Runs a hook command in the container; a non-zero exit is an error naming the hook.
async fn run_hook(engine: &Engine, container: &str, hook: &str, which: &str) -> Result<()> {
    let (code, output) = engine.exec(container, hook).await?;
    if code != 0 {
        return Err(DockerError::HelperFailed {
            container: container.to_string(),
            action: format!(
                "running the {which} {hook:?} (nothing was backed up if this is the pre-hook)"
            ),
            code,
            output: output.trim().to_string(),
        }
        .into());
    }
    Ok(())
}

/// Prints the one-line (or JSON) summary of a finished backup; `downtime` if containers were stopped.
pub fn print_summary(ctx: &Ctx, m: &Manifest, secs: f64, dest: &str, downtime: Option<f64>) {
    if ctx.output.json {
        super::print_json(
            &json!({"result": "ok", "seconds": secs, "destination": dest,
            "downtime_seconds": downtime, "backup": m}),
        );
        return;
    }
    if let Some(d) = downtime {
        println!("containers stopped for {d:.1}s and started again");
    }
    let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
    println!(
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
    );
}

/// Backs up the container `s` names; returns the manifest written and the seconds it took.
pub async fn backup(
    engine: &Engine,
    s: &BackupSettings,
    show_progress: bool,
) -> Result<(Manifest, f64)> {
    let info = engine.inspect(&s.container).await?;
    let paths = select_paths(&info, &s.paths)?;
    let dest = s.dest.open().await;
    dest.prepare().await?;
    dest.remove_stale().await?;
    engine.remove_stale_helpers().await?;

    let created = Utc::now();
    let id = manifest::new_id(&info.name, created);
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let helper = engine
        .create_helper(HelperSpec {
            container: &info,
            read_only: true,
            image: &image,
            script: None,
        })
        .await?;
    let progress = Progress::start(format!("backup {}", info.name), show_progress);
    let name = manifest::archive_name(&id);
    let streamed = stream_archive(
        engine,
        &helper,
        &info,
        &paths,
        dest.as_ref(),
        &name,
        s,
        &progress,
    )
    .await;
    let removed = engine.remove_helper(&helper).await;
    let secs = progress.elapsed().as_secs_f64();
    progress.finish();
    let (stats, sha256) = streamed?;
    removed?;

    let m = Manifest {
        id: id.clone(),
        container: info.name.clone(),
        container_id: info.id.clone(),
        image: info.image.clone(),
        image_id: info.image_id.clone(),
        host: crate::host::hostname(),
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
        snapshot: match s.snapshot {
            true => Some(SnapshotRecord {
                image_digests: engine.image_digests(&info.image_id).await?,
                inspect: info.inspect.clone(),
            }),
            false => None,
        },
    };
    let text = serde_json::to_vec_pretty(&m).expect("manifest serialises");
    if let Err(e) = put_bytes(dest.as_ref(), &manifest::manifest_name(&id), text).await {
        // Without its manifest the archive is invisible; do not leave it taking space.
        let _ = dest.delete(&name).await;
        return Err(e).context(format!(
            "backup {id}: archive written but its manifest could not be"
        ));
    }
    tracing::info!(id = %m.id, container = %m.container, size = m.size, "backup complete");
    Ok((m, secs))
}

/// Streams every path through the packer into `dest` as object `name`, complete or absent, and
/// returns the pack stats and the archive's hex sha256 (hashed here, beside the packer thread).
#[allow(clippy::too_many_arguments)]
async fn stream_archive(
    engine: &Engine,
    helper: &str,
    info: &ContainerInfo,
    paths: &[PathRecord],
    dest: &dyn Destination,
    name: &str,
    s: &BackupSettings,
    progress: &Progress,
) -> Result<(PackStats, String)> {
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| {
            let stream = engine.download(helper, &p.path);
            let reader = ReadAhead::new(tokio::runtime::Handle::current(), stream);
            Source {
                path: p.path.clone(),
                reader: Box::new(CountingReader::new(reader, progress.read.clone())),
            }
        })
        .collect();
    let mut upload = dest.put(name).await?;
    let (writer, rx) = streams::channel();
    let compression = s.compression;
    let written = progress.written.clone();
    let packer = tokio::task::spawn_blocking(move || -> std::io::Result<PackStats> {
        let (stats, writer) = pack(sources, writer, compression, Some(written))?;
        writer.close()?;
        Ok(stats)
    });
    let (packed, sha256) = match pump(upload.as_mut(), rx, packer).await {
        Ok(r) => r,
        Err(e) => {
            upload.abort().await;
            return Err(e).context(format!("backup of {} to {}", info.name, dest.describe()));
        }
    };
    let stats = match packed {
        Ok(stats) => stats,
        Err(e) => {
            upload.abort().await;
            let listed: Vec<&str> = paths.iter().map(|p| p.path.as_str()).collect();
            return Err(DockerError::Api {
                action: format!(
                    "stream {} out of container {:?}",
                    listed.join(", "),
                    info.name
                ),
                message: e.to_string(),
            }
            .into());
        }
    };
    upload.commit().await?;
    Ok((stats, sha256))
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
    if wanted.is_empty() {
        return Ok(mounts
            .iter()
            .map(|m| PathRecord {
                path: m.destination.clone(),
                mount: (*m).clone(),
            })
            .collect());
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
        if let Some(other) = out
            .iter()
            .find(|o| nested(&o.path, path) || nested(path, &o.path))
        {
            return Err(Failure::usage(format!(
                "--path {path} overlaps --path {}; give one of them",
                other.path
            )));
        }
        out.push(PathRecord {
            path: path.clone(),
            mount: (*mount).clone(),
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
        assert_eq!(got, vec!["/srv/media", "/srv/logs"]);
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
    fn overlapping_paths_are_refused() {
        let i = info(&[("/srv", "volume")]);
        assert!(select_paths(&i, &["/srv".into(), "/srv/a".into()]).is_err());
    }
}
