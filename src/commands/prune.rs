//! `dockyard prune`: remove old backups by a retention policy, per container, deciding from the
//! manifests' timestamps and tags (`retention.rs`), never from file modification times.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::Utc;
use serde_json::json;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest::{self, Manifest, Store};
use crate::retention::{self, Decision, Item, Policy};

/// Runs `dockyard prune`; with `dry_run`, only prints what it would do.
pub async fn run(
    ctx: &Ctx,
    spec: &DestSpec,
    container: Option<&str>,
    policy: &Policy,
    dry_run: bool,
) -> Result<()> {
    let outcome = apply(spec, container, policy, dry_run).await?;
    print(ctx, &outcome, dry_run);
    Ok(())
}

/// What prune decided (and did).
pub struct Outcome {
    /// Every backup with its container, verdict and creation time.
    pub verdicts: Vec<(String, Decision, String)>,
    /// How many were (or would be) removed.
    pub removed: usize,
    /// The destination, for messages.
    pub dest: String,
}

/// Decides and, unless `dry_run`, removes; prints nothing.
pub async fn apply(
    spec: &DestSpec,
    container: Option<&str>,
    policy: &Policy,
    dry_run: bool,
) -> Result<Outcome> {
    let dest = spec.open().await;
    let store = Store::new(dest.clone());
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
    let mut verdicts: Vec<(String, Decision, String)> = Vec::new();
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
                    (name.to_string(), d, created)
                }),
        );
    }
    let mut removed = 0;
    for (_, d, _) in verdicts.iter().filter(|(_, d, _)| !d.keep) {
        if !dry_run {
            // Manifest first: from then on the backup is not listed, even if the archive's delete fails.
            store.remove(&d.id).await?;
        }
        removed += 1;
    }
    Ok(Outcome {
        verdicts,
        removed,
        dest: dest.describe(),
    })
}

fn print(ctx: &Ctx, o: &Outcome, dry_run: bool) {
    if ctx.output.json {
        let rows: Vec<_> = o
            .verdicts
            .iter()
            .map(|(c, d, _)| json!({"container": c, "id": d.id, "keep": d.keep, "reasons": d.reasons}))
            .collect();
        ctx.json(&json!({"dry_run": dry_run, "removed": o.removed, "backups": rows}));
        return;
    }
    for (_, d, created) in &o.verdicts {
        if d.keep {
            ctx.say(&format!(
                "keep    {:<44} {created}  ({})",
                d.id,
                d.reasons.join(", ")
            ));
        } else {
            let verb = if dry_run { "remove" } else { "removed" };
            let why = if d.reasons.is_empty() {
                String::new()
            } else {
                format!("  ({})", d.reasons.join(", "))
            };
            ctx.say(&format!("{verb:<7} {:<44} {created}{why}", d.id));
        }
    }
    ctx.say(&format!(
        "{} {} of {} backups at {}",
        if dry_run { "would remove" } else { "removed" },
        o.removed,
        o.verdicts.len(),
        o.dest
    ));
}
