//! Where archives go: one small streaming trait, implemented per kind of destination, chosen from a URL.
//!
//! Every destination makes objects "complete or absent": an [`Upload`] is invisible until
//! [`Upload::commit`] succeeds, and an upload that is aborted, dropped or killed leaves nothing a
//! listing would show. Extra behaviour (retries, dry runs) wraps a destination rather than forking it.
//! A destination knows names and bytes only: which objects make a backup, in what order they are
//! written, and what a killed run's leftovers are is `manifest::Store`'s.

mod local;
#[cfg(test)]
pub(crate) mod memory;
pub mod parts;
mod s3;
mod ssh;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use local::LocalDir;
pub use s3::{S3Dir, S3Spec, DEFAULT_PART_SIZE, MIN_PART_SIZE};
pub use ssh::{SshDir, SshSpec};

/// A destination failure, by case; the message always names the destination and what to check.
/// Every case exits 4. The OS or SDK error is part of the message, not a separate cause, so it is
/// printed once.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    /// An I/O failure while doing something to a named object or place (a full disk, a dropped
    /// connection in the middle of a read).
    #[error("{dest}: cannot {action}: {}", crate::error::describe_std(.error))]
    Io {
        /// The destination, as the operator wrote it.
        dest: String,
        /// What we were doing, naming the object.
        action: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The destination cannot be reached at all (connection refused, timeout, DNS).
    #[error("{dest}: {message}")]
    Unreachable {
        /// The destination.
        dest: String,
        /// What failed and what to check.
        message: String,
    },
    /// No credentials, or credentials the destination rejects.
    #[error("{dest}: {message}")]
    Authentication {
        /// The destination.
        dest: String,
        /// What failed and what to check.
        message: String,
    },
    /// The credentials work but may not do this (a read-only key, a read-only share).
    #[error("{dest}: {message}")]
    AccessDenied {
        /// The destination.
        dest: String,
        /// What was refused and what to check.
        message: String,
    },
    /// The S3 bucket does not exist.
    #[error("{dest}: {message}")]
    UnknownBucket {
        /// The destination.
        dest: String,
        /// Which bucket, and what to do.
        message: String,
    },
    /// The object does not exist.
    #[error("{dest}: no object named {name:?}")]
    NotFound {
        /// The destination.
        dest: String,
        /// The object's name.
        name: String,
    },
    /// The destination exists but cannot be used (wrong kind of thing, read-only, ...).
    #[error("{dest}: {message}")]
    Unusable {
        /// The destination.
        dest: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl DestError {
    /// A failed read of `name` from `dest`. When the reader's error already is a destination
    /// error (the remote side said why), that error is the answer, so its text is said once.
    pub fn reading(dest: &dyn Destination, name: &str, error: std::io::Error) -> DestError {
        if error.get_ref().is_some_and(|inner| inner.is::<DestError>()) {
            let inner = error.into_inner().expect("checked above");
            return *inner.downcast::<DestError>().expect("checked above");
        }
        DestError::Io {
            dest: dest.describe(),
            action: format!("read {name}"),
            error,
        }
    }

    /// The case's name, for logs and JSON.
    pub fn case(&self) -> &'static str {
        match self {
            DestError::Io { .. } => "io",
            DestError::Unreachable { .. } => "unreachable",
            DestError::Authentication { .. } => "authentication",
            DestError::AccessDenied { .. } => "access denied",
            DestError::UnknownBucket { .. } => "unknown bucket",
            DestError::NotFound { .. } => "not found",
            DestError::Unusable { .. } => "unusable",
        }
    }
}

/// A readable object stream.
pub type ObjectReader = Box<dyn AsyncRead + Send + Unpin>;

/// A complete object, as a listing gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// The object's full name (`a.json`, `logs/web/x.zst`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One place that holds backups.
#[async_trait]
pub trait Destination: Send + Sync {
    /// The destination as the operator would recognise it, for messages.
    fn describe(&self) -> String;

    /// Makes sure the destination exists and can be written, before any work starts.
    async fn prepare(&self) -> Result<(), DestError>;

    /// Starts writing object `name`; it becomes visible only on [`Upload::commit`].
    async fn put(&self, name: &str) -> Result<Box<dyn Upload>, DestError>;

    /// Streams object `name`.
    async fn get(&self, name: &str) -> Result<ObjectReader, DestError>;

    /// The complete objects whose names start with `prefix`, with their sizes, in one listing,
    /// in no particular order. Objects in folders are listed only when `prefix` reaches into one
    /// (holds a `/`): `""` lists the top folder, where the backups are (not `logs/…`), `"web-"`
    /// those of its objects whose names start so, `"logs/web/"` every object below `logs/web` at
    /// any depth. Hidden names (temp files, markers) and anything but regular files (directories,
    /// symlinks) are never listed.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, DestError>;

    /// Whether the destination is there at all (a directory, locally or over SSH); an S3 prefix
    /// always is. Reading commands say "does not exist" instead of "no backups".
    async fn exists(&self) -> Result<bool, DestError> {
        Ok(true)
    }

    /// Deletes object `name`. Deleting is idempotent: an object that is not there (any more) is
    /// no error, so a retried or concurrent clean-up never fails on what is already gone.
    async fn delete(&self, name: &str) -> Result<(), DestError>;

    /// Reads several small objects (manifests) in one round trip where the backend can, each
    /// whole if it is at most `limit` bytes; `None` for any it did not read, which the caller then
    /// reads with [`get_at_most`]. Default: none (one `get` each is already cheap).
    async fn get_small(&self, names: &[String], limit: u64) -> Vec<Option<Vec<u8>>> {
        let _ = limit;
        vec![None; names.len()]
    }

    /// Removes what killed runs left behind (temp files, unfinished uploads); returns what it removed.
    async fn remove_stale(&self) -> Result<Vec<String>, DestError> {
        Ok(Vec::new())
    }
}

/// An object being written. Dropping it without [`Upload::commit`] discards it.
#[async_trait]
pub trait Upload: Send {
    /// Appends a chunk.
    async fn write(&mut self, chunk: Bytes) -> Result<(), DestError>;
    /// Makes the object durable and visible under its final name; returns its size.
    async fn commit(self: Box<Self>) -> Result<u64, DestError>;
    /// Discards the object.
    async fn abort(self: Box<Self>);
}

/// Checks an object name: a relative path of plain components (`a.json`, `logs/web/x.zst`), none
/// empty, hidden (`.`-prefixed, which is where temp files and markers live) or `..`.
pub fn check_name(dest: &dyn Destination, name: &str) -> Result<(), DestError> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(DestError::Unusable {
            dest: dest.describe(),
            message: format!("invalid object name {name:?}"),
        })
    }
}

/// Checks a listing prefix: empty, or a name whose last component may be empty or partial
/// (`logs/web/`, `web-`).
pub fn check_prefix(dest: &dyn Destination, prefix: &str) -> Result<(), DestError> {
    if prefix_ok(prefix) {
        Ok(())
    } else {
        Err(DestError::Unusable {
            dest: dest.describe(),
            message: format!("invalid object name {prefix:?}"),
        })
    }
}

/// [`check_name`]'s rule.
fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(component_ok)
}

/// [`check_prefix`]'s rule: the folder part is a name, the last part (possibly empty) a start of
/// a component.
fn prefix_ok(prefix: &str) -> bool {
    let (folder, last) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    (folder.is_empty() && !prefix.starts_with('/') || name_ok(folder))
        && (last.is_empty() || component_ok(last))
}

/// One plain component: not empty, not hidden (which also rules out `.` and `..`), no NUL.
fn component_ok(c: &str) -> bool {
    !c.is_empty() && !c.starts_with('.') && !c.contains('\0')
}

/// The folder a listing of `prefix` walks at any depth (`logs/web/` → `logs/web`, `logs/we` →
/// `logs`), or `None` when `prefix` lists the top folder alone.
pub fn deep_folder(prefix: &str) -> Option<&str> {
    prefix.rsplit_once('/').map(|(folder, _)| folder)
}

/// Whether every component of `name` is visible (not a temp file, marker or state).
pub fn visible(name: &str) -> bool {
    name.split('/')
        .all(|c| !c.is_empty() && !c.starts_with('.'))
}

/// Whether a listing of `prefix` shows object `name`: it is visible, starts with `prefix`, and
/// lies in the top folder unless `prefix` reaches into a folder.
pub fn listed(prefix: &str, name: &str) -> bool {
    visible(name)
        && name.starts_with(prefix)
        && (deep_folder(prefix).is_some() || !name.contains('/'))
}

/// Splits an object name into its parent path (possibly empty) and its last component.
pub fn split_name(name: &str) -> (&str, &str) {
    name.rsplit_once('/').unwrap_or(("", name))
}

/// Writes a small object (a manifest) in one go, with the same complete-or-absent guarantee.
pub async fn put_bytes(
    dest: &dyn Destination,
    name: &str,
    data: Vec<u8>,
) -> Result<u64, DestError> {
    let mut up = dest.put(name).await?;
    if let Err(e) = up.write(Bytes::from(data)).await {
        up.abort().await;
        return Err(e);
    }
    up.commit().await
}

/// Reads an object whole if it is at most `limit` bytes; `None` if it is larger (having read
/// `limit + 1` bytes of it, no more).
pub async fn get_at_most(
    dest: &dyn Destination,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, DestError> {
    let reader = dest.get(name).await?;
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(|error| DestError::reading(dest, name, error))?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// How to reach remote destinations; the same for every URL of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteOptions {
    /// ssh config file instead of `~/.ssh/config`.
    pub ssh_config: Option<PathBuf>,
    /// S3 endpoint of a self-hosted store.
    pub s3_endpoint: Option<String>,
    /// S3 addressing: `Some(true)` path-style, `Some(false)` virtual-hosted, `None` automatic.
    pub s3_path_style: Option<bool>,
    /// S3 multipart part size in bytes; 0 means the default.
    pub s3_part_size: usize,
}

/// A parsed destination URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestSpec {
    /// A directory on this host.
    Local(PathBuf),
    /// A directory on another host, over SSH.
    Ssh(SshSpec),
    /// A bucket and key prefix.
    S3(S3Spec),
}

impl fmt::Display for DestSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DestSpec::Local(p) => write!(f, "{}", p.display()),
            DestSpec::Ssh(s) => write!(f, "{s}"),
            DestSpec::S3(s) => write!(f, "{s}"),
        }
    }
}

impl DestSpec {
    /// Parses `./backups`, `/var/backups/dockyard`, `file:///dir`, `ssh://[user@]host[:port]/dir`
    /// or `s3://bucket/prefix`.
    pub fn parse(url: &str, remote: &RemoteOptions) -> Result<DestSpec, String> {
        if url.is_empty() {
            return Err("empty destination; give a directory, file:///dir, ssh://host/dir or s3://bucket/prefix".into());
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("{url:?}: a file:// URL needs an absolute path, e.g. file:///var/backups/dockyard"));
            }
            return Ok(DestSpec::Local(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("ssh://") {
            return SshSpec::parse(url, rest, remote.ssh_config.clone()).map(DestSpec::Ssh);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let mut spec = S3Spec::parse(url, rest)?;
            spec.endpoint = remote.s3_endpoint.clone();
            spec.path_style = remote.s3_path_style;
            if remote.s3_part_size != 0 {
                if remote.s3_part_size < MIN_PART_SIZE {
                    return Err(format!(
                        "S3 part size {} bytes is below S3's minimum of 5 MiB",
                        remote.s3_part_size
                    ));
                }
                spec.part_size = remote.s3_part_size;
            }
            return Ok(DestSpec::S3(spec));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(format!(
                "{url:?}: unknown destination scheme {scheme:?}; use a directory path, file:///dir, ssh://host/dir or s3://bucket/prefix"
            ));
        }
        if let Some(scheme) = looks_like_a_scheme(url) {
            return Err(format!(
                "{url:?} looks like a URL with {scheme}: but without the \"//\"; use file:///dir, ssh://host/dir or s3://bucket/prefix (or ./{url} for a local directory of that name)"
            ));
        }
        Ok(DestSpec::Local(PathBuf::from(url)))
    }

    /// Opens the destination this spec names, to be shared by everything that uses it (an S3
    /// open loads the credential chain, an SSH destination starts its own connection). Nothing is
    /// contacted until it is used.
    pub async fn open(&self) -> Arc<dyn Destination> {
        match self {
            DestSpec::Local(p) => Arc::new(LocalDir::new(p.clone())),
            DestSpec::Ssh(s) => Arc::new(SshDir::new(s.clone())),
            DestSpec::S3(s) => Arc::new(S3Dir::new(s.clone()).await),
        }
    }
}

/// The scheme of a destination that starts like a URL (`word:`) but is no URL (`s3:/b`,
/// `ssh:/h/d`, `nas:/srv`): a typo that would otherwise back up into a local directory of that
/// name. A path given as `/…` or `./…` is a path, whatever it holds.
fn looks_like_a_scheme(url: &str) -> Option<&str> {
    if url.starts_with('/') || url.starts_with("./") || url.starts_with("../") {
        return None;
    }
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let word = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-_".contains(c));
    word.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_prefix_is_a_folder_and_the_start_of_a_name() {
        for ok in ["", "web-", "logs/", "logs/web/", "logs/we", "a b/c"] {
            assert!(prefix_ok(ok), "{ok:?}");
        }
        for bad in [
            "/",
            "/logs/",
            "logs//",
            "../x",
            "logs/.x",
            ".dockyard-uploads/",
            "a\0",
        ] {
            assert!(!prefix_ok(bad), "{bad:?}");
        }
        assert_eq!(deep_folder(""), None);
        assert_eq!(deep_folder("web-"), None);
        assert_eq!(deep_folder("logs/web/"), Some("logs/web"));
        assert_eq!(deep_folder("logs/we"), Some("logs"));
    }

    #[test]
    fn the_top_folder_is_listed_flat_a_folder_deep() {
        let cases = [
            ("", "web-1.json", true),
            ("", "logs/web/a.zst", false),
            ("", ".web-1.json.1-2.partial", false),
            ("web-", "web-1.json", true),
            ("web-", "db-1.json", false),
            ("logs/web/", "logs/web/a/2026/x.zst", true),
            ("logs/web/", "logs/webapp/x.zst", false),
            ("logs/web/", "logs/web/.x.zst.partial", false),
            ("logs/we", "logs/webapp/x.zst", true),
        ];
        for (prefix, name, want) in cases {
            assert_eq!(listed(prefix, name), want, "{prefix:?} {name:?}");
        }
    }

    #[test]
    fn a_url_with_a_missing_slash_is_no_directory() {
        let parse = |u: &str| DestSpec::parse(u, &RemoteOptions::default());
        for typo in [
            "s3:/bucket/web",
            "ssh:/host/dir",
            "file:/var/b",
            "nas:/srv/backups",
            "s3:bucket",
        ] {
            let err = parse(typo).unwrap_err();
            assert!(
                err.contains("without the \"//\"") && err.contains("s3://bucket/prefix"),
                "{typo}: {err}"
            );
        }
        assert_eq!(
            parse("./s3:/bucket").unwrap(),
            DestSpec::Local("./s3:/bucket".into())
        );
        assert_eq!(parse("/a:b").unwrap(), DestSpec::Local("/a:b".into()));
        assert_eq!(parse("backups").unwrap(), DestSpec::Local("backups".into()));
    }

    #[test]
    fn parses_local_forms() {
        let parse = |u: &str| DestSpec::parse(u, &RemoteOptions::default());
        assert_eq!(
            parse("./backups").unwrap(),
            DestSpec::Local("./backups".into())
        );
        assert_eq!(parse("/var/b").unwrap(), DestSpec::Local("/var/b".into()));
        assert_eq!(
            parse("file:///var/b").unwrap(),
            DestSpec::Local("/var/b".into())
        );
    }

    #[test]
    fn rejects_unknown_schemes_by_name() {
        let parse = |u: &str| DestSpec::parse(u, &RemoteOptions::default());
        let err = parse("ftp://host/x").unwrap_err();
        assert!(err.contains("unknown destination scheme \"ftp\""), "{err}");
        assert!(parse("file://relative")
            .unwrap_err()
            .contains("absolute path"));
        assert!(parse("").is_err());
    }

    #[test]
    fn remote_options_reach_the_specs() {
        let opts = RemoteOptions {
            ssh_config: Some("/etc/dockyard/ssh_config".into()),
            s3_endpoint: Some("http://127.0.0.1:3900".into()),
            s3_path_style: Some(false),
            s3_part_size: 8 << 20,
        };
        match DestSpec::parse("ssh://nas/b", &opts).unwrap() {
            DestSpec::Ssh(s) => assert_eq!(s.config, opts.ssh_config),
            other => panic!("{other:?}"),
        }
        match DestSpec::parse("s3://bk/p", &opts).unwrap() {
            DestSpec::S3(s) => {
                assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
                assert_eq!((s.path_style, s.part_size), (Some(false), 8 << 20));
            }
            other => panic!("{other:?}"),
        }
        let small = RemoteOptions {
            s3_part_size: 1 << 20,
            ..Default::default()
        };
        assert!(DestSpec::parse("s3://bk", &small)
            .unwrap_err()
            .contains("minimum"));
    }
}
