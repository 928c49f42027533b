//! Staging for restore: cut one path out of an archive and write its entries, renamed into a
//! staging directory, as a tar stream the engine extracts. Every header the engine receives is
//! built here from values that passed the same checks `verify` applies; nothing of the input's
//! own headers is passed on. Nothing here touches live data: the swap happens later, and only
//! after every path staged cleanly.

use std::io::{self, Read, Write};

pub use super::entry::RootMeta;
use super::entry::{is_privileged_xattr, Kind, Meta, Mtime, Privileges, SETID_BITS};
use super::names::show;
use super::pack::excluded;
use super::verify::{self, Checked, Expect};
use super::writer::TarWriter;

/// The latest time (in seconds) the engine keeps when it extracts a file or directory: Go's
/// `time.Unix(0, 1<<63-1)`. Times outside `0..=ENGINE_MAX_SECS` are set to the epoch by the
/// engine, so staging records them as fix-ups to apply after extraction.
pub const ENGINE_MAX_SECS: i64 = 9_223_372_036;

/// What to stage and where.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    /// The backed-up container path, e.g. `/srv/media`.
    pub path: String,
    /// Where entries go in the output: relative to the extraction directory (e.g.
    /// `.dockyard-restore/new-0`). For a single-file path, the file's own output name.
    pub into: Vec<u8>,
    /// Names relative to the path that the target holds as separate mounts: entries at or below
    /// them are left out and reported (each mount is restored as its own path).
    pub skip: Vec<Vec<u8>>,
    /// Device nodes, set-id bits and file capabilities.
    pub privileges: Privileges,
    /// What the path itself must be: a directory (its entries go below `into`) or a single file
    /// (written as `into`). Anything else in the archive is refused.
    pub root: Kind,
    /// `restore --include` patterns: when given, only entries matching one (or below a match)
    /// are staged, and every directory, so each has a place (unmatched empty ones are dropped
    /// before the merge).
    #[serde(default)]
    pub include: Vec<String>,
}

/// A time the engine would not keep: set it after extraction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fixup {
    /// Name relative to the path.
    pub rel: Vec<u8>,
    /// Modification time, seconds since the epoch.
    pub secs: i64,
}

/// What staging wrote.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Staged {
    /// Entries written.
    pub entries: u64,
    /// The path's own metadata, if the archive has its root entry (directories).
    pub root: Option<RootMeta>,
    /// Files whose set-user-ID/set-group-ID bits were removed.
    pub stripped: Vec<String>,
    /// Entries whose `security.*`/`trusted.*` extended attributes (file capabilities) were
    /// dropped.
    #[serde(default)]
    pub dropped_xattrs: Vec<String>,
    /// Entries left out because the target has a separate mount there.
    pub skipped: Vec<String>,
    /// Times to set after extraction.
    pub fixups: Vec<Fixup>,
    /// The path is a single file (a single-file bind mount), staged as `into`.
    pub single_file: bool,
}

/// Writes the entries of `spec.path` from `archive` through `out`, checking the whole archive
/// against `expect` on the way ([`verify::check`]: every entry, the sha256, the sizes, the counts;
/// the error comes after the last byte if the checksum differs), so a swapped, damaged or forged
/// archive never reaches the swap step.
pub fn stage<W: Write>(
    archive: impl Read,
    expect: &Expect,
    spec: &StageSpec,
    out: &mut TarWriter<W>,
) -> io::Result<Staged> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let index = expect
        .paths
        .iter()
        .position(|p| *p == spec.path)
        .ok_or_else(|| invalid(format!("the manifest lists no path {}", spec.path)))?;
    let mut staged = Staged::default();
    let include = super::exclude::Globs::new(&spec.include).map_err(invalid)?;
    verify::check(archive, expect, |c, data| {
        let Checked {
            index: of,
            rel,
            hardlink,
            mut meta,
        } = c;
        // Entries of a path nested in this one (a mount backed up on its own) belong to that
        // path: the walk gives each entry to the longest path holding it.
        if of != index {
            return Ok(());
        }
        // Nested mounts stay where they are; so does the target's own log state (an older
        // backup may hold one: it describes another time's logs, or another container's).
        if !rel.is_empty() && (excluded(&rel, &spec.skip) || super::names::in_log_state(&rel)) {
            staged.skipped.push(show(&meta.name));
            return Ok(());
        }
        if !include.is_empty()
            && !rel.is_empty()
            && meta.kind != Kind::Dir
            && !include.matches_or_above(&spec.path, &rel)
        {
            return Ok(());
        }
        if meta.kind.is_device() && !spec.privileges.allow_devices {
            return Err(invalid(format!(
                "refusing device node {:?}; pass --allow-devices to restore device nodes",
                show(&meta.name)
            )));
        }
        if meta.is_setid_file() && !spec.privileges.keep_setid {
            meta.mode &= !SETID_BITS;
            staged.stripped.push(show(&meta.name));
        }
        if meta.has_privileged_xattrs() && !spec.privileges.keep_capabilities {
            meta.xattrs.retain(|(name, _)| !is_privileged_xattr(name));
            staged.dropped_xattrs.push(show(&meta.name));
        }
        if rel.is_empty() {
            if meta.kind != spec.root {
                return Err(invalid(format!(
                    "refusing entry {:?}: {} is restored as a {}, and this is a {:?}",
                    show(&meta.name),
                    spec.path,
                    if spec.root == Kind::Dir {
                        "directory"
                    } else {
                        "single file"
                    },
                    meta.kind
                )));
            }
            if meta.kind == Kind::Dir {
                staged.root = Some(RootMeta::of(&meta));
                return Ok(());
            }
            staged.single_file = true;
        } else if spec.root == Kind::File {
            return Err(invalid(format!(
                "refusing entry {:?}: {} is a single file and holds nothing",
                show(&meta.name),
                spec.path
            )));
        }
        if needs_fixup(&meta) {
            staged.fixups.push(Fixup {
                rel: rel.clone(),
                secs: meta.mtime.secs,
            });
        }
        meta.name = join(&spec.into, &rel);
        if let Some(target) = hardlink {
            meta.link = Some(join(&spec.into, &target));
        }
        out.append(&meta, data)?;
        staged.entries += 1;
        Ok(())
    })?;
    Ok(staged)
}

/// Whether the engine would clamp this entry's time when extracting it (symlink times it keeps).
fn needs_fixup(meta: &Meta) -> bool {
    meta.kind != Kind::Symlink && !(0..=ENGINE_MAX_SECS).contains(&meta.mtime.secs)
}

/// A directory entry for dockyard's own staging layout (owned by root, mode 0700).
pub fn private_dir(name: &[u8]) -> Meta {
    Meta {
        kind: Kind::Dir,
        name: name.to_vec(),
        link: None,
        size: 0,
        mode: 0o700,
        uid: 0,
        gid: 0,
        mtime: Mtime {
            secs: chrono::Utc::now().timestamp(),
            nanos: 0,
        },
        xattrs: vec![],
        device: None,
    }
}

/// A small file entry for dockyard's own staging layout (owned by root, mode 0600).
pub fn private_file(name: &[u8], len: usize) -> Meta {
    Meta {
        kind: Kind::File,
        size: len as u64,
        mode: 0o600,
        ..private_dir(name)
    }
}

fn join(into: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out = into.to_vec();
    if !rel.is_empty() {
        out.push(b'/');
        out.extend_from_slice(rel);
    }
    out
}
