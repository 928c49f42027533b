//! The engine seam's one error type: every failure names the container or helper involved, and
//! bollard's own errors are turned into it here, nowhere else.

use bollard::errors::Error as BollardError;

/// Errors from the engine, each naming the container or helper involved.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine did not answer at all.
    #[error("cannot reach the Docker Engine ({endpoint}): {error}; {hint}")]
    Unreachable {
        /// Where we tried to connect.
        endpoint: String,
        /// What went wrong (in the message, not repeated as a cause).
        error: String,
        /// What to check, for this kind of endpoint.
        hint: &'static str,
    },
    /// A remote engine over ssh could not be reached or did not answer.
    #[error("cannot reach the Docker Engine at {endpoint}: {message}")]
    RemoteUnreachable {
        /// `DOCKER_HOST`.
        endpoint: String,
        /// What failed and what to check.
        message: String,
    },
    /// No container by that name or id.
    #[error("no such container: {0:?} (see `docker ps -a` for the names on this engine)")]
    NoSuchContainer(String),
    /// Any other refused or failed request.
    #[error("Docker Engine failed to {action}: {message}")]
    Api {
        /// What we were doing, naming the container.
        action: String,
        /// The engine's message.
        message: String,
    },
    /// A helper ran past its deadline and was killed.
    #[error("helper container for {container:?} did not finish within {limit} and was killed (a FIFO or a hung process in a volume? see --helper-timeout)")]
    HelperTimedOut {
        /// The container the helper served.
        container: String,
        /// The deadline.
        limit: String,
    },
    /// A helper's script exited non-zero.
    #[error("helper container for {container:?} failed (exit {code}) while {action}: {output}")]
    HelperFailed {
        /// The container the helper served.
        container: String,
        /// What the helper was doing.
        action: String,
        /// Its exit code.
        code: i64,
        /// The last lines of its output.
        output: String,
    },
    /// `--stop` names a task of a Swarm service that cannot be scaled to 0 and back.
    #[error("container {container:?} is a task of Swarm service {service:?}, which is in {mode} mode; only a replicated service can be scaled to 0 and back for --stop (nothing was stopped): back it up without --stop, or stop its writers another way (--pre-hook, --exec-before)")]
    ServiceNotScalable {
        /// The container `--stop` named.
        container: String,
        /// The service's name.
        service: String,
        /// Its mode (`global`, ...).
        mode: String,
    },
    /// A Swarm service's tasks did not reach the count it was scaled to in time.
    #[error("Swarm service {service:?} did not reach {want} running task(s) within {limit} ({running} running); see `docker service ps {service}`")]
    ServiceTimedOut {
        /// The service's name.
        service: String,
        /// The tasks wanted running.
        want: u64,
        /// The tasks running when the wait ended.
        running: u64,
        /// The deadline.
        limit: String,
    },
    /// A command's standard output, which dockyard parses whole, ran past its bound.
    #[error("{what} wrote more than {limit} bytes on its standard output, more than dockyard reads from it; nothing was parsed")]
    OutputTooLarge {
        /// The command and the container it ran in.
        what: String,
        /// The bound, in bytes.
        limit: usize,
    },
}

/// A refused or failed request while doing `action`, with the engine's own message (and its HTTP
/// status, when it sent one).
pub(crate) fn api(action: impl Into<String>, err: BollardError) -> DockerError {
    let message = match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        other => other.to_string(),
    };
    DockerError::Api {
        action: action.into(),
        message,
    }
}

/// Whether the engine answered 404: no such container, path or image.
pub(crate) fn is_not_found(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine answered 409: a name taken, or a removal already under way.
pub(crate) fn is_conflict(err: &BollardError) -> bool {
    matches!(
        err,
        BollardError::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}
