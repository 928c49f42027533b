//! One object being written over SSH: a remote `cat` into a dot-named temp file (under `flock`
//! where the remote has it), then a size check, a sync and a rename on commit.

use std::process::Stdio;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::task::JoinHandle;

use super::super::{DestError, Destination, Upload};
use super::session::collect_stderr;
use super::{SshDir, TEMP_SUFFIX};
use crate::shell;

impl SshDir {
    /// Starts writing object `name` into a temp file next to it.
    pub(super) async fn start_upload(&self, name: &str) -> Result<Box<dyn Upload>, DestError> {
        self.check_name(name)?;
        let nonce: u32 = rand::random();
        let (parent, file) = super::super::split_name(name);
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
}

/// Grows a pipe to 1 MiB (Linux's default limit for unprivileged processes) from 64 KiB, so each
/// 256 KiB chunk goes to ssh in one or two writes instead of several wake-ups. Best effort.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: F_SETPIPE_SZ on a valid fd changes only the pipe's capacity.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
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
