//! Pruning: old backups removed by a retention policy, per container, deciding from the
//! manifests' timestamps and tags (`retention.rs`), never from file modification times.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;

use crate::manifest::{self, Manifest, Store};
use crate::retention::{self, Item, Policy};

/// What prune decided and did (the `prune` JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct Pruned {
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
    /// How many were (or would be) removed.
    pub removed: usize,
    /// Every backup with its verdict.
    pub backups: Vec<Verdict>,
    /// The destination, for messages.
    #[serde(skip)]
    pub dest: String,
}

/// One backup's verdict.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// Its container.
    pub container: String,
    /// Its id.
    pub id: String,
    /// Whether it stays.
    pub keep: bool,
    /// The rules that keep it (or why it goes).
    pub reasons: Vec<String>,
    /// When it was made, for the text table.
    #[serde(skip)]
    pub created: String,
}

/// Decides and, unless `dry_run`, removes; prints nothing.
pub async fn apply(
    store: &Store,
    container: Option<&str>,
    policy: &Policy,
    dry_run: bool,
) -> Result<Pruned> {
    if !dry_run {
        store.sweep().await?;
    }
    let select = match container {
        Some(c) => manifest::Select::Container(c),
        None => manifest::Select::All,
    };
    let mut all = store.load(select).await?.manifests;
    if let Some(c) = container {
        all.retain(|m| m.container == c);
    }
    let mut by_container: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in &all {
        by_container.entry(&m.container).or_default().push(m);
    }
    let mut verdicts: Vec<Verdict> = Vec::new();
    for (name, backups) in &by_container {
        let items: Vec<Item> = backups
            .iter()
            .map(|m| Item {
                id: m.id.clone(),
                created: m.created,
                tags: m.tags.clone(),
                snapshot: m.snapshot.is_some(),
                safety: m.is_safety(),
            })
            .collect();
        verdicts.extend(
            retention::decide(&items, policy, Utc::now())
                .into_iter()
                .map(|d| {
                    let created = backups
                        .iter()
                        .find(|m| m.id == d.id)
                        .map(|m| m.created.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default();
                    Verdict {
                        container: name.to_string(),
                        id: d.id,
                        keep: d.keep,
                        reasons: d.reasons,
                        created,
                    }
                }),
        );
    }
    let mut removed = 0;
    for d in verdicts.iter().filter(|d| !d.keep) {
        if !dry_run {
            // Manifest first: from then on the backup is not listed, even if the archive's delete fails.
            store.remove(&d.id).await?;
        }
        removed += 1;
    }
    Ok(Pruned {
        dry_run,
        removed,
        backups: verdicts,
        dest: store.describe(),
    })
}
