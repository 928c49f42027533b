//! The JSON manifest beside each archive: what was backed up, from where, and how to check it.
//!
//! A backup "exists" exactly when its manifest does: the manifest is written after the archive is
//! complete, so listing manifests never shows a half-written backup. A manifest is also input from
//! the destination, which someone else may write: every field a restore acts on is checked
//! ([`Manifest::check`]) before it is used.

use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::destination::{get_at_most, DestError, Destination};
use crate::error::Failure;

/// The tag of the backup a restore takes of what it replaces.
pub const SAFETY_TAG: &str = "pre-restore";
/// A backup dated later than now plus this is "in the future" (a clock jump or a forged
/// manifest): never `latest`, never the anchor of `--keep-within`, unless named.
pub const FUTURE_SKEW_SECS: i64 = 300;

/// Manifests larger than this are not ours: reading stops there, and the object is reported like
/// any other manifest that cannot be trusted (one of 16 MiB used to fail `list` for the whole
/// destination).
const MANIFEST_LIMIT: u64 = 1 << 20;
/// What the first read takes of each manifest. Ours are 1-3 KB (a snapshot's, with the
/// container's inspect document, some tens of KB); a larger object is read again on its own
/// pass, [`LARGE_AT_ONCE`] at a time, so [`FETCH_AT_ONCE`] large ones never sit in memory together
/// (twenty objects of 15 MiB took 440 MB).
const FIRST_READ: u64 = 64 << 10;
/// Objects over [`FIRST_READ`] read at once.
const LARGE_AT_ONCE: usize = 2;
const MANIFEST_SUFFIX: &str = ".json";
const ARCHIVE_SUFFIX: &str = ".tar.zst";

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

/// The manifest format this dockyard writes. 1 is dockyard 0.1.0's (no `format` field); 2 adds
/// the field itself and the manifest's own mount record. A newer format is refused by name.
pub const FORMAT: u32 = 2;

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
}

/// What a snapshot records beyond a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The image's repository digests (`name@sha256:...`), to pull exactly that image again.
    pub image_digests: Vec<String>,
    /// The container's full inspect data (config, mounts, environment) at snapshot time.
    pub inspect: serde_json::Value,
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
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 255
            && !self.id.starts_with(['.', '-'])
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(format!("its id {:?} is not a dockyard backup id", self.id));
        }
        if self.archive != archive_name(&self.id) {
            return Err(format!(
                "it names archive {:?}, not {:?}",
                self.archive,
                archive_name(&self.id)
            ));
        }
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

/// A new backup id for `container` at `now`: sortable by time within a container, never colliding.
pub fn new_id(container: &str, now: DateTime<Utc>) -> String {
    let nonce: u16 = rand::random();
    format!("{container}-{}-{nonce:04x}", now.format("%Y%m%dT%H%M%SZ"))
}

pub use crate::destination::id_time;

/// The container named in an id (`<container>-<YYYYMMDDTHHMMSSZ>-<rand>`), if it has that shape.
/// Only a hint: the manifest inside says whose backup it is.
pub fn id_container(id: &str) -> Option<&str> {
    let id = id.strip_suffix(MANIFEST_SUFFIX).unwrap_or(id);
    id_time(id)?;
    let mut parts = id.rsplitn(3, '-');
    let (_, _, container) = (parts.next()?, parts.next()?, parts.next()?);
    Some(container)
}

/// The archive object name for an id.
pub fn archive_name(id: &str) -> String {
    format!("{id}{ARCHIVE_SUFFIX}")
}

/// The manifest object name for an id.
pub fn manifest_name(id: &str) -> String {
    format!("{id}{MANIFEST_SUFFIX}")
}

/// The manifests at a destination: the sound ones, newest first, and those refused with why.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Manifests that passed [`Manifest::check`], newest first.
    pub manifests: Vec<Manifest>,
    /// Object names of manifests that did not, with the reason.
    pub rejected: Vec<(String, String)>,
    /// Manifests left unread because their names are of other containers: count by container
    /// (as the names say), for "no backups of X, but of Y and Z".
    pub others: std::collections::BTreeMap<String, usize>,
}

/// Which manifests [`load`] reads, chosen by object name before any is fetched: the id in a name
/// holds the container and the time, so `list --container web` at a destination of 10,000 backups
/// reads web's manifests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select<'a> {
    /// Every manifest.
    All,
    /// The manifests whose names are of this container.
    Container(&'a str),
    /// The manifest of this id.
    Id(&'a str),
}

/// Manifests fetched at once (each a GET or an ssh command through the shared connection).
const FETCH_AT_ONCE: usize = 16;
/// Manifests asked for in one batch ([`Destination::get_small`]), and batches at once.
const BATCH: usize = 64;
const BATCHES_AT_ONCE: usize = 4;
/// A manifest larger than this is read on its own (as every manifest is where the backend reads
/// no batches), so a batch's output stays under 16 MiB.
const BATCH_OBJECT_LIMIT: u64 = 256 << 10;

/// Reads the manifests `select` picks by name, in batches where the backend can (SSH), else
/// [`FETCH_AT_ONCE`] at a time (objects over [`FIRST_READ`] again, [`LARGE_AT_ONCE`] at a time, and
/// none over [`MANIFEST_LIMIT`]). Each is checked:
/// sound, named after its own id, and of the container its name says (a manifest whose name and
/// content disagree is refused and reported, never trusted). Unreadable or unsound ones are set
/// aside with a warning naming them.
pub async fn load(dest: &dyn Destination, select: Select<'_>) -> Result<Catalog, DestError> {
    let mut out = Catalog::default();
    let mut names = Vec::new();
    let listed: Vec<String> = dest.list("").await?.into_iter().map(|e| e.name).collect();
    if listed.is_empty() && !dest.exists().await? {
        return Err(DestError::Unusable {
            dest: dest.describe(),
            message: "it does not exist: nothing was ever backed up here (a typo in the path?)"
                .into(),
        });
    }
    for name in listed {
        let Some(id) = name.strip_suffix(MANIFEST_SUFFIX) else {
            continue;
        };
        let wanted = match select {
            Select::All => true,
            Select::Container(c) => id_container(id) == Some(c),
            Select::Id(wanted) => id == wanted,
        };
        if wanted {
            names.push(name);
        } else if let Some(c) = id_container(id) {
            *out.others.entry(c.to_string()).or_default() += 1;
        }
    }
    // Batches where the backend reads several in one round trip (SSH: one remote command per
    // batch); what a batch did not return is read one by one, FETCH_AT_ONCE at a time.
    let batches: Vec<Vec<(String, Option<Vec<u8>>)>> =
        futures_util::stream::iter(names.chunks(BATCH).map(<[String]>::to_vec))
            .map(|batch| async move {
                let got = dest.get_small(&batch, BATCH_OBJECT_LIMIT).await;
                batch.into_iter().zip(got).collect()
            })
            .buffer_unordered(BATCHES_AT_ONCE)
            .collect()
            .await;
    let mut fetched: Vec<(String, Fetched)> = Vec::new();
    let mut rest = Vec::new();
    for (name, bytes) in batches.into_iter().flatten() {
        match bytes {
            Some(bytes) => {
                let parsed = parse_named(&name, &bytes);
                fetched.push((name, Ok(parsed)));
            }
            None => rest.push(name),
        }
    }
    tracing::debug!(
        batched = fetched.len(),
        one_by_one = rest.len(),
        dest = %dest.describe(),
        "manifests read"
    );
    let (read, large) = read_each(dest, rest, FIRST_READ, FETCH_AT_ONCE).await;
    fetched.extend(read);
    let (read, too_large) = read_each(dest, large, MANIFEST_LIMIT, LARGE_AT_ONCE).await;
    fetched.extend(read);
    for name in too_large {
        let why =
            "it is over 1 MiB, larger than any dockyard manifest; it was not read".to_string();
        fetched.push((name, Ok(Err(why))));
    }
    for (name, read) in fetched {
        match read? {
            Ok(m) => out.manifests.push(m),
            Err(why) => {
                tracing::warn!(object = %name, dest = %dest.describe(), "ignoring manifest: {why}");
                out.rejected.push((name, why));
            }
        }
    }
    out.rejected.sort();
    sort_newest_first(&mut out.manifests);
    let now = Utc::now();
    for m in out.manifests.iter().filter(|m| m.in_future(now)) {
        tracing::warn!(id = %m.id, created = %m.created, "backup is dated in the future (clock jump or forged manifest): it is never `latest` and does not anchor --keep-within unless named");
    }
    Ok(out)
}

/// A manifest read: transport errors outside, refusals (with why) inside.
type Fetched = Result<Result<Manifest, String>, DestError>;

/// Reads each of `names` whole, `at_once` at a time, if it is at most `limit` bytes: those read
/// (and checked, each as it arrives, so only `at_once` are in memory), and the names of those
/// larger.
async fn read_each(
    dest: &dyn Destination,
    names: Vec<String>,
    limit: u64,
    at_once: usize,
) -> (Vec<(String, Fetched)>, Vec<String>) {
    let read: Vec<(String, Option<Fetched>)> = futures_util::stream::iter(names)
        .map(|name| async move {
            let read = match get_at_most(dest, &name, limit).await {
                Ok(Some(bytes)) => Some(Ok(parse_named(&name, &bytes))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
            (name, read)
        })
        .buffer_unordered(at_once)
        .collect()
        .await;
    let (mut done, mut larger) = (Vec::new(), Vec::new());
    for (name, read) in read {
        match read {
            Some(fetched) => done.push((name, fetched)),
            None => larger.push(name),
        }
    }
    (done, larger)
}

/// Parses and checks the manifest stored as `name`.
fn parse_named(name: &str, bytes: &[u8]) -> Result<Manifest, String> {
    let m = serde_json::from_slice::<Manifest>(bytes)
        .map_err(|e| format!("it is not a dockyard manifest ({e})"))?;
    m.check()?;
    if manifest_name(&m.id) != name {
        return Err(format!("it holds the manifest of {:?}", m.id));
    }
    match id_container(&m.id) {
        Some(c) if c != m.container => Err(format!(
            "its name says container {c:?} but it holds a backup of {:?}",
            m.container
        )),
        _ => Ok(m),
    }
}

/// Orders manifests newest first (ties broken by id, so the order is stable).
pub fn sort_newest_first(list: &mut [Manifest]) {
    list.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
}

impl Catalog {
    /// Picks a backup: `latest` is the newest one of `container` that is neither a safety backup
    /// nor dated in the future; anything else is an exact id.
    pub fn select(
        &self,
        wanted: &str,
        container: &str,
        dest: &str,
        now: DateTime<Utc>,
    ) -> Result<&Manifest, Failure> {
        if wanted == "latest" {
            let mut of_container = self.manifests.iter().filter(|m| m.container == container);
            if let Some(m) = of_container
                .clone()
                .find(|m| !m.is_safety() && !m.in_future(now))
            {
                return Ok(m);
            }
            return Err(Failure::usage(match of_container.next() {
                Some(m) => format!(
                    "no regular backup of container {container:?} at {dest}; there are only safety backups or backups dated in the future (newest: {}); name one with --backup ID to restore it",
                    m.id
                ),
                None => format!(
                    "no backup of container {container:?} at {dest}; `dockyard list --to {dest}` shows what is there"
                ),
            }));
        }
        if let Some(m) = self.manifests.iter().find(|m| m.id == wanted) {
            return Ok(m);
        }
        if let Some((_, why)) = self
            .rejected
            .iter()
            .find(|(name, _)| *name == manifest_name(wanted))
        {
            return Err(Failure::verify(format!(
                "backup {wanted} at {dest} cannot be trusted: its manifest was refused because {why}"
            )));
        }
        Err(Failure::usage(format!(
            "no backup with id {wanted:?} at {dest}; `dockyard list` shows the ids"
        )))
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
        Manifest {
            exclude: vec![],
            format: FORMAT,
            id: id.into(),
            container: container.into(),
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
        }
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

    fn catalog(mut all: Vec<Manifest>) -> Catalog {
        sort_newest_first(&mut all);
        Catalog {
            manifests: all,
            rejected: vec![(
                "bad.json".into(),
                "its path \"/a/../b\" is not normalised".into(),
            )],
            others: Default::default(),
        }
    }

    #[test]
    fn latest_is_newest_of_that_container() {
        let now = Utc.timestamp_opt(100, 0).unwrap();
        let all = catalog(vec![
            manifest("a", "web", 10),
            manifest("b", "web", 30),
            manifest("c", "db", 40),
        ]);
        assert_eq!(all.manifests[0].id, "c");
        assert_eq!(all.select("latest", "web", "d", now).unwrap().id, "b");
        assert_eq!(all.select("a", "ignored", "d", now).unwrap().id, "a");
        let err = all
            .select("latest", "cache", "/b", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no backup of container \"cache\" at /b"),
            "{err}"
        );
        assert!(all
            .select("zzz", "web", "d", now)
            .unwrap_err()
            .to_string()
            .contains("\"zzz\""));
        let err = all.select("bad", "web", "d", now).unwrap_err();
        assert_eq!(err.category, crate::error::Category::Verify);
        assert!(err.to_string().contains("not normalised"), "{err}");
    }

    #[test]
    fn latest_skips_safety_backups_and_the_future() {
        let now = Utc.timestamp_opt(10_000, 0).unwrap();
        let mut safety = manifest("s", "web", 9_000);
        safety.tags = vec![SAFETY_TAG.into()];
        let future = manifest("f", "web", 10_000 + FUTURE_SKEW_SECS + 1);
        let skewed = manifest("k", "web", 10_000 + FUTURE_SKEW_SECS - 1);
        let all = catalog(vec![manifest("old", "web", 5_000), safety.clone(), future]);
        assert_eq!(all.select("latest", "web", "d", now).unwrap().id, "old");
        assert_eq!(all.select("s", "web", "d", now).unwrap().id, "s");
        assert_eq!(all.select("f", "web", "d", now).unwrap().id, "f");
        let only_safety = catalog(vec![safety]);
        let err = only_safety
            .select("latest", "web", "d", now)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only safety backups") && err.contains("(newest: s)"),
            "{err}"
        );
        // A little clock skew is not the future.
        let all = catalog(vec![manifest("old", "web", 5_000), skewed]);
        assert_eq!(all.select("latest", "web", "d", now).unwrap().id, "k");
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
