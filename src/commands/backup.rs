//! `dockyard backup` (and `snapshot`): runs [`ops::backup`] and says what it did, or with
//! `--dry-run` what it would do.

use anyhow::Result;
use indicatif::HumanBytes;

use super::Ctx;
use crate::ops::backup::{self, Backed, DryRun};
use crate::settings::BackupSettings;

/// Runs `dockyard backup` (or `snapshot`), prints its summary and returns the backup written.
pub async fn run(ctx: &Ctx, s: BackupSettings) -> Result<super::Outcome> {
    if s.dry_run {
        let mut d = backup::dry_run(ctx, &s).await?;
        print_dry_run(ctx, &d);
        return match d.failed.take() {
            Some(e) => Err(e.into()),
            None => Ok(super::Outcome::default()),
        };
    }
    let done = backup::run_job(ctx, &s).await?;
    print_summary(ctx, &done);
    Ok(super::Outcome {
        backup: Some((done.backup.id, done.backup.size)),
    })
}

/// Says what `backup --dry-run` found.
fn print_dry_run(ctx: &Ctx, d: &DryRun) {
    if ctx.output.json {
        ctx.json(d);
        return;
    }
    ctx.say(&format!(
        "would back up container {} ({}):",
        d.container,
        if d.running { "running" } else { "not running" }
    ));
    for p in &d.paths {
        let from = match &p.mount.volume {
            Some(v) => format!("volume {v}"),
            None => format!("{} mount", p.mount.kind),
        };
        ctx.say(&format!(
            "  {} (from {from} at {})",
            p.path, p.mount.destination
        ));
    }
    ctx.say(&format!(
        "to {}: {} and {}{}",
        d.destination,
        d.would_write[0],
        d.would_write[1],
        match d.backups_of_container_there {
            Some(n) => format!(" (it holds {n} backup(s) of this container)"),
            None => String::new(),
        }
    ));
    if !d.stop.is_empty() {
        ctx.say(&format!(
            "stopping {} during the backup (then starting them again)",
            d.stop.join(", ")
        ));
    }
    for (when, hook) in [("before", &d.pre_hook), ("after", &d.post_hook)] {
        if let Some(h) = hook {
            ctx.say(&format!("running {h:?} in {} {when} it", d.container));
        }
    }
    for (when, hooks) in [("before", &d.exec_before), ("after", &d.exec_after)] {
        for h in hooks {
            let (c, command) = h.split_once(':').unwrap_or_default();
            ctx.say(&format!("running {command:?} in {c} {when} it"));
        }
    }
    for dump in &d.dumps {
        ctx.say(&format!("dumping {dump} into the archive first"));
    }
    ctx.say(&format!(
        "zstd level {}{}; nothing was written",
        d.level,
        if d.tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", d.tags.join(", "))
        }
    ));
}

/// Prints the one-line (or JSON) summary of a finished backup.
fn print_summary(ctx: &Ctx, done: &Backed) {
    if ctx.output.json {
        ctx.json(done);
        return;
    }
    let m = &done.backup;
    if let Some(d) = done.downtime_seconds {
        ctx.say(&format!("containers stopped for {d:.1}s and started again"));
    }
    let paths: Vec<&str> = m.paths.iter().map(|p| p.path.as_str()).collect();
    let secs = done.seconds;
    for d in &m.dumps {
        let what = match d.database.as_deref().or(d.path.as_deref()) {
            Some(db) => format!("{} {db}", d.kind),
            None => d.kind.clone(),
        };
        ctx.say(&format!(
            "dumped {what} from {} into {} ({})",
            d.container,
            d.entry(),
            HumanBytes(d.size)
        ));
    }
    ctx.say(&format!(
        "backed up {} ({}): {} entries, {} read, {} written in {:.1}s ({}/s); id {} at {}",
        m.container,
        paths.join(", "),
        m.entries,
        HumanBytes(m.tar_bytes),
        HumanBytes(m.size),
        secs,
        HumanBytes((m.tar_bytes as f64 / secs.max(0.001)) as u64),
        m.id,
        done.destination
    ));
}
