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
        all.retain(|m| m.owner() == c);
    }
    // A container is qualified by its engine where backups record one: `edge/web` and
    // `core/web` are two groups.
    let mut by_container: BTreeMap<String, Vec<&Manifest>> = BTreeMap::new();
    for m in &all {
        by_container.entry(m.owner()).or_default().push(m);
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
    keep_chains(&all, &mut verdicts);
    // Newest first: an increment goes before the backups it depends on, so a prune cut short
    // never leaves a listed backup whose chain is broken.
    let mut doomed: Vec<&Verdict> = verdicts.iter().filter(|d| !d.keep).collect();
    doomed.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    let mut removed = 0;
    for d in doomed {
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

/// Keeps every backup a kept incremental backup depends on (its parent, and so on to its
/// chain's full backup), saying so; a chain none of whose backups is kept goes whole.
fn keep_chains(all: &[Manifest], verdicts: &mut [Verdict]) {
    let by_id: BTreeMap<&str, &Manifest> = all.iter().map(|m| (m.id.as_str(), m)).collect();
    let kept: Vec<String> = verdicts
        .iter()
        .filter(|v| v.keep)
        .map(|v| v.id.clone())
        .collect();
    for id in kept {
        let mut at = by_id.get(id.as_str()).and_then(|m| m.parent.clone());
        let mut steps = 0;
        while let Some(parent) = at {
            steps += 1;
            if steps > crate::ops::chain::MAX_CHAIN {
                break;
            }
            if let Some(v) = verdicts.iter_mut().find(|v| v.id == parent) {
                let reason = format!("needed by {id} (an incremental backup's chain)");
                if !v.keep {
                    v.keep = true;
                    v.reasons.clear();
                }
                if !v.reasons.iter().any(|r| r.starts_with("needed by")) {
                    v.reasons.push(reason);
                }
            }
            at = by_id.get(parent.as_str()).and_then(|m| m.parent.clone());
        }
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    fn verdict(id: &str, keep: bool) -> Verdict {
        Verdict {
            container: "web".into(),
            id: id.into(),
            keep,
            reasons: vec![if keep { "last 1" } else { "no rule" }.into()],
            created: id.into(),
        }
    }

    #[test]
    fn a_kept_increment_keeps_its_chain_and_an_unkept_chain_goes_whole() {
        let mut all: Vec<Manifest> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| manifest::sample(id, "web", 0))
            .collect();
        // a <- b <- c (c kept), d <- e (neither kept).
        for (child, parent) in [(1, "a"), (2, "b"), (4, "d")] {
            all[child].parent = Some(parent.into());
        }
        let mut v: Vec<Verdict> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| verdict(id, *id == "c"))
            .collect();
        keep_chains(&all, &mut v);
        let kept: Vec<&str> = v.iter().filter(|v| v.keep).map(|v| v.id.as_str()).collect();
        assert_eq!(kept, ["a", "b", "c"]);
        assert_eq!(
            v[0].reasons,
            ["needed by c (an incremental backup's chain)"]
        );
    }
}
