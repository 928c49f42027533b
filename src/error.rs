//! Exit codes: every failure is sorted into one category so cron and scripts can tell them apart.

use std::fmt;

/// What kind of failure ended a run; each maps to a documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// Bad input: flags, URLs, paths that are not mounts, unknown archive ids.
    Usage,
    /// The Docker Engine refused or failed a request, or a container is missing.
    Docker,
    /// A destination could not be read, written or listed.
    Destination,
    /// An archive failed verification (checksum, decoding, unsafe entries).
    Verify,
    /// Another run holds the lock this run needs.
    Busy,
    /// The run was stopped by SIGINT or SIGTERM.
    Interrupted,
    /// Anything else (a bug, an I/O error outside the categories above).
    Other,
}

impl Category {
    /// The process exit code for this category (documented in `--help` and the README).
    pub fn exit_code(self) -> i32 {
        match self {
            Category::Other => 1,
            Category::Usage => 2,
            Category::Docker => 3,
            Category::Destination => 4,
            Category::Verify => 5,
            Category::Busy => 6,
            Category::Interrupted => 130,
        }
    }
}

/// An error that knows its category, for failures that are not owned by one module's error type.
#[derive(Debug)]
pub struct Failure {
    /// The category deciding the exit code.
    pub category: Category,
    /// The message shown to the operator.
    pub message: String,
}

impl Failure {
    /// A usage error: the input was wrong, and the message says how to fix it.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            category: Category::Usage,
            message: message.into(),
        }
    }

    /// A verification failure: the archive is not what its manifest promises.
    pub fn verify(message: impl Into<String>) -> Self {
        Failure {
            category: Category::Verify,
            message: message.into(),
        }
    }

    /// Another run holds the lock; the message names the holder.
    pub fn busy(message: impl Into<String>) -> Self {
        Failure {
            category: Category::Busy,
            message: message.into(),
        }
    }

    /// The run was interrupted by a signal.
    pub fn interrupted(signal: &str) -> Self {
        Failure {
            category: Category::Interrupted,
            message: format!("interrupted by {signal}; cleaned up"),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Finds the category of an error chain: the first typed error in it decides.
pub fn categorize(err: &anyhow::Error) -> Category {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.category;
        }
        if cause.downcast_ref::<crate::docker::DockerError>().is_some() {
            return Category::Docker;
        }
        if cause
            .downcast_ref::<crate::destination::DestError>()
            .is_some()
        {
            return Category::Destination;
        }
    }
    Category::Other
}
