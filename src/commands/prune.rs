//! `dockyard prune`: remove old backups by a retention policy, per container, deciding from the
//! manifests' timestamps and tags (`retention.rs`), never from file modification times.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest::{self, Manifest};
use crate::retention::{self, Decision, Item, Policy};

/// Runs `dockyard prune`; with `dry_run`, only prints what it would do.
pub async fn run(
    ctx: &Ctx,
    spec: &DestSpec,
    container: Option<&str>,
    policy: &Policy,
    dry_run: bool,
) -> Result<()> {
    let dest = spec.open().await;
    let mut all = manifest::load_all(dest.as_ref()).await?;
    if let Some(c) = container {
        all.retain(|m| m.container == c);
    }
    let mut by_container: BTreeMap<&str, Vec<&Manifest>> = BTreeMap::new();
    for m in &all {
        by_container.entry(&m.container).or_default().push(m);
    }
    let mut verdicts: Vec<(&str, Decision)> = Vec::new();
    for (name, backups) in &by_container {
        let items: Vec<Item> = backups
            .iter()
            .map(|m| Item {
                id: m.id.clone(),
                created: m.created,
                tags: m.tags.clone(),
            })
            .collect();
        verdicts.extend(
            retention::decide(&items, policy)
                .into_iter()
                .map(|d| (*name, d)),
        );
    }
    let mut removed = 0;
    for (_, d) in verdicts.iter().filter(|(_, d)| !d.keep) {
        if !dry_run {
            // Manifest first: from then on the backup is not listed, even if the archive's delete fails.
            dest.delete(&manifest::manifest_name(&d.id)).await?;
            dest.delete(&manifest::archive_name(&d.id)).await?;
        }
        removed += 1;
    }
    if ctx.output.json {
        let rows: Vec<_> = verdicts
            .iter()
            .map(|(c, d)| json!({"container": c, "id": d.id, "keep": d.keep, "reasons": d.reasons}))
            .collect();
        super::print_json(&json!({"dry_run": dry_run, "removed": removed, "backups": rows}));
        return Ok(());
    }
    for (_, d) in &verdicts {
        let created = all
            .iter()
            .find(|m| m.id == d.id)
            .map(|m| m.created.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        if d.keep {
            println!("keep    {:<44} {created}  ({})", d.id, d.reasons.join(", "));
        } else {
            let verb = if dry_run { "remove" } else { "removed" };
            println!("{verb:<7} {:<44} {created}", d.id);
        }
    }
    println!(
        "{} {removed} of {} backups at {}",
        if dry_run { "would remove" } else { "removed" },
        verdicts.len(),
        dest.describe()
    );
    Ok(())
}
