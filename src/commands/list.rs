//! `dockyard list`: the backups at a destination, newest first.

use anyhow::Result;
use chrono::Utc;
use indicatif::HumanBytes;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest;

/// Lists backups, optionally only those of `container`.
pub async fn run(ctx: &Ctx, spec: &DestSpec, container: Option<&str>) -> Result<()> {
    let dest = spec.open().await;
    let catalog = manifest::load_all(dest.as_ref()).await?;
    let mut all = catalog.manifests;
    if let Some(c) = container {
        all.retain(|m| m.container == c);
    }
    if ctx.output.json {
        let rejected: Vec<_> = catalog
            .rejected
            .iter()
            .map(|(object, reason)| serde_json::json!({"object": object, "reason": reason}))
            .collect();
        ctx.json(&serde_json::json!({"backups": all, "rejected": rejected}));
        return Ok(());
    }
    for (name, why) in &catalog.rejected {
        tracing::warn!(object = %name, "not listed: {why}");
    }
    if all.is_empty() {
        ctx.say(&format!("no backups at {}", dest.describe()));
        return Ok(());
    }
    let now = Utc::now();
    ctx.say(&format!(
        "{:<44} {:<20} {:>10}  {:<24} TAGS",
        "ID", "CREATED (UTC)", "SIZE", "PATHS"
    ));
    for m in &all {
        let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
        let mut tags = m.tags.join(",");
        if m.in_future(now) {
            tags.push_str(" (dated in the future)");
        }
        ctx.say(&format!(
            "{:<44} {:<20} {:>10}  {:<24} {}",
            m.id,
            m.created.format("%Y-%m-%d %H:%M:%S"),
            HumanBytes(m.size).to_string(),
            paths.join(","),
            tags
        ));
    }
    Ok(())
}
