//! A directory on another host, reached through the system OpenSSH client so that what the operator
//! already configured applies: `~/.ssh/config` (Host aliases, IdentityFile, ProxyJump), the agent
//! and `known_hosts`. Host keys are checked strictly (`StrictHostKeyChecking=yes`), never accepted.
//!
//! Every operation is one run of `src/shell/remote.sh` (`ssh <host> /bin/sh -c <script>
//! dockyard-remote OP DIR ARG...`, each word quoted by shell-words for the remote shell), all over
//! one control-master connection per run. An upload streams into `cat` writing a
//! dot-named temp file under `flock` (when the remote has it); commit checks the size, syncs and
//! renames. A killed run's `cat` ends when its pipe closes, so its lock frees and the next run can
//! tell the temp file is stale.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::{DestError, Destination, ObjectReader, Upload};
use crate::shell::{self, Script};

const TEMP_SUFFIX: &str = ".partial";
/// Exit code the scripts use for "no such object".
/// remote.sh's exit code for "no such object".
const NOT_FOUND: i32 = 44;
/// Stderr kept from one ssh run, for messages.
const STDERR_LIMIT: usize = 8 * 1024;

/// Splits `get-small`'s output into `count` objects: a size line then that many bytes, or `-`.
/// Whatever does not parse (a file replaced mid-read) and everything after it is `None`.
fn split_frames(mut out: &[u8], count: usize) -> Vec<Option<Vec<u8>>> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        let Some(end) = out.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &out[..end];
        out = &out[end + 1..];
        if line == b"-" {
            frames.push(None);
            continue;
        }
        let Some(size) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&n| n <= out.len())
        else {
            break;
        };
        frames.push(Some(out[..size].to_vec()));
        out = &out[size..];
    }
    if !out.is_empty() && frames.len() == count {
        // Trailing bytes: the framing cannot be trusted.
        frames.clear();
    }
    frames.resize(count, None);
    frames
}

/// Where an `ssh://[user@]host[:port]/path` URL points, plus the client config to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    /// Login user; `None` leaves it to the ssh config.
    pub user: Option<String>,
    /// Host name or `Host` alias from the ssh config.
    pub host: String,
    /// Port; `None` leaves it to the ssh config.
    pub port: Option<u16>,
    /// Remote directory: absolute, or relative to the login directory (`ssh://host/~/backups`).
    pub path: String,
    /// An ssh config file to use instead of `~/.ssh/config` (`ssh -F`).
    pub config: Option<PathBuf>,
}

impl SshSpec {
    /// Parses the part after `ssh://`.
    pub fn parse(url: &str, rest: &str, config: Option<PathBuf>) -> Result<SshSpec, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path.strip_prefix("/~/") {
            Some(relative) => relative.trim_end_matches('/').to_string(),
            None => path.trim_end_matches('/').to_string(),
        };
        if path.is_empty() || path == "~" {
            return Err(format!(
                "{url:?}: give the remote directory, e.g. ssh://backup@nas/srv/backups or ssh://nas/~/backups"
            ));
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), Some(port))
            }
            _ => (hostport, None),
        };
        if host.is_empty() || host.starts_with('-') || user.as_deref() == Some("") {
            return Err(format!("{url:?}: expected ssh://[user@]host[:port]/path"));
        }
        Ok(SshSpec {
            user,
            host: host.to_string(),
            port,
            path,
            config,
        })
    }
}

impl std::fmt::Display for SshSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if self.path.is_empty() {
            // A host only (a remote engine's DOCKER_HOST), no directory.
            Ok(())
        } else if self.path.starts_with('/') {
            write!(f, "{}", self.path)
        } else {
            write!(f, "/~/{}", self.path)
        }
    }
}

/// A remote directory destination.
pub struct SshDir {
    spec: SshSpec,
    master: Arc<Master>,
}

/// One OpenSSH control master per destination, so the several commands of a run share one
/// connection (a new one costs a key exchange and an authentication each time). It runs in the
/// background with `ControlPersist`, so even if dockyard is killed it exits on its own shortly.
#[derive(Default)]
struct Master {
    socket: OnceCell<Result<PathBuf, (Option<i32>, String)>>,
    dir: Mutex<Option<PathBuf>>,
}

/// How long an idle control master outlives its last command (and a killed dockyard).
const CONTROL_PERSIST: &str = "ControlPersist=30";

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(Ok(socket)) = self.socket.get() {
            let _ = std::process::Command::new("ssh")
                .arg("-S")
                .arg(socket)
                .args(["-O", "exit", "dockyard-master"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(dir) = self.dir.lock().unwrap().take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl SshDir {
    /// A destination for `spec` (the directory is created on [`Destination::prepare`]).
    pub fn new(spec: SshSpec) -> Self {
        SshDir {
            spec,
            master: Arc::new(Master::default()),
        }
    }

    /// Another handle on the same destination and connection.
    fn share(&self) -> SshDir {
        SshDir {
            spec: self.spec.clone(),
            master: self.master.clone(),
        }
    }

    /// ssh with the options every invocation gets.
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        // BatchMode: never prompt (cron has no one to answer). StrictHostKeyChecking=yes overrides
        // accept-new or no in the operator's config: dockyard never trusts a host key on its own.
        cmd.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ]);
        if let Some(config) = &self.spec.config {
            cmd.arg("-F").arg(config);
        }
        if let Some(port) = self.spec.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &self.spec.user {
            cmd.arg("-l").arg(user);
        }
        cmd
    }

    /// Starts the control master (once) and returns its socket; connection and authentication
    /// errors surface here, with ssh's own words.
    async fn control(&self) -> Result<PathBuf, DestError> {
        let started = self.master.socket.get_or_init(|| self.start_master()).await;
        match started {
            Ok(socket) => Ok(socket.clone()),
            Err((code, stderr)) => Err(self.failure("connect", *code, stderr)),
        }
    }

    async fn start_master(&self) -> Result<PathBuf, (Option<i32>, String)> {
        remove_stale_control_dirs();
        let nonce: u32 = rand::random();
        let me = crate::owner::Owner::current();
        let dir =
            std::env::temp_dir().join(format!("dockyard-ssh-{}-{}-{nonce:08x}", me.pid, me.start));
        let local =
            |e: std::io::Error| (None, format!("cannot prepare the ssh control socket: {e}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(local)?;
        *self.master.dir.lock().unwrap() = Some(dir.clone());
        let socket = dir.join("cm");
        // The backgrounded master keeps its stderr open, so it goes to a file, not a pipe.
        let err_path = dir.join("master.err");
        let err_file = std::fs::File::create(&err_path).map_err(local)?;
        let status = self
            .ssh()
            .args(["-f", "-N", "-M", "-o", CONTROL_PERSIST, "-S"])
            .arg(&socket)
            .arg("--")
            .arg(&self.spec.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .status()
            .await
            .map_err(|e| (None, format!("cannot run the ssh client ({e}); install OpenSSH's client (Debian: openssh-client)")))?;
        if status.success() {
            Ok(socket)
        } else {
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            Err((status.code(), text))
        }
    }

    /// The command that runs `script` on the host through the shared connection. ssh hands the
    /// remote shell one command line, so each word is quoted for it (shell-words).
    async fn command(&self, script: &Script) -> Result<Command, DestError> {
        self.remote_command(&script.argv()).await
    }

    /// The command that runs `argv` on the host through the shared connection (connecting first,
    /// so host key and authentication failures surface here with ssh's own words).
    pub async fn remote_command(&self, argv: &[impl AsRef<str>]) -> Result<Command, DestError> {
        let socket = self.control().await?;
        let mut cmd = self.ssh();
        cmd.arg("-S")
            .arg(socket)
            .args(["-o", "ControlMaster=no", "--"])
            .arg(&self.spec.host)
            .arg(shell_words::join(argv));
        cmd.kill_on_drop(true);
        Ok(cmd)
    }

    /// Runs `script` remotely and returns its stdout, or an error naming what failed.
    async fn run(&self, action: &str, script: &Script) -> Result<String, DestError> {
        let out = self
            .command(script)
            .await?
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| self.spawn_error(e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(self.failure(action, out.status.code(), &stderr))
    }

    fn spawn_error(&self, e: std::io::Error) -> DestError {
        DestError::Unusable {
            dest: self.describe(),
            message: format!("cannot run the ssh client ({e}); install OpenSSH's client (Debian: openssh-client)"),
        }
    }

    /// Turns a failed run into a message that says what to check.
    fn failure(&self, action: &str, code: Option<i32>, stderr: &str) -> DestError {
        let host = &self.spec.host;
        let detail = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| {
                !l.is_empty()
                    && !l.starts_with("@@@")
                    && !l.starts_with("Warning: Permanently added")
            })
            .unwrap_or("")
            .to_string();
        let has = |s: &str| stderr.contains(s);
        let dest = self.describe();
        let auth = |message| DestError::Authentication {
            dest: dest.clone(),
            message,
        };
        let unreachable = |message| DestError::Unreachable {
            dest: dest.clone(),
            message,
        };
        let message = if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || has("Host key for") && has("has changed")
        {
            return auth(format!("the host key of {host} has CHANGED since it was recorded in known_hosts; this may be an attack or a reinstalled host. Verify it out of band, then update known_hosts (ssh-keygen -R {host}); dockyard never accepts host keys on its own"));
        } else if has("Host key verification failed") || has("No ") && has("host key is known") {
            return auth(format!("the host key of {host} is not in known_hosts; verify its fingerprint and add it (e.g. ssh-keyscan {host} >> ~/.ssh/known_hosts after checking), or connect once with ssh by hand; dockyard never accepts host keys on its own"));
        } else if has("Permission denied (") || has("Too many authentication failures") {
            return auth(format!("authentication to {host} failed ({detail}); check the user, the key (IdentityFile in the ssh config), the agent, and the remote authorized_keys"));
        } else if has("Could not resolve hostname") {
            return unreachable(format!("cannot resolve host name {host:?}; check the URL and the Host entries of the ssh config"));
        } else if has("Connection refused")
            || has("Connection timed out")
            || has("No route to host")
            || has("Network is unreachable")
            || has("Connection closed by")
            || has("Connection reset")
        {
            return unreachable(format!("cannot reach {host} ({detail}); check that the host is up, the port, and the network"));
        } else if code == Some(255) {
            format!("ssh to {host} failed: {detail}")
        } else if code == Some(NOT_FOUND) {
            return DestError::NotFound {
                dest: self.describe(),
                name: action.to_string(),
            };
        } else if detail.contains("Permission denied") || detail.contains("Read-only") {
            return DestError::AccessDenied {
                dest,
                message: format!("cannot {action} on {host}: {detail}; check that the remote user may write there"),
            };
        } else {
            format!("cannot {action} on {host}: {detail}")
        };
        DestError::Unusable { dest, message }
    }

    fn dir(&self) -> &str {
        &self.spec.path
    }

    fn check_name(&self, name: &str) -> Result<(), DestError> {
        super::check_name(self, name)
    }
}

#[async_trait]
impl Destination for SshDir {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    async fn prepare(&self) -> Result<(), DestError> {
        // The directory (and any parent made here) is private whatever the remote umask; every
        // value in the script is quoted.
        self.run(
            "prepare the remote directory",
            &shell::remote("prepare", self.dir(), &[]),
        )
        .await
        .map(|_| ())
    }

    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        self.check_name(name)?;
        let nonce: u32 = rand::random();
        let (parent, file) = super::split_name(name);
        let temp = format!(
            "{parent}{}.{file}.{}-{}-{nonce:08x}{TEMP_SUFFIX}",
            if parent.is_empty() { "" } else { "/" },
            crate::owner::hostname(),
            std::process::id()
        );
        let script = shell::remote("put", self.dir(), &[&temp, parent]);
        let mut child = self
            .command(&script)
            .await?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdin = child.stdin.take();
        if let Some(pipe) = &stdin {
            widen_pipe(pipe);
        }
        let stderr = child.stderr.take().map(collect_stderr);
        Ok(Box::new(SshUpload {
            dir: self.share(),
            child: Some(child),
            stdin,
            stderr,
            temp,
            name: name.to_string(),
            size: 0,
        }))
    }

    async fn get_small(&self, names: &[String], limit: u64) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![None; names.len()];
        if names.iter().any(|n| self.check_name(n).is_err()) {
            return out;
        }
        let mut args = vec![limit.to_string()];
        args.extend(names.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let script = shell::remote("get-small", self.dir(), &args);
        let Ok(mut cmd) = self.command(&script).await else {
            return out;
        };
        let Ok(done) = cmd.stdin(Stdio::null()).output().await else {
            return out;
        };
        if done.status.success() {
            for (slot, bytes) in out.iter_mut().zip(split_frames(&done.stdout, names.len())) {
                *slot = bytes;
            }
        }
        out
    }

    async fn get(&self, name: &str) -> Result<ObjectReader, DestError> {
        self.check_name(name)?;
        let script = shell::remote("get", self.dir(), &[name]);
        let mut child = self
            .command(&script)
            .await?
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().map(collect_stderr);
        Ok(Box::new(SshReader {
            dir: self.share(),
            name: name.to_string(),
            stdout,
            finish: Some(Box::pin(async move {
                let status = child.wait().await;
                let err = match stderr {
                    Some(h) => h.await.unwrap_or_default(),
                    None => String::new(),
                };
                (status, err)
            })),
        }))
    }

    async fn exists(&self) -> Result<bool, DestError> {
        match self
            .run(
                "look at the remote directory",
                &shell::remote("exists", self.dir(), &[]),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(DestError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list(&self) -> Result<Vec<String>, DestError> {
        let out = self
            .run(
                "list the remote directory",
                &shell::remote("list", self.dir(), &[]),
            )
            .await?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('.'))
            .map(str::to_string)
            .collect())
    }

    async fn list_under(&self, prefix: &str) -> Result<Vec<String>, DestError> {
        self.check_name(prefix)?;
        let out = self
            .run(
                "list the remote directory tree",
                &shell::remote("list-under", self.dir(), &[prefix]),
            )
            .await?;
        Ok(out
            .lines()
            .filter(|l| super::visible(l))
            .map(str::to_string)
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), DestError> {
        self.check_name(name)?;
        self.run(
            &format!("delete {name}"),
            &shell::remote("delete", self.dir(), &[name]),
        )
        .await
        .map(|_| ())
    }

    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
        let script = shell::remote("remove-stale", self.dir(), &[TEMP_SUFFIX]);
        let out = self
            .run("clean up temp files of earlier runs", &script)
            .await?;
        let removed: Vec<String> = out.lines().map(str::to_string).collect();
        for f in &removed {
            tracing::warn!(dest = %self.describe(), file = %f, "removed temp file left by a run that is gone");
        }
        Ok(removed)
    }
}

/// Grows a pipe to 1 MiB (Linux's default limit for unprivileged processes) from 64 KiB, so each
/// 256 KiB chunk goes to ssh in one or two writes instead of several wake-ups. Best effort.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a valid fd changes only the pipe's capacity.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Removes control-socket directories of dockyard runs that are gone (killed before their
/// [`Master`] was dropped); their masters have exited by `ControlPersist` already or soon will.
fn remove_stale_control_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("dockyard-ssh-") else {
            continue;
        };
        let mut parts = rest.split('-');
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let start = parts
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        if let Some(pid) = pid {
            let owner = crate::owner::Owner {
                pid,
                start,
                ..crate::owner::Owner::current()
            };
            if owner.liveness(0) == crate::owner::Liveness::Gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Reads a child's stderr in the background (so a chatty child cannot block on a full pipe),
/// keeping the first [`STDERR_LIMIT`] bytes.
fn collect_stderr(mut stderr: tokio::process::ChildStderr) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let room = STDERR_LIMIT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

struct SshUpload {
    dir: SshDir,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    temp: String,
    name: String,
    size: u64,
}

impl SshUpload {
    /// Waits for the streaming `cat` and turns a failure into a message.
    async fn finish_stream(&mut self) -> Result<(), DestError> {
        drop(self.stdin.take());
        let status = match self.child.take() {
            Some(mut c) => c.wait().await.ok(),
            None => None,
        };
        let stderr = match self.stderr.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        match status {
            Some(s) if s.success() => Ok(()),
            s => Err(self.dir.failure(
                &format!("write {}", self.temp),
                s.and_then(|s| s.code()),
                &stderr,
            )),
        }
    }

    async fn remove_temp(&self) {
        let script = shell::remote("remove-temp", self.dir.dir(), &[&self.temp]);
        if let Err(e) = self.dir.run("remove the temp file", &script).await {
            tracing::warn!(error = %e, "could not remove the remote temp file; the next run will");
        }
    }
}

#[async_trait]
impl Upload for SshUpload {
    async fn write(&mut self, chunk: Bytes) -> Result<(), DestError> {
        let stdin = self.stdin.as_mut().expect("write after commit");
        if stdin.write_all(&chunk).await.is_err() {
            // The pipe broke: ssh or the remote side is gone; its stderr says why.
            return Err(match self.finish_stream().await {
                Err(e) => e,
                Ok(()) => DestError::Unusable {
                    dest: self.dir.describe(),
                    message: "the ssh connection closed while writing".into(),
                },
            });
        }
        self.size += chunk.len() as u64;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, DestError> {
        if let Err(e) = self.finish_stream().await {
            self.remove_temp().await;
            return Err(e);
        }
        // The size check catches a stream cut short; sync is best effort (busybox's takes no file).
        let size = self.size.to_string();
        let script = shell::remote("finish", self.dir.dir(), &[&self.temp, &self.name, &size]);
        if let Err(e) = self
            .dir
            .run(&format!("finish {}", self.name), &script)
            .await
        {
            self.remove_temp().await;
            return Err(e);
        }
        Ok(self.size)
    }

    async fn abort(mut self: Box<Self>) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.remove_temp().await;
    }
}

type Finish = Pin<
    Box<
        dyn std::future::Future<Output = (std::io::Result<std::process::ExitStatus>, String)>
            + Send,
    >,
>;

/// The stdout of a remote `cat`; at its end, the exit status is checked so a failed read is an
/// error rather than a short object.
struct SshReader {
    dir: SshDir,
    name: String,
    stdout: ChildStdout,
    finish: Option<Finish>,
}

impl AsyncRead for SshReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {}
            other => return other,
        }
        // End of stream: did the remote side succeed?
        let Some(finish) = self.finish.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (status, stderr) = match finish.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.finish = None;
        match status {
            Ok(s) if s.success() => Poll::Ready(Ok(())),
            Ok(s) => {
                let e = self
                    .dir
                    .failure(&format!("read {}", self.name), s.code(), &stderr);
                let kind = if matches!(e, DestError::NotFound { .. }) {
                    std::io::ErrorKind::NotFound
                } else {
                    std::io::ErrorKind::Other
                };
                // The destination's own error rides inside, said once by `DestError::reading`.
                Poll::Ready(Err(std::io::Error::new(kind, e)))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rest: &str) -> Result<SshSpec, String> {
        SshSpec::parse(&format!("ssh://{rest}"), rest, None)
    }

    #[test]
    fn get_small_frames_split_and_a_broken_one_falls_back() {
        let out = b"3\nabc-\n0\n2\nxy";
        assert_eq!(
            split_frames(out, 4),
            [
                Some(b"abc".to_vec()),
                None,
                Some(vec![]),
                Some(b"xy".to_vec())
            ]
        );
        // A size line the bytes do not match: that one and the rest are read one by one.
        assert_eq!(
            split_frames(b"1\na9\nxy", 3),
            [Some(b"a".to_vec()), None, None]
        );
        assert_eq!(split_frames(b"1\nab", 1), [None]);
    }

    #[test]
    fn parses_user_host_port_and_path() {
        let s = parse("backup@nas.example:2222/srv/backups/").unwrap();
        assert_eq!(s.user.as_deref(), Some("backup"));
        assert_eq!((s.host.as_str(), s.port), ("nas.example", Some(2222)));
        assert_eq!(s.path, "/srv/backups");
        assert_eq!(s.to_string(), "ssh://backup@nas.example:2222/srv/backups");
    }

    #[test]
    fn alias_without_user_or_port_and_home_relative_path() {
        let s = parse("nas/~/backups").unwrap();
        assert_eq!(
            (s.user.as_deref(), s.port, s.path.as_str()),
            (None, None, "backups")
        );
        assert_eq!(s.to_string(), "ssh://nas/~/backups");
    }

    #[test]
    fn rejects_missing_path_bad_port_and_option_like_hosts() {
        assert!(parse("nas").unwrap_err().contains("remote directory"));
        assert!(parse("nas:abc/x").unwrap_err().contains("port"));
        assert!(parse("-oProxyCommand=x/y").is_err());
    }
}
