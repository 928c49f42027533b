//! `dockyard verify`: re-read a backup end to end and say `ok` or what is wrong.

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::destination::DestSpec;
use crate::encryption::Unlock;
use crate::ops::verify::{check, select};

/// Verifies one backup (an id, or `latest` of `container` or of all).
pub async fn run(
    ctx: &Ctx,
    spec: &DestSpec,
    wanted: &str,
    container: Option<&str>,
    unlock: &Unlock,
) -> Result<()> {
    let dest = spec.open().await;
    let m = select(&dest, spec, wanted, container).await?;
    let verified = match check(&dest, &m, unlock, ctx.progress).await {
        Ok(v) => v,
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
        ctx.json(&verified);
        return Ok(());
    }
    let report = &verified.report;
    if verified.checked == "stored" {
        ctx.say(&format!(
            "ok {} (encrypted: the stored object's sha256 {} and size match its manifest; give --identity or --passphrase-file to check its contents)",
            m.id, report.sha256
        ));
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
