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
    /// Its name in JSON output (`"error": {"category": ...}`).
    pub fn name(self) -> &'static str {
        match self {
            Category::Other => "other",
            Category::Usage => "usage",
            Category::Docker => "docker",
            Category::Destination => "destination",
            Category::Verify => "verify",
            Category::Busy => "busy",
            Category::Interrupted => "interrupted",
        }
    }

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
    /// A failure of `category`.
    pub fn new(category: Category, message: impl Into<String>) -> Self {
        Failure {
            category,
            message: message.into(),
        }
    }

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

/// The error and its causes as one line, `outer: cause: cause`, leaving out a cause whose text
/// the line already holds (an I/O error's OS text is said once, not at every level).
pub fn describe(err: &anyhow::Error) -> String {
    one_line(err.chain())
}

/// An error that is not an `anyhow` chain (an I/O error carrying a library's error) and its
/// sources as one line, by the same rule as [`describe`]: a terse outer text ("streaming error")
/// is followed by what actually happened.
pub fn describe_std(err: &(dyn std::error::Error + 'static)) -> String {
    one_line(std::iter::successors(Some(err), |e| e.source()))
}

fn one_line<'a>(causes: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut line = String::new();
    for cause in causes {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = std::io::Error::from_raw_os_error(2);
        let os = io.to_string();
        let err = Err::<(), _>(io)
            .with_context(|| format!("cannot open /b/x: {os}"))
            .context("backup of web to /b")
            .unwrap_err();
        let line = describe(&err);
        assert_eq!(line.matches(&os).count(), 1, "{line}");
        assert!(
            line.starts_with("backup of web to /b: cannot open /b/x"),
            "{line}"
        );
    }

    #[test]
    fn an_io_error_says_what_it_carries() {
        #[derive(Debug, thiserror::Error)]
        #[error("streaming error")]
        struct Terse(#[source] std::io::Error);
        let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "end of file");
        let io = std::io::Error::other(Terse(eof));
        assert_eq!(describe_std(&io), "streaming error: end of file");
        let plain = std::io::Error::from_raw_os_error(2);
        assert_eq!(describe_std(&plain), plain.to_string());
    }
}
