//! The connection of an SSH destination: one OpenSSH control master per destination, shared by
//! every command of a run, and the way each remote operation runs through it (one `remote.sh`
//! script, each word quoted for the remote shell).

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::super::{DestError, Destination};
use super::SshDir;
use crate::shell::Script;

/// Stderr kept from one ssh run, for messages.
const STDERR_LIMIT: usize = 8 * 1024;

/// One OpenSSH control master per destination, so the several commands of a run share one
/// connection (a new one costs a key exchange and an authentication each time). It runs in the
/// background with `ControlPersist`, so even if dockyard is killed it exits on its own shortly.
#[derive(Default)]
pub(super) struct Master {
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
    pub(super) async fn command(&self, script: &Script) -> Result<Command, DestError> {
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
    pub(super) async fn run(&self, action: &str, script: &Script) -> Result<String, DestError> {
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

    pub(super) fn spawn_error(&self, e: std::io::Error) -> DestError {
        DestError::Unusable {
            dest: self.describe(),
            message: format!("cannot run the ssh client ({e}); install OpenSSH's client (Debian: openssh-client)"),
        }
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
pub(super) fn collect_stderr(mut stderr: tokio::process::ChildStderr) -> JoinHandle<String> {
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
