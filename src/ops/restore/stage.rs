//! Staging: each path of the backup unpacked beside the live one (through the agent, else the
//! engine's archive endpoint), the whole archive checked on the way as `verify` does. A failure
//! removes the staging; nothing live changes here.

use anyhow::{Context, Result};

use super::live::discard;
use super::plan::{DirPath, Plan};
use crate::agent::host::{self, Unavailable, UnpackFailed};
use crate::agent::UnpackJob;
use crate::archive::entry::{Kind, RootMeta};
use crate::archive::stage::{stage, StageSpec, Staged};
use crate::archive::writer::TarWriter;
use crate::destination::Destination;
use crate::docker::{ContainerInfo, DockerError, Engine, Helper, HelperSpec};
use crate::error::Failure;
use crate::manifest::Manifest;
use crate::ops::chain::Layer;
use crate::ops::key::Key;
use crate::ops::{Pending, Session};
use crate::pipeline::{streams, ChannelWriter};
use crate::progress::Progress;
use crate::settings::RestoreSettings;
use crate::swap::journal::Journal;
use crate::swap::member::stage_member;
use crate::swap::recover::{self, Work};
use crate::swap::{self};
use crate::values::AgentMode;

/// Each manifest path's own entry, read from the start of the archive only as far as needed to
/// plan (a single-path archive: its first entry); if that fails, the full verification says why.
/// Staging checks the whole archive and that these agree, so nothing here is trusted further.
pub(super) async fn archived_roots(b: Backup<'_>) -> Result<Vec<Option<(Kind, RootMeta)>>> {
    let Backup { dest, m, key, .. } = b;
    let paths: Vec<String> = m.paths.iter().map(|p| p.path.clone()).collect();
    let scanned = key
        .read_start(dest, m, move |r| crate::archive::verify::roots(r, &paths))
        .await
        .with_context(|| format!("cannot read backup {}", m.id))?;
    match scanned {
        Ok(roots) => Ok(roots),
        // Say what is wrong as `verify` would (a checksum mismatch before a decoding error).
        Err(_) => crate::ops::verify::verify_backup(dest, m, key, false)
            .await
            .map(|report| report.roots),
    }
}

/// The backup being restored: where it is, its manifest, and the key it is read with.
#[derive(Clone, Copy)]
pub(super) struct Backup<'a> {
    /// Where it is.
    pub dest: &'a dyn Destination,
    /// Its manifest.
    pub m: &'a Manifest,
    /// How its archive is read (through age if it is encrypted).
    pub key: &'a Key,
    /// An incremental backup's chain, the full backup first and this one last (empty for a
    /// full backup): each layer is staged over the one before.
    pub chain: &'a [Layer],
}

/// A verification failure of backup `m` at `dest`, which changed nothing.
pub(super) fn failed_verification(
    m: &Manifest,
    dest: &dyn Destination,
    why: &str,
) -> anyhow::Error {
    Failure::verify(format!(
        "backup {} at {} failed verification: {why}; nothing was changed",
        m.id,
        dest.describe()
    ))
    .into()
}

/// Stages every path, the journal on the host written first; on any failure (or a signal,
/// through the session's clean-up) the staging is removed and nothing live has changed. Returns what
/// each path staged and the journal, now holding the times the engine could not set.
pub(super) async fn stage_all(
    session: &Session,
    work: &Work<'_>,
    b: Backup<'_>,
    plan: &Plan,
    s: &RestoreSettings,
) -> Result<(Vec<Staged>, Journal)> {
    let m = b.m;
    let (engine, target, image) = (work.engine, work.target, work.image);
    // The journal on the host, and the staging a signal removes, as they stand now.
    let record = |journal: &Journal| -> Result<()> {
        work.ledger.write(journal)?;
        session.set_pending(Some(Pending {
            target: target.clone(),
            image: image.to_string(),
            journal: journal.clone(),
            ledger: work.ledger.clone(),
        }));
        Ok(())
    };
    let mut journal = plan.journal(m, target, &s.include);
    record(&journal)?;
    let staged = stage_each(session, work, b, plan, s, &mut journal).await;
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => {
            discard(session, engine).await;
            return Err(e);
        }
    };
    record(&journal)?;
    if s.include.is_empty() && !m.exclude.is_empty() {
        if let Err(e) = keep_excluded(work, plan, m).await {
            discard(session, engine).await;
            return Err(e);
        }
    }
    crate::fault::point("staged").await;
    Ok((staged, journal))
}

/// Stages each directory path into its mount's work dir (through a helper holding the volumes),
/// then each single file beside its host file (through one holding only their directories).
pub(super) async fn stage_each(
    session: &Session,
    work: &Work<'_>,
    b: Backup<'_>,
    plan: &Plan,
    s: &RestoreSettings,
    journal: &mut Journal,
) -> Result<Vec<Staged>> {
    let Backup {
        dest,
        m,
        key,
        chain,
    } = b;
    let (engine, target, image) = (work.engine, work.target, work.image);
    // The engine path's helper, made only if the agent cannot stage (it starts helpers of its
    // own).
    let mut stager: Option<Helper> = None;
    let show_progress = session.progress;
    let mut staged = Vec::new();
    let mut agent = match s.agent {
        AgentMode::Auto => Ok(()),
        AgentMode::Never => Err(Unavailable("--agent never".into())),
    };
    let mut result: Result<()> = Ok(());
    'members: for (i, member) in plan.dirs.iter().enumerate() {
        for p in &member.paths {
            let spec = StageSpec {
                path: p.path.clone(),
                into: swap::new_dir(p.k).into_bytes(),
                skip: p.skip.clone(),
                privileges: s.privileges,
                root: Kind::Dir,
                include: s.include.clone(),
            };
            let first = p.k == 0;
            let mut done = None;
            if !chain.is_empty() {
                let source = Source {
                    engine,
                    helper: "",
                    dest,
                    m,
                    key,
                    show_progress,
                };
                let staging = Layered {
                    source: &source,
                    chain,
                    mount: &member.mount,
                    spec: &spec,
                    first,
                };
                done = Some(match &agent {
                    Ok(()) => stage_layers(&staging, target, image).await,
                    Err(why) => Err(Failure::usage(format!(
                        "backup {} is incremental: its chain is staged through dockyard's agent, which cannot run here ({why})",
                        m.id
                    ))
                    .into()),
                });
            }
            if done.is_none() && agent.is_ok() {
                let job = UnpackJob {
                    mount: member.mount.clone(),
                    spec: spec.clone(),
                    first,
                    expect: key.expect(m),
                    deleted: vec![],
                };
                let source = Source {
                    engine,
                    helper: "",
                    dest,
                    m,
                    key,
                    show_progress,
                };
                match stage_by_agent(&source, target, image, &job).await {
                    Ok(st) => done = Some(Ok(st)),
                    Err(AgentStaging::Unavailable(why)) => agent = Err(why),
                    Err(AgentStaging::Error(e)) => done = Some(Err(e)),
                }
            }
            let done = match done {
                Some(d) => d,
                None => {
                    if let Err(why) = &agent {
                        tracing::info!(container = %target.name, path = %p.path, "staging through the engine's archive endpoint: {why}");
                    }
                    if stager.is_none() {
                        match engine
                            .helper(HelperSpec::archive(target, image, false))
                            .await
                        {
                            Ok(h) => stager = Some(h),
                            Err(e) => {
                                result = Err(e.into());
                                break 'members;
                            }
                        }
                    }
                    let helper = stager.as_ref().expect("made above").id();
                    let source = Source {
                        engine,
                        helper,
                        dest,
                        m,
                        key,
                        show_progress,
                    };
                    stage_one(&source, &member.mount, spec, first).await
                }
            };
            match done.and_then(|st| agrees(m, dest, p, &st).map(|()| st)) {
                Ok(st) => {
                    journal.mounts[i]
                        .fixups
                        .extend(st.fixups.iter().map(|f| (p.k, f.secs, f.rel.clone())));
                    staged.push(st);
                }
                Err(e) => {
                    result = Err(e.context(format!("staging {} of backup {}", p.path, m.id)));
                    break 'members;
                }
            }
        }
    }
    let removed = match stager {
        Some(h) => h.remove().await,
        None => Ok(()),
    };
    result?;
    removed?;
    if !plan.files.is_empty() {
        staged.extend(stage_files(session, work, b, plan, s).await?);
    }
    Ok(staged)
}

/// One directory path of an incremental backup to stage, layer by layer.
struct Layered<'a> {
    source: &'a Source<'a>,
    chain: &'a [Layer],
    mount: &'a str,
    spec: &'a StageSpec,
    first: bool,
}

/// Stages a path of an incremental backup: its chain's full backup into the staging
/// directory, then each increment over it, its deletion list first. Every layer's archive is
/// checked whole as it is staged. What it returns is the last layer's, with what every layer
/// stripped or skipped.
async fn stage_layers(l: &Layered<'_>, target: &ContainerInfo, image: &str) -> Result<Staged> {
    let paths: Vec<String> = l.source.m.paths.iter().map(|p| p.path.clone()).collect();
    let index = paths
        .iter()
        .position(|p| *p == l.spec.path)
        .expect("a path of the manifest");
    let mut all = Staged::default();
    for (i, layer) in l.chain.iter().enumerate() {
        let job = UnpackJob {
            mount: l.mount.to_string(),
            spec: l.spec.clone(),
            first: l.first && i == 0,
            expect: layer.key.expect(&layer.m),
            deleted: Vec::new(),
        };
        let mut job = job;
        // One layer's list at a time, checked against its manifest again as it is read.
        let deleted = crate::ops::chain::deleted(l.source.dest, &layer.m, &layer.key)
            .await
            .map_err(|e| e.context(format!("layer {} of {}", layer.m.id, l.source.m.id)))?;
        job.deleted = crate::ops::chain::of_path(&deleted, &paths, index)
            .iter()
            .map(hex::encode)
            .collect();
        drop(deleted);
        let source = Source {
            m: &layer.m,
            key: &layer.key,
            ..*l.source
        };
        let st = match stage_by_agent(&source, target, image, &job).await {
            Ok(st) => st,
            Err(AgentStaging::Unavailable(why)) => {
                return Err(Failure::usage(format!(
                    "backup {} is incremental: its chain is staged through dockyard's agent, which cannot run here ({why})",
                    l.source.m.id
                ))
                .into())
            }
            Err(AgentStaging::Error(e)) => {
                return Err(e.context(format!("layer {} of {}", layer.m.id, l.source.m.id)))
            }
        };
        all.stripped.extend(st.stripped);
        all.dropped_xattrs.extend(st.dropped_xattrs);
        all.skipped.extend(st.skipped);
        all.entries = st.entries;
        all.root = st.root;
        all.fixups = st.fixups;
        all.single_file = st.single_file;
    }
    for list in [&mut all.stripped, &mut all.dropped_xattrs, &mut all.skipped] {
        list.sort();
        list.dedup();
    }
    Ok(all)
}

/// Stages each single-file path beside its live file, through a helper that holds only those
/// files' host directories (never the app's volumes).
pub(super) async fn stage_files(
    session: &Session,
    work: &Work<'_>,
    b: Backup<'_>,
    plan: &Plan,
    s: &RestoreSettings,
) -> Result<Vec<Staged>> {
    let Backup { dest, m, key, .. } = b;
    let paths: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();
    let (binds, _) = recover::file_binds(work.target, &paths, work.engine.is_local())?;
    let mut spec = HelperSpec::archive(work.target, work.image, false);
    spec.volumes = false;
    spec.binds = binds;
    let helper = work.engine.helper(spec).await?;
    let source = Source {
        engine: work.engine,
        helper: helper.id(),
        dest,
        m,
        key,
        show_progress: session.progress,
    };
    let mut staged = Vec::new();
    let mut result = Ok(());
    for (i, f) in plan.files.iter().enumerate() {
        let spec = StageSpec {
            path: f.path.clone(),
            into: swap::staged_file_name(&f.name).into_bytes(),
            skip: vec![],
            privileges: s.privileges,
            root: Kind::File,
            include: vec![],
        };
        match stage_file(&source, &format!("/.dockyard-file-{i}"), spec).await {
            Ok(st) => staged.push(st),
            Err(e) => {
                result = Err(e.context(format!("staging {} of backup {}", f.path, m.id)));
                break;
            }
        }
    }
    let removed = helper.remove().await;
    result?;
    removed?;
    Ok(staged)
}

/// Links the live names the backup left out (its `--exclude` patterns) into the staged trees, so
/// the swap keeps them as they are, through dockyard's agent.
pub(super) async fn keep_excluded(work: &Work<'_>, plan: &Plan, m: &Manifest) -> Result<()> {
    for d in &plan.dirs {
        let job = crate::agent::merge::MergeJob {
            mount: d.mount.clone(),
            paths: d.paths.iter().map(merge_path).collect(),
            patterns: m.exclude.clone(),
        };
        let kept = host::run_job(
            work.engine,
            work.target,
            work.image,
            crate::agent::frame::Job::Keep(job),
            crate::docker::Role::Script,
            true,
        )
        .await;
        match kept {
            Ok(report) => {
                let n = match report {
                    Some(crate::agent::frame::Report::Count(n)) => n.to_string(),
                    _ => String::new(),
                };
                tracing::info!(container = %work.target.name, mount = %d.mount, kept = %n, "kept the live names the backup left out")
            }
            Err(host::CleanupFailed::Unavailable(why)) => {
                return Err(Failure::usage(format!(
                    "backup {} left names out ({}); keeping the live ones needs dockyard's agent in the helper, which cannot run: {why}",
                    m.id,
                    m.exclude.join(", ")
                ))
                .into())
            }
            Err(host::CleanupFailed::Failed(why)) => {
                return Err(DockerError::Api {
                    action: format!(
                        "keep the names backup {} left out in {} of {:?}",
                        m.id, d.mount, work.target.name
                    ),
                    message: why,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// A path of a mount, for the agent's keep and merge.
pub(super) fn merge_path(p: &DirPath) -> crate::agent::merge::MergePath {
    crate::agent::merge::MergePath {
        k: p.k,
        path: p.path.clone(),
        rel: String::from_utf8_lossy(&p.rel).into_owned(),
        skip: p
            .skip
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    }
}

/// Checks that staging found the path's own entry as planning read it: the archive was read
/// twice, and only the staging pass checked all of it.
pub(super) fn agrees(m: &Manifest, dest: &dyn Destination, p: &DirPath, st: &Staged) -> Result<()> {
    if st.root == p.archived {
        return Ok(());
    }
    Err(failed_verification(
        m,
        dest,
        &format!(
            "the entry of {} changed between two reads of the archive ({:?}, then {:?})",
            p.path, p.archived, st.root
        ),
    ))
}

/// Why staging through the agent did not happen.
pub(super) enum AgentStaging {
    /// The agent could not run; nothing was written.
    Unavailable(Unavailable),
    /// Staging failed.
    Error(anyhow::Error),
}

/// Stages one directory path through `agent unpack`: the archive's compressed bytes go to the
/// agent, which checks, decodes and writes them inside the volume.
pub(super) async fn stage_by_agent(
    source: &Source<'_>,
    target: &ContainerInfo,
    image: &str,
    job: &UnpackJob,
) -> Result<Staged, AgentStaging> {
    let Source {
        engine,
        dest,
        m,
        key,
        ..
    } = *source;
    let error = |e: anyhow::Error| AgentStaging::Error(e);
    let archive = key.feed(dest, m).await.map_err(|e| error(e.into()))?;
    let progress = Progress::sized(
        format!("restore into {}", job.spec.path),
        Some(m.size),
        source.show_progress,
    );
    let unpacked = host::unpack(
        engine,
        target,
        image,
        vec![],
        job,
        archive,
        progress.read.clone(),
    )
    .await;
    progress.finish();
    match unpacked {
        Ok(staged) => Ok(staged),
        Err(UnpackFailed::Unavailable(why)) => Err(AgentStaging::Unavailable(why)),
        Err(UnpackFailed::Source(error)) => Err(AgentStaging::Error(
            crate::destination::DestError::reading(dest, &m.archive, error).into(),
        )),
        Err(UnpackFailed::Refused(why)) => {
            Err(AgentStaging::Error(failed_verification(m, dest, &why)))
        }
        Err(UnpackFailed::Failed(message)) => Err(AgentStaging::Error(
            DockerError::Api {
                action: format!(
                    "stage {} into container {:?} through dockyard's agent",
                    job.spec.path, target.name
                ),
                message,
            }
            .into(),
        )),
    }
}

/// What staging reads (the archive at its destination) and writes through (a helper).
pub(super) struct Source<'a> {
    engine: &'a Engine,
    helper: &'a str,
    dest: &'a dyn Destination,
    m: &'a Manifest,
    key: &'a Key,
    /// Show a progress bar on a terminal.
    show_progress: bool,
}

/// Streams one directory path of the archive into `<mount>/.dockyard-restore/new-<k>/`, with the
/// work directory and its phase first (for the mount's first path).
pub(super) async fn stage_one(
    source: &Source<'_>,
    mount: &str,
    spec: StageSpec,
    first: bool,
) -> Result<Staged> {
    let expect = source.key.expect(source.m);
    stage_through(source, mount, move |r, w| {
        stage_member(r, &expect, &spec, first, w)
    })
    .await
}

/// Streams a single-file path of the archive into its staged name beside the live file.
pub(super) async fn stage_file(source: &Source<'_>, into: &str, spec: StageSpec) -> Result<Staged> {
    let m = source.m;
    let expect = source.key.expect(m);
    let path = spec.path.clone();
    let staged = stage_through(source, into, move |r, w| stage(r, &expect, &spec, w)).await?;
    if !staged.single_file {
        return Err(Failure::verify(format!(
            "backup {}: {path} is not a single file in the archive",
            m.id
        ))
        .into());
    }
    Ok(staged)
}

/// Reads the archive of `m` through `build`, which writes the tar to stage, and uploads that tar
/// into `into` through the helper, both streaming. Which side failed decides the error: the
/// destination's transport (exit 4), the engine (3), or the archive's content (5).
pub(super) async fn stage_through<F>(source: &Source<'_>, into: &str, build: F) -> Result<Staged>
where
    F: FnOnce(
            Box<dyn std::io::Read + Send>,
            &mut TarWriter<ChannelWriter>,
        ) -> std::io::Result<Staged>
        + Send
        + 'static,
{
    let Source {
        engine,
        helper,
        dest,
        m,
        key,
        show_progress,
    } = *source;
    let (writer, rx) = streams::channel();
    let progress = Progress::sized(format!("restore into {into}"), Some(m.size), show_progress);
    let staged = key.read(
        dest,
        m,
        Some(progress.read.clone()),
        move |r| -> std::io::Result<Staged> {
            let mut w = TarWriter::new(writer);
            let staged = build(r, &mut w)?;
            w.finish()?.close()?;
            Ok(staged)
        },
    );
    let uploaded = engine.upload(helper, into, streams::receiver_stream(rx));
    let (staged, uploaded) = tokio::join!(staged, uploaded);
    progress.finish();
    match staged? {
        Ok(staged) => {
            uploaded?;
            Ok(staged)
        }
        // The engine stopped taking the stream (the writer found the channel closed): its
        // error, not the archive's. An archive that failed first cuts the stream short, and
        // the engine's complaint about that is not the cause.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && uploaded.is_err() => {
            Err(uploaded.unwrap_err().into())
        }
        Err(e) => Err(failed_verification(m, dest, &e.to_string())),
    }
}
