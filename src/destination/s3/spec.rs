//! What an `s3://bucket/prefix` URL says, and the object keys under its prefix.

use super::super::parts::MAX_PARTS;
use super::DEFAULT_PART_SIZE;

/// Where an `s3://bucket/prefix` URL points, plus how to reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    /// Endpoint of an S3-compatible store; `None` uses `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// Path-style addressing; `None` means path-style with a custom endpoint, virtual-hosted on AWS.
    pub path_style: Option<bool>,
    /// Multipart part size in bytes: the first parts' size (they grow: [`PartSizes`]).
    pub part_size: usize,
    /// The most parts of one upload: S3's 10,000, or fewer from `DOCKYARD_S3_PART_LIMIT` (for
    /// tests of the growth rule without 156 GiB of data).
    pub part_limit: u32,
}

impl S3Spec {
    /// Parses the part after `s3://`.
    pub fn parse(url: &str, rest: &str) -> Result<S3Spec, String> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!(
                "{url:?}: expected s3://bucket/prefix, e.g. s3://backups/dockyard"
            ));
        }
        Ok(S3Spec {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            path_style: None,
            part_size: DEFAULT_PART_SIZE,
            part_limit: std::env::var("DOCKYARD_S3_PART_LIMIT")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|n| (1..=MAX_PARTS).contains(n))
                .unwrap_or(MAX_PARTS),
        })
    }

    pub(super) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The prefix as listed: empty, or ending in `/`.
    pub(super) fn list_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl std::fmt::Display for S3Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        if let Some(e) = &self.endpoint {
            write!(f, " at {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let s = S3Spec::parse("s3://b/x/y/", "b/x/y/").unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("b", "x/y"));
        assert_eq!(s.key("a.json"), "x/y/a.json");
        assert_eq!(s.list_prefix(), "x/y/");
        let bare = S3Spec::parse("s3://b", "b").unwrap();
        assert_eq!(
            (bare.key("a"), bare.list_prefix()),
            ("a".into(), String::new())
        );
        assert!(S3Spec::parse("s3:///x", "/x").is_err());
    }
}
