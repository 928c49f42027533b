//! The host side of the agent: starting it in a helper, sending its job and reading what it says
//! ([`super::frame`] both ways, over the engine's attach stream), with the archive streamed
//! back (pack) or fed in (unpack) through the FIFO or that same stream. Anything that stops the
//! agent before it wrote a byte is [`Unavailable`], and the caller takes the engine's archive
//! endpoint instead.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::container::{AttachContainerResults, LogOutput};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

pub use super::binary::Unavailable;
use super::binary::{binary, binary_tar, check_image, symlink_tar};
use super::frame::{self, Job, Message, Report};
use super::pipe::{self, Pipe};
pub use super::said::Counters;
use super::said::{stdout_of, Heard, Said};
use super::{PackJob, PackReport, IN_HELPER};
use crate::docker::{ContainerInfo, DockerError, Engine, Helper, HelperSpec, PathKind, Role};
use crate::pipeline::FeedFailure;

/// A running `agent pack`: the helper to finish and remove, and what it says.
pub struct Packing {
    /// The helper container running the agent.
    pub helper: Helper,
    said: Arc<Mutex<Said>>,
    /// The task reading the agent's stderr when the archive comes through the FIFO.
    drained: Option<tokio::task::JoinHandle<()>>,
    /// Kept until the agent is done.
    _pipe: Option<Pipe>,
}

/// The compressed archive, as the agent writes it.
pub enum Archive {
    /// Over the engine's attach stream.
    Attach(std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>),
    /// Through the FIFO at this host path.
    Pipe(PathBuf),
}

/// A helper from `image` that runs the agent for `job`, borrowing `target`'s volumes
/// (read-only or not), with its stdin attached for the job.
fn agent_spec<'a>(
    target: &'a ContainerInfo,
    image: &'a str,
    job: &Job,
    read_only: bool,
    role: Role,
    binds: Vec<String>,
) -> HelperSpec<'a> {
    HelperSpec {
        container: target,
        volumes: true,
        read_only,
        image,
        // The job's name only shows in `docker ps`: the job itself comes on stdin.
        command: Some(vec![IN_HELPER.into(), "agent".into(), job.name().into()]),
        user: None,
        role,
        binds,
        stdin: true,
        files: vec![],
        auto_remove: false,
        log: false,
    }
}

/// Starts `agent pack` for `job` in a helper borrowing `info`'s volumes read-only, from `image`.
/// Returns [`Unavailable`] (nothing left behind) when the agent cannot run there.
pub async fn start_pack(
    engine: &Engine,
    info: &ContainerInfo,
    image: &str,
    job: &PackJob,
    counters: Counters,
    parent: Option<Box<dyn io::Read + Send>>,
) -> Result<(Packing, Archive), Unavailable> {
    let exe = binary()?;
    check_image(engine, image).await?;
    let job = Job::Pack(job.clone());
    let pipe = Pipe::create(engine.is_local());
    let binds = pipe.iter().map(Pipe::bind).collect();
    let spec = agent_spec(info, image, &job, true, Role::Agent, binds);
    let helper = engine
        .helper(spec)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    let (attached, piped) = launch(engine, &helper, &exe, &job, pipe.as_ref())
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    let mut input = attached.input;
    match parent {
        // The parent's index follows the job on stdin, as the agent reads it.
        Some(parent) => {
            tokio::spawn(async move {
                let _ = send_blocking_reader(parent, &mut input).await;
                let _ = input.shutdown().await;
            });
        }
        None => {
            let _ = input.shutdown().await;
        }
    }
    let said = Arc::new(Mutex::new(Said::new(&info.name, counters)));
    let output = stdout_of(attached.output, said.clone());
    let (drained, archive) = match piped {
        Some(path) => {
            let drained = tokio::spawn(async move {
                let mut output = std::pin::pin!(output);
                while output.next().await.is_some() {}
            });
            (Some(drained), Archive::Pipe(path))
        }
        None => (None, Archive::Attach(Box::pin(output))),
    };
    let packing = Packing {
        helper,
        said,
        drained,
        _pipe: pipe,
    };
    Ok((packing, archive))
}

/// Copies what `reader` (a blocking reader) holds into `input`, a MiB at a time.
async fn send_blocking_reader(
    mut reader: Box<dyn io::Read + Send>,
    input: &mut std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) -> io::Result<()> {
    loop {
        let (back, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = io::Read::read(&mut reader, &mut buf);
            (
                reader,
                n.map(|n| {
                    buf.truncate(n);
                    buf
                }),
            )
        })
        .await
        .map_err(io::Error::other)?;
        reader = back;
        let chunk = chunk?;
        if chunk.is_empty() {
            return Ok(());
        }
        input.write_all(&chunk).await?;
    }
}

/// Copies the binary into the created helper, attaches to its output and input, starts it and
/// sends it `job` (the input stays open: an unpack's archive may follow). With a `pipe`, says
/// whether the helper sees the FIFO (and so the agent will use it): then its host path, and a
/// task that unblocks the FIFO if the agent ends without opening it.
async fn launch(
    engine: &Engine,
    helper: &Helper,
    exe: &std::path::Path,
    job: &Job,
    pipe: Option<&Pipe>,
) -> Result<(AttachContainerResults, Option<PathBuf>), DockerError> {
    let piped = match pipe {
        Some(p) if engine.stat(helper.id(), pipe::IN_HELPER).await? == PathKind::Other => {
            Some(p.path())
        }
        _ => None,
    };
    // Where the helper sees the FIFO's directory, it sees the binary put there beside it: a
    // symlink to it is all the engine writes into the helper (copying the 28 MB binary in took
    // most of a small backup's time).
    let beside = match (pipe, &piped) {
        (Some(p), Some(_)) => tokio::task::spawn_blocking(p.place_agent())
            .await
            .unwrap_or(false),
        _ => false,
    };
    let body = match beside {
        true => Ok(symlink_tar(IN_HELPER, pipe::AGENT_IN_HELPER)),
        false => binary_tar(exe, !engine.is_local()).await,
    }
    .map_err(|e| DockerError::Api {
        action: format!("read {}", exe.display()),
        message: e.to_string(),
    })?;
    engine.upload(helper.id(), "/", body).await?;
    let mut attached = helper.attach_and_start(true).await?;
    if let Some(path) = piped.clone() {
        let (engine, helper) = (engine.clone(), helper.id().to_string());
        tokio::spawn(async move {
            let _ = engine.wait(&helper).await;
            let _ = tokio::task::spawn_blocking(move || Pipe::release(&path)).await;
        });
    }
    let framed = frame::encode(&Message::Job(job.clone()));
    attached
        .input
        .write_all(&framed)
        .await
        .and(attached.input.flush().await)
        .map_err(|e| DockerError::Api {
            action: format!("send the agent its job through helper {}", helper.id()),
            message: e.to_string(),
        })?;
    tracing::debug!(
        helper = helper.id(),
        piped = piped.is_some(),
        beside,
        "agent started"
    );
    Ok((attached, piped))
}

/// What the agent sent beside a whole archive, for the host to store.
#[derive(Default)]
pub struct Beside {
    /// The file index (compressed).
    pub index: Option<super::spool::Spool>,
    /// An incremental's deletion list (compressed).
    pub deleted: Option<super::spool::Spool>,
}

impl std::fmt::Debug for Beside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Beside")
            .field("index", &self.index.as_ref().map(|s| s.bytes))
            .field("deleted", &self.deleted.as_ref().map(|s| s.bytes))
            .finish()
    }
}

/// How `agent pack` ended (one value a backup: the large variant is not boxed).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Ended {
    /// The archive is whole; what the agent sent beside it.
    Done(PackReport, Beside),
    /// It failed; nothing of the archive had been sent, so the engine path may take over.
    NeverRan(Unavailable),
    /// It failed part-way (its message).
    Failed(String),
}

impl Packing {
    /// Removes the helper without waiting for the agent: its archive was abandoned.
    pub async fn abandon(self) {
        let _ = self.helper.remove().await;
    }

    /// Waits for the agent to exit after its archive was read to the end, logs its warnings,
    /// and says how it ended; `sent` is how many archive bytes arrived. The helper is removed
    /// either way.
    pub async fn finish(self, sent: u64) -> Result<Ended, DockerError> {
        let code = self.helper.wait().await;
        if let Some(drained) = self.drained {
            let _ = drained.await;
        }
        let _ = self.helper.remove().await;
        let code = code?;
        let heard = self.said.lock().unwrap().end();
        let message = if heard.errors.is_empty() {
            format!("the agent exited with code {code}")
        } else {
            heard.errors.join("; ")
        };
        // The agent's own errors say so; anything else (exec refused, a missing loader) means it
        // never ran.
        Ok(match (code, heard.report) {
            (0, Some(Report::Packed(r))) => Ended::Done(
                r,
                Beside {
                    index: heard.index,
                    deleted: heard.deleted,
                },
            ),
            _ if sent == 0 && !heard.ran => Ended::NeverRan(Unavailable(message)),
            _ => Ended::Failed(message),
        })
    }
}

/// Starts `agent remove` in a clean-up helper from `image` borrowing `target`'s volumes: each
/// `(root, mtime)`'s work directory is deleted, then the root gets its time back. With `wait`,
/// returns once it is done (its error if it failed); otherwise the helper is left to finish on
/// its own (the engine removes it when it exits), even if this process ends first.
pub async fn cleanup(
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    roots: &[(String, Option<i64>)],
    wait: bool,
) -> Result<(), CleanupFailed> {
    let dirs = roots
        .iter()
        .map(|(root, mtime)| super::remove::RemoveDir {
            root: root.clone(),
            name: crate::swap::WORK_DIR.into(),
            mtime: *mtime,
        })
        .collect();
    run_job(
        engine,
        target,
        image,
        Job::Remove(dirs),
        Role::Cleanup,
        wait,
    )
    .await
    .map(|_| ())
}

/// Runs the agent for `job` in a helper of `role` borrowing `target`'s volumes read-write, from
/// `image`. With `wait`, returns its report once it is done; otherwise the helper runs on alone
/// (removed by the engine when it exits) once it has its job, and `None` comes back at once.
pub async fn run_job(
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    job: Job,
    role: Role,
    wait: bool,
) -> Result<Option<Report>, CleanupFailed> {
    let exe = binary().map_err(CleanupFailed::Unavailable)?;
    check_image(engine, image)
        .await
        .map_err(CleanupFailed::Unavailable)?;
    let mut spec = agent_spec(target, image, &job, false, role, vec![]);
    spec.auto_remove = !wait;
    let unavailable = |e: DockerError| CleanupFailed::Unavailable(Unavailable(e.to_string()));
    let helper = engine.helper(spec).await.map_err(unavailable)?;
    let (mut attached, _) = launch(engine, &helper, &exe, &job, None)
        .await
        .map_err(unavailable)?;
    let _ = attached.input.shutdown().await;
    if !wait {
        helper.detach();
        return Ok(None);
    }
    let mut said = Said::new(&target.name, Counters::default());
    while let Some(Ok(item)) = attached.output.next().await {
        match item {
            LogOutput::StdErr { message } => said.stderr(&message),
            LogOutput::StdOut { message } => said.stdout(&message),
            _ => {}
        }
    }
    let code = helper.wait().await;
    let _ = helper.remove().await;
    let Heard {
        report,
        errors,
        stdout_lines,
        ..
    } = said.end();
    match code {
        Ok(0) => Ok(report),
        Ok(code) => {
            // As the engine's log showed it: the last 20 lines, stdout (a swap's steps) first.
            let mut lines = stdout_lines;
            lines.extend(errors);
            let from = lines.len().saturating_sub(20);
            Err(CleanupFailed::Failed(format!(
                "exit {code}: {}",
                lines[from..].join("; ")
            )))
        }
        Err(e) => Err(CleanupFailed::Failed(e.to_string())),
    }
}

/// Why a clean-up did not happen.
#[derive(Debug)]
pub enum CleanupFailed {
    /// The agent cannot run here; the script's `rm -rf` is the way left.
    Unavailable(Unavailable),
    /// It ran and failed (its message).
    Failed(String),
}

/// Why `agent unpack` did not stage a path.
#[derive(Debug)]
pub enum UnpackFailed {
    /// It could not run; nothing was written, and the engine path may take over.
    Unavailable(Unavailable),
    /// Reading the archive from its destination failed (the transport, not the archive).
    Source(io::Error),
    /// The archive's content was refused (a check failed, the sha256 differs).
    Refused(String),
    /// Anything else: a write into the volume failed, the engine broke off.
    Failed(String),
}

/// Runs `agent unpack` for `job` in a helper from `image` that borrows `target`'s volumes
/// read-write (plus `binds`), and feeds it `archive` from its destination, hashing what is sent:
/// the bytes must hash to the manifest's sha256 here as well as in the agent (which checks the
/// whole archive against the manifest as it stages). Returns what
/// staging wrote. The helper is removed on every way out.
pub async fn unpack(
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    binds: Vec<String>,
    job: &super::UnpackJob,
    mut archive: crate::pipeline::Feed,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Result<crate::archive::stage::Staged, UnpackFailed> {
    use tokio::io::AsyncReadExt;
    let exe = binary().map_err(UnpackFailed::Unavailable)?;
    check_image(engine, image)
        .await
        .map_err(UnpackFailed::Unavailable)?;
    let pipe = Pipe::create(engine.is_local());
    let mut binds = binds;
    binds.extend(pipe.iter().map(Pipe::bind));
    let unpack = Job::Unpack(job.clone());
    let spec = agent_spec(target, image, &unpack, false, Role::Agent, binds);
    let unavailable = |e: DockerError| UnpackFailed::Unavailable(Unavailable(e.to_string()));
    let helper = engine.helper(spec).await.map_err(unavailable)?;
    let (mut attached, piped) = launch(engine, &helper, &exe, &unpack, pipe.as_ref())
        .await
        .map_err(unavailable)?;
    let said = Arc::new(Mutex::new(Said::new(&target.name, Counters::default())));
    let mut output = Box::pin(stdout_of(attached.output, said.clone()));
    let drained = tokio::spawn(async move { while output.next().await.is_some() {} });
    // The archive follows the job on stdin, or goes through the FIFO.
    let mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>> = match piped {
        // Opening waits for the agent (or for the release when it ends without reading).
        Some(path) => match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => {
                super::pipe::widen(&f);
                let _ = attached.input.shutdown().await;
                Box::pin(f)
            }
            Err(_) => attached.input,
        },
        None => attached.input,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut source_failed = None;
    loop {
        let n = match archive.reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                source_failed = Some(e);
                break;
            }
        };
        if total < crate::fault::MIDWAY && total + n as u64 >= crate::fault::MIDWAY {
            crate::fault::point("read-midway").await;
        }
        // The agent stops reading when it fails: its own message says why.
        if input.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total += n as u64;
        sent.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let failed = match source_failed {
        Some(e) => Some(UnpackFailed::Source(e)),
        None => archive.failure().map(|f| match f {
            FeedFailure::Transport(e) => UnpackFailed::Source(e),
            FeedFailure::Content(e) => UnpackFailed::Refused(e.to_string()),
        }),
    };
    if let Some(failed) = failed {
        // Removed before the error goes back: the restore's clean-up must not meet an agent
        // still writing into the volume.
        let _ = helper.remove().await;
        drained.abort();
        return Err(failed);
    }
    let _ = input.shutdown().await;
    drop(input);
    let _ = drained.await;
    let heard = said.lock().unwrap().end();
    let staged = match heard.report {
        Some(Report::Staged(staged)) => Some(staged),
        _ => None,
    };
    let errors = heard.errors;
    // The report is the last thing the agent does, and its output ends when its process has.
    // The engine's own handling of the exit (0.6 s after staging 1 GiB of files on the test
    // machine, against 0.1 s after a swap) is then left to run beside the swap: the helper is
    // removed in the background, and on the way out if that has not finished
    // (`Engine::remove_live_helpers`); its exit code is not read. Without a report, the exit
    // code says how it ended. Nothing here makes the staged files durable: the clean-up's
    // agent syncs the volume's file system before it deletes the old contents.
    let code = if staged.is_some() && errors.is_empty() {
        // Dropping the guard removes it in the background.
        drop(helper);
        0
    } else {
        let code = helper.wait().await;
        let _ = helper.remove().await;
        code.map_err(|e| UnpackFailed::Failed(e.to_string()))?
    };
    if let Some(refused) = heard.refused {
        return Err(UnpackFailed::Refused(refused));
    }
    match (code, staged) {
        (0, Some(staged)) => {
            let (sha, stored) = archive.sha256();
            if sha != job.expect.sha256 {
                return Err(UnpackFailed::Refused(format!(
                    "sha256 mismatch: manifest says {}, the {stored} bytes read hash to {sha}",
                    job.expect.sha256
                )));
            }
            Ok(staged)
        }
        _ if !heard.ran && total == 0 => Err(UnpackFailed::Unavailable(Unavailable(format!(
            "the agent exited with code {code}: {}",
            errors.join("; ")
        )))),
        _ => Err(UnpackFailed::Failed(if errors.is_empty() {
            format!("the agent exited with code {code}")
        } else {
            errors.join("; ")
        })),
    }
}
