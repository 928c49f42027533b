//! `dockyard prune`: runs [`ops::prune`](crate::ops::prune) and lists each backup's verdict.

use anyhow::Result;

use super::Ctx;
use crate::destination::DestSpec;
use crate::manifest::Store;
use crate::ops::prune::{apply, Pruned};
use crate::retention::Policy;

/// Runs `dockyard prune`; with `dry_run`, only prints what it would do.
pub async fn run(
    ctx: &Ctx,
    spec: &DestSpec,
    container: Option<&str>,
    policy: &Policy,
    dry_run: bool,
) -> Result<()> {
    let store = Store::new(spec.open().await);
    let outcome = apply(&store, container, policy, dry_run).await?;
    print(ctx, &outcome);
    Ok(())
}

fn print(ctx: &Ctx, o: &Pruned) {
    if ctx.output.json {
        ctx.json(o);
        return;
    }
    for d in &o.backups {
        let created = &d.created;
        if d.keep {
            ctx.say(&format!(
                "keep    {:<44} {created}  ({})",
                d.id,
                d.reasons.join(", ")
            ));
        } else {
            let verb = if o.dry_run { "remove" } else { "removed" };
            let why = if d.reasons.is_empty() {
                String::new()
            } else {
                format!("  ({})", d.reasons.join(", "))
            };
            ctx.say(&format!("{verb:<7} {:<44} {created}{why}", d.id));
        }
    }
    ctx.say(&format!(
        "{} {} of {} backups at {}",
        if o.dry_run { "would remove" } else { "removed" },
        o.removed,
        o.backups.len(),
        o.dest
    ));
}
