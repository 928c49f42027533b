//! The objects one backup is made of at a destination, and their names: the one place that says
//! `<id>.tar.zst` (`<id>.tar.zst.age` encrypted), `<id>.json`, `<id>.pending`, an encrypted
//! snapshot's `<id>.snapshot.json.age`, the file index `<id>.index.zst` and an incremental's
//! deletion list `<id>.deleted.zst` (each `.age` when encrypted).

/// One object of a backup. A new case needs a suffix here and a place in [`Object::DATA`] and
/// [`Object::COMMITTED`] if a committed backup has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    /// The compressed tar stream, `<id>.tar.zst`.
    Archive,
    /// The compressed tar stream encrypted with age, `<id>.tar.zst.age`.
    SealedArchive,
    /// The manifest, `<id>.json`, written last: the backup exists exactly when it does.
    Manifest,
    /// The record a run keeps while it commits the backup, `<id>.pending`, naming the run.
    Pending,
    /// An encrypted snapshot's inspect data and image digests, `<id>.snapshot.json.age`.
    SealedSnapshot,
    /// The file index, `<id>.index.zst` (docs/index.md).
    Index,
    /// The file index encrypted with age, `<id>.index.zst.age`.
    SealedIndex,
    /// An incremental backup's deletion list, `<id>.deleted.zst`.
    Deleted,
    /// The deletion list encrypted with age, `<id>.deleted.zst.age`.
    SealedDeleted,
}

impl Object {
    /// Every kind of object, for parsing names.
    pub const ALL: [Object; 9] = [
        Object::Archive,
        Object::SealedArchive,
        Object::Manifest,
        Object::Pending,
        Object::SealedSnapshot,
        Object::Index,
        Object::SealedIndex,
        Object::Deleted,
        Object::SealedDeleted,
    ];

    /// The objects a backup's data is in (all but the manifest and the pending record): a sweep
    /// removes them when their manifest was never written.
    pub const DATA: [Object; 7] = [
        Object::Archive,
        Object::SealedArchive,
        Object::SealedSnapshot,
        Object::Index,
        Object::SealedIndex,
        Object::Deleted,
        Object::SealedDeleted,
    ];

    /// The objects of a committed backup, in the order they are removed: the manifest first, so
    /// from then on the backup is not listed whatever happens to the rest.
    pub const COMMITTED: [Object; 8] = [
        Object::Manifest,
        Object::Archive,
        Object::SealedArchive,
        Object::SealedSnapshot,
        Object::Index,
        Object::SealedIndex,
        Object::Deleted,
        Object::SealedDeleted,
    ];

    /// The suffix after the id.
    pub fn suffix(self) -> &'static str {
        match self {
            Object::Archive => ".tar.zst",
            Object::SealedArchive => ".tar.zst.age",
            Object::Manifest => ".json",
            Object::Pending => ".pending",
            Object::SealedSnapshot => ".snapshot.json.age",
            Object::Index => ".index.zst",
            Object::SealedIndex => ".index.zst.age",
            Object::Deleted => ".deleted.zst",
            Object::SealedDeleted => ".deleted.zst.age",
        }
    }

    /// This kind, encrypted when `sealed` (the index and deletion list as the archive is).
    pub fn sealed(self, sealed: bool) -> Object {
        match (self, sealed) {
            (Object::Archive, true) => Object::SealedArchive,
            (Object::Index, true) => Object::SealedIndex,
            (Object::Deleted, true) => Object::SealedDeleted,
            (other, _) => other,
        }
    }

    /// The object name of this part of backup `id`.
    pub fn name(self, id: &str) -> String {
        format!("{id}{}", self.suffix())
    }

    /// The backup id and kind an object name is of, if it is one of ours (a top-folder name with
    /// a known suffix after a non-empty id).
    pub fn parse(name: &str) -> Option<(&str, Object)> {
        if name.contains('/') {
            return None;
        }
        Object::ALL.into_iter().find_map(|o| {
            name.strip_suffix(o.suffix())
                .filter(|id| !id.is_empty())
                .map(|id| (id, o))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds_go_both_ways() {
        let id = "web-20261128T010203Z-00af";
        for o in Object::ALL {
            assert_eq!(Object::parse(&o.name(id)), Some((id, o)));
        }
        assert_eq!(Object::Archive.name(id), format!("{id}.tar.zst"));
        assert_eq!(Object::Manifest.name(id), format!("{id}.json"));
        assert_eq!(Object::Pending.name(id), format!("{id}.pending"));
        for other in ["web.tar", ".json", "notes.txt", "logs/web/a.json", "x.zst"] {
            assert_eq!(Object::parse(other), None, "{other}");
        }
    }
}
