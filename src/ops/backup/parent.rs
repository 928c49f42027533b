//! An incremental backup's parent: the newest backup of the same container and paths at the
//! destination, if its chain is whole and not due for a new full, and its file index reads back
//! (one object, checked against its manifest and read to the end before the agent sees it).
//! Anything else makes the backup full, with the reason said.

use chrono::{DateTime, Utc};

use crate::agent::spool::Spool;
use crate::encryption::{IdentityFile, Seal, Unlock};
use crate::manifest::{Manifest, PathRecord, Select, Store};
use crate::ops::key::Key;
use crate::settings::{BackupSettings, Incremental};

/// The longest chain followed (a forged loop of parents ends here).
pub const MAX_CHAIN: usize = 1000;

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

/// Chooses the parent of an incremental backup of `container`'s `paths` under `s`, as of
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
        m.container == container
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
    // The chain back to its full backup: every link listed and sound.
    let mut chain = vec![parent];
    while let Some(up) = &chain.last().expect("one").parent {
        match catalog.manifests.iter().find(|m| &m.id == up) {
            Some(m) if chain.len() < MAX_CHAIN => chain.push(m),
            Some(_) => return Base::Full(format!("the chain of {id} is over {MAX_CHAIN} long")),
            None => {
                return Base::Full(format!(
                    "the chain of the newest backup {id} is broken: its link {up} is missing or unreadable"
                ))
            }
        }
    }
    let full = chain.last().expect("one");
    if chain.len() as u32 >= rules.full_every {
        return Base::Full(format!(
            "the chain of {} already holds {} backups (full every {})",
            full.id,
            chain.len(),
            rules.full_every
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
        Err(_) if s.identities.is_empty() && parent.encryption.is_some() => {
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
