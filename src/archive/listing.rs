//! Listings of tar streams (an archive's path, or a container's live path) for dry-run diffs and
//! the "is this path empty?" check before a safety backup.

use std::io::{self, Read};

use super::entry::{self, Kind};
use super::names::{prefix_for, rebase, relative};
use super::pack::excluded;

/// What identifies an entry's state: equal signatures mean nothing to restore.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Where the tar stream comes from, which decides how names are read.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A dockyard archive (zstd; names under the path's prefix).
    Archive,
    /// The engine's archive endpoint (plain tar; names rooted at the path's base name).
    Engine,
}

/// Calls `each` with every entry of `path` in `reader` (relative name and signature; leaving out
/// `exclude`d names and what lies below them), stopping after `limit` entries if given. Returns
/// how many it saw.
pub fn each(
    reader: impl Read,
    origin: Origin,
    path: &str,
    exclude: &[Vec<u8>],
    limit: Option<usize>,
    mut each: impl FnMut(&[u8], Signature),
) -> io::Result<usize> {
    let prefix = prefix_for(path);
    let reader: Box<dyn Read> = match origin {
        Origin::Archive => Box::new(super::decoder(reader)?),
        Origin::Engine => Box::new(reader),
    };
    let mut seen = 0;
    let mut archive = super::guard::archive(reader);
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
        each(rel, sig);
        seen += 1;
        if limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(seen)
}

/// The signature hash of a name the archive holds twice, differently: never equal to the target's.
const DIFFERS: u64 = u64::MAX;

/// Names kept per kind of change in a [`Diff`]; the totals are always exact.
pub const EXAMPLES: usize = 1000;

/// What a restore would do to one path: exact counts, and the first [`EXAMPLES`] names of each
/// kind in byte order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// In the archive, not in the target.
    pub added: Vec<String>,
    /// In both, different.
    pub changed: Vec<String>,
    /// In the target, not in the archive: would be removed.
    pub removed: Vec<String>,
    /// How many in all: added, changed, removed.
    pub totals: [u64; 3],
}

/// A bounded diff of two entry streams in any order, for a path of any size: the archive's side
/// is held as two 64-bit keyed hashes per entry (name, signature: 16 bytes and a bit, so a
/// million entries take ~16 MB), never the names. [`Compare::current`] takes the target's entries
/// one by one; the names of entries only in the archive come from a second read of it
/// ([`Compare::added`]), needed only when there are any.
pub struct Compare {
    hasher: std::hash::RandomState,
    /// (name hash, signature hash), sorted by name hash.
    wanted: Vec<(u64, u64)>,
    /// Whether the target has the wanted entry of the same index, one bit each.
    matched: Vec<u64>,
    examples: [std::collections::BTreeSet<Vec<u8>>; 3],
    totals: [u64; 3],
}

impl Default for Compare {
    fn default() -> Self {
        Compare {
            hasher: std::hash::RandomState::new(),
            wanted: Vec::new(),
            matched: Vec::new(),
            examples: Default::default(),
            totals: [0; 3],
        }
    }
}

impl Compare {
    fn hash(&self, value: impl std::hash::Hash) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, value)
    }

    /// Records an entry of the archive (first pass).
    pub fn wanted(&mut self, name: &[u8], sig: &Signature) {
        let entry = (self.hash(name), self.hash(sig));
        self.wanted.push(entry);
    }

    /// Ends the first pass. A name twice in the archive counts once; if its entries differ, it
    /// counts as changed wherever the target has it (which one a restore leaves depends on order,
    /// which the sort does not keep). In place, with no second copy: this list is the largest
    /// thing a dry run holds.
    pub fn wanted_done(&mut self) {
        self.wanted.sort_unstable();
        self.wanted.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same && later.1 != kept.1 {
                kept.1 = DIFFERS;
            }
            same
        });
        self.wanted.shrink_to_fit();
        self.matched = vec![0; self.wanted.len().div_ceil(64)];
    }

    fn is_matched(&self, i: usize) -> bool {
        self.matched[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_matched(&mut self, i: usize) {
        self.matched[i / 64] |= 1 << (i % 64);
    }

    fn index(&self, name: &[u8]) -> Option<usize> {
        let h = self.hash(name);
        self.wanted.binary_search_by_key(&h, |e| e.0).ok()
    }

    fn note(&mut self, kind: usize, name: &[u8]) {
        self.totals[kind] += 1;
        let set = &mut self.examples[kind];
        if set.len() < EXAMPLES || set.last().is_some_and(|l| name < l.as_slice()) {
            set.insert(name.to_vec());
            if set.len() > EXAMPLES {
                set.pop_last();
            }
        }
    }

    /// Compares an entry of the target (second pass).
    pub fn current(&mut self, name: &[u8], sig: &Signature) {
        match self.index(name) {
            Some(i) => {
                if !self.is_matched(i) {
                    self.set_matched(i);
                    let wanted = self.wanted[i].1;
                    if wanted == DIFFERS || wanted != self.hash(sig) {
                        self.note(1, name);
                    }
                }
            }
            None => self.note(2, name),
        }
    }

    /// How many archive entries the target lacks.
    pub fn missing(&self) -> usize {
        self.wanted.len()
            - self
                .matched
                .iter()
                .map(|w| w.count_ones() as usize)
                .sum::<usize>()
    }

    /// Names an archive entry the target lacks (third pass, only if [`Compare::missing`] > 0).
    pub fn added(&mut self, name: &[u8]) {
        if let Some(i) = self.index(name) {
            if !self.is_matched(i) {
                // Counted once even if the archive holds the name twice.
                self.set_matched(i);
                self.note(0, name);
            }
        }
    }

    /// The diff.
    pub fn finish(self) -> Diff {
        let show = |set: std::collections::BTreeSet<Vec<u8>>| -> Vec<String> {
            set.iter().map(|k| super::names::show(k)).collect()
        };
        let [added, changed, removed] = self.examples;
        Diff {
            added: show(added),
            changed: show(changed),
            removed: show(removed),
            totals: self.totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries below a path, keyed by relative name: the simple model the bounded diff must match.
    type Listing = std::collections::BTreeMap<Vec<u8>, Signature>;

    /// Compares a wanted listing (the archive) with the current one (the target).
    fn diff(wanted: &Listing, current: &Listing) -> Diff {
        let mut c = Compare::default();
        for (k, sig) in wanted {
            c.wanted(k, sig);
        }
        c.wanted_done();
        for (k, sig) in current {
            c.current(k, sig);
        }
        if c.missing() > 0 {
            for k in wanted.keys() {
                c.added(k);
            }
        }
        c.finish()
    }

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
        assert_eq!(d.totals, [1, 1, 1]);
    }

    #[test]
    fn a_name_the_archive_holds_twice_differently_counts_as_changed() {
        let mut c = Compare::default();
        c.wanted(b"a", &sig(1));
        c.wanted(b"a", &sig(2));
        c.wanted(b"b", &sig(1));
        c.wanted(b"b", &sig(1));
        c.wanted_done();
        c.current(b"a", &sig(2));
        c.current(b"b", &sig(1));
        assert_eq!(c.missing(), 0);
        let d = c.finish();
        assert_eq!((d.changed, d.totals), (vec!["a".to_string()], [0, 1, 0]));
    }

    #[test]
    fn a_large_diff_keeps_exact_totals_and_the_first_names_only() {
        let n = 3 * EXAMPLES;
        let wanted: Listing = (0..n)
            .map(|i| (format!("w{i:05}").into_bytes(), sig(1)))
            .collect();
        let current: Listing = (0..n)
            .map(|i| (format!("c{i:05}").into_bytes(), sig(1)))
            .collect();
        let d = diff(&wanted, &current);
        assert_eq!(d.totals, [n as u64, 0, n as u64]);
        assert_eq!(d.added.len(), EXAMPLES);
        assert_eq!(d.added[0], "w00000");
        assert_eq!(d.added[EXAMPLES - 1], format!("w{:05}", EXAMPLES - 1));
        assert_eq!(d.removed[0], "c00000");
    }
}
