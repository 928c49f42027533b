//! `dockyard restore-db`: one database dump of a backup loaded back into a database (see
//! `ops::restore_db`); prints what it did, or with `--dry-run` what it would do.

use anyhow::Result;

use super::Ctx;
use crate::ops::restore_db::{self, RestoreDbSettings};
use indicatif::HumanBytes;

/// Runs it and says how it went.
pub async fn run(ctx: &Ctx, s: RestoreDbSettings) -> Result<()> {
    let done = restore_db::run(&ctx.session, &s).await?;
    if ctx.output.json {
        ctx.json(&done);
        return Ok(());
    }
    let target = match (&done.target, done.kind.as_str()) {
        (Some(t), _) => t.clone(),
        (None, "exec") => "the command given".into(),
        (None, _) => "its default database".into(),
    };
    let before = done
        .target_before
        .as_deref()
        .map(|b| format!(" ({b})"))
        .unwrap_or_default();
    if s.dry_run {
        ctx.say(&format!(
            "would load {} ({}, {}) of backup {} into {target}{before} in container {}",
            done.dump,
            done.kind,
            HumanBytes(done.size),
            done.backup,
            done.container
        ));
        ctx.say(if done.would_refuse {
            "it would be refused: the target is not empty (--force replaces it); nothing was changed"
        } else {
            "nothing was changed"
        });
        return Ok(());
    }
    ctx.say(&format!(
        "loaded {} ({}, {}) of backup {} into {target} in container {} in {:.1}s",
        done.dump,
        done.kind,
        HumanBytes(done.size),
        done.backup,
        done.container,
        done.seconds
    ));
    Ok(())
}
