//! `--exclude` globs: which names a backup leaves out. A pattern with no `/` matches a name at any
//! depth (`*.tmp`, `cache`); one starting with `/` matches the whole container path
//! (`/srv/media/cache/**`). `*` stays within one name, `**` crosses directories. A directory
//! that matches is left out with everything below it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A compiled set of exclude patterns.
#[derive(Debug, Clone)]
pub struct Globs {
    patterns: Vec<String>,
    names: GlobSet,
    anchored: GlobSet,
}

impl PartialEq for Globs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for Globs {}

impl Default for Globs {
    fn default() -> Self {
        Globs::new(&[]).expect("no patterns")
    }
}

impl Globs {
    /// Compiles `patterns`; an invalid one is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Globs, String> {
        let (mut names, mut anchored) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for p in patterns {
            if p.is_empty() {
                return Err("--exclude: an empty pattern excludes nothing; remove it".into());
            }
            let relative = !p.starts_with('/');
            if relative && p.contains('/') {
                return Err(format!(
                    "--exclude {p:?}: a pattern either has no '/' (a name at any depth) or starts with '/' (a container path, like /srv/media/cache/**)"
                ));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("--exclude {p:?}: {e}"))?;
            if relative {
                names.add(glob);
            } else {
                anchored.add(glob);
            }
        }
        let built = |b: GlobSetBuilder| b.build().map_err(|e| e.to_string());
        Ok(Globs {
            patterns: patterns.to_vec(),
            names: built(names)?,
            anchored: built(anchored)?,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` (a name relative to container path `base`) is excluded.
    pub fn matches(&self, base: &str, rel: &[u8]) -> bool {
        if self.is_empty() || rel.is_empty() {
            return false;
        }
        let last = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
        if self.names.is_match(OsStr::from_bytes(last)) {
            return true;
        }
        if self.anchored.is_empty() {
            return false;
        }
        let mut full = base.trim_end_matches('/').as_bytes().to_vec();
        full.push(b'/');
        full.extend_from_slice(rel);
        self.anchored.is_match(OsStr::from_bytes(&full))
    }

    /// Whether `rel` or a directory above it (below `base`) matches: what `--include` takes, and
    /// what a backup's exclusions left out with everything below it.
    pub fn matches_or_above(&self, base: &str, rel: &[u8]) -> bool {
        let mut at = 0;
        loop {
            let end = rel[at..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(rel.len(), |i| at + i);
            if self.matches(base, &rel[..end]) {
                return true;
            }
            if end == rel.len() {
                return false;
            }
            at = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globs(p: &[&str]) -> Globs {
        Globs::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_match_at_any_depth_and_paths_only_where_anchored() {
        let g = globs(&["*.tmp", "cache", "/srv/media/thumbs/*.jpg"]);
        assert!(g.matches("/srv/media", b"a.tmp"));
        assert!(g.matches("/srv/media", b"deep/er/b.tmp"));
        assert!(g.matches("/srv/logs", b"x/cache"));
        assert!(!g.matches("/srv/media", b"cached"));
        assert!(g.matches("/srv/media", b"thumbs/1.jpg"));
        assert!(!g.matches("/srv/media", b"thumbs/deep/1.jpg"));
        assert!(!g.matches("/srv/other", b"thumbs/1.jpg"));
        assert!(!g.matches("/srv/media", b""));
        assert!(g.matches("/srv/media", b"odd\xff.tmp"));
    }

    #[test]
    fn bad_patterns_are_named() {
        let err = Globs::new(&["a/b".into()]).unwrap_err();
        assert!(err.contains("\"a/b\""), "{err}");
        let err = Globs::new(&["[".into()]).unwrap_err();
        assert!(err.contains("--exclude \"[\""), "{err}");
    }
}
