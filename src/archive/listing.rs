//! Listings of tar streams (an archive's path, or a container's live path) for dry-run diffs and
//! the "is this path empty?" check before a safety backup.

use std::collections::BTreeMap;
use std::io::{self, Read};

use super::entry::{self, Kind};
use super::names::{prefix_for, rebase, relative};
use super::pack::excluded;

/// What identifies an entry's state: equal signatures mean nothing to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Tar entry type byte.
    pub kind: u8,
    /// Data size.
    pub size: u64,
    /// Modification time (seconds).
    pub mtime: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Link target, for links.
    pub link: Option<Vec<u8>>,
}

/// Entries below a path (the path's own root entry excluded), keyed by relative name.
pub type Listing = BTreeMap<Vec<u8>, Signature>;

/// Where the tar stream comes from, which decides how names are read.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A dockyard archive (zstd; names under the path's prefix).
    Archive,
    /// The engine's archive endpoint (plain tar; names rooted at the path's base name).
    Engine,
}

/// Lists the entries of `path` in `reader` (leaving out `exclude`d names and what lies below
/// them), stopping after `limit` entries if given.
pub fn list(
    reader: impl Read,
    origin: Origin,
    path: &str,
    exclude: &[Vec<u8>],
    limit: Option<usize>,
) -> io::Result<Listing> {
    let prefix = prefix_for(path);
    let reader: Box<dyn Read> = match origin {
        Origin::Archive => Box::new(super::decoder(reader)?),
        Origin::Engine => Box::new(reader),
    };
    let mut out = Listing::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let (meta, _) =
            entry::read(&mut entry).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))?;
        let name = match origin {
            Origin::Archive => meta.name.clone(),
            Origin::Engine => rebase(&meta.name, &prefix),
        };
        let Some(rel) = relative(&name, &prefix) else {
            continue;
        };
        if rel.is_empty() || excluded(rel, exclude) {
            continue;
        }
        let sig = Signature {
            kind: meta.kind.type_byte(),
            size: meta.size,
            mtime: meta.mtime.secs,
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
            link: if meta.kind == Kind::Symlink {
                meta.link.clone()
            } else {
                None
            },
        };
        out.insert(rel.to_vec(), sig);
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

/// What a restore would do to one path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the archive, not in the target.
    pub added: Vec<String>,
    /// In both, different.
    pub changed: Vec<String>,
    /// In the target, not in the archive: would be removed.
    pub removed: Vec<String>,
}

/// Compares a wanted listing (the archive) with the current one (the target).
pub fn diff(wanted: &Listing, current: &Listing) -> Diff {
    let show = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
    let mut d = Diff::default();
    for (k, sig) in wanted {
        match current.get(k) {
            None => d.added.push(show(k)),
            Some(cur) if cur != sig => d.changed.push(show(k)),
            Some(_) => {}
        }
    }
    d.removed = current
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(show)
        .collect();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(size: u64) -> Signature {
        Signature {
            kind: b'0',
            size,
            mtime: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            link: None,
        }
    }

    #[test]
    fn diff_sorts_entries_into_added_changed_removed() {
        let wanted: Listing = [
            (b"a".to_vec(), sig(1)),
            (b"b".to_vec(), sig(2)),
            (b"c".to_vec(), sig(3)),
        ]
        .into();
        let current: Listing = [
            (b"b".to_vec(), sig(2)),
            (b"c".to_vec(), sig(4)),
            (b"d".to_vec(), sig(5)),
        ]
        .into();
        let d = diff(&wanted, &current);
        assert_eq!(d.added, vec!["a"]);
        assert_eq!(d.changed, vec!["c"]);
        assert_eq!(d.removed, vec!["d"]);
    }
}
