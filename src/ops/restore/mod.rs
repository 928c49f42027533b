//! Restoring a backup into a container's volumes, safely.
//!
//! Order of work, so that a bad archive never harms live data and an interruption at any instant
//! leaves every volume exactly as before or exactly as restored:
//! 1. lock the container; finish or undo any interrupted restore of it (`swap::recover`);
//! 2. pick the backup (`latest` skips safety backups and future-dated ones) and check its manifest;
//! 3. read each path's own entry from the start of the archive, to plan where each path goes;
//! 4. stage each path into `<mount>/.dockyard-restore/new-<k>/` with a journal (a single-file
//!    mount beside its host file), checking the whole archive on the way as `verify` does (one
//!    decode per path: sha256, every entry, the counts; device nodes refused unless
//!    `--allow-devices`); a failure or signal here removes the staging;
//! 5. save what is there as a `pre-restore` backup (to `--safety-backup-to`, else `--from`);
//! 6. in one helper that no signal interrupts: mark every work dir ready, move single files into
//!    place, swap each path (old contents aside, restored ones in), delete the old contents.

mod dry_run;
use dry_run::dry_run;
pub mod live;
mod outcome;
pub mod plan;
mod safety;
mod stage;
mod survey;

use anyhow::Result;
use chrono::Utc;

use super::chain::{self, Layer};
use super::key::Key;
use super::quiesce::{self, Quiesce};
use super::Session;
use crate::destination::Destination;
use crate::docker::ContainerInfo;
use crate::encryption::Seal;
use crate::error::Failure;
use crate::lock::{Access, ContainerLock};
use crate::manifest::{self, Manifest, Store};
use crate::settings::RestoreSettings;
use crate::swap::recover::{self, Work};
use live::{commit, discard, finish_interrupted, refuse_open_files};
pub use outcome::{shorten, DryRun, Outcome, PathDiff, Restored, SafetyBackup};
use plan::{pick_paths, plan, refuse_devices};
use safety::safety_backup;
use stage::{archived_roots, stage_all, Backup};
use std::sync::Arc;

/// Restores the backup `s` names; with `--stop`, with the target (and others) stopped around it.
/// Prints nothing.
pub async fn run(session: &Session, s: RestoreSettings) -> Result<Outcome> {
    let engine = session.engine().await?;
    // The backup, and the key that opens it, before anything is stopped or touched.
    let dest = s.dest.open().await;
    let target = engine.inspect(&s.container).await?;
    if engine.is_local() {
        crate::binds::check(&target)?;
    }
    refuse_scaling_target(&target, &s)?;
    let m = pick(&dest, &s, &target.name, &target.backup_name()).await?;
    let key = Key::open(dest.as_ref(), &m, &s.unlock).await?;
    // An incremental backup's whole chain, each link read and checked, before anything is
    // stopped.
    let chain = match m.is_incremental() {
        true => {
            let links = chain::manifests(&Store::new(dest.clone()), &m).await?;
            chain::open(dest.as_ref(), links, &s.unlock).await?
        }
        false => Vec::new(),
    };
    // Whoever could read the backup can read what it replaces: the safety backup is encrypted
    // to the same (decided now, so nothing fails for it later).
    let seal = match &m.encryption {
        Some(e) if s.safety_backup && !s.dry_run => Some(s.unlock.seal_for(&e.recipients)?),
        _ => None,
    };
    if m.encryption.is_none() && !s.unlock.is_empty() {
        tracing::warn!(id = %m.id, "backup {} is not encrypted, though a key was given", m.id);
    }
    let (stop, stop_timeout, container) = (s.stop.clone(), s.stop_timeout, s.container.clone());
    let quiet = Quiesce {
        container: &container,
        stop: &stop,
        stop_timeout,
        pre_hook: None,
        post_hook: None,
        exec_before: &[],
        exec_after: &[],
    };
    let (mut outcome, downtime) = quiesce::around(
        session,
        engine,
        quiet,
        restore(session, s, dest.clone(), &m, &key, &chain, seal),
    )
    .await?;
    if let Outcome::Restored(r) = &mut outcome {
        r.downtime_seconds = downtime;
    }
    Ok(outcome)
}

/// Refuses `--stop` on a target that is a Swarm service's task: the guard would scale its
/// service to 0, the engine would remove the container, and a restore reads and swaps through
/// the target container itself.
fn refuse_scaling_target(target: &ContainerInfo, s: &RestoreSettings) -> Result<()> {
    let Some(task) = target.service() else {
        return Ok(());
    };
    if !s.stop.iter().any(|c| *c == s.container || *c == target.id) {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "container {:?} is a task of Swarm service {:?}: restore --stop would scale the service to 0, which removes this container, and a restore works through it; nothing was stopped or restored. Scale the service to 0 yourself (docker service scale {}=0), restore into a container that mounts the same volumes (docker create -v VOLUME:PATH ...; --container {} names the backup's container), then scale it back",
        target.name, task.name, task.name, target.name
    ))
    .into())
}

/// The backup `s` names at `dest` (`latest` of the target `target`, whose backups are recorded
/// as `recorded_as` (a Swarm task's service and slot), or of `--container`), checked to be of the
/// container it is restored into unless told otherwise.
async fn pick(
    dest: &Arc<dyn Destination>,
    s: &RestoreSettings,
    target: &str,
    recorded_as: &str,
) -> Result<Manifest> {
    let source = s.source.clone().unwrap_or_else(|| recorded_as.to_string());
    let select = match s.archive.as_str() {
        "latest" => manifest::Select::Container(&source),
        id => manifest::Select::Id(id),
    };
    let catalog = Store::new(dest.clone()).load(select).await?;
    let m = catalog
        .select(&s.archive, &source, &s.dest.to_string(), Utc::now())?
        .clone();
    if m.container != source && m.owner() != source && !s.force {
        return Err(Failure::usage(format!(
            "backup {} is of container {:?}, not {:?}; to restore it into {:?}, say so with --container {} (or --force)",
            m.id,
            m.owner(),
            source,
            target,
            shell_words::quote(&m.owner())
        ))
        .into());
    }
    Ok(m)
}

/// The restore of backup `m` at `dest` (read with `key`; its safety backup encrypted with
/// `seal`) itself, inside the quiesce guard.
async fn restore(
    session: &Session,
    s: RestoreSettings,
    dest: Arc<dyn Destination>,
    m: &Manifest,
    key: &Key,
    chain: &[Layer],
    seal: Option<Seal>,
) -> Result<Outcome> {
    let engine = session.engine().await?;
    let target = engine.inspect(&s.container).await?;
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| target.image_id.clone());
    let _lock = ContainerLock::take_on(
        engine,
        &session.dirs.lock,
        &target,
        "restore",
        Access::Exclusive,
    )
    .await?;
    let ledger = recover::ledger(engine, session.dirs.host_state()).await?;
    let work = Work {
        engine,
        target: &target,
        image: &image,
        ledger: &ledger,
    };
    let mut recovered = Vec::new();
    if !s.dry_run {
        engine.remove_stale_helpers().await?;
        let outcome = finish_interrupted(session, &work, true).await?;
        if let Some(why) = outcome.busy.first() {
            return Err(Failure::busy(format!("{why}; wait for it and run again")).into());
        }
        if let Some(e) = outcome.stuck {
            return Err(e);
        }
        if let Some(f) = outcome.foreign.first() {
            return Err(Failure::usage(format!(
                "{f}. dockyard stages restores there and will not touch something it did not create; move it away, then run again"
            ))
            .into());
        }
        if let Some(w) = outcome.warnings.first() {
            return Err(Failure::busy(format!(
                "{w}; a restore needs that work directory gone first"
            ))
            .into());
        }
        recovered = outcome.done;
    }
    let store = Store::new(dest.clone());
    let backup = Backup {
        dest: dest.as_ref(),
        m,
        key,
        chain,
    };
    let wanted = pick_paths(m, &s.paths, &target)?;
    if !s.dry_run && !s.allow_open_files {
        refuse_open_files(engine, &target, &wanted).await?;
    }

    let safety_dest = s.safety_dest.clone().unwrap_or_else(|| s.dest.clone());
    if s.dry_run {
        let report = match chain.is_empty() {
            true => {
                crate::ops::verify::verify_backup(dest.as_ref(), m, key, session.progress).await?
            }
            false => {
                crate::ops::verify::verify_chain(dest.as_ref(), chain, session.progress).await?
            }
        };
        refuse_devices(m, &report.devices, &s)?;
        let plan = plan(m, &wanted, &target, &report.roots, engine.is_local())?;
        return dry_run(
            engine,
            backup,
            &target,
            &plan,
            &image,
            &s,
            &safety_dest,
            &report,
        )
        .await
        .map(Outcome::DryRun);
    }

    let roots = archived_roots(backup).await?;
    let mut plan = plan(m, &wanted, &target, &roots, engine.is_local())?;
    if !s.include.is_empty() && !plan.files.is_empty() {
        tracing::info!(container = %target.name, "--include restores entries of directories: the single-file mounts are left as they are");
        plan.files.clear();
    }
    let (staged, mut journal) = stage_all(session, &work, backup, &plan, &s).await?;
    let safety = if s.safety_backup {
        // The restore's own destination, unless the safety backup goes elsewhere.
        let opened = match &s.safety_dest {
            Some(spec) => Store::new(spec.open().await),
            None => store.clone(),
        };
        match safety_backup(
            session,
            engine,
            &target,
            &plan,
            &image,
            &s,
            &safety_dest,
            &opened,
            seal,
        )
        .await
        {
            Ok(safety) => safety,
            Err(e) => {
                discard(session, engine).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let old_contents = commit(session, &work, &mut journal, s.wait_cleanup).await?;

    let stripped: Vec<String> = staged.iter().flat_map(|s| s.stripped.clone()).collect();
    if !stripped.is_empty() {
        tracing::warn!(files = %shorten(&stripped), "removed set-user-ID/set-group-ID bits (restore with --keep-setuid to keep them)");
    }
    let dropped: Vec<String> = staged
        .iter()
        .flat_map(|s| s.dropped_xattrs.clone())
        .collect();
    if !dropped.is_empty() {
        tracing::warn!(files = %shorten(&dropped), "dropped security.*/trusted.* extended attributes, file capabilities among them (restore with --keep-capabilities to keep them)");
    }
    Ok(Outcome::Restored(Restored {
        result: "ok",
        restored: m.id.clone(),
        into: target.name.clone(),
        paths: wanted,
        safety_backup: safety,
        stripped_setid: stripped,
        dropped_xattrs: dropped,
        skipped: staged.iter().flat_map(|s| s.skipped.clone()).collect(),
        notes: plan
            .files
            .iter()
            .map(|f| {
                format!(
                    "{} is a single-file bind mount of {}/{}: the container sees the restored file after it restarts",
                    f.path, f.dir, f.name
                )
            })
            .collect(),
        recovered,
        old_contents,
        downtime_seconds: None,
    }))
}
