//! `dockyard restore`: runs [`ops::restore`](crate::ops::restore) and says what it did (or, with
//! `--dry-run`, what it would do), as text or as the JSON document of docs/json.md.

use anyhow::Result;

use super::Ctx;
use crate::ops::restore::{self, shorten, DryRun, Outcome, Restored};
use crate::settings::RestoreSettings;

/// Runs `dockyard restore` and prints what it did.
pub async fn run(ctx: &Ctx, s: RestoreSettings) -> Result<()> {
    let outcome = restore::run(ctx, s).await?;
    render(ctx, &outcome);
    Ok(())
}

/// Prints `outcome` once: text lines, or the JSON document.
fn render(ctx: &Ctx, outcome: &Outcome) {
    match outcome {
        Outcome::Restored(r) if ctx.output.json => ctx.json(r),
        Outcome::Restored(r) => text(ctx, r),
        Outcome::DryRun(d) if ctx.output.json => ctx.json(d),
        Outcome::DryRun(d) => dry_run_text(ctx, d),
    }
}

fn text(ctx: &Ctx, r: &Restored) {
    for line in &r.recovered {
        ctx.say(line);
    }
    ctx.say(&format!(
        "restored {} into {} ({})",
        r.restored,
        r.into,
        r.paths.join(", ")
    ));
    ctx.say(&format!("old contents: {}", r.old_contents));
    if let Some(s) = &r.safety_backup {
        ctx.say(&format!(
            "safety backup of what was there: {} at {} ({}, {:.1}s); to undo: {}",
            s.id,
            s.destination,
            indicatif::HumanBytes(s.size),
            s.seconds,
            s.undo
        ));
    }
    if !r.stripped_setid.is_empty() {
        ctx.say(&format!(
            "removed set-user-ID/set-group-ID bits from {} file(s): {} (--keep-setuid keeps them)",
            r.stripped_setid.len(),
            shorten(&r.stripped_setid)
        ));
    }
    if !r.dropped_xattrs.is_empty() {
        ctx.say(&format!(
            "dropped security.*/trusted.* extended attributes (file capabilities) from {} file(s): {} (--keep-capabilities keeps them)",
            r.dropped_xattrs.len(),
            shorten(&r.dropped_xattrs)
        ));
    }
    if !r.skipped.is_empty() {
        ctx.say(&format!(
            "left out {} entries that the target holds as separate mounts: {}",
            r.skipped.len(),
            shorten(&r.skipped)
        ));
    }
    for n in &r.notes {
        ctx.say(n);
    }
    if let Some(secs) = r.downtime_seconds {
        ctx.say(&format!(
            "containers stopped for {secs:.1}s and started again"
        ));
    }
}

fn dry_run_text(ctx: &Ctx, d: &DryRun) {
    ctx.say(&format!(
        "dry run: restoring {} into {} would change:",
        d.backup, d.into
    ));
    for p in &d.paths {
        let (add, change, remove, kept) =
            (p.add_total, p.change_total, p.remove_total, p.keep_total);
        let p_path = &p.path;
        ctx.say(&format!(
            "  {p_path}: {add} to add, {change} to change, {remove} to remove{}",
            if kept > 0 {
                format!(", {kept} kept as they are (left out of the backup, or not --include'd)")
            } else {
                String::new()
            }
        ));
        for (sign, names, total) in [
            ("+", &p.add, add),
            ("~", &p.change, change),
            ("-", &p.remove, remove),
        ] {
            for n in names.iter().take(20) {
                ctx.say(&format!("    {sign} {n}"));
            }
            if total > 20 {
                ctx.say(&format!("    {sign} ... and {} more", total - 20));
            }
        }
    }
    for f in &d.files {
        ctx.say(&format!("  {f}: replaced (a single-file bind mount)"));
    }
    ctx.say(&d.safety);
    if !d.setid.is_empty() {
        ctx.say(&format!(
            "{} file(s) with set-user-ID/set-group-ID bits would {}: {}",
            d.setid.len(),
            if d.keep_setid {
                "keep them (--keep-setuid)"
            } else {
                "lose them (--keep-setuid keeps them)"
            },
            shorten(&d.setid)
        ));
    }
    if !d.privileged_xattrs.is_empty() {
        ctx.say(&format!(
            "{} file(s) with security.*/trusted.* extended attributes (file capabilities) would {}: {}",
            d.privileged_xattrs.len(),
            if d.keep_capabilities {
                "keep them (--keep-capabilities)"
            } else {
                "lose them (--keep-capabilities keeps them)"
            },
            shorten(&d.privileged_xattrs)
        ));
    }
    if !d.devices.is_empty() {
        ctx.say(&format!(
            "device nodes would be created (--allow-devices): {}",
            shorten(&d.devices)
        ));
    }
    ctx.say("nothing was changed");
}
