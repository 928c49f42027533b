//! Reading the manifests at a destination: which ones, chosen by object name before any is
//! fetched; in batches where the backend reads several in one round trip; each checked before it
//! is trusted; and picking one (`latest`, or an id) out of what was read.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::names::Object;
use super::{id_container, id_stem, manifest_name, Manifest};
use crate::destination::{get_at_most, DestError, Destination};
use crate::error::Failure;

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

/// Which manifests [`Store::load`](super::Store::load) reads, chosen by object name before any is fetched: the id in a name
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

/// Reads the manifests `select` picks by name among `ids` (the backups whose manifest a listing
/// showed), in batches where the backend can (SSH), else
/// [`FETCH_AT_ONCE`] at a time (objects over [`FIRST_READ`] again, [`LARGE_AT_ONCE`] at a time, and
/// none over [`MANIFEST_LIMIT`]). Each is checked:
/// sound, named after its own id, and of the container its name says (a manifest whose name and
/// content disagree is refused and reported, never trusted). Unreadable or unsound ones are set
/// aside with a warning naming them.
pub(super) async fn load(
    dest: &dyn Destination,
    ids: Vec<String>,
    select: Select<'_>,
) -> Result<Catalog, DestError> {
    let mut out = Catalog::default();
    let mut names = Vec::new();
    for id in ids {
        let wanted = match select {
            Select::All => true,
            Select::Container(c) => id_container(&id) == Some(id_stem(c).as_str()),
            Select::Id(wanted) => id == wanted,
        };
        if wanted {
            names.push(Object::Manifest.name(&id));
        } else if let Some(c) = id_container(&id) {
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
        Some(c) if c != id_stem(&m.owner()) => Err(format!(
            "its name says container {c:?} but it holds a backup of {:?}",
            m.owner()
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
            let mut of_container = self.manifests.iter().filter(|m| m.owner() == container);
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
    use crate::manifest::FUTURE_SKEW_SECS;
    use crate::manifest::{sample as manifest, SAFETY_TAG};
    use chrono::TimeZone;

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
}
