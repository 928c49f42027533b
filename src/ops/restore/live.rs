//! The restore's touches of live data: the check for files held open, finishing what earlier
//! restores left, the swap (one helper no signal interrupts) and the removal of a staging that
//! never reached it.

use anyhow::Result;

use super::outcome::shorten;
use crate::docker::exec::{Capture, ExecOutput, PARSED};
use crate::docker::{ContainerInfo, DockerError, Engine};
use crate::error::Failure;
use crate::ops::Session;
use crate::shell;
use crate::swap::journal::{Journal, State};
use crate::swap::recover::{self, Work};
use crate::swap::{self};

/// Refuses to restore paths in which processes of the (running) target hold files open: the swap
/// would move those files away and delete them while the app keeps writing into them. Best effort:
/// a target without /bin/sh is not checked (a warning says so).
pub(super) async fn refuse_open_files(
    engine: &Engine,
    target: &ContainerInfo,
    paths: &[String],
) -> Result<()> {
    if !target.running {
        return Ok(());
    }
    let script = shell::Script {
        name: "dockyard-held-open",
        text: shell::HELD_OPEN,
        args: vec![],
    };
    let ran = engine
        .run_in(&target.id, &script, Some("0"), Capture::Parse(PARSED))
        .await;
    let listed = match ran {
        Ok(out) if out.code == 0 => out.stdout,
        Ok(ExecOutput { code, .. }) => {
            tracing::warn!(container = %target.name, code, "could not check for files held open in the restored paths");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(container = %target.name, error = %e, "could not check for files held open in the restored paths");
            return Ok(());
        }
    };
    let open = crate::logs::held_open::under(&listed, paths, swap::WORK_DIR);
    if open.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = open
        .iter()
        .map(|h| format!("{} (pid {} {})", h.file, h.pid, h.command))
        .collect();
    Err(Failure::usage(format!(
        "processes in container {:?} hold files open in the paths to restore: {}; the swap would move those files away and delete them while the app writes on, losing its lines. Stop the container for the restore (--stop), restore other paths (--path), or pass --allow-open-files",
        target.name,
        shorten(&shown)
    ))
    .into())
}

/// Finishes, undoes or cleans up after earlier restores of the target, in a critical section.
pub async fn finish_interrupted(
    session: &Session,
    work: &Work<'_>,
    for_restore: bool,
) -> Result<recover::Outcome> {
    let _critical = session.critical.enter();
    recover::run(work, for_restore).await
}

/// Removes the staging of this run (after a failure, or on a signal through the session's clean-up),
/// and its journal.
pub async fn discard(session: &Session, engine: &Engine) {
    let Some(p) = session.take_pending() else {
        return;
    };
    let work = Work {
        engine,
        target: &p.target,
        image: &p.image,
        ledger: &p.ledger,
    };
    if let Err(e) = recover::discard(&work, &p.journal).await {
        tracing::warn!(container = %p.target.name, error = %format!("{e:#}"), "could not remove the restore's staging; the next dockyard run on this container will");
    }
}

/// The swap, in a critical section: a signal waits for it, and a killed dockyard leaves its
/// helper running (the next run waits for it and finishes whatever is left). The journal on the
/// host says `committed` first: from then on the restore is only ever finished (or, if that
/// fails twice, rolled back). Then the old contents are deleted, in the background unless
/// `wait_cleanup`. Returns what became of the old contents, in words.
pub(super) async fn commit(
    session: &Session,
    work: &Work<'_>,
    journal: &mut Journal,
    wait_cleanup: bool,
) -> Result<String> {
    let critical = session.critical.enter();
    journal.state = State::Committed;
    work.ledger.write(journal)?;
    session.set_pending(None);
    crate::fault::point("committed").await;
    if let Err(first) = recover::finish(work, journal).await {
        tracing::warn!(container = %work.target.name, error = %format!("{first:#}"), "the swap did not complete; checking where it stands");
        if !swapped_after_all(work, journal).await {
            let said = recover::give_up_or_retry(work, journal, first).await;
            if let Err(e) = &said {
                tracing::warn!(container = %work.target.name, error = %format!("{e:#}"), "trying to finish the swap once more");
            }
            if let Err(second) = recover::finish(work, journal).await {
                let said = recover::give_up_or_retry(work, journal, second).await?;
                return Err(DockerError::HelperFailed {
                    container: work.target.name.clone(),
                    action: "swapping the restored files into place".into(),
                    code: 1,
                    output: said,
                }
                .into());
            }
        }
    }
    // The restore is done: a signal from here on waits for the report (and for the clean-up to
    // start, or with --wait-cleanup to end).
    let mut outcome = recover::Outcome::default();
    critical.keep();
    recover::clean(work, journal, wait_cleanup, &mut outcome).await;
    Ok(match outcome.warnings.pop() {
        Some(w) => {
            tracing::warn!(container = %work.target.name, "{w}");
            w
        }
        None if wait_cleanup => "deleted".into(),
        None => "being deleted in the background by a helper; the next dockyard run on this container finishes that if it is cut short".into(),
    })
}

/// Whether every mount of `journal` is swapped after all (the engine may have gone away while the
/// swap finished): once no swap helper runs, the phases are read again, waiting up to a minute
/// for the engine to answer. Then the journal says so.
pub(super) async fn swapped_after_all(work: &Work<'_>, journal: &mut Journal) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let read = async {
            work.engine.wait_for_swaps(&work.target.name, false).await?;
            recover::phases(work, journal).await
        };
        match read.await {
            Ok(phases) => {
                if !phases
                    .iter()
                    .all(|p| p.as_deref().is_none_or(|p| p == "swapped"))
                {
                    return false;
                }
                journal.state = State::Swapped;
                return work.ledger.write(journal).is_ok();
            }
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %format!("{e:#}"), "the engine does not answer yet");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(_) => return false,
        }
    }
}
