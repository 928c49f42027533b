//! `dockyard restore`: put a backup back into a container's volumes, safely.
//!
//! Order of work, so that a bad archive never harms live data:
//! 1. verify the archive (sha256, full decode, every entry inside its path) — nothing touched yet;
//! 2. save a non-empty target as a `pre-restore` backup (unless told not to);
//! 3. stage each path into `<path>/.dockyard-restore-<nonce>/` through the engine's archive upload;
//! 4. only when every path staged cleanly, a helper swaps staged and live contents with renames
//!    inside the volume, then deletes the old contents. A failure before step 4 removes the staging.

use anyhow::{Context, Result};
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::backup::{backup, print_summary};
use super::{read_blocking, Ctx};
use crate::archive::listing::{self, Origin};
use crate::archive::pack::Compression;
use crate::archive::stage::{stage, RootMeta};
use crate::archive::streams;
use crate::destination::Destination;
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec};
use crate::error::Failure;
use crate::manifest::{self, Manifest};
use crate::settings::{BackupSettings, RestoreSettings};

/// Runs `dockyard restore`; with `--stop`, with the target (and others) stopped around it.
pub async fn run(ctx: &Ctx, s: RestoreSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    if s.stop.is_empty() {
        return restore(ctx, s).await;
    }
    let t0 = std::time::Instant::now();
    let result = match super::stop_all(engine, &s.stop, s.stop_timeout).await {
        Ok(()) => restore(ctx, s).await,
        Err(e) => Err(e),
    };
    let restarted = engine.restart_stopped().await;
    if !ctx.output.json {
        println!(
            "containers stopped for {:.1}s and started again",
            t0.elapsed().as_secs_f64()
        );
    }
    result?;
    Ok(restarted?)
}

async fn restore(ctx: &Ctx, s: RestoreSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    let dest = s.dest.open().await;
    let target = engine.inspect(&s.container).await?;
    let all = manifest::load_all(dest.as_ref()).await?;
    let source = s.source.clone().unwrap_or_else(|| target.name.clone());
    let m = manifest::select(&all, &s.archive, &source, &s.dest.to_string())?.clone();
    let paths = restore_paths(&m, &s.paths, &target)?;

    super::verify::verify_backup(dest.as_ref(), &m).await?;
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| target.image_id.clone());

    if s.dry_run {
        return dry_run(ctx, engine, dest.as_ref(), &m, &target, &paths, &image).await;
    }
    engine.remove_stale_helpers().await?;
    if s.safety_backup {
        let occupied = occupied_paths(engine, &target, &paths, &image).await?;
        if !occupied.is_empty() {
            let settings = BackupSettings {
                container: target.id.clone(),
                paths: occupied,
                dest: s.dest.clone(),
                tags: vec!["pre-restore".into()],
                compression: Compression {
                    level: 3,
                    workers: 1,
                },
                helper_image: s.helper_image.clone(),
                snapshot: false,
                stop: Vec::new(),
                stop_timeout: 0,
                pre_hook: None,
                post_hook: None,
            };
            let (safety, secs) = backup(engine, &settings, ctx.output.progress)
                .await
                .context(format!(
                    "safety backup of {:?} before restoring; nothing was changed",
                    target.name
                ))?;
            if !ctx.output.json {
                print_summary(ctx, &safety, secs, &s.dest.to_string(), None);
            }
        }
    }

    let nonce: u32 = rand::random();
    let staging = format!(".dockyard-restore-{nonce:08x}");
    let stager = engine
        .create_helper(HelperSpec {
            container: &target,
            read_only: false,
            image: &image,
            script: None,
        })
        .await?;
    let mut roots = Vec::new();
    let mut staged_result = Ok(());
    for path in &paths {
        match stage_path(engine, &stager, dest.as_ref(), &m, path, &staging).await {
            Ok(root) => roots.push((
                path.clone(),
                root.unwrap_or(RootMeta {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                }),
            )),
            Err(e) => {
                staged_result = Err(e);
                break;
            }
        }
    }
    engine.remove_helper(&stager).await?;
    let script = match &staged_result {
        Ok(()) => swap_script(&roots, &staging),
        Err(_) => cleanup_script(&paths, &staging),
    };
    let swapper = engine
        .create_helper(HelperSpec {
            container: &target,
            read_only: false,
            image: &image,
            script: Some(script),
        })
        .await?;
    let ran = engine.run_helper(&swapper).await;
    engine.remove_helper(&swapper).await?;
    staged_result?;
    let (code, output) = ran?;
    if code != 0 {
        return Err(DockerError::HelperFailed {
            container: target.name.clone(),
            action: format!(
                "swapping restored files into {} (old contents are kept in .dockyard-old-* there)",
                paths.join(", ")
            ),
            code,
            output,
        }
        .into());
    }
    if ctx.output.json {
        super::print_json(
            &json!({"result": "ok", "restored": m.id, "into": target.name, "paths": paths}),
        );
    } else {
        println!(
            "restored {} into {} ({})",
            m.id,
            target.name,
            paths.join(", ")
        );
    }
    Ok(())
}

/// The backup's paths to restore, each of which must lie in a mount of the target.
fn restore_paths(
    m: &Manifest,
    wanted: &[String],
    target: &ContainerInfo,
) -> Result<Vec<String>, Failure> {
    let in_archive: Vec<String> = m.paths.iter().map(|p| p.path.clone()).collect();
    let chosen = if wanted.is_empty() {
        in_archive.clone()
    } else {
        wanted.to_vec()
    };
    for p in &chosen {
        if !in_archive.contains(p) {
            return Err(Failure::usage(format!(
                "backup {} has no path {p}; it holds {}",
                m.id,
                in_archive.join(", ")
            )));
        }
        if !target.mounts.iter().any(|mt| mt.contains(p)) {
            let list: Vec<&str> = target
                .mounts
                .iter()
                .map(|mt| mt.destination.as_str())
                .collect();
            return Err(Failure::usage(format!(
                "container {:?} has no volume at {p} to restore into; its mounts are: {}",
                target.name,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            )));
        }
    }
    Ok(chosen)
}

/// Lists a live path of `target` through a read-only helper (at most `limit` entries).
async fn live_listing(
    engine: &Engine,
    target: &ContainerInfo,
    path: &str,
    image: &str,
    limit: Option<usize>,
) -> Result<listing::Listing> {
    let helper = engine
        .create_helper(HelperSpec {
            container: target,
            read_only: true,
            image,
            script: None,
        })
        .await?;
    let stream = Box::pin(engine.download(&helper, path));
    let owned = path.to_string();
    let listed = tokio::task::spawn_blocking(move || {
        listing::list(
            SyncIoBridge::new(StreamReader::new(stream)),
            Origin::Engine,
            &owned,
            limit,
        )
    })
    .await
    .expect("listing thread panicked");
    engine.remove_helper(&helper).await?;
    Ok(listed.map_err(|e| DockerError::Api {
        action: format!("list {path} of {:?}", target.name),
        message: e.to_string(),
    })?)
}

/// The paths that hold anything today (and so deserve a safety backup).
async fn occupied_paths(
    engine: &Engine,
    target: &ContainerInfo,
    paths: &[String],
    image: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in paths {
        if !live_listing(engine, target, p, image, Some(1))
            .await?
            .is_empty()
        {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Says what a restore would add, change and remove; changes nothing.
async fn dry_run(
    ctx: &Ctx,
    engine: &Engine,
    dest: &dyn Destination,
    m: &Manifest,
    target: &ContainerInfo,
    paths: &[String],
    image: &str,
) -> Result<()> {
    let mut report = Vec::new();
    for p in paths {
        let owned = p.clone();
        let wanted = read_blocking(dest, &m.archive, move |r| {
            listing::list(r, Origin::Archive, &owned, None)
        })
        .await?
        .with_context(|| format!("list {p} in backup {}", m.id))?;
        let current = live_listing(engine, target, p, image, None).await?;
        report.push((p.clone(), listing::diff(&wanted, &current)));
    }
    if ctx.output.json {
        let v: Vec<_> = report
            .iter()
            .map(|(p, d)| json!({"path": p, "add": d.added, "change": d.changed, "remove": d.removed}))
            .collect();
        super::print_json(
            &json!({"dry_run": true, "backup": m.id, "into": target.name, "paths": v}),
        );
        return Ok(());
    }
    println!(
        "dry run: restoring {} into {} would change:",
        m.id, target.name
    );
    for (p, d) in &report {
        println!(
            "  {p}: {} to add, {} to change, {} to remove",
            d.added.len(),
            d.changed.len(),
            d.removed.len()
        );
        for (sign, names) in [("+", &d.added), ("~", &d.changed), ("-", &d.removed)] {
            for n in names.iter().take(20) {
                println!("    {sign} {n}");
            }
            if names.len() > 20 {
                println!("    {sign} ... and {} more", names.len() - 20);
            }
        }
    }
    println!("nothing was changed");
    Ok(())
}

/// Streams one path of the archive into `<path>/<staging>/` of the target's volume.
async fn stage_path(
    engine: &Engine,
    helper: &str,
    dest: &dyn Destination,
    m: &Manifest,
    path: &str,
    staging: &str,
) -> Result<Option<RootMeta>> {
    let (writer, rx) = streams::channel();
    let (sha, p, st) = (m.sha256.clone(), path.to_string(), staging.to_string());
    let staged = read_blocking(dest, &m.archive, move |r| -> std::io::Result<_> {
        let (staged, w) = stage(r, &sha, &p, &st, writer)?;
        w.close()?;
        Ok(staged)
    });
    let uploaded = engine.upload(helper, path, streams::receiver_stream(rx));
    let (staged, uploaded) = tokio::join!(staged, uploaded);
    let staged = staged?;
    uploaded?;
    let staged = staged
        .map_err(|e| Failure::verify(format!("backup {}: {e}; nothing was changed", m.id)))?;
    Ok(staged.root)
}

/// Single-quotes a string for /bin/sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script that moves live contents aside, staged contents in, applies the path's own owner and
/// mode, and deletes the old contents. Runs in a helper with the target's volumes.
fn swap_script(roots: &[(String, RootMeta)], staging: &str) -> String {
    let old = staging.replace("restore", "old");
    let mut script = String::from("set -e\n");
    for (path, root) in roots {
        script.push_str(&format!(
            r#"cd {path}
S={staging}; O={old}
mkdir "$O"
for f in * .[!.]* ..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then case "$f" in "$S"|"$O") ;; *) mv -- "$f" "$O/" ;; esac; fi
done
for f in "$S"/* "$S"/.[!.]* "$S"/..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then mv -- "$f" . ; fi
done
rmdir "$S"
chown {uid}:{gid} . && chmod {mode:o} .
rm -rf "$O"
"#,
            path = quote(path),
            staging = quote(staging),
            old = quote(&old),
            uid = root.uid,
            gid = root.gid,
            mode = root.mode,
        ));
    }
    script
}

/// The script that removes staging directories after a failed restore.
fn cleanup_script(paths: &[String], staging: &str) -> String {
    let mut script = String::new();
    for p in paths {
        script.push_str(&format!("rm -rf {}/{}\n", quote(p), quote(staging)));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(quote("/srv/it's"), r"'/srv/it'\''s'");
    }

    #[test]
    fn swap_script_restores_root_owner_and_mode() {
        let s = swap_script(
            &[(
                "/srv/media".into(),
                RootMeta {
                    mode: 0o750,
                    uid: 1000,
                    gid: 1001,
                },
            )],
            ".dockyard-restore-1",
        );
        assert!(s.contains("cd '/srv/media'"), "{s}");
        assert!(s.contains("chown 1000:1001 . && chmod 750 ."), "{s}");
        assert!(s.contains("O='.dockyard-old-1'"), "{s}");
    }
}
