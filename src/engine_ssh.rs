//! Remote engines over ssh (`DOCKER_HOST=ssh://[user@]host[:port]`): every HTTP connection to the
//! engine is `docker system dial-stdio` on that host, run through the same strict OpenSSH client and
//! control master as ssh destinations (`--ssh-config`, known_hosts only, never a prompt), and the
//! bytes crossing it are counted.
//!
//! bollard's own `ssh` transport would accept unknown host keys and cannot take dockyard's ssh
//! config file, so dockyard hands bollard this connector through its custom-transport hook.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::Docker;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::destination::{SshDir, SshSpec};

/// Stderr of `docker system dial-stdio` kept for the error message.
const STDERR_LIMIT: usize = 4096;

/// Bytes that crossed the ssh connections to the engine (HTTP over `dial-stdio`, before ssh's own
/// encryption), for the log line that shows what a backup cost on the wire.
#[derive(Debug, Default)]
pub struct Wire {
    /// From the engine to dockyard.
    pub received: AtomicU64,
    /// From dockyard to the engine.
    pub sent: AtomicU64,
}

/// A connection to a remote engine over ssh.
pub struct SshEngine {
    /// The bollard client.
    pub docker: Docker,
    /// Bytes moved so far.
    pub wire: Arc<Wire>,
    /// What `docker system dial-stdio` last said on stderr (e.g. no docker CLI, no socket access).
    pub last_error: Arc<Mutex<String>>,
}

/// Parses `ssh://[user@]host[:port]`; the engine's socket is whatever `docker` uses on that host.
pub fn spec(docker_host: &str, config: Option<PathBuf>) -> Result<SshSpec, String> {
    let bad = |why: &str| {
        format!("DOCKER_HOST={docker_host:?}: {why}; expected ssh://[user@]host[:port]")
    };
    let url = url::Url::parse(docker_host).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.password().is_some() {
        return Err(bad("no path, query or password here"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty() && !h.starts_with('-'))
        .ok_or_else(|| bad("no host"))?;
    let user = Some(url.username())
        .filter(|u| !u.is_empty())
        .map(|u| {
            percent_encoding::percent_decode_str(u)
                .decode_utf8()
                .map(|u| u.into_owned())
                .map_err(|_| bad("the user name is not valid percent-encoded UTF-8"))
        })
        .transpose()?;
    Ok(SshSpec {
        user,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: url.port(),
        path: String::new(),
        config,
    })
}

/// Connects to the engine behind `spec`: the ssh connection is made here, so host key and
/// authentication problems are reported before any request.
pub async fn connect(spec: SshSpec, timeout_secs: u64) -> Result<SshEngine, String> {
    let dir = Arc::new(SshDir::new(spec));
    dir.remote_command(&["true"])
        .await
        .map_err(|e| e.to_string())?;
    let wire = Arc::new(Wire::default());
    let last_error = Arc::new(Mutex::new(String::new()));
    let connector = Connector {
        dir,
        wire: wire.clone(),
        last_error: last_error.clone(),
    };
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let docker = Docker::connect_with_custom_transport(
        transport(client),
        Some("http://remote-engine"),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| e.to_string())?;
    Ok(SshEngine {
        docker,
        wire,
        last_error,
    })
}

/// What bollard's custom transport returns for a request.
type Responding = Pin<
    Box<
        dyn Future<Output = Result<hyper::Response<hyper::body::Incoming>, bollard::errors::Error>>
            + Send,
    >,
>;

/// bollard's request hook over the hyper client (its body type is bollard's own, inferred).
fn transport<B>(
    client: Client<Connector, B>,
) -> impl Fn(hyper::Request<B>) -> Responding + Send + Sync
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |request| {
        let client = client.clone();
        Box::pin(async move { Ok(client.request(request).await?) })
    }
}

/// Makes each connection: one `docker system dial-stdio` through the control master.
#[derive(Clone)]
struct Connector {
    dir: Arc<SshDir>,
    wire: Arc<Wire>,
    last_error: Arc<Mutex<String>>,
}

impl tower_service::Service<hyper::Uri> for Connector {
    type Response = TokioIo<DialStdio>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut child = this
                .dir
                .remote_command(&["docker", "system", "dial-stdio"])
                .await
                .map_err(|e| io::Error::other(e.to_string()))?
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            let (Some(stdin), Some(stdout), Some(mut stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err(io::Error::other("ssh started without its pipes"));
            };
            let last_error = this.last_error.clone();
            tokio::spawn(async move {
                let mut text = Vec::new();
                let _ = (&mut stderr)
                    .take(STDERR_LIMIT as u64)
                    .read_to_end(&mut text)
                    .await;
                let text = String::from_utf8_lossy(&text).trim().to_string();
                if !text.is_empty() {
                    *last_error.lock().unwrap() = text;
                }
            });
            Ok(TokioIo::new(DialStdio {
                _child: child,
                stdin: Some(stdin),
                stdout,
                wire: this.wire,
            }))
        })
    }
}

/// One `dial-stdio` process as a byte stream: its stdout is the engine's side, its stdin ours.
pub struct DialStdio {
    _child: Child,
    /// Closed (dropped) on shutdown: that EOF is how a restore tells the agent the archive ended
    /// (tokio's own shutdown of a child's stdin leaves the pipe open).
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    wire: Arc<Wire>,
}

impl Connection for DialStdio {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for DialStdio {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stdout).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        this.wire.received.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for DialStdio {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(stdin) = this.stdin.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        let polled = Pin::new(stdin).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.wire.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(stdin) = this.stdin.as_mut() {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        this.stdin = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_host_and_port() {
        let s = spec("ssh://deploy@docker.example:2222", None).unwrap();
        assert_eq!(s.user.as_deref(), Some("deploy"));
        assert_eq!((s.host.as_str(), s.port), ("docker.example", Some(2222)));
        assert_eq!(s.to_string(), "ssh://deploy@docker.example:2222");
        let alias = spec("ssh://prod-engine", None).unwrap();
        assert_eq!((alias.user, alias.port), (None, None));
        let v6 = spec("ssh://[::1]:22", None).unwrap();
        assert_eq!(v6.host, "::1");
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "ssh://",
            "ssh://host/var/run/docker.sock",
            "ssh://user:pw@host",
            "ssh://-oProxyCommand=x",
        ] {
            let e = spec(bad, None).unwrap_err();
            assert!(
                e.contains("expected ssh://[user@]host[:port]"),
                "{bad}: {e}"
            );
        }
    }
}
