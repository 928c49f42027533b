//! Backing up a container's volumes: the job around it (lock, hooks, stops), the archive and the
//! manifest, committed manifest-last.
//!
//! Data path: helper container (`VolumesFrom=<app>:ro`, never started) → the agent packing inside
//! it, or the engine's archive stream per path → `archive::pack` (tar rewrite + zstd, on a
//! blocking thread) → bounded channel → `Destination::put` → commit → manifest. The archive's
//! commit and the manifest are one critical section (a signal waits for both), and the manifest
//! never depends on removing the helper, which happens last and on every way out.

mod env;
pub mod parent;
pub mod paths;
mod write;

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Serialize;

use super::prepare::prepare_container;
use super::quiesce::{self, Quiesce};
use super::Session;
use crate::destination::DestError;
use crate::docker::{ContainerInfo, DockerError, Engine};
use crate::dumps::stream::Dumper;
use crate::dumps::DumpSpec;
use crate::encryption::Age;
use crate::error::Failure;
use crate::manifest::{
    self, Encryption, Manifest, Object, PathRecord, SnapshotRecord, Store, Stored,
};
use crate::pipeline::Transform;
use crate::progress::Progress;
use crate::settings::BackupSettings;
pub use env::{env_key, redact_env};
pub use parent::Base;
pub use paths::{nested_mounts, select_paths};
use std::sync::Arc;
use write::{store_beside, write_archive, Job, Written};

/// A finished backup (the `backup`/`snapshot` JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct Backed {
    /// Always `"ok"`: a failed backup is an error.
    pub result: &'static str,
    /// How long the archive took to write.
    pub seconds: f64,
    /// Where it went, as given.
    pub destination: String,
    /// How long containers were stopped, if any were.
    pub downtime_seconds: Option<f64>,
    /// The manifest written.
    pub backup: Manifest,
    /// With `--incremental`: what it was made against, or why it is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalOutcome>,
}

/// How an incremental backup went (docs/json.md).
#[derive(Debug, Clone, Serialize)]
pub struct IncrementalOutcome {
    /// The parent, if it was made against one (else it is full).
    pub parent: Option<String>,
    /// Why it is full, when it is.
    pub full_because: Option<String>,
    /// Entries the parent holds unchanged, left out of the archive.
    pub unchanged: u64,
    /// Names in its deletion list.
    pub deleted: u64,
}

/// What `backup --dry-run` found (its JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// Always true.
    pub dry_run: bool,
    /// The container's name.
    pub container: String,
    /// Whether it runs.
    pub running: bool,
    /// The paths and the mounts they come from.
    pub paths: Vec<PathRecord>,
    /// The destination, described.
    pub destination: String,
    /// The archive's and the manifest's object names.
    pub would_write: [String; 2],
    /// Backups of this container the destination holds (unknown if it could not be listed).
    pub backups_of_container_there: Option<usize>,
    /// Why the destination could not be listed.
    pub destination_error: Option<String>,
    /// Containers that would be stopped around it.
    pub stop: Vec<String>,
    /// The hook run first.
    pub pre_hook: Option<String>,
    /// The hook run last.
    pub post_hook: Option<String>,
    /// The commands run in other containers before it, in order (`CONTAINER:COMMAND`).
    pub exec_before: Vec<String>,
    /// The commands run in other containers after it, on every way out.
    pub exec_after: Vec<String>,
    /// The helper's image.
    pub helper_image: String,
    /// The zstd level.
    pub level: i32,
    /// The tags the backup would carry.
    pub tags: Vec<String>,
    /// The database dumps it would stream in first (an `exec` one without its command).
    pub dumps: Vec<String>,
    /// The listing's error, for the exit code.
    #[serde(skip)]
    pub failed: Option<DestError>,
}

/// Pre-hook, stop, backup, start again, post-hook, under the container's lock. Prints nothing.
pub async fn run_job(session: &Session, s: &BackupSettings) -> Result<Backed> {
    let engine = session.engine().await?;
    let info = engine.inspect(&s.container).await?;
    let store = Store::new(s.dest.open().await);
    let mut done = run_each(session, engine, &info, &[(s, &store)]).await?;
    let (m, secs, incremental) = done.results.pop().expect("one destination")?;
    if let Some(e) = done.after {
        return Err(e);
    }
    let downtime = done.downtime;
    Ok(Backed {
        result: "ok",
        seconds: secs,
        destination: s.dest.to_string(),
        downtime_seconds: downtime,
        backup: m,
        incremental,
    })
}

/// Backs up `info` to each destination of `each` (one settings value per destination, all of
/// the same container, stops and hooks: those of the first) inside one guard: the container's
/// lock, the hooks and the stops happen once. Returns each destination's manifest and seconds;
/// the error is the guard's when nothing ran (see [`quiesce::around_each`]).
pub async fn run_each(
    session: &Session,
    engine: &Engine,
    info: &ContainerInfo,
    each: &[(&BackupSettings, &Store)],
) -> Result<quiesce::Guarded<(Manifest, f64, Option<IncrementalOutcome>)>> {
    let s = each.first().expect("a destination").0;
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let _lock = prepare_container(session, engine, info, &image, "backup").await?;
    let quiet = Quiesce {
        container: &s.container,
        stop: &s.stop,
        stop_timeout: s.stop_timeout,
        pre_hook: s.pre_hook.as_deref(),
        post_hook: s.post_hook.as_deref(),
        exec_before: &s.exec_before,
        exec_after: &s.exec_after,
    };
    // An incremental backup's parent, and its index, chosen and read before anything is
    // stopped: a slow destination keeps no app down.
    let mut bases = Vec::new();
    let mut dumps = Vec::new();
    for (s, dest) in each {
        dumps.push(plan_dumps(engine, info, s).await?);
        bases.push(base_of(info, s, dest).await);
    }
    let work = async {
        let mut done = Vec::new();
        for (((s, dest), base), dumps) in each.iter().zip(bases).zip(dumps) {
            let what = Backup { base, dumps };
            done.push(backup(session, engine, info, s, dest, what, session.progress).await);
        }
        done
    };
    quiesce::around_each(session, engine, quiet, work).await
}

/// `backup --dry-run`: the paths and the mounts they come from, what would be written where, and
/// what would be stopped or run around it. Reads the engine and lists the destination; writes
/// nothing and creates no helper.
pub async fn dry_run(session: &Session, s: &BackupSettings) -> Result<DryRun> {
    let engine = session.engine().await?;
    let info = engine.inspect(&s.container).await?;
    let paths = select_paths(&info, &s.paths)?;
    let dest = s.dest.open().await;
    let listed = Store::new(dest.clone()).manifests().await;
    let owner = manifest::qualified(s.on_engine.as_deref(), &info.backup_name());
    let id = manifest::new_id(&manifest::id_stem(&owner), Utc::now());
    let archive = match s.encryption {
        Some(_) => Object::SealedArchive,
        None => Object::Archive,
    };
    let objects = [archive.name(&id), Object::Manifest.name(&id)];
    let held = listed.as_ref().ok().map(|ids| {
        ids.iter()
            .filter(|id| manifest::id_container(id) == Some(manifest::id_stem(&owner).as_str()))
            .count()
    });
    Ok(DryRun {
        dry_run: true,
        container: info.name.clone(),
        running: info.running,
        paths,
        destination: dest.describe(),
        would_write: objects,
        backups_of_container_there: held,
        destination_error: listed.as_ref().err().map(|e| e.to_string()),
        stop: s.stop.clone(),
        pre_hook: s.pre_hook.clone(),
        post_hook: s.post_hook.clone(),
        exec_before: s.exec_before.iter().map(ToString::to_string).collect(),
        exec_after: s.exec_after.iter().map(ToString::to_string).collect(),
        helper_image: s.helper_image.clone().unwrap_or_else(|| info.image.clone()),
        level: s.compression.level,
        tags: s.tags.clone(),
        dumps: s.dumps.iter().map(ToString::to_string).collect(),
        failed: listed.err(),
    })
}

/// With `--incremental`, what the backup of `info` under `s` to `store` is made against (see
/// [`parent::choose`]); `None` without.
pub async fn base_of(info: &ContainerInfo, s: &BackupSettings, store: &Store) -> Option<Base> {
    let rules = s.incremental?;
    if s.agent == crate::values::AgentMode::Never {
        return Some(Base::Full(
            "incremental backups are made through dockyard's agent, and --agent never was given"
                .into(),
        ));
    }
    let paths = match select_paths(info, &s.paths) {
        Ok(p) => p,
        // The backup itself says what is wrong with the paths.
        Err(_) => return Some(Base::Full("its paths could not be chosen".into())),
    };
    let owner = manifest::qualified(s.on_engine.as_deref(), &info.backup_name());
    Some(parent::choose(store, &owner, &paths, s, rules, Utc::now()).await)
}

/// The database dumps `s` asks for, checked before anything is stopped: each one's container
/// runs (on the same engine) and is not one the backup stops, and no path of the backup would
/// hold the archive's `dumps/` directory. Each names its container as the engine does.
pub async fn plan_dumps(
    engine: &Engine,
    info: &ContainerInfo,
    s: &BackupSettings,
) -> Result<Vec<DumpSpec>> {
    if s.dumps.is_empty() {
        return Ok(Vec::new());
    }
    for p in select_paths(info, &s.paths)? {
        let prefix = crate::archive::names::prefix_for(&p.path);
        if crate::archive::names::relative(b"dumps/x", &prefix).is_some() {
            return Err(Failure::usage(format!(
                "container {:?}: its path {} would hold the archive's dumps/ directory, where --dump stores database dumps; back up the paths below it with --path",
                info.name, p.path
            ))
            .into());
        }
    }
    let mut planned = Vec::new();
    for spec in &s.dumps {
        let db = engine
            .inspect(&spec.container)
            .await
            .with_context(|| format!("dump {spec}"))?;
        if !db.running {
            return Err(Failure::usage(format!(
                "dump {spec}: container {:?} is not running; a dump runs in the database's own container, by docker exec",
                db.name
            ))
            .into());
        }
        if s.stop
            .iter()
            .any(|c| *c == spec.container || *c == db.name || *c == db.id)
        {
            return Err(Failure::usage(format!(
                "dump {spec}: container {:?} is among those stopped around the backup (--stop, --stop-also), and a dump needs it running; leave it out of them",
                db.name
            ))
            .into());
        }
        planned.push(DumpSpec {
            container: db.name.clone(),
            kind: spec.kind.clone(),
        });
    }
    crate::dumps::spec::check_unique(&planned).map_err(Failure::usage)?;
    Ok(planned)
}

/// What one backup is made of beyond its settings.
#[derive(Default)]
pub struct Backup {
    /// With `--incremental`: its parent, or why it is full.
    pub base: Option<Base>,
    /// The database dumps it streams in (see [`plan_dumps`]).
    pub dumps: Vec<DumpSpec>,
}

/// Aborts a backup's uploads (its archive, what is attached to its draft): nothing of it stays.
async fn abandon(archive: Option<Box<dyn crate::destination::Upload>>, draft: manifest::Draft) {
    if let Some(a) = archive {
        a.abort().await;
    }
    draft.abort().await;
}

/// Backs up `info` (the container `s` names, inspected once by the caller, which holds its
/// lock); returns the manifest written, the seconds it took, and with `--incremental` how that
/// went.
pub async fn backup(
    session: &Session,
    engine: &Engine,
    info: &ContainerInfo,
    s: &BackupSettings,
    store: &Store,
    what: Backup,
    show_progress: bool,
) -> Result<(Manifest, f64, Option<IncrementalOutcome>)> {
    let Backup { base, dumps } = what;
    let paths = select_paths(info, &s.paths)?;
    let dest = store.dest().as_ref();
    dest.prepare().await?;
    store.sweep().await?;
    engine.remove_stale_helpers().await?;

    let wire_before = engine.wire();
    let created = Utc::now();
    let owner = manifest::qualified(s.on_engine.as_deref(), &info.backup_name());
    let id = manifest::new_id(&manifest::id_stem(&owner), created);
    let (parent, index, full_because) = match base {
        None => (None, None, None),
        Some(Base::Full(why)) => (None, None, Some(why)),
        Some(Base::Parent { m, chain, index }) => (Some((m, chain)), Some(index), None),
    };
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| info.image_id.clone());
    let progress = Progress::start(format!("backup {}", info.name), show_progress);
    let mut draft = store.begin(&id);
    let age = s
        .encryption
        .clone()
        .map(|seal| Arc::new(Age::sealing(seal)));
    let name = draft.name(match age {
        Some(_) => Object::SealedArchive,
        None => Object::Archive,
    });
    let job = Job {
        engine,
        info,
        image: &image,
        paths: &paths,
        dest,
        name: &name,
        s,
        progress: &progress,
        transform: age.clone().map(|a| a as Arc<dyn Transform>),
        dumps: (!dumps.is_empty()).then(|| {
            Arc::new(Dumper {
                engine: engine.clone(),
                handle: tokio::runtime::Handle::current(),
                dumps,
                compression: s.compression,
                read: Some(progress.read.clone()),
            })
        }),
    };
    let mut streamed = write_archive(&job, index).await?;
    let (mut parent, mut full_because) = (parent, full_because);
    // The agent found the increment cannot be one (a path changed kind, too long a deletion
    // list): the same backup again, full.
    if let Some(why) = streamed.report.as_ref().and_then(|r| r.needs_full.clone()) {
        if parent.is_some() {
            tracing::info!(container = %info.name, "making the backup again, full: {why}");
            streamed.upload.abort().await;
            (parent, full_because) = (None, Some(why));
            streamed = write_archive(&job, None).await?;
        }
    }
    let secs = progress.elapsed().as_secs_f64();
    progress.finish();
    let Written {
        upload,
        stats,
        sha256,
        beside,
        report,
        dumped,
    } = streamed;
    // Through the engine's endpoint (the agent could not run) there is no index: a full backup.
    let (parent, full_because) = match (parent, beside.index.is_some()) {
        (Some(p), true) => (Some(p), full_because),
        (Some(_), false) => (
            None,
            Some("dockyard's agent could not run in the helper, and only it compares files".into()),
        ),
        (None, _) => (None, full_because),
    };
    let transform = age.clone().map(|a| a as Arc<dyn Transform>);
    let sealed = age.is_some();
    let mut stored_index = None;
    let mut upload = Some(upload);
    if let Some(spool) = beside.index {
        let name = draft.name(Object::Index.sealed(sealed));
        let st = match store_beside(dest, &name, transform.clone(), spool).await {
            Ok(st) => st,
            Err(e) => {
                abandon(upload.take(), draft).await;
                return Err(e);
            }
        };
        stored_index = Some(Stored {
            object: name,
            sha256: st.sha256,
            size: st.size,
            entries: report.as_ref().map_or(0, |r| r.indexed),
        });
        draft.attach_upload(st.upload);
    }
    let mut stored_deleted = None;
    if let (Some(_), Some(spool)) = (&parent, beside.deleted) {
        let name = draft.name(Object::Deleted.sealed(sealed));
        let st = match store_beside(dest, &name, transform.clone(), spool).await {
            Ok(st) => st,
            Err(e) => {
                abandon(upload.take(), draft).await;
                return Err(e);
            }
        };
        stored_deleted = Some(Stored {
            object: name,
            sha256: st.sha256,
            size: st.size,
            entries: report.as_ref().map_or(0, |r| r.gone),
        });
        draft.attach_upload(st.upload);
    }
    if let Some(why) = &full_because {
        tracing::info!(container = %info.name, "a full backup: {why}");
    }
    // Tests stop one container's backup here, its archive written, the container still stopped.
    crate::fault::point(&format!("written-{}", info.name)).await;

    let mut m = Manifest {
        format: match (&parent, &age, dumped.records.is_empty()) {
            _ if s.on_engine.is_some() => crate::manifest::ENGINE_FORMAT,
            (_, _, false) => crate::manifest::DUMPS_FORMAT,
            (Some(_), _, true) => crate::manifest::INCREMENTAL_FORMAT,
            (None, Some(_), true) => crate::manifest::ENCRYPTED_FORMAT,
            (None, None, true) => crate::manifest::PLAIN_FORMAT,
        },
        id: id.clone(),
        container: info.backup_name(),
        engine: s.on_engine.clone(),
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
        encryption: age.as_ref().map(|a| Encryption {
            scheme: "age".into(),
            recipients: a.fingerprints(),
        }),
        index: stored_index,
        parent: parent.as_ref().map(|(p, _)| p.id.clone()),
        chain: parent.as_ref().map(|(_, chain)| chain.clone()),
        deleted: stored_deleted,
        dumps: dumped.records,
    };
    if s.snapshot {
        // The container as it is now (stopped, with --stop), as a snapshot has always recorded;
        // a Swarm task's is gone by now (its service scaled to 0): as it was before.
        let mut inspect = match engine.inspect(&info.id).await {
            Ok(now) => now.inspect,
            Err(DockerError::NoSuchContainer(_)) if info.service().is_some() => {
                info.inspect.clone()
            }
            Err(e) => return Err(e.into()),
        };
        if !s.include_env {
            let key = env_key(session.dirs.host_state()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read or make the key snapshots hash environment values with ({e}); set DOCKYARD_STATE_DIR to a writable directory"
                )
            })?;
            redact_env(&mut inspect, &key, &info.id);
        }
        let record = SnapshotRecord {
            image_digests: engine.image_digests(&info.image_id).await?,
            inspect,
            sealed: None,
        };
        m.snapshot = Some(match &age {
            // Encrypted: the inspect data (environment names, labels, command) and digests go
            // in their own encrypted object; the plain manifest only says it is a snapshot.
            Some(age) => {
                let text = serde_json::to_vec_pretty(&record).expect("inspect data serialises");
                let sealed = age
                    .seal_bytes(&text)
                    .context("cannot encrypt the snapshot's inspect data")?;
                draft.attach(Object::SealedSnapshot, sealed);
                SnapshotRecord {
                    image_digests: Vec::new(),
                    inspect: serde_json::Value::Null,
                    sealed: Some(draft.name(Object::SealedSnapshot)),
                }
            }
            None => record,
        });
    }
    // From the archive's commit to the manifest's, a signal waits, so a stopped run leaves a whole
    // backup. A killed one leaves its pending record naming it, so the next run can remove an
    // archive that never got its manifest.
    let upload = upload.expect("not abandoned");
    // A prune that ran beside this backup may have removed its parent since it was chosen.
    if let Some(p) = &m.parent {
        let there = match store.manifests().await {
            Ok(ids) => ids.contains(p),
            Err(e) => {
                abandon(Some(upload), draft).await;
                return Err(anyhow::Error::from(e).context(format!(
                    "backup {id} to {}: could not check that its parent {p} is still there",
                    dest.describe()
                )));
            }
        };
        if !there {
            abandon(Some(upload), draft).await;
            return Err(anyhow::anyhow!(
                "backup {id} to {}: its parent {p} is gone from the destination (a prune ran beside it?); nothing was written: run the backup again",
                dest.describe()
            ));
        }
    }
    let stored = draft.commit(upload, &m, session.critical.enter()).await;
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
    let incremental = s.incremental.map(|_| IncrementalOutcome {
        parent: m.parent.clone(),
        full_because,
        unchanged: report.as_ref().map_or(0, |r| r.unchanged),
        deleted: report.as_ref().map_or(0, |r| r.gone),
    });
    Ok((m, secs, incremental))
}
