//! What a restore did, or would do, as values; and their one rendering, as text or as the JSON
//! document of docs/json.md. The restore itself (`restore.rs`) prints nothing.

use serde::Serialize;
use serde_json::json;

use super::Ctx;
use crate::archive::listing::Diff;

/// How a `dockyard restore` ended.
#[derive(Debug)]
pub enum Outcome {
    /// The backup is in place.
    Restored(Restored),
    /// `--dry-run`: what would change.
    DryRun(DryRun),
}

/// A finished restore.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// Always `"ok"`.
    pub result: &'static str,
    /// The backup's id.
    pub restored: String,
    /// The target container.
    pub into: String,
    /// The container paths restored.
    pub paths: Vec<String>,
    /// The safety backup taken before the swap, if any.
    pub safety_backup: Option<SafetyBackup>,
    /// Files whose set-id bits were removed.
    pub stripped_setid: Vec<String>,
    /// Entries whose `security.*`/`trusted.*` extended attributes (file capabilities) were
    /// dropped.
    pub dropped_xattrs: Vec<String>,
    /// Entries left out because the target holds them as separate mounts.
    pub skipped: Vec<String>,
    /// Remarks (single-file bind mounts seen after a restart).
    pub notes: Vec<String>,
    /// What an interrupted earlier restore left, and how it was finished or rolled back.
    pub recovered: Vec<String>,
    /// What became of the old contents the swap moved aside: `deleted` (`--wait-cleanup`), being
    /// deleted in the background, or why they are still there.
    pub old_contents: String,
    /// Seconds the containers were stopped (`--stop`).
    pub downtime_seconds: Option<f64>,
}

/// The safety backup a restore took.
#[derive(Debug, Serialize)]
pub struct SafetyBackup {
    /// Its id.
    pub id: String,
    /// Where it is.
    pub destination: String,
    /// The command that puts the old contents back.
    pub undo: String,
    /// Its size in bytes (compressed).
    pub size: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// What a restore would change.
#[derive(Debug)]
pub struct DryRun {
    /// The backup's id.
    pub backup: String,
    /// The target container.
    pub into: String,
    /// Per directory path, what would be added, changed and removed, and how many live entries
    /// stay as they are (left out of the backup, or not `--include`d).
    pub paths: Vec<(String, Diff, u64)>,
    /// Single-file mounts that would be replaced.
    pub files: Vec<String>,
    /// What would happen about the safety backup, in words.
    pub safety: String,
    /// Set-id files in the backup.
    pub setid: Vec<String>,
    /// Whether their bits would be kept.
    pub keep_setid: bool,
    /// Entries in the backup with `security.*`/`trusted.*` extended attributes.
    pub privileged_xattrs: Vec<String>,
    /// Whether those would be kept.
    pub keep_capabilities: bool,
    /// Device nodes in the backup.
    pub devices: Vec<String>,
}

/// Prints `outcome` once: text lines, or the JSON document.
pub fn render(ctx: &Ctx, outcome: &Outcome) {
    match outcome {
        Outcome::Restored(r) if ctx.output.json => ctx.json(r),
        Outcome::Restored(r) => text(ctx, r),
        Outcome::DryRun(d) if ctx.output.json => {
            let paths: Vec<_> = d
                .paths
                .iter()
                .map(|(p, d, kept)| {
                    let [add, change, remove] = d.totals;
                    json!({"path": p, "add": d.added, "change": d.changed, "remove": d.removed,
                        "add_total": add, "change_total": change, "remove_total": remove,
                        "keep_total": kept})
                })
                .collect();
            ctx.json(
                &json!({"dry_run": true, "backup": d.backup, "into": d.into, "paths": paths,
                "files": d.files, "safety_backup": d.safety, "setid": d.setid, "devices": d.devices,
                "privileged_xattrs": d.privileged_xattrs}),
            );
        }
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
    for (p, diff, kept) in &d.paths {
        let [add, change, remove] = diff.totals;
        ctx.say(&format!(
            "  {p}: {add} to add, {change} to change, {remove} to remove{}",
            if *kept > 0 {
                format!(", {kept} kept as they are (left out of the backup, or not --include'd)")
            } else {
                String::new()
            }
        ));
        for (sign, names, total) in [
            ("+", &diff.added, add),
            ("~", &diff.changed, change),
            ("-", &diff.removed, remove),
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

/// At most ten names, then how many more.
pub fn shorten<T: AsRef<str>>(names: &[T]) -> String {
    let mut out: Vec<&str> = names.iter().take(10).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(10);
    let extra = format!("and {more} more");
    if more > 0 {
        out.push(&extra);
    }
    out.join(", ")
}
