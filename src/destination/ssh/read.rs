//! Reading objects over SSH: one object streamed from a remote `cat` whose exit status is checked
//! at the end, or several small ones (manifests) framed in one remote command.

use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::ChildStdout;

use super::super::{DestError, ObjectReader};
use super::session::collect_stderr;
use super::SshDir;
use crate::shell;

impl SshDir {
    /// Reads several small objects in one remote command; `None` for any it did not read.
    pub(super) async fn read_small(&self, names: &[String], limit: u64) -> Vec<Option<Vec<u8>>> {
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

    /// Streams object `name`.
    pub(super) async fn open_reader(&self, name: &str) -> Result<ObjectReader, DestError> {
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
}

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
}
