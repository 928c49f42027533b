//! `dockyard list`: the backups at a destination, newest first, in columns as wide as their
//! content; an empty answer says why (no such directory, or only other containers' backups).

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::Utc;
use indicatif::HumanBytes;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest::{Manifest, Store};
use crate::ops::list::list;

/// Lists backups, optionally only those of `container`.
pub async fn run(ctx: &Ctx, spec: &DestSpec, container: Option<&str>) -> Result<()> {
    let store = Store::new(spec.open().await);
    let listing = list(&store, container).await?;
    if ctx.output.json {
        ctx.json(&listing);
        return Ok(());
    }
    for r in &listing.rejected {
        tracing::warn!(object = %r.object, "not listed: {}", r.reason);
    }
    if listing.backups.is_empty() {
        ctx.say(&why_empty(&store.describe(), container, &listing.others));
        return Ok(());
    }
    for line in table(&listing.backups) {
        ctx.say(&line);
    }
    Ok(())
}

/// Why nothing is listed, in words an operator can act on.
fn why_empty(dest: &str, container: Option<&str>, others: &BTreeMap<String, usize>) -> String {
    match container {
        Some(c) if !others.is_empty() => {
            let names: Vec<String> = others
                .iter()
                .map(|(name, n)| format!("{name} ({n})"))
                .collect();
            format!(
                "no backups of container {c} at {dest}; {} backup(s) of other containers here: {}",
                others.values().sum::<usize>(),
                names.join(", ")
            )
        }
        Some(c) => format!("no backups of container {c} at {dest}: it holds no backups"),
        None => format!("no backups at {dest}"),
    }
}

/// The rows, header first, each column as wide as its widest cell.
fn table(all: &[Manifest]) -> Vec<String> {
    let now = Utc::now();
    let by_id = crate::ops::chain::by_id(all);
    let mut rows: Vec<[String; 7]> = vec![[
        "ID".into(),
        "CREATED (UTC)".into(),
        "SIZE".into(),
        "KIND".into(),
        "ENCRYPTED".into(),
        "PATHS".into(),
        "TAGS".into(),
    ]];
    for m in all {
        let mut paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
        paths.sort_unstable();
        let mut tags = m.tags.join(",");
        if m.in_future(now) {
            tags.push_str(" (dated in the future)");
        }
        rows.push([
            m.id.clone(),
            m.created.format("%Y-%m-%d %H:%M:%S").to_string(),
            HumanBytes(m.size).to_string(),
            match &m.parent {
                None => "full".into(),
                Some(_) => match crate::ops::chain::walk_in(m, &by_id) {
                    Ok(_) => "incremental".into(),
                    Err(why) => {
                        tracing::warn!(id = %m.id, "backup {} is incremental and its chain is broken ({why}): it cannot be restored", m.id);
                        "incremental, BROKEN chain".into()
                    }
                },
            },
            match &m.encryption {
                Some(e) => e.scheme.clone(),
                None => "-".into(),
            },
            paths.join(","),
            tags,
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2, w3, w4, w5) = (width(0), width(1), width(2), width(3), width(4), width(5));
    rows.iter()
        .map(|r| {
            format!(
                "{:<w0$}  {:<w1$}  {:>w2$}  {:<w3$}  {:<w4$}  {:<w5$}  {}",
                r[0], r[1], r[2], r[3], r[4], r[5], r[6]
            )
            .trim_end()
            .to_string()
        })
        .collect()
}
