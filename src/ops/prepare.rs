//! Before a backup or log run touches a container: its lock, and what earlier restores left there
//! finished, undone or cleaned up.

use anyhow::Result;

use super::Session;
use crate::docker::{ContainerInfo, Engine};
use crate::lock::{Access, ContainerLock};
use crate::swap::recover;

/// Takes `target`'s lock for a backup or log run (shared with others of its kind) and first
/// finishes, undoes or cleans up what earlier restores left there, saying which. Leftovers that
/// cannot be removed yet never fail the run; a committed restore that cannot be finished does
/// (the next run tries once more, then rolls it back).
pub async fn prepare_container(
    session: &Session,
    engine: &Engine,
    target: &ContainerInfo,
    image: &str,
    what: &str,
) -> Result<ContainerLock> {
    if engine.is_local() {
        crate::binds::check(target)?;
    }
    let mut lock =
        ContainerLock::take_on(engine, &session.dirs.lock, target, what, Access::Shared).await?;
    engine.wait_for_swaps(&target.name, false).await?;
    let ledger = recover::ledger(engine, session.dirs.host_state()).await?;
    let survey = recover::survey(engine, &ledger, target).await?;
    for f in &survey.foreign {
        tracing::warn!(container = %target.name, "{f}");
    }
    let plans = recover::decide(&survey.journals);
    for p in &plans {
        if let recover::Plan::Abandoned(j) = p {
            tracing::warn!(container = %target.name, "the restore of backup {} was given up and could not be put back: its work directories in {} wait for you to sort them out", j.backup, j.roots().join(", "));
        }
    }
    if plans
        .iter()
        .any(|p| !matches!(p, recover::Plan::Busy(_) | recover::Plan::Abandoned(_)))
    {
        lock.upgrade(&format!("{what} (finishing an interrupted restore)"))
            .await?;
        let work = recover::Work {
            engine,
            target,
            image,
            ledger: &ledger,
        };
        let outcome = super::restore::live::finish_interrupted(session, &work, false).await?;
        for busy in &outcome.busy {
            tracing::warn!(container = %target.name, "{busy}");
        }
        if let Some(e) = outcome.stuck {
            return Err(e);
        }
        lock.downgrade().await;
    }
    Ok(lock)
}
