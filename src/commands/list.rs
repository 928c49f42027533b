//! `dockyard list`: the backups at a destination, newest first.

use anyhow::Result;
use indicatif::HumanBytes;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest;

/// Lists backups, optionally only those of `container`.
pub async fn run(ctx: &Ctx, spec: &DestSpec, container: Option<&str>) -> Result<()> {
    let dest = spec.open().await;
    let mut all = manifest::load_all(dest.as_ref()).await?;
    if let Some(c) = container {
        all.retain(|m| m.container == c);
    }
    if ctx.output.json {
        super::print_json(&all);
        return Ok(());
    }
    if all.is_empty() {
        println!("no backups at {}", dest.describe());
        return Ok(());
    }
    println!(
        "{:<44} {:<20} {:>10}  {:<24} TAGS",
        "ID", "CREATED (UTC)", "SIZE", "PATHS"
    );
    for m in &all {
        let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
        println!(
            "{:<44} {:<20} {:>10}  {:<24} {}",
            m.id,
            m.created.format("%Y-%m-%d %H:%M:%S"),
            HumanBytes(m.size).to_string(),
            paths.join(","),
            m.tags.join(",")
        );
    }
    Ok(())
}
