//! `dockyard verify`: re-read a backup end to end and say `ok` or what is wrong.

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;

use super::Ctx;
use crate::archive::verify::{verify, Report};
use crate::destination::{DestSpec, Destination};
use crate::error::Failure;
use crate::manifest::{self, Manifest, Store};
use crate::pipeline::read_blocking;
use crate::progress::Progress;

/// Verifies one backup (an id, or `latest` of `container` or of all).
pub async fn run(ctx: &Ctx, spec: &DestSpec, wanted: &str, container: Option<&str>) -> Result<()> {
    let dest = spec.open().await;
    let store = Store::new(dest.clone());
    let select = match (wanted, container) {
        ("latest", None) => manifest::Select::All,
        ("latest", Some(c)) => manifest::Select::Container(c),
        (id, _) => manifest::Select::Id(id),
    };
    let catalog = store.load(select).await?;
    let now = Utc::now();
    let m = match (wanted, container) {
        ("latest", None) => catalog
            .manifests
            .iter()
            .find(|m| !m.in_future(now))
            .ok_or_else(|| Failure::usage(format!("no backups at {}", dest.describe())))?,
        (_, c) => catalog.select(wanted, c.unwrap_or_default(), &spec.to_string(), now)?,
    };
    let report = match verify_backup(dest.as_ref(), m, ctx.output.progress).await {
        Ok(r) => r,
        Err(e) => {
            // Scripts read `"ok": false` and why; the exit code still says which failure it was.
            if ctx.output.json {
                let category = crate::outcome::categorize(&e);
                let reason = crate::error::describe(&e);
                ctx.json(&json!({"id": m.id, "ok": false, "reason": reason,
                    "error": crate::render::error_body(category, &reason)}));
            }
            return Err(e);
        }
    };
    if ctx.output.json {
        ctx.json(
            &json!({"id": m.id, "ok": true, "size": report.size, "sha256": report.sha256,
            "tar_bytes": report.tar_bytes, "entries": report.entries,
            "devices": report.devices, "setid": report.setid,
            "privileged_xattrs": report.privileged_xattrs}),
        );
        return Ok(());
    }
    ctx.say(&format!(
        "ok {} ({} entries, sha256 {})",
        m.id, report.entries, report.sha256
    ));
    if !report.devices.is_empty() {
        ctx.say(&format!(
            "note: {} device node(s), which restore refuses without --allow-devices: {}",
            report.devices.len(),
            report.devices.join(", ")
        ));
    }
    if !report.setid.is_empty() {
        ctx.say(&format!(
            "note: {} set-user-ID/set-group-ID file(s), whose bits restore removes without --keep-setuid: {}",
            report.setid.len(),
            report.setid.join(", ")
        ));
    }
    if !report.privileged_xattrs.is_empty() {
        ctx.say(&format!(
            "note: {} file(s) with security.*/trusted.* extended attributes (file capabilities), which restore drops without --keep-capabilities: {}",
            report.privileged_xattrs.len(),
            report.privileged_xattrs.join(", ")
        ));
    }
    Ok(())
}

/// Streams the archive of `m` through the full check; a mismatch is a verification failure that
/// names the backup and what is wrong.
pub async fn verify_backup(
    dest: &dyn Destination,
    m: &Manifest,
    show_progress: bool,
) -> Result<Report> {
    let owned = m.clone();
    let progress = Progress::sized(format!("verify {}", m.id), Some(m.size), show_progress);
    let result = read_blocking(dest, &m.archive, Some(progress.read.clone()), move |r| {
        verify(r, &owned)
    })
    .await;
    progress.finish();
    let result = result.with_context(|| format!("cannot read backup {}", m.id))?;
    result.map_err(|why| {
        Failure::verify(format!(
            "backup {} at {} failed verification: {why}",
            m.id,
            dest.describe()
        ))
        .into()
    })
}
