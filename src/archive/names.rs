//! Pure rules for entry names: where an engine entry goes in the archive, and whether an archive
//! entry stays inside the path it is restored into (no absolute paths, no `..`, nothing through a
//! symlink the archive itself created, no file where it created a directory).

use std::collections::HashSet;
use std::hash::BuildHasher;

pub use super::entry::show;
use super::entry::Kind;

/// dockyard's work directory at the root of a restored mount (`swap` works in it). Reserved: an
/// archive holding it at a path's top level is refused, and backups leave it out.
pub const WORK_DIR: &str = ".dockyard-restore";

/// dockyard's log state in a log directory (`logs` keeps its lock, rotation times and what
/// shipped there). Reserved like [`WORK_DIR`]: it describes the live container's logs, so backups
/// leave it out, restores never write it, and a swap leaves the live one in place.
pub const LOG_STATE: &str = ".dockyard";

/// Whether a top-level name of a backed-up path is one of dockyard's own ([`WORK_DIR`],
/// [`LOG_STATE`]), never the app's data.
pub fn is_reserved(name: &[u8]) -> bool {
    name == WORK_DIR.as_bytes() || name == LOG_STATE.as_bytes()
}

/// Whether `rel` (a name relative to a backed-up path) is, or is inside, [`LOG_STATE`].
pub fn in_log_state(rel: &[u8]) -> bool {
    rel.split(|&b| b == b'/').next() == Some(LOG_STATE.as_bytes())
}

/// Whether `rel` (a name relative to a backed-up path) is, or is inside, [`WORK_DIR`].
pub fn in_work_dir(rel: &[u8]) -> bool {
    rel.split(|&b| b == b'/').next() == Some(WORK_DIR.as_bytes())
}

/// `/srv/media` → `srv/media`: the archive prefix for a container path.
pub fn prefix_for(path: &str) -> String {
    path.trim_matches('/').to_string()
}

/// Rebases an engine entry name (`media/a/b`, rooted at the path's base name) onto `prefix`
/// (`srv/media/a/b`). The engine's root entry (`media/`) becomes the prefix itself.
pub fn rebase(engine_name: &[u8], prefix: &str) -> Vec<u8> {
    let trimmed = engine_name.strip_suffix(b"/").unwrap_or(engine_name);
    let rest = match trimmed.iter().position(|&b| b == b'/') {
        Some(i) => &trimmed[i + 1..],
        None => &[][..],
    };
    let mut out = prefix.as_bytes().to_vec();
    if !rest.is_empty() {
        out.push(b'/');
        out.extend_from_slice(rest);
    }
    out
}

/// The part of an archive name below `prefix`: `Some(b"")` for the prefix itself, `None` when the
/// entry belongs to another path.
pub fn relative<'a>(name: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    let name = name.strip_suffix(b"/").unwrap_or(name);
    let rest = name.strip_prefix(prefix.as_bytes())?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(b"/")
}

/// A hardlink target's name below `prefix`; a target elsewhere becomes `..`, which
/// [`Scope::admit`] refuses.
pub fn hardlink_target(target: &[u8], prefix: &str) -> Vec<u8> {
    relative(target, prefix)
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| b"..".to_vec())
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    /// An absolute name.
    Absolute,
    /// A `..`, `.` or empty component.
    BadComponent,
    /// A hardlink whose target is outside the path.
    LinkOutside,
    /// The name passes through a symlink created earlier in the same archive.
    ThroughSymlink,
    /// A non-directory named like a directory created earlier in the same archive: extracting
    /// it would fail (tar replaces anything but a directory), so verify and staging refuse it.
    OverDirectory,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsafe::Absolute => "absolute name",
            Unsafe::BadComponent => "`..`, `.` or empty component",
            Unsafe::LinkOutside => "hardlink to a target outside the path",
            Unsafe::ThroughSymlink => "name passes through a symlink in the archive",
            Unsafe::OverDirectory => {
                "a non-directory named like a directory earlier in the archive (tar cannot replace a directory with it)"
            }
        })
    }
}

/// Checks that a relative name has only normal components.
pub fn check_relative(rel: &[u8]) -> Result<(), Unsafe> {
    if rel.first() == Some(&b'/') {
        return Err(Unsafe::Absolute);
    }
    if rel.is_empty() {
        return Ok(());
    }
    for comp in rel.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." || comp == b".." {
            return Err(Unsafe::BadComponent);
        }
    }
    Ok(())
}

/// Tracks what an archive creates under one path: its symlinks, so later entries cannot pass
/// through them, and its directories, so no later non-directory takes a directory's name. A later
/// entry of the same name replaces anything else, as tar does (the agent's extractor and the
/// engine's both remove a non-directory first, without following it).
#[derive(Default)]
pub struct Scope {
    symlinks: HashSet<Vec<u8>>,
    /// Keyed 64-bit hashes of the directories' names: 8 bytes a directory, whatever its name's
    /// length (a collision, about one in 2^64 per pair, refuses a sound archive; it never lets a
    /// bad one through).
    dirs: HashSet<u64>,
    /// This run's random key for those hashes, so no archive can be built to collide.
    key: std::hash::RandomState,
}

impl Scope {
    /// Checks an entry (relative name, kind, and for hardlinks the relative target) and records
    /// symlinks and directories.
    pub fn admit(
        &mut self,
        rel: &[u8],
        hardlink_to: Option<&[u8]>,
        kind: Kind,
    ) -> Result<(), Unsafe> {
        check_relative(rel)?;
        self.through_symlink(rel)?;
        if let Some(target) = hardlink_to {
            check_relative(target).map_err(|_| Unsafe::LinkOutside)?;
            if target.is_empty() {
                return Err(Unsafe::LinkOutside);
            }
            self.through_symlink(target)?;
            if self.symlinks.contains(target) {
                return Err(Unsafe::ThroughSymlink);
            }
        }
        let dir = self.key.hash_one(rel);
        match kind {
            Kind::Dir => {
                self.dirs.insert(dir);
            }
            _ if self.dirs.contains(&dir) => return Err(Unsafe::OverDirectory),
            Kind::Symlink => {
                self.symlinks.insert(rel.to_vec());
            }
            _ => {}
        }
        Ok(())
    }

    fn through_symlink(&self, rel: &[u8]) -> Result<(), Unsafe> {
        if self.symlinks.is_empty() {
            return Ok(());
        }
        for (i, &b) in rel.iter().enumerate() {
            if b == b'/' && self.symlinks.contains(&rel[..i]) {
                return Err(Unsafe::ThroughSymlink);
            }
        }
        Ok(())
    }
}

/// Writes `name` as POSIX `printf` octal escapes (`\141\057...`): a form a shell script can
/// validate (backslashes and digits only) and decode with `printf`, whatever bytes the name holds
/// (newlines, quotes, non-UTF-8).
pub fn octal_escape(name: &[u8]) -> String {
    name.iter().map(|b| format!("\\{b:03o}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::entry::Kind;

    #[test]
    fn names_in_messages_are_cut_to_200_bytes() {
        assert_eq!(show(b"srv/media/a"), "srv/media/a");
        assert_eq!(show(&[b'a'; 200]), "a".repeat(200));
        assert_eq!(show(&[b'a'; 1 << 20]), format!("{}…", "a".repeat(200)));
        assert_eq!(show(b"bad\xffname"), "bad\u{fffd}name");
    }

    #[test]
    fn octal_escapes_every_byte() {
        assert_eq!(octal_escape(b"a/\n\xff"), "\\141\\057\\012\\377");
        assert_eq!(octal_escape(b""), "");
    }

    #[test]
    fn rebases_engine_names() {
        assert_eq!(rebase(b"media/", "srv/media"), b"srv/media");
        assert_eq!(rebase(b"media", "srv/media"), b"srv/media");
        assert_eq!(rebase(b"media/a/b.jpg", "srv/media"), b"srv/media/a/b.jpg");
        assert_eq!(rebase(b"media/d/", "srv/media"), b"srv/media/d");
        assert_eq!(prefix_for("/srv/media/"), "srv/media");
    }

    #[test]
    fn relative_names() {
        assert_eq!(relative(b"srv/media/", "srv/media"), Some(&b""[..]));
        assert_eq!(relative(b"srv/media/a/b", "srv/media"), Some(&b"a/b"[..]));
        assert_eq!(relative(b"srv/mediax/a", "srv/media"), None);
        assert_eq!(relative(b"srv/logs/a", "srv/media"), None);
    }

    #[test]
    fn refuses_escapes() {
        let cases: &[(&[u8], Option<Unsafe>)] = &[
            (b"a/b", None),
            (b"", None),
            (b"/etc/passwd", Some(Unsafe::Absolute)),
            (b"../x", Some(Unsafe::BadComponent)),
            (b"a/../../x", Some(Unsafe::BadComponent)),
            (b"a//b", Some(Unsafe::BadComponent)),
            (b"./a", Some(Unsafe::BadComponent)),
        ];
        for (name, want) in cases {
            assert_eq!(
                check_relative(name).err(),
                *want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn refuses_entries_through_archive_symlinks() {
        let mut s = Scope::default();
        s.admit(b"link", None, Kind::Symlink).unwrap();
        assert_eq!(
            s.admit(b"link/passwd", None, Kind::File),
            Err(Unsafe::ThroughSymlink)
        );
        assert_eq!(
            s.admit(b"h", Some(b"link"), Kind::Hardlink),
            Err(Unsafe::ThroughSymlink)
        );
        assert_eq!(
            s.admit(b"h", Some(b"../x"), Kind::Hardlink),
            Err(Unsafe::LinkOutside)
        );
        assert_eq!(
            s.admit(
                b"h",
                Some(&hardlink_target(b"etc/passwd", "srv/media")),
                Kind::Hardlink
            ),
            Err(Unsafe::LinkOutside)
        );
        s.admit(b"linkother/ok", None, Kind::File).unwrap();
        s.admit(b"h2", Some(b"linkother/ok"), Kind::Hardlink)
            .unwrap();
        // Replacing the symlink itself is fine (tar removes it first); passing through it is not.
        s.admit(b"link", None, Kind::File).unwrap();
        assert_eq!(
            s.admit(b"link/x", None, Kind::File),
            Err(Unsafe::ThroughSymlink)
        );
    }

    #[test]
    fn a_non_directory_may_replace_anything_but_a_directory_of_the_archive() {
        let mut s = Scope::default();
        s.admit(b"f", None, Kind::File).unwrap();
        s.admit(b"f", None, Kind::Fifo).unwrap();
        s.admit(b"f", None, Kind::Dir).unwrap();
        s.admit(b"f", None, Kind::Dir).unwrap();
        s.admit(b"f/child", None, Kind::File).unwrap();
        for kind in [Kind::File, Kind::Symlink, Kind::Hardlink, Kind::Fifo] {
            let link = (kind == Kind::Hardlink).then_some(&b"f/child"[..]);
            assert_eq!(
                s.admit(b"f", link, kind),
                Err(Unsafe::OverDirectory),
                "{kind:?}"
            );
        }
        s.admit(b"f2", None, Kind::File).unwrap();
    }
}
