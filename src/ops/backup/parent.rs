//! An incremental backup's parent: the newest backup of the same container and paths at the
//! destination, if its chain is whole and not due for a new full, and its file index reads back
//! (one object, checked against its manifest and read to the end before the agent sees it).
//! Anything else makes the backup full, with the reason said.

use chrono::{DateTime, Utc};

use crate::agent::spool::Spool;
use crate::encryption::{IdentityFile, Seal, Unlock};
use crate::manifest::{Manifest, PathRecord, Select, Store};
use crate::ops::chain::MAX_CHAIN;
use crate::ops::key::Key;
use crate::settings::{BackupSettings, Incremental};

/// What an incremental backup is made against.
pub enum Base {
    /// Nothing: the backup is full, for this reason.
    Full(String),
    /// Its parent, the full backup the chain begins with, and the parent's index.
    Parent {
        /// The parent's manifest.
        m: Box<Manifest>,
        /// The chain's full backup's id.
        chain: String,
        /// The parent's index, compressed, checked.
        index: Spool,
    },
}

/// Chooses the parent of an incremental backup of `container`'s (qualified: `engine/name`) `paths` under `s`, as of
/// `now`, and reads its index.
pub async fn choose(
    store: &Store,
    container: &str,
    paths: &[PathRecord],
    s: &BackupSettings,
    rules: Incremental,
    now: DateTime<Utc>,
) -> Base {
    let catalog = match store.load(Select::Container(container)).await {
        Ok(c) => c,
        Err(e) => return Base::Full(format!("no earlier backup could be read ({e})")),
    };
    let same_paths = |m: &Manifest| {
        m.owner() == container
            && m.paths
                .iter()
                .map(|p| &p.path)
                .eq(paths.iter().map(|p| &p.path))
            && !m.is_safety()
            && !m.in_future(now)
    };
    let Some(parent) = catalog.manifests.iter().find(|m| same_paths(m)) else {
        return Base::Full(format!(
            "no earlier backup of {} here to compare with",
            paths
                .iter()
                .map(|p| p.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let id = &parent.id;
    if parent.paths != paths {
        return Base::Full(format!(
            "the newest backup {id} was of other mounts (a volume recreated, another container of that name)"
        ));
    }
    if parent.created >= now {
        return Base::Full(format!("the newest backup {id} is not older than this one"));
    }
    if parent.exclude != s.exclude.patterns() {
        return Base::Full(format!(
            "the newest backup {id} was made with other --exclude patterns"
        ));
    }
    let Some(stored) = &parent.index else {
        return Base::Full(format!(
            "the newest backup {id} has no file index (made through the engine's archive endpoint or by an older dockyard)"
        ));
    };
    let fingerprints = s.encryption.as_ref().map(Seal::fingerprints);
    if parent.encryption.as_ref().map(|e| &e.recipients) != fingerprints.as_ref() {
        return Base::Full(format!(
            "the newest backup {id} is encrypted otherwise than this one"
        ));
    }
    // The chain back to its full backup: every link listed and sound, as a restore checks it.
    let chain = match crate::ops::chain::walk(parent, &catalog.manifests) {
        Ok(chain) => chain,
        Err(why) => {
            return Base::Full(format!(
                "the chain of the newest backup {id} is broken: {why}"
            ))
        }
    };
    let full = chain.first().expect("one");
    let longest = rules.full_every.min(MAX_CHAIN as u32);
    if chain.len() as u32 >= longest {
        return Base::Full(format!(
            "the chain of {} already holds {} backups (full every {longest})",
            full.id,
            chain.len()
        ));
    }
    if let Some(secs) = rules.full_after {
        if (now - full.created).num_seconds() >= secs as i64 {
            return Base::Full(format!(
                "the chain's full backup {} is older than {}",
                full.id,
                humantime::format_duration(std::time::Duration::from_secs(secs))
            ));
        }
    }
    let unlock = Unlock {
        identities: s.identities.iter().cloned().map(IdentityFile).collect(),
        passphrase: match &s.encryption {
            Some(Seal::Passphrase(p)) => Some(p.clone()),
            _ => None,
        },
    };
    let dest = store.dest().as_ref();
    let key = match Key::open_object(dest, parent, &unlock, &stored.object).await {
        Ok(k) => k,
        Err(_) if s.identities.is_empty() && !matches!(s.encryption, Some(Seal::Passphrase(_))) => {
            return Base::Full(format!(
                "the index of {id} is encrypted, and no --identity was given to read it"
            ))
        }
        Err(e) => return Base::Full(format!("the index of {id} cannot be read: {e:#}")),
    };
    let want: Vec<String> = paths.iter().map(|p| p.path.clone()).collect();
    let read = key
        .read_stored(dest, parent, stored, move |mut r| {
            let mut spool = Spool::default();
            std::io::copy(&mut r, &mut spool)?;
            let mut check = spool.reader()?;
            let text = std::io::BufReader::new(zstd::stream::read::Decoder::new(&mut check)?);
            crate::index::check(text, &want).map_err(std::io::Error::other)?;
            Ok(spool)
        })
        .await;
    match read {
        Ok(index) => Base::Parent {
            m: Box::new(parent.clone()),
            chain: full.id.clone(),
            index,
        },
        Err(e) => Base::Full(format!("the index of {id} is unusable: {e:#}")),
    }
}
