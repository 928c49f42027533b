//! The host side of the agent: whether this binary can run inside a helper (statically linked,
//! the image's architecture), and running `agent pack` there with its archive streamed back over
//! the engine's attach stream. Anything that stops the agent before it wrote a byte is
//! [`Unavailable`], and the caller takes the engine's archive endpoint instead.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::pipe::{self, Pipe};
use super::{PackJob, PackReport, IN_HELPER, STATS, WARN};
use crate::docker::{ContainerInfo, DockerError, Engine, Helper, HelperSpec, PathKind, Role};

/// Why the agent cannot run for this container; said in the log line that names the path taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// This binary, if it can run in any container of its architecture: statically linked (no ELF
/// interpreter to find in the image).
pub fn binary() -> Result<PathBuf, Unavailable> {
    let exe = std::env::current_exe()
        .map_err(|e| Unavailable(format!("cannot find the running binary: {e}")))?;
    let head =
        read_head(&exe).map_err(|e| Unavailable(format!("cannot read {}: {e}", exe.display())))?;
    match has_interpreter(&head) {
        Some(false) => Ok(exe),
        Some(true) => Err(Unavailable(format!(
            "{} is dynamically linked, so it cannot run inside the helper (build it static: see the README's Install)",
            exe.display()
        ))),
        None => Err(Unavailable(format!(
            "{} is not a 64-bit little-endian ELF binary",
            exe.display()
        ))),
    }
}

/// The first 64 KiB of a file: an ELF header and its program headers.
fn read_head(path: &std::path::Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(64 << 10)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Whether an ELF64 little-endian image names a program interpreter (`PT_INTERP`): dynamically
/// linked. `None` if it is not such an image or its program headers are out of reach.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().ok()?) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    let mut interp = false;
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(size)?)?;
        let kind = elf.get(at..at.checked_add(4)?)?;
        interp |= u32::from_le_bytes(kind.try_into().ok()?) == PT_INTERP;
    }
    Some(interp)
}

/// This binary's architecture as the engine names an image's (`amd64`, `arm64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Whether `image` is of this binary's architecture (an image that says nothing is taken to be).
async fn check_image(engine: &Engine, image: &str) -> Result<(), Unavailable> {
    let arch = engine
        .image_arch(image)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    if !arch.is_empty() && arch != go_arch() {
        return Err(Unavailable(format!(
            "the helper image {image} is {arch}, this dockyard is {}",
            go_arch()
        )));
    }
    Ok(())
}

/// A running `agent pack`: the helper to finish and remove, and what it says on stderr.
pub struct Packing {
    /// The helper container running the agent.
    pub helper: Helper,
    stderr: Arc<Mutex<String>>,
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

/// Starts `agent pack` for `job` in a helper borrowing `info`'s volumes read-only, from `image`.
/// Returns [`Unavailable`] (nothing left behind) when the agent cannot run there.
pub async fn start_pack(
    engine: &Engine,
    info: &ContainerInfo,
    image: &str,
    job: &PackJob,
    counters: Counters,
) -> Result<(Packing, Archive), Unavailable> {
    let exe = binary()?;
    check_image(engine, image).await?;
    let json = serde_json::to_string(job).expect("job serialises");
    let pipe = Pipe::create(engine.is_local());
    let spec = HelperSpec {
        container: info,
        volumes: true,
        read_only: true,
        image,
        command: Some(vec![IN_HELPER.into(), "agent".into(), "pack".into(), json]),
        user: None,
        role: Role::Agent,
        binds: pipe.iter().map(Pipe::bind).collect(),
        stdin: false,
        files: vec![],
        auto_remove: false,
    };
    let helper = engine
        .helper(spec)
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    let (attached, piped) = launch(engine, &helper, &exe, false, pipe.as_ref())
        .await
        .map_err(|e| Unavailable(e.to_string()))?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let output = stdout_of(attached.output, stderr.clone(), counters);
    match piped {
        Some(path) => {
            let drained = tokio::spawn(async move {
                let mut output = std::pin::pin!(output);
                while output.next().await.is_some() {}
            });
            Ok((
                Packing {
                    helper,
                    stderr,
                    drained: Some(drained),
                    _pipe: pipe,
                },
                Archive::Pipe(path),
            ))
        }
        None => Ok((
            Packing {
                helper,
                stderr,
                drained: None,
                _pipe: pipe,
            },
            Archive::Attach(Box::pin(output)),
        )),
    }
}

/// Copies the binary into the created helper, then attaches to its output (and its input, when
/// `stdin`) and starts it. With a `pipe`, says whether the helper sees the FIFO (and so the agent
/// will use it): then its host path, and a task that unblocks the FIFO if the agent ends without
/// opening it.
async fn launch(
    engine: &Engine,
    helper: &Helper,
    exe: &std::path::Path,
    stdin: bool,
    pipe: Option<&Pipe>,
) -> Result<(bollard::container::AttachContainerResults, Option<PathBuf>), DockerError> {
    let body = binary_tar(exe, !engine.is_local())
        .await
        .map_err(|e| DockerError::Api {
            action: format!("read {}", exe.display()),
            message: e.to_string(),
        })?;
    engine.upload(helper.id(), "/", body).await?;
    let piped = match pipe {
        Some(p) if engine.stat(helper.id(), pipe::IN_HELPER).await? == PathKind::Other => {
            Some(p.path())
        }
        _ => None,
    };
    let attached = helper.attach_and_start(stdin).await?;
    if let Some(path) = piped.clone() {
        let (engine, helper) = (engine.clone(), helper.id().to_string());
        tokio::spawn(async move {
            let _ = engine.wait(&helper).await;
            let _ = tokio::task::spawn_blocking(move || Pipe::release(&path)).await;
        });
    }
    tracing::debug!(
        helper = helper.id(),
        piped = piped.is_some(),
        "agent started"
    );
    Ok((attached, piped))
}

/// A one-entry tar stream holding the binary as `IN_HELPER` (mode 0755, root), read from disk as
/// it is sent; gzipped (fastest level, which the archive endpoint unpacks) for an engine on
/// another host, where the binary's ~30 MB would otherwise cross the network on every run.
async fn binary_tar(
    exe: &std::path::Path,
    compress: bool,
) -> io::Result<std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>> {
    let file = tokio::fs::File::open(exe).await?;
    let len = file.metadata().await?.len();
    let mut h = tar::Header::new_gnu();
    h.set_path(IN_HELPER.trim_start_matches('/'))?;
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(len);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let head = Bytes::copy_from_slice(h.as_bytes());
    let tail = Bytes::from(vec![0u8; ((512 - len % 512) % 512) as usize + 1024]);
    if compress {
        return Ok(Box::pin(gzipped(file.into_std().await, len, head, tail)));
    }
    let data = tokio_util::io::ReaderStream::with_capacity(
        tokio::io::AsyncReadExt::take(file, len),
        1 << 20,
    );
    let head = futures_util::stream::iter([Ok(head)]);
    let tail = futures_util::stream::iter([Ok(tail)]);
    Ok(Box::pin(head.chain(data).chain(tail)))
}

/// `head`, `len` bytes of `file` and `tail`, gzipped in a thread of its own as they are sent.
fn gzipped(
    file: std::fs::File,
    len: u64,
    head: Bytes,
    tail: Bytes,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    use std::io::{Read, Write};
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    std::thread::spawn(move || {
        let chunks = Chunks {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let written = (|| {
            let mut gz = flate2::write::GzEncoder::new(chunks, flate2::Compression::fast());
            gz.write_all(&head)?;
            let copied = io::copy(&mut file.take(len), &mut gz)?;
            if copied != len {
                return Err(io::Error::other("the binary changed size while being sent"));
            }
            gz.write_all(&tail)?;
            gz.finish()?.flush()
        })();
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

/// A writer that hands 256 KiB chunks to a channel.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// Where the agent's progress lines go: bytes it has packed so far, and the quick count of what
/// its paths hold (0 until known).
#[derive(Clone, Default)]
pub struct Counters {
    /// Uncompressed bytes packed so far.
    pub read: Arc<std::sync::atomic::AtomicU64>,
    /// What the paths hold, by the agent's quick count.
    pub total: Arc<std::sync::atomic::AtomicU64>,
}

impl Counters {
    /// Takes a progress line; whether it was one.
    fn take(&self, line: &str) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let number = |rest: &str| rest.trim().parse::<u64>().ok();
        if let Some(n) = line.strip_prefix(super::PROGRESS).and_then(number) {
            self.read.store(n, Relaxed);
        } else if let Some(n) = line.strip_prefix(super::TOTAL).and_then(number) {
            self.total.store(n, Relaxed);
        } else {
            return false;
        }
        true
    }
}

/// The agent's stdout as a byte stream; its stderr is collected into `stderr` on the way, but
/// for its progress lines, which go to `counters`.
fn stdout_of(
    output: std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    stderr: Arc<Mutex<String>>,
    counters: Counters,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    // A line may come in two frames: what is not a whole line yet waits here.
    let partial = Arc::new(Mutex::new(String::new()));
    output.filter_map(move |item| {
        let stderr = stderr.clone();
        let counters = counters.clone();
        let partial = partial.clone();
        async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(LogOutput::StdErr { message }) => {
                    let mut pending = partial.lock().unwrap();
                    pending.push_str(&String::from_utf8_lossy(&message));
                    let whole = match pending.rfind('\n') {
                        Some(i) => pending.drain(..=i).collect::<String>(),
                        None if pending.len() > 1 << 16 => std::mem::take(&mut *pending),
                        None => return None,
                    };
                    let mut text = stderr.lock().unwrap();
                    for line in whole.split_inclusive('\n') {
                        if counters.take(line) {
                            continue;
                        }
                        // Bounded: an agent failing in a loop cannot fill memory.
                        if text.len() < 1 << 20 {
                            text.push_str(line);
                        }
                    }
                    None
                }
                Ok(_) => None,
                Err(e) => Some(Err(io::Error::other(format!(
                    "the engine's attach stream broke: {e}"
                )))),
            }
        }
    })
}

/// What the agent said on stderr: its closing report, if any, and its error lines. Its warnings
/// are logged here.
fn said<T: serde::de::DeserializeOwned>(stderr: &Mutex<String>) -> (Option<T>, Vec<String>) {
    let text = stderr.lock().unwrap().clone();
    let mut report = None;
    let mut errors = Vec::new();
    for line in text.lines() {
        if let Some(w) = line.strip_prefix(WARN) {
            tracing::warn!("{w}");
        } else if let Some(s) = line.strip_prefix(STATS) {
            report = serde_json::from_str(s).ok();
        } else if !line.trim().is_empty() {
            errors.push(line.trim().to_string());
        }
    }
    (report, errors)
}

/// How `agent pack` ended.
#[derive(Debug)]
pub enum Ended {
    /// The archive is whole.
    Done(PackReport),
    /// It failed; nothing of the archive had been sent, so the engine path may take over.
    NeverRan(Unavailable),
    /// It failed part-way (its message).
    Failed(String),
}

impl Packing {
    /// Removes the helper without waiting for the agent: its archive was abandoned.
    pub async fn abandon(self, _engine: &Engine) {
        let _ = self.helper.remove().await;
    }

    /// Waits for the agent to exit after its archive was read to the end, logs its warnings,
    /// and says how it ended; `sent` is how many archive bytes arrived. The helper is removed
    /// either way.
    pub async fn finish(self, _engine: &Engine, sent: u64) -> Result<Ended, DockerError> {
        let code = self.helper.wait().await;
        if let Some(drained) = self.drained {
            let _ = drained.await;
        }
        let _ = self.helper.remove().await;
        let code = code?;
        let (report, errors) = said::<PackReport>(&self.stderr);
        let message = if errors.is_empty() {
            format!("the agent exited with code {code}")
        } else {
            errors.join("; ")
        };
        // The agent's own errors say so; anything else (exec refused, a missing loader) means it
        // never ran.
        let ran = errors.iter().any(|e| e.starts_with(super::ERROR));
        Ok(match (code, report) {
            (0, Some(r)) => Ended::Done(r),
            _ if sent == 0 && !ran => Ended::NeverRan(Unavailable(message)),
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
    let mut args = vec!["remove".to_string()];
    for (root, mtime) in roots {
        args.push(root.clone());
        args.push(crate::swap::WORK_DIR.into());
        args.push(mtime.map_or("-".to_string(), |m| m.to_string()));
    }
    run(engine, target, image, args, vec![], Role::Cleanup, wait)
        .await
        .map(|_| ())
}

/// Runs `agent ARGS…` in a helper of `role` borrowing `target`'s volumes read-write, from
/// `image`, with `files` put into the helper's own root first (a job too large for an argument).
/// With `wait`, returns what it reported (its stats line) once it is done; otherwise the helper
/// runs on alone (removed by the engine when it exits) and `None` comes back at once.
pub async fn run(
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    args: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    role: Role,
    wait: bool,
) -> Result<Option<String>, CleanupFailed> {
    let exe = binary().map_err(CleanupFailed::Unavailable)?;
    check_image(engine, image)
        .await
        .map_err(CleanupFailed::Unavailable)?;
    let mut command = vec![IN_HELPER.to_string(), "agent".into()];
    command.extend(args);
    let spec = HelperSpec {
        container: target,
        volumes: true,
        read_only: false,
        image,
        command: Some(command),
        user: None,
        role,
        binds: vec![],
        stdin: false,
        files,
        auto_remove: !wait,
    };
    let unavailable = |e: DockerError| CleanupFailed::Unavailable(Unavailable(e.to_string()));
    let helper = engine.helper(spec).await.map_err(unavailable)?;
    launch(engine, &helper, &exe, false, None)
        .await
        .map_err(unavailable)?;
    if !wait {
        helper.detach();
        return Ok(None);
    }
    let code = helper.wait().await;
    let output = engine.output_tail(helper.id()).await;
    let _ = helper.remove().await;
    match code {
        Ok(0) => Ok(output
            .lines()
            .find_map(|l| l.strip_prefix(STATS))
            .map(str::to_string)),
        Ok(code) => Err(CleanupFailed::Failed(format!(
            "exit {code}: {}",
            output
                .lines()
                .filter(|l| !l.starts_with(STATS))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
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
    mut archive: crate::destination::ObjectReader,
    sent: Arc<std::sync::atomic::AtomicU64>,
) -> Result<crate::archive::stage::Staged, UnpackFailed> {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exe = binary().map_err(UnpackFailed::Unavailable)?;
    check_image(engine, image)
        .await
        .map_err(UnpackFailed::Unavailable)?;
    let json = serde_json::to_string(job).expect("job serialises");
    let pipe = Pipe::create(engine.is_local());
    let mut binds = binds;
    binds.extend(pipe.iter().map(Pipe::bind));
    let spec = HelperSpec {
        container: target,
        volumes: true,
        read_only: false,
        image,
        command: Some(vec![
            IN_HELPER.into(),
            "agent".into(),
            "unpack".into(),
            json,
        ]),
        user: None,
        role: Role::Agent,
        binds,
        stdin: true,
        files: vec![],
        auto_remove: false,
    };
    let unavailable = |e: DockerError| UnpackFailed::Unavailable(Unavailable(e.to_string()));
    let helper = engine.helper(spec).await.map_err(unavailable)?;
    let (attached, piped) = launch(engine, &helper, &exe, true, pipe.as_ref())
        .await
        .map_err(unavailable)?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut output = Box::pin(stdout_of(
        attached.output,
        stderr.clone(),
        Counters::default(),
    ));
    let drained = tokio::spawn(async move { while output.next().await.is_some() {} });
    let mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>> = match piped {
        // Opening waits for the agent (or for the release when it ends without reading).
        Some(path) => match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => {
                super::pipe::widen(&f);
                Box::pin(f)
            }
            Err(_) => attached.input,
        },
        None => attached.input,
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut source_failed = None;
    loop {
        let n = match archive.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                source_failed = Some(e);
                break;
            }
        };
        hasher.update(&buf[..n]);
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
    if let Some(e) = source_failed {
        // Removed before the error goes back: the restore's clean-up must not meet an agent
        // still writing into the volume.
        let _ = helper.remove().await;
        drained.abort();
        return Err(UnpackFailed::Source(e));
    }
    let _ = input.shutdown().await;
    drop(input);
    let _ = drained.await;
    let (staged, errors) = said::<crate::archive::stage::Staged>(&stderr);
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
    if let Some(refused) = errors.iter().find_map(|e| e.strip_prefix(super::REFUSED)) {
        return Err(UnpackFailed::Refused(refused.to_string()));
    }
    let ran = errors.iter().any(|e| e.starts_with(super::ERROR));
    match (code, staged) {
        (0, Some(staged)) => {
            let sha = hex::encode(hasher.finalize());
            if sha != job.expect.sha256 {
                return Err(UnpackFailed::Refused(format!(
                    "sha256 mismatch: manifest says {}, the {total} bytes sent to the agent hash to {sha}",
                    job.expect.sha256
                )));
            }
            Ok(staged)
        }
        _ if !ran && total == 0 => Err(UnpackFailed::Unavailable(Unavailable(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_and_a_forged_header_are_read_right() {
        let head = read_head(&std::env::current_exe().unwrap()).unwrap();
        // Built static (.cargo/config.toml), as the agent must be.
        assert_eq!(has_interpreter(&head), Some(false));
        let dynamic = read_head(std::path::Path::new("/bin/sh")).unwrap();
        assert_eq!(has_interpreter(&dynamic), Some(true));
        assert_eq!(has_interpreter(b"#!/bin/sh\n"), None);
        // A header whose program headers lie beyond what was read.
        let mut forged = head.clone();
        forged[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(has_interpreter(&forged), None);
    }
}
