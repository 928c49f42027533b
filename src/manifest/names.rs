//! The objects one backup is made of at a destination, and their names: the one place that says
//! `<id>.tar.zst` (`<id>.tar.zst.age` encrypted), `<id>.json`, `<id>.pending` and an encrypted
//! snapshot's `<id>.snapshot.json.age`.

/// One object of a backup. Room for more (a file index) as new cases: a new case needs a suffix
/// here and a place in [`Object::COMMITTED`] if a committed backup has it.
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
}

impl Object {
    /// Every kind of object, for parsing names.
    pub const ALL: [Object; 5] = [
        Object::Archive,
        Object::SealedArchive,
        Object::Manifest,
        Object::Pending,
        Object::SealedSnapshot,
    ];

    /// The objects a backup's data is in (all but the manifest and the pending record): a sweep
    /// removes them when their manifest was never written.
    pub const DATA: [Object; 3] = [
        Object::Archive,
        Object::SealedArchive,
        Object::SealedSnapshot,
    ];

    /// The objects of a committed backup, in the order they are removed: the manifest first, so
    /// from then on the backup is not listed whatever happens to the rest.
    pub const COMMITTED: [Object; 4] = [
        Object::Manifest,
        Object::Archive,
        Object::SealedArchive,
        Object::SealedSnapshot,
    ];

    /// The suffix after the id.
    pub fn suffix(self) -> &'static str {
        match self {
            Object::Archive => ".tar.zst",
            Object::SealedArchive => ".tar.zst.age",
            Object::Manifest => ".json",
            Object::Pending => ".pending",
            Object::SealedSnapshot => ".snapshot.json.age",
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
