//! Commands run in a container (`docker exec`) or in a helper (a script run to its end), and
//! their output, kept bounded: a caller that only shows what a command said gets its last
//! [`TAIL`] bytes, and one that parses standard output names a bound past which the call fails
//! ([`DockerError::OutputTooLarge`]) instead of growing a buffer for as long as the command
//! (in a container whose app may be hostile) writes. Every run returns one [`ExecOutput`].

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;

use super::error::api;
use super::helper::{Helper, HelperSpec, Role};
use super::{DockerError, Engine};
use crate::shell::Script;

/// How much of what a command said is kept for messages: 64 KiB, far more than the lines an
/// error shows, and a bound however long a command in a hostile container talks.
pub const TAIL: usize = 64 << 10;

/// The bound on a standard output dockyard parses whole (a listing of log files, of open files):
/// 16 MiB, a listing of some 100,000 names.
pub const PARSED: usize = 16 << 20;

/// What a command said and how it ended.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Its exit code (-1 if the engine did not say).
    pub code: i64,
    /// Its standard output: whole with [`Capture::Parse`], its tail with [`Capture::Tails`],
    /// empty with [`Capture::Merged`].
    pub stdout: Vec<u8>,
    /// The tail of its standard error; with [`Capture::Merged`], of both streams as they came.
    pub stderr_tail: String,
}

/// How much of a command's output its caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Standard output whole, for a caller that parses it; past this many bytes the call fails.
    /// The tail of standard error.
    Parse(usize),
    /// The tails of standard output and standard error (output that is only shown, or ignored).
    Tails,
    /// The tail of both streams as they came, as a terminal would show them (a hook's output).
    Merged,
}

impl Engine {
    /// Runs the helper `spec` describes (it has a script) to its end, removes it, and returns
    /// what it said.
    pub async fn run_once(
        &self,
        spec: HelperSpec<'_>,
        capture: Capture,
    ) -> Result<ExecOutput, DockerError> {
        let (out, helper) = self.run_helper_script(spec, capture).await?;
        helper.remove().await?;
        Ok(out)
    }

    /// As [`Engine::run_once`], keeping the exited helper (archive reads still work on it) in
    /// its guard; it is removed, whatever happens, only if the run itself fails.
    pub async fn run_kept(
        &self,
        spec: HelperSpec<'_>,
        capture: Capture,
    ) -> Result<(ExecOutput, Helper), DockerError> {
        self.run_helper_script(spec, capture).await
    }

    /// Creates the helper, runs it to its end (within the helper timeout, but for a swap) and
    /// reads its output; on failure it is removed before the error comes back.
    async fn run_helper_script(
        &self,
        spec: HelperSpec<'_>,
        capture: Capture,
    ) -> Result<(ExecOutput, Helper), DockerError> {
        let container = spec.container.name.clone();
        let role = spec.role;
        let helper = self.helper(spec).await?;
        // A swap is never cut short (a half-swapped volume is worse than a late one); every
        // other script gets a deadline, so a FIFO or a hung process in a volume fails its job
        // instead of blocking every job after it.
        let collect = self.run_collect(helper.id(), &container, capture);
        let ran = if Role::never_killed(role.label()) {
            collect.await
        } else {
            match tokio::time::timeout(self.helper_timeout, collect).await {
                Ok(ran) => ran,
                Err(_) => Err(DockerError::HelperTimedOut {
                    container,
                    limit: humantime::format_duration(self.helper_timeout).to_string(),
                }),
            }
        };
        match ran {
            Ok(out) => Ok((out, helper)),
            Err(e) => {
                helper.remove().await?;
                Err(e)
            }
        }
    }

    /// Starts helper `id`, waits for it, and reads its output from the engine's log.
    async fn run_collect(
        &self,
        id: &str,
        container: &str,
        capture: Capture,
    ) -> Result<ExecOutput, DockerError> {
        self.start(id).await?;
        let code = self.wait(id).await?;
        let logs = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(id, Some(logs));
        let mut said = Collector::new(capture);
        while let Some(item) = stream.next().await {
            said.take(item.map_err(|e| api(format!("read the output of helper {id}"), e))?);
        }
        said.finish(code, || {
            format!("the helper script for container {container:?}")
        })
    }

    /// Runs `script` by `docker exec` in the running `container` as `user` (the image's user if
    /// `None`) and returns what it said, as much as `capture` asks.
    pub async fn run_in(
        &self,
        container: &str,
        script: &Script,
        user: Option<&str>,
        capture: Capture,
    ) -> Result<ExecOutput, DockerError> {
        let what = format!("run {} in container {container:?}", script.name);
        let argv = script.argv();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run_exec(container, argv, user, capture, what).await
    }

    /// Runs `argv` by `docker exec` in the running `container` as `user` (the image's if `None`)
    /// and returns what it said, as much as `capture` asks.
    pub async fn run_argv(
        &self,
        container: &str,
        argv: &[String],
        user: Option<&str>,
        capture: Capture,
    ) -> Result<ExecOutput, DockerError> {
        let what = format!(
            "run {:?} in container {container:?}",
            argv.get(3).unwrap_or(&argv[0])
        );
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.run_exec(container, argv, user, capture, what).await
    }

    /// Runs `command` with `/bin/sh -c` in `container` (a hook, a reopen command): the tail of
    /// both streams as they came ([`Capture::Merged`]).
    pub async fn exec_shell(
        &self,
        container: &str,
        command: &str,
    ) -> Result<ExecOutput, DockerError> {
        let what = format!("run {command:?} in container {container:?}");
        let argv = vec!["/bin/sh", "-c", command];
        self.run_exec(container, argv, None, Capture::Merged, what)
            .await
    }

    /// One `docker exec` of `argv`; `what` names it in errors.
    async fn run_exec(
        &self,
        container: &str,
        argv: Vec<&str>,
        user: Option<&str>,
        capture: Capture,
        what: String,
    ) -> Result<ExecOutput, DockerError> {
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv),
                    user,
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api(what.clone(), e))?;
        let mut said = Collector::new(capture);
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api(what.clone(), e))?
        {
            while let Some(Ok(chunk)) = output.next().await {
                said.take(chunk);
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| api(what.clone(), e))?;
        said.finish(inspect.exit_code.unwrap_or(-1), || what)
    }
}

/// A command running in a container by `docker exec` whose output is streamed (a dump, a load):
/// its exit code is asked once its output ended.
pub struct Running {
    id: String,
    /// The container it runs in, for messages.
    container: String,
    stderr: std::sync::Arc<std::sync::Mutex<Bounded>>,
}

/// A running command's standard output, chunk by chunk as the engine sends it.
pub type Stdout = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static>,
>;

/// A running command's standard input.
pub type Stdin = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

impl Running {
    /// The last lines it wrote on standard error (its last [`TAIL`] bytes), trimmed.
    pub fn stderr_tail(&self) -> String {
        let buf = self.stderr.lock().expect("not poisoned");
        last_lines(&String::from_utf8_lossy(&buf.buf))
    }
}

/// The last 5 lines of what a command in a container said, joined by ` | `, for a message. What
/// a hostile container wrote reaches terminals, logs and notifications: its control characters
/// (escape sequences) are shown, not sent.
pub fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(5)..]
        .iter()
        .map(|l| {
            l.chars()
                .map(|c| match c.is_control() {
                    true => c.escape_default().to_string(),
                    false => c.to_string(),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

impl Engine {
    /// Starts `argv` in the running `container` as `user` (the image's if `None`): its standard
    /// output as a stream the caller reads at its own pace (the command waits while it does
    /// not), its standard error's tail kept in [`Running`], and with `stdin` a writer to its
    /// standard input (shut it down to end that input).
    pub async fn exec_streaming(
        &self,
        container: &str,
        argv: Vec<String>,
        user: Option<&str>,
        stdin: bool,
    ) -> Result<(Running, Stdout, Option<Stdin>), DockerError> {
        let what = || {
            format!(
                "run {:?} in container {container:?}",
                argv.get(3).unwrap_or(&argv[0])
            )
        };
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv.iter().map(String::as_str).collect()),
                    user,
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| api(what(), e))?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| api(what(), e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(DockerError::Api {
                action: what(),
                message: "the engine ran it detached".into(),
            });
        };
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Bounded::tail(TAIL)));
        let tail = stderr.clone();
        let stdout = output.filter_map(move |item| {
            let out = match item {
                Ok(LogOutput::StdErr { message }) => {
                    tail.lock().expect("not poisoned").push(&message);
                    None
                }
                Ok(other) => Some(Ok(other.into_bytes())),
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            };
            std::future::ready(out)
        });
        let running = Running {
            id: exec.id,
            container: container.to_string(),
            stderr,
        };
        Ok((running, Box::pin(stdout), stdin.then_some(input)))
    }

    /// How long a script helper (and a dump's silence) may last: `--helper-timeout`.
    pub fn helper_timeout(&self) -> std::time::Duration {
        self.helper_timeout
    }

    /// Stops `running` if it still runs (the dump tool of a backup that failed), so it does not
    /// hold its database's snapshot to its end: SIGTERM to its process, on a local engine (the
    /// engine says only its host PID); on a remote one it is left to end, and the log says so.
    /// The process is held by a pidfd opened before the engine is asked again whether it runs,
    /// so a PID reused meanwhile is never signalled.
    pub async fn stop_running(&self, running: &Running) {
        let container = &running.container;
        let pid = match self.docker.inspect_exec(&running.id).await {
            Ok(i) if i.running == Some(true) => i.pid.filter(|p| *p > 0),
            _ => return,
        };
        let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
            return;
        };
        if !self.is_local() {
            tracing::warn!(container = %container, "a dump tool of this failed backup still runs in the container (a remote engine's process cannot be signalled); it ends on its own");
            return;
        }
        // SAFETY: pidfd_open(2) with a PID and no flags; the result is a descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return;
        }
        // SAFETY: a descriptor this function just opened and owns.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let still = matches!(
            self.docker.inspect_exec(&running.id).await,
            Ok(i) if i.running == Some(true) && i.pid == Some(i64::from(pid))
        );
        if still {
            use std::os::fd::AsRawFd;
            // SAFETY: pidfd_send_signal(2) on a pidfd of the exec's process, SIGTERM, no info.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGTERM,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            tracing::info!(container = %container, pid, "stopped the dump tool of this failed backup");
        }
    }

    /// The exit code of `running`, once its output ended (asked again while the engine still
    /// says it runs, for up to ten seconds).
    pub async fn exit_code(&self, running: &Running) -> Result<i64, DockerError> {
        let what = || {
            format!(
                "say how a command in container {:?} ended (exec {})",
                running.container, running.id
            )
        };
        for _ in 0..1000 {
            let inspect = self
                .docker
                .inspect_exec(&running.id)
                .await
                .map_err(|e| api(what(), e))?;
            if inspect.running != Some(true) {
                return Ok(inspect.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Err(DockerError::Api {
            action: what(),
            message: "the command still runs ten seconds after its output ended".into(),
        })
    }
}

/// The output of one run, as it arrives, kept as its [`Capture`] says.
struct Collector {
    capture: Capture,
    stdout: Bounded,
    tail: Bounded,
}

impl Collector {
    fn new(capture: Capture) -> Collector {
        let stdout = match capture {
            Capture::Parse(limit) => Bounded::head(limit),
            Capture::Tails | Capture::Merged => Bounded::tail(TAIL),
        };
        Collector {
            capture,
            stdout,
            tail: Bounded::tail(TAIL),
        }
    }

    fn take(&mut self, chunk: LogOutput) {
        match chunk {
            _ if self.capture == Capture::Merged => self.tail.push(&chunk.into_bytes()),
            LogOutput::StdErr { message } => self.tail.push(&message),
            other => self.stdout.push(&other.into_bytes()),
        }
    }

    /// The output; an error (naming the command as `what` says) if standard output, parsed by
    /// the caller, ran past its bound.
    fn finish(self, code: i64, what: impl FnOnce() -> String) -> Result<ExecOutput, DockerError> {
        if let Capture::Parse(limit) = self.capture {
            if self.stdout.cut {
                return Err(DockerError::OutputTooLarge {
                    what: what(),
                    limit,
                });
            }
        }
        Ok(ExecOutput {
            code,
            stdout: self.stdout.into_bytes(),
            stderr_tail: String::from_utf8_lossy(&self.tail.into_bytes()).into_owned(),
        })
    }
}

/// The bytes of one stream, bounded: its first `limit` bytes, or its last.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
    keep_tail: bool,
    /// Whether bytes were left out.
    cut: bool,
}

impl Bounded {
    fn head(limit: usize) -> Bounded {
        Bounded {
            buf: Vec::new(),
            limit,
            keep_tail: false,
            cut: false,
        }
    }

    fn tail(limit: usize) -> Bounded {
        Bounded {
            keep_tail: true,
            ..Bounded::head(limit)
        }
    }

    fn push(&mut self, data: &[u8]) {
        if !self.keep_tail {
            let room = self.limit - self.buf.len();
            self.cut |= data.len() > room;
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        if data.len() >= self.limit {
            self.cut |= !self.buf.is_empty() || data.len() > self.limit;
            self.buf.clear();
            self.buf.extend_from_slice(&data[data.len() - self.limit..]);
            return;
        }
        self.buf.extend_from_slice(data);
        // Trimmed in batches: at most twice the bound is held.
        if self.buf.len() > 2 * self.limit {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > self.limit {
            self.buf.drain(..self.buf.len() - self.limit);
            self.cut = true;
        }
    }

    fn into_bytes(mut self) -> Vec<u8> {
        if self.keep_tail {
            self.trim();
        }
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn out(s: &str) -> LogOutput {
        LogOutput::StdOut {
            message: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    fn err(s: &str) -> LogOutput {
        LogOutput::StdErr {
            message: Bytes::copy_from_slice(s.as_bytes()),
        }
    }

    #[test]
    fn a_tail_keeps_the_last_bytes_however_much_comes() {
        let mut t = Bounded::tail(10);
        for chunk in ["abc", "defghij", "klmnopqrstuvwxyz", "0123"] {
            t.push(chunk.as_bytes());
        }
        assert_eq!(t.into_bytes(), b"qrstuvwxyz0123"[4..]);
        let mut t = Bounded::tail(10);
        t.push(b"short");
        assert!(!t.cut);
        assert_eq!(t.into_bytes(), b"short");
        let mut t = Bounded::tail(4);
        t.push(&[b'x'; 1000]);
        t.push(b"end");
        assert_eq!(t.into_bytes(), b"xend");
    }

    #[test]
    fn parsed_output_is_whole_or_an_error_naming_the_command() {
        let mut c = Collector::new(Capture::Parse(8));
        c.take(out("1234"));
        c.take(err("oops"));
        c.take(out("5678"));
        let o = c.finish(3, || unreachable!()).unwrap();
        assert_eq!(
            (o.code, &o.stdout[..], &o.stderr_tail[..]),
            (3, &b"12345678"[..], "oops")
        );
        let mut c = Collector::new(Capture::Parse(8));
        c.take(out("123456789"));
        let e = c
            .finish(0, || "run x in container \"web\"".into())
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("run x in container \"web\" wrote more than 8 bytes"),
            "{e}"
        );
    }

    #[test]
    fn merged_output_keeps_both_streams_in_their_order() {
        let mut c = Collector::new(Capture::Merged);
        c.take(out("one "));
        c.take(err("two "));
        c.take(out("three"));
        let o = c.finish(1, String::new).unwrap();
        assert_eq!((o.stdout.len(), &o.stderr_tail[..]), (0, "one two three"));
    }
}
