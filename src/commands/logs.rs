//! `dockyard logs [rotate|ship]`: runs [`ops::logs`](crate::ops::logs) and says what it did (or,
//! with `--dry-run`, what it would do).

use anyhow::Result;
use indicatif::HumanBytes;

use super::Ctx;
use crate::ops::logs::{self, LogsPlan, LogsRun, Sized};
use crate::settings::{LogsSettings, ShipSettings};

/// Runs `dockyard logs`, `logs rotate` or `logs ship` as `s` says, and prints what it did.
pub async fn run(ctx: &Ctx, s: LogsSettings) -> Result<()> {
    if s.dry_run {
        let plan = logs::plan(ctx, &s).await?;
        print_plan(ctx, &plan);
        return Ok(());
    }
    let done = logs::run(ctx, ctx.engine().await?, &s).await?;
    print_report(ctx, &s, &done);
    done.failures(&s)
}

fn print_report(ctx: &Ctx, s: &LogsSettings, done: &LogsRun) {
    if ctx.output.json {
        ctx.json(done);
        return;
    }
    let (container, r) = (&done.container, &done.report);
    let dest = s.ship.as_ref().map(|x: &ShipSettings| x.dest.to_string());
    ctx.say(&format!(
        "logs of {container} ({}): rotated {}, shipped {}{}, deleted {}, kept {}, failed {}, skipped {}, pruned {}",
        s.dir,
        r.rotated.len(),
        r.shipped.len(),
        dest.map(|d| format!(" to {d}")).unwrap_or_default(),
        r.deleted.len(),
        r.kept.len(),
        r.failed.len(),
        r.skipped.len(),
        r.pruned.len()
    ));
}

/// Says what a log run would do now.
fn print_plan(ctx: &Ctx, p: &LogsPlan) {
    if ctx.output.json {
        ctx.json(p);
        return;
    }
    let list = |v: &[Sized]| {
        v.iter()
            .map(|f| format!("{} ({})", f.name, HumanBytes(f.size)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if p.rotate {
        ctx.say(&format!(
            "would rotate in {} of {}: {}",
            p.dir,
            p.container,
            if p.would_rotate.is_empty() {
                "nothing is due".to_string()
            } else {
                format!(
                    "{}, then {}",
                    list(&p.would_rotate),
                    p.reopen.as_deref().unwrap_or_default()
                )
            }
        ));
    }
    for why in &p.skipped {
        ctx.say(&format!("would skip {why}"));
    }
    match &p.ship_to {
        Some(to) => {
            let mut all = p.would_rotate.clone();
            all.extend(p.waiting.iter().cloned());
            ctx.say(&format!(
                "would ship to {to}: {}",
                if all.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("{} (deleted here once each is verified there)", list(&all))
                }
            ));
        }
        None if !p.waiting.is_empty() => {
            ctx.say(&format!("rotated files kept here: {}", list(&p.waiting)))
        }
        None => {}
    }
    ctx.say("nothing was changed");
}
