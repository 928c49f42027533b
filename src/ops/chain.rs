//! An incremental backup's chain: the full backup it begins with and every increment up to it,
//! each read and checked before anything is staged (listed, sound, of the same container and
//! paths, linked parent to child in time order), each with the key that opens it and its
//! deletion list.

use std::collections::HashMap;

use anyhow::Result;

use super::key::Key;
use crate::destination::Destination;
use crate::encryption::Unlock;
use crate::error::Failure;
use crate::manifest::{Manifest, Store};

/// The longest chain made or followed (a forged loop of parents ends here).
pub const MAX_CHAIN: usize = 1000;

/// One backup of a chain, ready to read.
pub struct Layer {
    /// Its manifest.
    pub m: Manifest,
    /// What reads its objects.
    pub key: Key,
}

/// The manifests of `m`'s chain, the full backup first and `m` last (just `m` when it is full),
/// from one listing of the destination and one read a link. A missing or unsound link is a
/// verification failure naming it.
pub async fn manifests(store: &Store, m: &Manifest) -> Result<Vec<Manifest>> {
    let dest = store.describe();
    let broken = |why: String| -> anyhow::Error {
        Failure::verify(format!(
            "backup {} at {dest} is incremental, and its chain is broken: {why}; nothing was changed",
            m.id
        ))
        .into()
    };
    let listed = store.manifests().await?;
    let mut chain = vec![m.clone()];
    while let Some(up) = chain.last().expect("one").parent.clone() {
        if chain.len() >= MAX_CHAIN {
            return Err(broken(format!("it is over {MAX_CHAIN} backups long")));
        }
        if !listed.contains(&up) {
            return Err(broken(format!("its link {up} is missing")));
        }
        let catalog = store.read(std::slice::from_ref(&up)).await?;
        let Some(parent) = catalog.manifests.into_iter().find(|p| p.id == up) else {
            let why = catalog
                .rejected
                .first()
                .map(|(_, why)| format!(" ({why})"))
                .unwrap_or_default();
            return Err(broken(format!(
                "the manifest of its link {up} was refused{why}"
            )));
        };
        link_ok(&parent, chain.last().expect("one")).map_err(broken)?;
        chain.push(parent);
    }
    chain.reverse();
    Ok(chain)
}

/// The chain of `m` among `all` (manifests at the destination), the full backup first, or why
/// it is broken (the first link missing or unsound, walking back from `m`).
pub fn walk<'a>(m: &'a Manifest, all: &'a [Manifest]) -> Result<Vec<&'a Manifest>, String> {
    walk_in(m, &by_id(all))
}

/// The manifests of `all` by id, for many [`walk_in`]s.
pub fn by_id(all: &[Manifest]) -> HashMap<&str, &Manifest> {
    all.iter().map(|m| (m.id.as_str(), m)).collect()
}

/// [`walk`] among manifests by id.
pub fn walk_in<'a>(
    m: &'a Manifest,
    all: &HashMap<&str, &'a Manifest>,
) -> Result<Vec<&'a Manifest>, String> {
    let mut chain = vec![m];
    while let Some(up) = &chain.last().expect("one").parent {
        if chain.len() >= MAX_CHAIN {
            return Err(format!("it is over {MAX_CHAIN} backups long"));
        }
        let parent = *all
            .get(up.as_str())
            .ok_or_else(|| format!("its link {up} is missing or unreadable"))?;
        link_ok(parent, chain.last().expect("one"))?;
        chain.push(parent);
    }
    chain.reverse();
    Ok(chain)
}

/// Whether `parent` can be `child`'s parent: of the same container, paths, `--exclude` patterns
/// and encryption (a forged plain link in an encrypted chain is refused), older, and of the same
/// chain.
pub fn link_ok(parent: &Manifest, child: &Manifest) -> Result<(), String> {
    let up = &parent.id;
    let same_paths = parent
        .paths
        .iter()
        .map(|p| &p.path)
        .eq(child.paths.iter().map(|p| &p.path));
    if parent.container != child.container || !same_paths || parent.exclude != child.exclude {
        return Err(format!(
            "its link {up} is of another container or other paths"
        ));
    }
    if parent.encryption != child.encryption {
        return Err(format!(
            "its link {up} is encrypted otherwise than {}",
            child.id
        ));
    }
    if parent.created >= child.created {
        return Err(format!("its link {up} is not older than {}", child.id));
    }
    let full = parent.chain.clone().unwrap_or_else(|| parent.id.clone());
    if Some(&full) != child.chain.as_ref() {
        return Err(format!(
            "{} and its link {up} name different full backups",
            child.id
        ));
    }
    Ok(())
}

/// Opens each backup of `chain` with `unlock` and checks its deletion list (read again, one
/// layer at a time, when staged: a chain's lists are never all held at once).
pub async fn open(
    dest: &dyn Destination,
    chain: Vec<Manifest>,
    unlock: &Unlock,
) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    for m in chain {
        let key = Key::open(dest, &m, unlock).await?;
        drop(deleted(dest, &m, &key).await?);
        layers.push(Layer { m, key });
    }
    Ok(layers)
}

/// The deletion list of `m` (none for a full backup), checked against its manifest.
pub async fn deleted(dest: &dyn Destination, m: &Manifest, key: &Key) -> Result<Vec<Vec<u8>>> {
    let Some(stored) = &m.deleted else {
        return Ok(Vec::new());
    };
    let prefixes: Vec<String> = m
        .paths
        .iter()
        .map(|p| crate::archive::names::prefix_for(&p.path))
        .collect();
    key.read_stored(dest, m, stored, move |r| {
        let text = std::io::BufReader::new(zstd::stream::read::Decoder::new(r)?);
        crate::index::deleted::read(text, &prefixes).map_err(std::io::Error::other)
    })
    .await
}

/// The names of `deleted` that belong to path `index` of `paths` (the longest path holding
/// each, as archive entries belong).
pub fn of_path(deleted: &[Vec<u8>], paths: &[String], index: usize) -> Vec<Vec<u8>> {
    let prefixes: Vec<String> = paths
        .iter()
        .map(|p| crate::archive::names::prefix_for(p))
        .collect();
    deleted
        .iter()
        .filter(|name| {
            let owner = prefixes
                .iter()
                .enumerate()
                .filter(|(_, p)| crate::archive::names::relative(name, p).is_some())
                .max_by_key(|(_, p)| p.len())
                .map(|(i, _)| i);
            owner == Some(index)
        })
        .cloned()
        .collect()
}
