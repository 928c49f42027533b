//! What the host's journals and the target's volumes hold for one container: the restores
//! journalled for it, and work directories in its mounts that no journal of it vouches for (taken
//! over when they are a journal's of a container that is gone, made again on the same volumes;
//! else reported and left alone).

use anyhow::Result;

use super::journal::Journal;
use super::ledger::Ledger;
use super::WORK_DIR;
use crate::docker::{ContainerInfo, DockerError, Engine, PathKind};

/// What the ledger and the volumes hold for one container.
#[derive(Debug, Default)]
pub struct Survey {
    /// The restores journalled on this host.
    pub journals: Vec<Journal>,
    /// What is not dockyard's to act on, one sentence each: work directories no journal vouches
    /// for, journal files that cannot be read.
    pub foreign: Vec<String>,
}

/// Reads the journals of `target` and looks for work directories in its mounts.
pub async fn survey(engine: &Engine, ledger: &Ledger, target: &ContainerInfo) -> Result<Survey> {
    let mut survey = Survey::default();
    for e in ledger.of_container(&target.id) {
        match e.journal {
            Ok(j) => survey.journals.push(j),
            Err(why) => survey.foreign.push(format!(
                "restore journal {}: {why}; dockyard leaves it alone",
                e.path.display()
            )),
        }
    }
    for m in target
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" || m.kind == "bind")
    {
        let root = m.destination.trim_end_matches('/').to_string();
        if survey.journals.iter().any(|j| j.roots().contains(&root)) {
            continue;
        }
        let work = format!("{root}/{WORK_DIR}");
        match engine.stat(&target.id, &work).await {
            Ok(PathKind::Missing) => {}
            Ok(_) => match adopt(engine, ledger, target, m).await? {
                Adopted::Yes(j) => survey.journals.push(*j),
                Adopted::Other(why) => survey.foreign.push(format!("{work}: {why}")),
                Adopted::No => survey.foreign.push(format!(
                    "{work}: no restore journal on this host vouches for it, so dockyard did not make it (or made it on another host); it is left alone and out of backups: move it away"
                )),
            },
            // A single-file bind mount has nothing below it.
            Err(e) if m.kind == "bind" => {
                tracing::debug!(mount = %root, error = %e, "no restore work dir")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(survey)
}

/// What became of a work directory no journal of the container vouches for.
enum Adopted {
    /// A journal of a container that is gone names the same volume: the target was made again
    /// on it, and takes the restore over.
    Yes(Box<Journal>),
    /// A journal of another container that still exists names the volume (they share it).
    Other(String),
    /// No journal names the volume.
    No,
}

/// Looks for the journal of another container of this engine that restored into the volume (or
/// bind source) mounted at `m`. If that container is gone and every volume of the journal is
/// mounted in `target`, the journal is rewritten for `target` (its mount points) and kept.
async fn adopt(
    engine: &Engine,
    ledger: &Ledger,
    target: &ContainerInfo,
    m: &crate::docker::Mount,
) -> Result<Adopted> {
    let identity = m.volume.clone().unwrap_or_else(|| m.source.clone());
    if identity.is_empty() {
        return Ok(Adopted::No);
    }
    for e in ledger.all() {
        let Ok(old) = e.journal else { continue };
        if old.container == target.id || !old.mounts.iter().any(|w| w.volume == identity) {
            continue;
        }
        match engine.inspect(&old.container).await {
            Err(DockerError::NoSuchContainer(_)) => {}
            Ok(other) => {
                return Ok(Adopted::Other(format!(
                    "it belongs to a restore of backup {} into container {:?}, which shares this volume; it is left to that container's runs",
                    old.backup, other.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let mut adopted = old.clone();
        adopted.container = target.id.clone();
        for w in &mut adopted.mounts {
            let Some(here) = target.mounts.iter().find(|t| {
                !w.volume.is_empty()
                    && t.volume.clone().unwrap_or_else(|| t.source.clone()) == w.volume
            }) else {
                return Ok(Adopted::Other(format!(
                    "it belongs to a restore of backup {} into a container that is gone, which also restored into {:?}, not mounted here; finish it by hand",
                    old.backup, w.volume
                )));
            };
            w.root = here.destination.trim_end_matches('/').to_string();
        }
        ledger.write(&adopted)?;
        ledger.remove(&old)?;
        tracing::warn!(container = %target.name, backup = %old.backup, "taking over the restore of a container that is gone, made again on the same volumes");
        return Ok(Adopted::Yes(Box::new(adopted)));
    }
    Ok(Adopted::No)
}
