//! The JSON manifest beside each archive: what was backed up, from where, and how to check it.
//!
//! A backup "exists" exactly when its manifest does: the manifest is written after the archive is
//! complete, so listing manifests never shows a half-written backup. A manifest is also input from
//! the destination, which someone else may write: every field a restore acts on is checked
//! ([`Manifest::check`]) before it is used. The objects of a backup at a destination, and the
//! order they are written and removed in, are the [`Store`]'s.

mod catalog;
mod names;
mod store;
mod sweep;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use catalog::{sort_newest_first, Catalog, Select};
pub use names::Object;
pub use store::{Draft, Store};

/// The tag of the backup a restore takes of what it replaces.
pub const SAFETY_TAG: &str = "pre-restore";
/// A backup dated later than now plus this is "in the future" (a clock jump or a forged
/// manifest): never `latest`, never the anchor of `--keep-within`, unless named.
pub const FUTURE_SKEW_SECS: i64 = 300;

/// One backed-up path and the mount it came from, so restore can map it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    /// The absolute path inside the container, e.g. `/srv/media`. Archive entries for it are stored
    /// under the same path without the leading slash (`srv/media/...`).
    pub path: String,
    /// The mount that holds it.
    pub mount: MountRecord,
}

/// The mount a path was backed up from, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The mount point inside the container, e.g. `/srv/media`.
    pub destination: String,
    /// `volume` or `bind`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub volume: Option<String>,
}

/// The newest manifest format this dockyard reads and writes. 1 is dockyard 0.1.0's (no `format`
/// field); 2 adds the field itself and the manifest's own mount record; 3 an encrypted backup
/// (`encryption`), so an older dockyard says to upgrade rather than misread it; 4 an incremental
/// backup (`parent`, `chain`, `deleted`); 5 a backup with database dumps (`dumps`), whose archive
/// an older dockyard would refuse entry by entry; 6 a backup whose container is qualified by its
/// engine (`engine`), which an older dockyard would group with another engine's container of the
/// same name. A newer format is refused by name.
pub const FORMAT: u32 = 6;

/// The format an encrypted full backup is written with.
pub const ENCRYPTED_FORMAT: u32 = 3;

/// The format a plain backup is written with (2: every dockyard since 0.2 reads it).
pub const PLAIN_FORMAT: u32 = 2;

/// The format of an incremental backup (its archive alone is not the tree), so an older
/// dockyard refuses it rather than restore part of it.
pub const INCREMENTAL_FORMAT: u32 = 4;

/// The format of a backup with database dumps in its archive.
pub const DUMPS_FORMAT: u32 = 5;

/// The format of a backup whose container is qualified by its engine.
pub const ENGINE_FORMAT: u32 = 6;

/// Manifests without a `format` field are dockyard 0.1.0's.
fn legacy_format() -> u32 {
    1
}

/// Everything recorded about one backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format (see [`FORMAT`]).
    #[serde(default = "legacy_format")]
    pub format: u32,
    /// Unique id within the destination: `<container>-<UTC timestamp>-<random>`.
    pub id: String,
    /// Container name at backup time.
    pub container: String,
    /// With several engines (`[engines]`): the name of the one the container is on. Backups of
    /// `edge/web` and `core/web` are two containers' (retention groups, `latest`, parents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Container id at backup time.
    pub container_id: String,
    /// Image reference the container ran.
    pub image: String,
    /// Image id the container ran.
    pub image_id: String,
    /// Host the backup ran on.
    pub host: String,
    /// Paths backed up, with their mounts.
    pub paths: Vec<PathRecord>,
    /// When the backup started (UTC, RFC 3339).
    pub created: DateTime<Utc>,
    /// Operator tags (`pre-upgrade`, `pre-restore`, ...).
    pub tags: Vec<String>,
    /// dockyard version that wrote it.
    pub tool_version: String,
    /// Archive size in bytes (compressed).
    pub size: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
    /// Bytes of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Number of tar entries (files, directories, links).
    pub entries: u64,
    /// zstd level used.
    pub level: i32,
    /// The archive's object name in the destination.
    pub archive: String,
    /// For `dockyard snapshot`: what is needed to bring the container back as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRecord>,
    /// The `--exclude` patterns the backup left names out by: a restore keeps the live names
    /// they match as they are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// How the archive is encrypted, if it is: then `sha256` and `size` are of the stored
    /// (encrypted) bytes, and the archive is `<id>.tar.zst.age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The file index recorded beside the archive (backups made through the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Stored>,
    /// An incremental backup: the id of the backup its changes are against (its archive holds
    /// only what changed since; a restore applies the whole chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// An incremental backup: the id of the full backup its chain begins with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// An incremental backup: the names its parent held that are gone (applied before its
    /// archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Stored>,
    /// The database dumps at the start of its archive, in order (`dumps/<container>/...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<crate::dumps::DumpRecord>,
}

/// An object stored beside the archive, and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Its object name.
    pub object: String,
    /// SHA-256 of its stored bytes, hex.
    pub sha256: String,
    /// Its stored size.
    pub size: u64,
    /// Entries (index lines, or names deleted).
    pub entries: u64,
}

/// An encrypted archive's scheme and who it was encrypted to (fingerprints, never keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    /// `age`, the one scheme.
    pub scheme: String,
    /// Each recipient's fingerprint (16 hex digits of a sha256 of its public key), or
    /// `passphrase`.
    pub recipients: Vec<String>,
}

/// What a snapshot records beyond a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The image's repository digests (`name@sha256:...`), to pull exactly that image again
    /// (empty here when `sealed`).
    #[serde(default)]
    pub image_digests: Vec<String>,
    /// The container's full inspect data (config, mounts, environment) at snapshot time (null
    /// here when `sealed`).
    #[serde(default)]
    pub inspect: serde_json::Value,
    /// An encrypted backup's snapshot: the object (`<id>.snapshot.json.age`) holding the above,
    /// encrypted as the archive is, so the plain manifest reveals neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

impl Manifest {
    /// Checks every field a restore acts on, as if an attacker wrote it: the id and archive name,
    /// and each path (absolute, no `.`, `..` or empty component: the `--path` rule), so a manifest
    /// cannot point a restore at another path than the archive holds.
    pub fn check(&self) -> Result<(), String> {
        if self.format > FORMAT {
            return Err(format!(
                "it has manifest format {}, newer than this dockyard reads ({FORMAT}); upgrade dockyard",
                self.format
            ));
        }
        if !is_id(&self.id) {
            return Err(format!("its id {:?} is not a dockyard backup id", self.id));
        }
        if let Some(e) = &self.engine {
            if !is_engine_name(e) {
                return Err(format!("its engine {e:?} is not an engine name"));
            }
            if self.format < ENGINE_FORMAT {
                return Err(format!(
                    "it names an engine but has manifest format {}, older than engines ({ENGINE_FORMAT})",
                    self.format
                ));
            }
        }
        let archive = match &self.encryption {
            None => archive_name(&self.id),
            Some(e) if e.scheme == "age" => {
                // Printed in messages: only what dockyard writes, so a forged manifest cannot
                // put control characters on an operator's terminal.
                let fingerprint = |r: &String| {
                    r == "passphrase" || (r.len() == 16 && r.bytes().all(|b| b.is_ascii_hexdigit()))
                };
                if e.recipients.is_empty()
                    || e.recipients.len() > crate::encryption::keys::MAX_RECIPIENTS
                    || !e.recipients.iter().all(fingerprint)
                {
                    return Err(
                        "its encryption recipients are not fingerprints dockyard writes".into(),
                    );
                }
                Object::SealedArchive.name(&self.id)
            }
            Some(e) => {
                return Err(format!(
                    "it is encrypted with {:?}, which this dockyard does not read (age only)",
                    e.scheme
                ))
            }
        };
        if self.archive != archive {
            return Err(format!(
                "it names archive {:?}, not {archive:?}",
                self.archive
            ));
        }
        if let Some(sealed) = self.snapshot.as_ref().and_then(|s| s.sealed.as_ref()) {
            let want = Object::SealedSnapshot.name(&self.id);
            if self.encryption.is_none() || *sealed != want {
                return Err(format!(
                    "it names sealed snapshot {sealed:?}, not {want:?} of an encrypted backup"
                ));
            }
        }
        let sealed = self.encryption.is_some();
        for (stored, kind) in [
            (&self.index, Object::Index),
            (&self.deleted, Object::Deleted),
        ] {
            if let Some(st) = stored {
                let want = kind.sealed(sealed).name(&self.id);
                if st.object != want {
                    return Err(format!("it names object {:?}, not {want:?}", st.object));
                }
            }
        }
        match (&self.parent, &self.chain, &self.deleted) {
            (None, None, None) => {}
            (Some(parent), Some(chain), Some(_)) => {
                for id in [parent, chain] {
                    if !is_id(id) || id == &self.id {
                        return Err(format!(
                            "its parent or chain {id:?} is not another backup's id"
                        ));
                    }
                }
                if self.format < INCREMENTAL_FORMAT {
                    return Err(format!(
                        "it names a parent but has manifest format {}",
                        self.format
                    ));
                }
            }
            _ => return Err("it names only part of a parent, a chain and a deletion list".into()),
        }
        if !self.dumps.is_empty() && self.format < DUMPS_FORMAT {
            return Err(format!(
                "it lists database dumps but has manifest format {}",
                self.format
            ));
        }
        crate::dumps::check_all(&self.dumps)?;
        if self.paths.is_empty() {
            return Err("it lists no paths".into());
        }
        for (i, p) in self.paths.iter().enumerate() {
            p.path
                .parse::<crate::values::ContainerPath>()
                .ok()
                .filter(|n| n.as_str() == p.path)
                .ok_or_else(|| {
                    format!(
                        "its path {:?} is not a normalised absolute path (no `.`, `..` or empty components)",
                        p.path
                    )
                })?;
            if self.paths[..i].iter().any(|q| q.path == p.path) {
                return Err(format!("it lists path {:?} twice", p.path));
            }
        }
        Ok(())
    }

    /// Whether this is a safety backup a restore took of what it replaced.
    pub fn is_safety(&self) -> bool {
        self.tags.iter().any(|t| t == SAFETY_TAG)
    }

    /// Whether it is dated after `now` (beyond a small clock skew).
    pub fn in_future(&self, now: DateTime<Utc>) -> bool {
        self.created > now + Duration::seconds(FUTURE_SKEW_SECS)
    }
}

/// Whether `id` has the shape of a dockyard backup id (safe as an object name).
fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && !id.starts_with(['.', '-'])
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A container as backups are grouped by it: `engine/container` with an engine, else the
/// container's name.
pub fn qualified(engine: Option<&str>, container: &str) -> String {
    match engine {
        Some(e) => format!("{e}/{container}"),
        None => container.to_string(),
    }
}

/// How a qualified container begins its backups' ids (`edge/web`: `edge.web-...`).
pub fn id_stem(owner: &str) -> String {
    owner.replacen('/', ".", 1)
}

/// Whether `name` can be an engine's name in `[engines]` and a manifest: letters, digits, `_`
/// and `-`, 1 to 64 of them.
pub fn is_engine_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Manifest {
    /// Whose backup it is (retention groups, `list --container`, `latest`, parents):
    /// `engine/container` with an engine, else the container.
    pub fn owner(&self) -> String {
        qualified(self.engine.as_deref(), &self.container)
    }

    /// Whether it is an incremental backup (its archive holds only what changed since its
    /// parent).
    pub fn is_incremental(&self) -> bool {
        self.parent.is_some()
    }
}

/// A new backup id for `container` at `now`: sortable by time within a container, never colliding.
pub fn new_id(container: &str, now: DateTime<Utc>) -> String {
    let nonce: u16 = rand::random();
    format!("{container}-{}-{nonce:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// The time in an id (`<container>-<YYYYMMDDTHHMMSSZ>-<rand>`), if it has one.
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let mut parts = id.rsplitn(3, '-');
    let (_, stamp) = (parts.next()?, parts.next()?);
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The container named in an id (`<container>-<YYYYMMDDTHHMMSSZ>-<rand>`), if it has that shape.
/// Only a hint: the manifest inside says whose backup it is. A manifest's object name is taken as
/// its id.
pub fn id_container(id: &str) -> Option<&str> {
    let id = match Object::parse(id) {
        Some((id, Object::Manifest)) => id,
        _ => id,
    };
    id_time(id)?;
    let mut parts = id.rsplitn(3, '-');
    let (_, _, container) = (parts.next()?, parts.next()?, parts.next()?);
    Some(container)
}

/// The archive object name for an id.
pub fn archive_name(id: &str) -> String {
    Object::Archive.name(id)
}

/// The manifest object name for an id.
pub fn manifest_name(id: &str) -> String {
    Object::Manifest.name(id)
}

/// A sound manifest of backup `id` of `container`, created `secs` after the epoch, for tests.
#[cfg(test)]
pub(crate) fn sample(id: &str, container: &str, secs: i64) -> Manifest {
    use chrono::TimeZone;
    Manifest {
        exclude: vec![],
        encryption: None,
        format: PLAIN_FORMAT,
        id: id.into(),
        container: container.into(),
        engine: None,
        container_id: "c".into(),
        image: "i".into(),
        image_id: "sha256:i".into(),
        host: "h".into(),
        paths: vec![],
        created: Utc.timestamp_opt(secs, 0).unwrap(),
        tags: vec![],
        tool_version: "0".into(),
        size: 0,
        sha256: String::new(),
        tar_bytes: 0,
        entries: 0,
        level: 3,
        archive: archive_name(id),
        snapshot: None,
        index: None,
        parent: None,
        chain: None,
        deleted: None,
        dumps: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_manifest_of_dockyard_0_1_still_reads_and_a_newer_format_is_refused() {
        let mut v = serde_json::to_value(manifest("web-20260101T000000Z-0001", "web", 0)).unwrap();
        v.as_object_mut().unwrap().remove("format");
        let old: Manifest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(old.format, 1);
        assert!(!old.check().unwrap_err().contains("format"));
        v["format"] = 99.into();
        let newer: Manifest = serde_json::from_value(v).unwrap();
        let err = newer.check().unwrap_err();
        assert!(
            err.contains("format 99") && err.contains("upgrade dockyard"),
            "{err}"
        );
    }

    fn manifest(id: &str, container: &str, secs: i64) -> Manifest {
        sample(id, container, secs)
    }

    #[test]
    fn ids_sort_by_time_and_do_not_collide() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 1, 2, 3).unwrap();
        let a = new_id("web", t);
        assert_eq!(id_time(&a), Some(t));
        assert_eq!(id_time(&new_id("my-web-app", t)), Some(t));
        assert_eq!(id_time("nonsense"), None);
        assert!(a.starts_with("web-20261128T010203Z-"), "{a}");
        let many: std::collections::HashSet<_> = (0..50).map(|_| new_id("web", t)).collect();
        assert!(many.len() > 40, "ids should be random past the timestamp");
    }

    #[test]
    fn an_id_names_its_container_and_a_manifest_name_does_too() {
        let id = "my-web-app-20261128T010203Z-00af";
        assert_eq!(id_container(id), Some("my-web-app"));
        assert_eq!(id_container(&manifest_name(id)), Some("my-web-app"));
        assert_eq!(id_container("web-1"), None);
    }

    #[test]
    fn check_refuses_unnormalised_paths_and_foreign_names() {
        let mut m = manifest("web-1", "web", 5);
        m.paths = vec![PathRecord {
            path: "/srv/media".into(),
            mount: MountRecord {
                destination: "/srv/media".into(),
                kind: "volume".into(),
                volume: None,
            },
        }];
        m.check().unwrap();
        for bad in [
            "/srv/media/../logs",
            "/srv/./media",
            "/srv//media",
            "srv/media",
            "/",
            "/srv/media/",
        ] {
            let mut b = m.clone();
            b.paths[0].path = bad.into();
            assert!(b.check().unwrap_err().contains("not a normalised"), "{bad}");
        }
        let mut b = m.clone();
        b.archive = "../../etc/shadow".into();
        assert!(b.check().is_err());
        let mut b = m.clone();
        b.id = "../x".into();
        assert!(b.check().is_err());
        let mut b = m.clone();
        b.paths.push(b.paths[0].clone());
        assert!(b.check().unwrap_err().contains("twice"));
        // An encrypted backup names its `.age` archive, and only that one.
        let mut e = m.clone();
        e.encryption = Some(Encryption {
            scheme: "age".into(),
            recipients: vec!["0123456789abcdef".into()],
        });
        assert!(e.check().unwrap_err().contains(".tar.zst.age"));
        e.archive = Object::SealedArchive.name(&e.id);
        e.check().unwrap();
        let mut plain = e.clone();
        plain.encryption = None;
        assert!(
            plain.check().is_err(),
            "a plain manifest naming an .age archive"
        );
        // Recipients are fingerprints or `passphrase`: nothing else reaches a message.
        for bad in ["\u{1b}[2J", "0123456789abcdeg", ""] {
            let mut f = e.clone();
            f.encryption.as_mut().unwrap().recipients = vec![bad.into()];
            assert!(f.check().unwrap_err().contains("fingerprints"), "{bad:?}");
        }
        // A sealed snapshot is named for its backup, and only an encrypted one has it.
        let mut snap = e.clone();
        snap.snapshot = Some(SnapshotRecord {
            image_digests: vec![],
            inspect: serde_json::Value::Null,
            sealed: Some(Object::SealedSnapshot.name(&e.id)),
        });
        snap.check().unwrap();
        snap.snapshot.as_mut().unwrap().sealed = Some("../other.snapshot.json.age".into());
        assert!(snap.check().unwrap_err().contains("sealed snapshot"));
        e.encryption.as_mut().unwrap().scheme = "rot13".into();
        assert!(e.check().unwrap_err().contains("rot13"));
    }

    #[test]
    fn manifest_round_trips_through_json() {
        let m = manifest("x", "web", 5);
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains("\"created\":\"1970-01-01T00:00:05Z\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
