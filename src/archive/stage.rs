//! Staging for restore: cut one path out of an archive and write its entries, renamed into a
//! staging directory, as a tar stream the engine extracts. Every header the engine receives is
//! built here from values that passed the same checks `verify` applies; nothing of the input's
//! own headers is passed on. Nothing here touches live data: the swap happens later, and only
//! after every path staged cleanly.

use std::io::{self, Read, Write};

use super::entry::{self, Kind, Meta, Mtime, Privileges, SETID_BITS};
use super::names::{hardlink_target, prefix_for, relative, Scope};
use super::pack::excluded;
use super::writer::TarWriter;
use crate::pipeline::streams::HashingReader;

/// The latest time (in seconds) the engine keeps when it extracts a file or directory: Go's
/// `time.Unix(0, 1<<63-1)`. Times outside `0..=ENGINE_MAX_SECS` are set to the epoch by the
/// engine, so staging records them as fix-ups to apply after extraction.
pub const ENGINE_MAX_SECS: i64 = 9_223_372_036;

/// The restored path's own metadata, applied to it after the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RootMeta {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Modification time, seconds.
    pub mtime: i64,
}

/// What to stage and where.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StageSpec {
    /// The backed-up container path, e.g. `/srv/media`.
    pub path: String,
    /// Where entries go in the output: relative to the extraction directory (e.g.
    /// `.dockyard-restore/new-0`). For a single-file path, the file's own output name.
    pub into: Vec<u8>,
    /// Names relative to the path that belong to another path of the same backup (a nested mount
    /// backed up on its own): left out silently.
    pub elsewhere: Vec<Vec<u8>>,
    /// Names relative to the path that the target holds as separate mounts: entries at or below
    /// them are left out and reported (each mount is restored as its own path).
    pub skip: Vec<Vec<u8>>,
    /// Device nodes and set-id bits.
    pub privileges: Privileges,
    /// What the path itself must be: a directory (its entries go below `into`) or a single file
    /// (written as `into`). Anything else in the archive is refused.
    pub root: Kind,
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
    /// Entries left out because the target has a separate mount there.
    pub skipped: Vec<String>,
    /// Times to set after extraction.
    pub fixups: Vec<Fixup>,
    /// The path is a single file (a single-file bind mount), staged as `into`.
    pub single_file: bool,
}

/// Writes the entries of `spec.path` from `archive` through `out`. Fails if the archive's sha256
/// is not `expected_sha256` (checked after the last byte), so a swapped or damaged archive never
/// reaches the swap step.
pub fn stage<W: Write>(
    archive: impl Read,
    expected_sha256: &str,
    spec: &StageSpec,
    out: &mut TarWriter<W>,
) -> io::Result<Staged> {
    let prefix = prefix_for(&spec.path);
    let mut hashing = HashingReader::new(archive);
    let mut staged = Staged::default();
    let mut scope = Scope::default();
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    {
        let decoder = super::decoder(&mut hashing)?;
        let mut archive = tar::Archive::new(decoder);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let (mut meta, disagreements) = entry::read(&mut entry).map_err(invalid)?;
            let Some(rel) = relative(&meta.name, &prefix).map(<[u8]>::to_vec) else {
                continue;
            };
            if !rel.is_empty() && excluded(&rel, &spec.elsewhere) {
                continue;
            }
            if let Some(d) = disagreements.first() {
                return Err(invalid(format!(
                    "refusing entry {:?}: its PAX {} ({}) disagrees with its header ({})",
                    show(&meta.name),
                    d.key,
                    d.pax,
                    d.header
                )));
            }
            let hardlink = (meta.kind == Kind::Hardlink)
                .then(|| hardlink_target(meta.link.as_deref().unwrap_or_default(), &prefix));
            scope
                .admit(&rel, hardlink.as_deref(), meta.kind == Kind::Symlink)
                .map_err(|why| invalid(format!("refusing entry {:?}: {why}", show(&meta.name))))?;
            if !rel.is_empty() && excluded(&rel, &spec.skip) {
                staged.skipped.push(show(&meta.name));
                continue;
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
            if rel.is_empty() {
                if meta.kind != spec.root || staged.root.is_some() || staged.single_file {
                    return Err(invalid(format!(
                        "refusing entry {:?}: {} is restored as a {}, and this is {}",
                        show(&meta.name),
                        spec.path,
                        if spec.root == Kind::Dir {
                            "directory"
                        } else {
                            "single file"
                        },
                        if staged.root.is_some() || staged.single_file {
                            "its second entry".to_string()
                        } else {
                            format!("a {:?}", meta.kind)
                        }
                    )));
                }
                if meta.kind == Kind::Dir {
                    staged.root = Some(RootMeta {
                        mode: meta.mode,
                        uid: meta.uid,
                        gid: meta.gid,
                        mtime: meta.mtime.secs,
                    });
                    continue;
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
            out.append(&meta, &mut entry)?;
            staged.entries += 1;
        }
    }
    let (_, sha256) = hashing.drain()?;
    if sha256 != expected_sha256 {
        return Err(invalid(format!(
            "archive changed since it was verified (sha256 now {sha256})"
        )));
    }
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

/// An entry name for messages.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
