//! The safety backup: what a restore will replace, saved first (tag `pre-restore`), and expired
//! ones removed.

use anyhow::{Context, Result};
use chrono::Utc;

use super::outcome::SafetyBackup;
use super::plan::Plan;
use super::survey::occupied_paths;
use crate::archive::pack::Compression;
use crate::destination::DestSpec;
use crate::docker::{ContainerInfo, Engine};
use crate::encryption::Seal;
use crate::manifest::Store;
use crate::manifest::{self, SAFETY_TAG};
use crate::ops::backup::backup;
use crate::ops::Session;
use crate::settings::{BackupSettings, RestoreSettings};

/// Backs up what the restore will replace, tagged `pre-restore`, and removes expired safety
/// backups of the container there. Returns the new backup's id (`None` if nothing was there).
#[allow(clippy::too_many_arguments)]
pub(super) async fn safety_backup(
    session: &Session,
    engine: &Engine,
    target: &ContainerInfo,
    plan: &Plan,
    image: &str,
    s: &RestoreSettings,
    safety_dest: &DestSpec,
    opened: &Store,
    seal: Option<Seal>,
) -> Result<Option<SafetyBackup>> {
    let occupied = occupied_paths(engine, target, plan, image).await?;
    if occupied.is_empty() {
        return Ok(None);
    }
    let settings = BackupSettings {
        on_engine: None,
        container: target.id.clone(),
        paths: occupied,
        dest: safety_dest.clone(),
        tags: vec![SAFETY_TAG.into()],
        compression: Compression {
            level: 3,
            workers: crate::values::zstd_workers(),
        },
        helper_image: s.helper_image.clone(),
        agent: s.agent,
        exclude: Default::default(),
        snapshot: false,
        include_env: false,
        stop: Vec::new(),
        stop_timeout: 0,
        pre_hook: None,
        post_hook: None,
        dry_run: false,
        // An encrypted backup's target is saved encrypted (see `Unlock::seal_for`).
        encryption: seal,
        incremental: None,
        identities: vec![],
        dumps: vec![],
        exec_before: vec![],
        exec_after: vec![],
    };
    let (safety, secs, _) = backup(session, engine, target, &settings, opened, Default::default(), session.progress)
        .await
        .with_context(|| {
            format!(
                "safety backup of {:?} to {safety_dest} before restoring; nothing was changed. If that destination is read-only (a disaster-recovery key, a read-only share), write the safety backup elsewhere with --safety-backup-to DEST, or skip it with --no-safety-backup",
                target.name
            )
        })?;
    expire_safety_backups(opened, &target.name, s.safety_keep_secs).await;
    Ok(Some(SafetyBackup {
        undo: format!(
            "dockyard restore {} --from {safety_dest} --backup {}{}",
            target.name,
            safety.id,
            s.unlock.flags()
        ),
        id: safety.id,
        destination: safety_dest.to_string(),
        size: safety.size,
        seconds: secs,
    }))
}

/// Removes `container`'s safety backups older than `keep_secs` at `dest` (best effort: a failure
/// is a warning, the restore goes on).
pub(super) async fn expire_safety_backups(d: &Store, container: &str, keep_secs: i64) {
    let cutoff = Utc::now() - chrono::Duration::seconds(keep_secs);
    let catalog = match d.load(manifest::Select::Container(container)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for expired safety backups");
            return;
        }
    };
    for m in catalog
        .manifests
        .iter()
        .filter(|m| m.container == container && m.is_safety() && m.created < cutoff)
    {
        let removed = d.remove(&m.id).await;
        match removed {
            Ok(()) => {
                tracing::info!(id = %m.id, "removed an expired safety backup")
            }
            Err(e) => {
                tracing::warn!(id = %m.id, error = %e, "could not remove an expired safety backup")
            }
        }
    }
}
