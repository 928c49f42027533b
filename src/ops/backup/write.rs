//! Writing one archive into a destination: through the agent in a helper when it can run there,
//! else through the engine's archive endpoint and the host's packer.

use std::io::Read;

use anyhow::{Context, Result};

use super::paths::nested_mounts;
use crate::agent::host::{self, Archive, Beside, Ended, Unavailable};
use crate::agent::spool::Spool;
use crate::agent::{PackJob, PackPath};
use crate::archive::pack::{pack, PackStats, Source};
use crate::destination::Destination;
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec};
use crate::dumps::stream::{DumpFailed, Dumped, Dumper};
use crate::manifest::PathRecord;
use crate::pipeline::streams::{CountingReader, ReadAhead};
use crate::pipeline::{ArchiveSink, Broken, Transform};
use crate::progress::Progress;
use crate::settings::BackupSettings;
use crate::values::AgentMode;
use std::sync::Arc;

/// One archive to write: what from, where to, how.
pub struct Job<'a> {
    /// The engine holding the container.
    pub engine: &'a Engine,
    /// The container backed up.
    pub info: &'a ContainerInfo,
    /// The helper image.
    pub image: &'a str,
    /// Its paths, in archive order.
    pub paths: &'a [PathRecord],
    /// Where the archive goes.
    pub dest: &'a dyn Destination,
    /// The archive's object name.
    pub name: &'a str,
    /// The backup's settings.
    pub s: &'a BackupSettings,
    /// The counters progress shows.
    pub progress: &'a Progress,
    /// Encryption between compression and the hash, on the host (none: a plain archive).
    pub transform: Option<Arc<dyn Transform>>,
    /// The database dumps streamed in before the volumes (none asked: `None`).
    pub dumps: Option<Arc<Dumper>>,
}

impl Job<'_> {
    /// The sink the archive streams into: object `name` of `dest`, through the transform.
    async fn sink(&self) -> Result<ArchiveSink, crate::destination::DestError> {
        let sink = ArchiveSink::open(self.dest, self.name).await?;
        Ok(match &self.transform {
            Some(t) => sink.with_transform(t.clone()),
            None => sink,
        })
    }
}

/// What [`write_archive`] returns.
pub struct Written {
    /// The archive's upload, to commit.
    pub upload: Box<dyn crate::destination::Upload>,
    /// Its stats.
    pub stats: PackStats,
    /// Its sha256 (of the stored bytes).
    pub sha256: String,
    /// What the agent sent beside it (nothing through the engine's endpoint).
    pub beside: Beside,
    /// The agent's counts (through the agent).
    pub report: Option<crate::agent::PackReport>,
    /// The database dumps it holds (before the volumes).
    pub dumped: Dumped,
}

/// Writes `dumps`, if any, to `writer` (their own zstd frame, before the volumes'); what was
/// written and the writer.
fn dump_first<W: std::io::Write>(
    dumps: Option<&Dumper>,
    writer: W,
) -> std::io::Result<(Dumped, W)> {
    match dumps {
        Some(d) => d.write(writer),
        None => Ok((Dumped::default(), writer)),
    }
}

/// Streams `spool` (what the agent sent beside the archive) into object `name` of `dest`,
/// through `transform`, returning the upload to commit.
pub async fn store_beside(
    dest: &dyn Destination,
    name: &str,
    transform: Option<Arc<dyn Transform>>,
    spool: crate::agent::spool::Spool,
) -> Result<crate::pipeline::Sealed> {
    let sink = ArchiveSink::open(dest, name).await?;
    let sink = match transform {
        Some(t) => sink.with_transform(t),
        None => sink,
    };
    let mut reader = spool
        .into_reader()
        .with_context(|| format!("what the agent sent for {name}"))?;
    match sink
        .stream(move |mut writer| {
            crate::pipeline::streams::copy_chunks(&mut reader, &mut writer)?;
            Ok(((), writer))
        })
        .await
    {
        Ok((sealed, ())) => Ok(sealed),
        Err(Broken::Destination(e)) => {
            Err(e).context(format!("store {name} at {}", dest.describe()))
        }
        Err(Broken::Producer(e)) => Err(anyhow::anyhow!("store {name}: {e}")),
    }
}

/// Writes the archive through the agent when it can run in the helper, else through the engine's
/// archive endpoint; one log line says which and why. On failure the upload is aborted.
pub async fn write_archive(job: &Job<'_>, parent: Option<Spool>) -> Result<Written> {
    let why = match job.s.agent {
        AgentMode::Never => Unavailable("--agent never".into()),
        AgentMode::Auto => match through_agent(job, parent).await? {
            Ok(written) => return Ok(written),
            Err(why) => why,
        },
    };
    tracing::info!(container = %job.info.name, "backing up through the engine's archive endpoint: {why}");
    if job.dumps.is_some() && job.s.agent == AgentMode::Auto {
        tracing::info!(container = %job.info.name, "the database dumps run again, into that archive");
    }
    let helper = job
        .engine
        .helper(HelperSpec::archive(job.info, job.image, true))
        .await?;
    let id = helper.id().to_string();
    let streamed = stream_archive(job, &id).await;
    // The streams are closed: the engine removes a helper only once no read from it is open.
    if let Err(e) = helper.remove().await {
        tracing::warn!(helper = %id, error = %e, "could not remove the helper container; the next run will");
    }
    streamed
}

/// Runs `agent pack` in a helper and streams its compressed archive into the destination. The
/// inner `Err` means the agent could not run (nothing was uploaded) and says why.
async fn through_agent(
    job: &Job<'_>,
    parent: Option<Spool>,
) -> Result<Result<Written, Unavailable>> {
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
        parent: parent.is_some(),
    };
    let parent = match parent {
        Some(spool) => Some(Box::new(spool.into_reader()?) as Box<dyn std::io::Read + Send>),
        None => None,
    };
    let counters = host::Counters {
        read: job.progress.read.clone(),
        total: job.progress.total.clone(),
    };
    let start = || host::start_pack(job.engine, job.info, job.image, &pack_job, counters, parent);
    let written = job.progress.written.clone();
    let (streamed, packing) = match job.dumps.clone() {
        None => {
            let (packing, archive) = match start().await {
                Ok(p) => p,
                Err(why) => return Ok(Err(why)),
            };
            tracing::info!(container = %job.info.name, "backing up through dockyard's agent in the helper");
            let sink = match job.sink().await {
                Ok(sink) => sink,
                Err(e) => {
                    packing.abandon().await;
                    return Err(e.into());
                }
            };
            let mut reader = CountingReader::new(source_of(archive), written);
            let streamed = sink
                .stream(move |mut writer| {
                    let n = crate::pipeline::streams::copy_chunks(&mut reader, &mut writer)?;
                    Ok(((n, Dumped::default()), writer))
                })
                .await;
            (streamed, packing)
        }
        // The agent starts once the dumps are in the archive: the volumes are read after every
        // dump's snapshot, so each row a dump holds finds its upload in the backup.
        Some(dumps) => {
            let sink = job.sink().await?;
            let (dumped_tx, dumped_rx) = tokio::sync::oneshot::channel::<()>();
            let (source_tx, source_rx) = std::sync::mpsc::sync_channel::<Box<dyn Read + Send>>(1);
            let streaming = sink.stream(move |writer| {
                let (dumped, mut writer) = dumps.write(writer)?;
                let _ = dumped_tx.send(());
                let source = source_rx
                    .recv()
                    .map_err(|_| std::io::Error::other("dockyard's agent did not start"))?;
                let mut reader = CountingReader::new(source, written);
                let n = crate::pipeline::streams::copy_chunks(&mut reader, &mut writer)?;
                Ok(((n, dumped), writer))
            });
            let starting = async move {
                dumped_rx.await.ok()?;
                Some(start().await.map(|(packing, archive)| {
                    tracing::info!(container = %job.info.name, "backing up through dockyard's agent in the helper");
                    let _ = source_tx.send(source_of(archive));
                    packing
                }))
            };
            match tokio::join!(streaming, starting) {
                // The dumps failed (the stream says why) before the agent was started.
                (Err(broken), None) => return Err(broken_error(job, broken)),
                (Ok(_), None) => {
                    return Err(anyhow::anyhow!(
                        "backup of {}: the archive ended before dockyard's agent was started",
                        job.info.name
                    ))
                }
                // The agent could not run: the upload is aborted; the engine's endpoint takes over.
                (_, Some(Err(why))) => return Ok(Err(why)),
                (streamed, Some(Ok(packing))) => (streamed, packing),
            }
        }
    };
    let what = || format!("back up container {:?} through the agent", job.info.name);
    // The agent's byte count is checked against what it says it sent; the manifest records the
    // stored bytes (the same, unless a transform changes them).
    let (sealed, (received, dumped)) = match streamed {
        Ok(done) => done,
        Err(broken) => {
            packing.abandon().await;
            return Err(broken_error(job, broken));
        }
    };
    let (upload, size, sha256) = (sealed.upload, sealed.size, sealed.sha256);
    match packing.finish(received).await {
        Ok(Ended::Done(r, beside)) => Ok(Ok(Written {
            upload,
            stats: PackStats {
                tar_bytes: r.tar_bytes + dumped.tar_bytes,
                entries: r.entries + dumped.entries,
                size,
            },
            sha256,
            beside,
            report: Some(r),
            dumped,
        })),
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

/// A backup whose dump failed: a command in a container failed (exit 3, as a helper's would).
fn dump_failed(container: &str, e: &std::io::Error) -> anyhow::Error {
    crate::error::Failure::new(
        crate::error::Category::Docker,
        format!("backup of {container}: {e}"),
    )
    .into()
}

/// The archive from the agent, as a reader.
fn source_of(archive: Archive) -> Box<dyn Read + Send> {
    match archive {
        Archive::Attach(stream) => {
            Box::new(ReadAhead::new(tokio::runtime::Handle::current(), stream))
        }
        Archive::Pipe(path) => Box::new(crate::agent::pipe::Reader::new(path)),
    }
}

/// The error of a backup through the agent whose stream broke.
fn broken_error(job: &Job<'_>, broken: Broken) -> anyhow::Error {
    match broken {
        Broken::Destination(e) => anyhow::Error::from(e).context(format!(
            "backup of {} to {}",
            job.info.name,
            job.dest.describe()
        )),
        Broken::Producer(e) if DumpFailed::of(&e).is_some() => dump_failed(&job.info.name, &e),
        Broken::Producer(e) => DockerError::Api {
            action: format!("back up container {:?} through the agent", job.info.name),
            message: e.to_string(),
        }
        .into(),
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
    let sink = job.sink().await?;
    let compression = s.compression;
    let written = progress.written.clone();
    let dumps = job.dumps.clone();
    match sink
        .stream(move |writer| {
            let (dumped, mut writer) = dump_first(dumps.as_deref(), writer)?;
            let (stats, _) = pack(sources, &mut writer, compression, Some(written))?;
            Ok(((stats, dumped), writer))
        })
        .await
    {
        // The manifest records the stored bytes (the packer's count, unless a transform changes
        // them).
        Ok((sealed, (stats, dumped))) => Ok(Written {
            upload: sealed.upload,
            stats: PackStats {
                size: sealed.size,
                tar_bytes: stats.tar_bytes + dumped.tar_bytes,
                entries: stats.entries + dumped.entries,
            },
            sha256: sealed.sha256,
            beside: Beside::default(),
            report: None,
            dumped,
        }),
        Err(Broken::Destination(e)) => {
            Err(e).context(format!("backup of {} to {}", info.name, dest.describe()))
        }
        Err(Broken::Producer(e)) if DumpFailed::of(&e).is_some() => {
            Err(dump_failed(&info.name, &e))
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
