//! Finishing, undoing or cleaning up after restores (SIGKILL, an engine restart, a full disk):
//! every dockyard run on a container first asks the host's journals ([`Ledger`]) about it. A
//! restore that was committed is finished (or, after two failed attempts, rolled back); one still
//! staging is removed once its owner is gone; a swapped one gets its old contents deleted. Only
//! what a journal on this host names is acted on: a work directory in a volume that no journal
//! vouches for is reported and left alone. Every helper here holds either the target's volumes or
//! host directories of single-file mounts (found again through the target's current mounts),
//! never both.

use anyhow::Result;

pub use super::files::{file_binds, file_source, StagedPair};
use super::journal::{Journal, MountWork, Phase, State};
use super::ledger::Ledger;
pub use super::survey::{survey, Survey};
use super::WORK_DIR;
use crate::agent::frame::Job;
use crate::agent::host::{self, CleanupFailed};
use crate::docker::{Capture, ContainerInfo, DockerError, Engine, HelperSpec, PathKind, Role};
use crate::owner::Liveness;
use crate::shell;

/// A restore of another host is taken as abandoned after this long.
const FOREIGN_LIMIT_SECS: i64 = 24 * 3600;
/// Failed attempts to finish a committed restore before it is given up and rolled back.
const ATTEMPTS: u32 = 2;

/// What to do about one journalled restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Committed: move its single files into place and finish every swap.
    Finish(Journal),
    /// Swapped: delete what the swap moved aside.
    Clean(Journal),
    /// Never committed, and its owner is gone: remove its staging.
    Discard(Journal),
    /// Another run may still be staging it.
    Busy(String),
    /// Given up for good; its work directories wait for a person.
    Abandoned(Journal),
}

/// Decides, from the journals alone, what to do about each restore.
pub fn decide(journals: &[Journal]) -> Vec<Plan> {
    journals
        .iter()
        .map(|j| match j.state {
            State::Committed => Plan::Finish(j.clone()),
            State::Swapped => Plan::Clean(j.clone()),
            State::Abandoned => Plan::Abandoned(j.clone()),
            State::Staging if j.owner.liveness(FOREIGN_LIMIT_SECS) == Liveness::Gone => {
                Plan::Discard(j.clone())
            }
            State::Staging => Plan::Busy(format!(
                "a restore of backup {} into {} is being staged by another run ({})",
                j.backup,
                j.roots().join(", "),
                j.owner
            )),
        })
        .collect()
}

/// The journals of `engine`, kept under the state directory `state`.
pub async fn ledger(engine: &Engine, state: &std::path::Path) -> Result<Ledger> {
    Ok(Ledger::for_engine(state, &engine.id().await?))
}

/// What finishing, undoing and cleaning up found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What was done, one sentence each.
    pub done: Vec<String>,
    /// Restore work another run may still be doing.
    pub busy: Vec<String>,
    /// What dockyard will not touch, with why.
    pub foreign: Vec<String>,
    /// Clean-up that failed or is left for later (never a failure of the run).
    pub warnings: Vec<String>,
    /// A committed restore that could neither be finished nor rolled back.
    pub stuck: Option<anyhow::Error>,
}

/// The context every step below works in.
pub struct Work<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The restored container.
    pub target: &'a ContainerInfo,
    /// The helper image.
    pub image: &'a str,
    /// The journals of this engine.
    pub ledger: &'a Ledger,
}

/// Finishes, undoes or cleans up after every journalled restore of `target` (waiting first for
/// a swap that still runs, and, `for_restore`, for a clean-up too: a new restore needs the work
/// directory). The caller holds the container's lock exclusively, in a critical section.
pub async fn run(w: &Work<'_>, for_restore: bool) -> Result<Outcome> {
    w.engine.wait_for_swaps(&w.target.name, for_restore).await?;
    let survey = survey(w.engine, w.ledger, w.target).await?;
    let mut outcome = Outcome {
        foreign: survey.foreign,
        ..Outcome::default()
    };
    for plan in decide(&survey.journals) {
        match plan {
            Plan::Busy(why) => outcome.busy.push(why),
            Plan::Discard(j) => {
                discard(w, &j).await?;
                outcome.done.push(format!(
                    "removed the staging of the interrupted restore of backup {} into container {:?} ({}): it never reached its swap, so nothing live had changed",
                    j.backup,
                    w.target.name,
                    j.roots().join(", ")
                ));
            }
            Plan::Finish(mut j) => match finish(w, &mut j).await {
                Ok(()) => {
                    outcome.done.push(format!(
                        "finished the interrupted restore of backup {} into container {:?} ({}): its swap had begun, so the restored contents are now in place",
                        j.backup,
                        w.target.name,
                        j.roots().join(", ")
                    ));
                    clean(w, &j, for_restore, &mut outcome).await;
                }
                Err(e) => match give_up_or_retry(w, &mut j, e).await {
                    Ok(said) => outcome.done.push(said),
                    Err(e) => outcome.stuck = Some(e),
                },
            },
            Plan::Clean(j) => clean(w, &j, for_restore, &mut outcome).await,
            Plan::Abandoned(j) => outcome.warnings.push(format!(
                "the restore of backup {} into container {:?} was given up and could not be put back either: {} hold the old contents (old-<k>) and the restored ones (new-<k>, back-<k>); move back what you need by hand, then remove the work directories",
                j.backup,
                w.target.name,
                j.roots()
                    .iter()
                    .map(|r| format!("{r}/{WORK_DIR}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    for line in outcome.done.iter().chain(&outcome.warnings) {
        tracing::warn!(container = %w.target.name, "{line}");
    }
    Ok(outcome)
}

/// Counts a failed attempt to finish `j`; after [`ATTEMPTS`], rolls it back (every path gets its
/// old contents back) and says so. Otherwise the error, for the next run to try again.
pub async fn give_up_or_retry(
    w: &Work<'_>,
    j: &mut Journal,
    error: anyhow::Error,
) -> Result<String> {
    // Only a helper that ran and failed counts: an engine that does not answer is no reason to
    // give a restore up.
    let ran_and_failed = error
        .downcast_ref::<DockerError>()
        .is_some_and(|e| matches!(e, DockerError::HelperFailed { .. }));
    if ran_and_failed {
        j.attempts += 1;
        w.ledger.write(j)?;
    }
    if j.attempts < ATTEMPTS {
        return Err(error.context(format!(
            "the restore of backup {} into container {:?} is committed but not finished; the next dockyard run on this container tries again",
            j.backup, w.target.name
        )));
    }
    if let Err(e) = rollback(w, j).await {
        // Nothing more to try: the journal says so, and no later run retries or fails for it.
        j.state = State::Abandoned;
        w.ledger.write(j)?;
        return Err(e.context(format!(
            "finishing the restore of backup {} failed {} times ({error:#}) and putting the old contents back failed too; the work directories are left as they are for you to sort out, and later runs only warn about them",
            j.backup, j.attempts
        )));
    }
    Ok(format!(
        "gave up the restore of backup {} into container {:?} after {} failed attempts ({error:#}); every path has its previous contents back (anything written into them during the swap went with the restored contents: restore with --stop)",
        j.backup, w.target.name, j.attempts
    ))
}

/// The phase each mount's work dir records, read through the engine (never opened in the
/// volume): `None` for a mount without a work dir.
pub async fn phases(w: &Work<'_>, j: &Journal) -> Result<Vec<Option<String>>> {
    let mut out = Vec::new();
    for root in j.roots() {
        let work = format!("{root}/{WORK_DIR}");
        if w.engine.stat(&w.target.id, &work).await? == PathKind::Missing {
            out.push(None);
            continue;
        }
        let path = format!("{root}/{}", super::PHASE);
        let text = w.engine.read_small(&w.target.id, &path, 4096).await?;
        let line = String::from_utf8_lossy(&text.unwrap_or_default())
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if Phase::parse(&line).is_none() {
            return Err(DockerError::Api {
                action: format!(
                    "read the phase of the restore in {root} of {:?}",
                    w.target.name
                ),
                message: format!("unknown phase {line:?}"),
            }
            .into());
        }
        out.push(Some(if line.is_empty() {
            "staging".into()
        } else {
            line
        }));
    }
    Ok(out)
}

/// Runs `restore.sh MODE` over every mount of `j` that still has a work dir, with the journal's
/// records for each in a file of the helper's own.
async fn volumes_script(w: &Work<'_>, j: &Journal, mode: &str) -> Result<()> {
    let phases = phases(w, j).await?;
    // Through the agent (every directory opened once, without following a symlink), else the
    // script.
    let mounts: Vec<(MountWork, String)> = j
        .mounts
        .iter()
        .zip(&phases)
        .filter_map(|(m, p)| p.clone().map(|p| (m.clone(), p)))
        .collect();
    if mounts.is_empty() {
        return Ok(());
    }
    let job = crate::agent::swap::SwapJob {
        mode: mode.to_string(),
        mounts,
    };
    match host::run_job(
        w.engine,
        w.target,
        w.image,
        Job::Swap(job),
        Role::Swap,
        true,
    )
    .await
    {
        Ok(_) => return Ok(()),
        Err(CleanupFailed::Failed(why)) => {
            return Err(DockerError::HelperFailed {
                container: w.target.name.clone(),
                action: format!("{mode} the restore of backup {}", j.backup),
                code: 1,
                output: why,
            }
            .into())
        }
        Err(CleanupFailed::Unavailable(why)) => {
            tracing::info!(container = %w.target.name, "swapping with restore.sh: {why}");
        }
    }
    let mut args = Vec::new();
    let mut files = Vec::new();
    for (i, (m, phase)) in j.mounts.iter().zip(&phases).enumerate() {
        let Some(phase) = phase else { continue };
        let spec = format!("/.dockyard-spec/{i}");
        args.extend([m.root.clone(), phase.clone(), spec.clone()]);
        files.push((spec, m.spec().into_bytes()));
    }
    if args.is_empty() {
        return Ok(());
    }
    let mut spec = HelperSpec::script(w.target, w.image, shell::restore(mode, args));
    spec.role = Role::Swap;
    spec.files = files;
    run_checked(
        w,
        spec,
        &format!("{mode} the restore of backup {}", j.backup),
    )
    .await
}

/// Moves the staged single files of `j` over their live ones (`action` move), or removes them
/// (discard), in a helper that holds only their host directories.
pub async fn files_script(w: &Work<'_>, j: &Journal, action: &str) -> Result<()> {
    if j.files.is_empty() {
        return Ok(());
    }
    let (binds, pairs) = file_binds(w.target, &j.files, w.engine.is_local())?;
    let mut args = vec![action.to_string()];
    for (staged, live) in pairs {
        args.push(staged);
        args.push(live);
    }
    let mut spec = HelperSpec::script(w.target, w.image, shell::restore("files", args));
    spec.volumes = false;
    spec.role = Role::Swap;
    spec.binds = binds;
    run_checked(
        w,
        spec,
        &format!("{action} the single files of backup {}", j.backup),
    )
    .await
}

async fn run_checked(w: &Work<'_>, spec: HelperSpec<'_>, action: &str) -> Result<()> {
    let ran = w.engine.run_once(spec, Capture::Tails).await?;
    if ran.code != 0 {
        return Err(DockerError::HelperFailed {
            container: w.target.name.clone(),
            action: action.to_string(),
            code: ran.code,
            output: ran.stderr_tail.trim().to_string(),
        }
        .into());
    }
    Ok(())
}

/// Finishes committed restore `j`: single files into place, every swap done; the journal then
/// says swapped.
pub async fn finish(w: &Work<'_>, j: &mut Journal) -> Result<()> {
    crate::fault::point("finish").await;
    files_script(w, j, "move").await?;
    if j.merge() {
        merge(w, j).await?;
    } else {
        volumes_script(w, j, "commit").await?;
    }
    j.state = State::Swapped;
    w.ledger.write(j)?;
    Ok(())
}

/// `restore --include`: renames every staged entry of `j` into the live paths through dockyard's
/// agent (deleting nothing else), then marks each work dir swapped.
async fn merge(w: &Work<'_>, j: &Journal) -> Result<()> {
    for m in &j.mounts {
        let job = crate::agent::merge::MergeJob {
            mount: m.root.clone(),
            paths: m
                .paths
                .iter()
                .map(|p| crate::agent::merge::MergePath {
                    k: p.k,
                    path: format!(
                        "{}{}{}",
                        m.root,
                        if p.rel.is_empty() { "" } else { "/" },
                        String::from_utf8_lossy(&p.rel)
                    ),
                    rel: String::from_utf8_lossy(&p.rel).into_owned(),
                    skip: m
                        .skips
                        .iter()
                        .filter(|(k, _)| *k == p.k)
                        .map(|(_, n)| String::from_utf8_lossy(n).into_owned())
                        .collect(),
                })
                .collect(),
            patterns: j.include.clone(),
        };
        host::run_job(
            w.engine,
            w.target,
            w.image,
            Job::Merge(job),
            Role::Swap,
            true,
        )
        .await
        .map_err(|e| match e {
            CleanupFailed::Unavailable(why) => anyhow::anyhow!(
                "restore --include needs dockyard's agent in the helper, which cannot run: {why}"
            ),
            CleanupFailed::Failed(why) => DockerError::HelperFailed {
                container: w.target.name.clone(),
                action: format!(
                    "merging the restored entries of backup {} into {}",
                    j.backup, m.root
                ),
                code: 1,
                output: why,
            }
            .into(),
        })?;
    }
    Ok(())
}

/// Puts back the old contents of every path of `j` (moved aside by its swap), removes its work
/// directories and its journal. Single files already moved into place stay restored.
async fn rollback(w: &Work<'_>, j: &Journal) -> Result<()> {
    volumes_script(w, j, "rollback").await?;
    let mut args = Vec::new();
    for root in j.roots() {
        args.extend([root, "-".to_string()]);
    }
    let mut spec = HelperSpec::script(w.target, w.image, shell::restore("clean", args));
    spec.role = Role::Swap;
    run_checked(w, spec, &format!("remove the work of backup {}", j.backup)).await?;
    w.ledger.remove(j)?;
    Ok(())
}

/// Removes the staging of `j`, which never committed, after removing any helper of its run that
/// is still there (it may still be writing into the volume).
pub async fn discard(w: &Work<'_>, j: &Journal) -> Result<()> {
    w.engine.remove_helpers_of(&w.target.name, &j.run).await?;
    let phases = phases(w, j).await?;
    let mut args = Vec::new();
    for (root, phase) in j.roots().into_iter().zip(phases) {
        if let Some(phase) = phase {
            args.extend([root, phase]);
        }
    }
    if !args.is_empty() {
        let mut spec = HelperSpec::script(w.target, w.image, shell::restore("discard", args));
        spec.role = Role::Swap;
        run_checked(
            w,
            spec,
            &format!("remove the staging of backup {}", j.backup),
        )
        .await?;
    }
    files_script(w, j, "discard").await?;
    w.ledger.remove(j)?;
    Ok(())
}

/// Deletes what the swap of `j` moved aside: through the agent (no path length limit), left to
/// run on its own unless `wait`; else with `rm -rf` in a script. Never fails the run: what
/// cannot be removed now is said in `outcome.warnings` and tried again by the next run.
pub async fn clean(w: &Work<'_>, j: &Journal, wait: bool, outcome: &mut Outcome) {
    if let Err(e) = try_clean(w, j, wait).await {
        outcome.warnings.push(format!(
            "the restore of backup {} into container {:?} is complete, but its old contents could not be deleted yet ({e:#}); the next dockyard run on this container tries again",
            j.backup, w.target.name
        ));
    }
}

async fn try_clean(w: &Work<'_>, j: &Journal, wait: bool) -> Result<()> {
    if !wait && w.engine.cleanup_running(&w.target.name).await? {
        return Ok(());
    }
    let phases = phases(w, j).await?;
    let left: Vec<(String, Option<i64>)> = j
        .mounts
        .iter()
        .zip(&phases)
        .filter(|(_, p)| p.is_some())
        .map(|(m, _)| (m.root.clone(), m.root_mtime()))
        .collect();
    if left.is_empty() {
        w.ledger.remove(j)?;
        return Ok(());
    }
    for (root, _) in &left {
        ours(w, root).await?;
    }
    crate::fault::point("clean").await;
    match host::cleanup(w.engine, w.target, w.image, &left, wait).await {
        Ok(()) if wait => {
            w.ledger.remove(j)?;
            Ok(())
        }
        Ok(()) => Ok(()),
        Err(CleanupFailed::Failed(why)) => Err(anyhow::anyhow!(why)),
        Err(CleanupFailed::Unavailable(why)) => {
            tracing::info!(container = %w.target.name, "deleting a restore's old contents with rm -rf: {why}");
            let mut args = Vec::new();
            for (root, mtime) in left {
                args.extend([root, mtime.map_or("-".into(), |m| m.to_string())]);
            }
            let mut spec = HelperSpec::script(w.target, w.image, shell::restore("clean", args));
            spec.role = Role::Swap;
            run_checked(w, spec, &format!("remove the work of backup {}", j.backup)).await?;
            w.ledger.remove(j)?;
            Ok(())
        }
    }
}

/// Fails unless `root`'s work dir is still dockyard's own (a directory of root's, mode 0700): the
/// app may have changed it since, and then it is the app's. Read from the header the engine's
/// archive of it starts with; the rest of the stream is dropped unread.
async fn ours(w: &Work<'_>, root: &str) -> Result<()> {
    let work = format!("{root}/{WORK_DIR}");
    let stream = Box::pin(w.engine.download(&w.target.id, &work));
    let head = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u32, bool)> {
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        let mut archive = tar::Archive::new(reader);
        let mut entries = archive.entries()?;
        let first = entries
            .next()
            .ok_or_else(|| std::io::Error::other("the engine sent an empty archive"))??;
        let h = first.header();
        Ok((
            h.uid()?,
            h.mode()? & 0o7777,
            h.entry_type() == tar::EntryType::Directory,
        ))
    })
    .await
    .expect("reader thread panicked")
    .map_err(|e| DockerError::Api {
        action: format!("look at {work} in container {:?}", w.target.name),
        message: e.to_string(),
    })?;
    match head {
        (0, 0o700, true) => Ok(()),
        (uid, mode, dir) => Err(anyhow::anyhow!(
            "{work} is not dockyard's work directory any more ({}, owner {uid}, mode {mode:o}); it is left alone and out of backups: move it away",
            if dir { "a directory" } else { "not a directory" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::Owner;
    use crate::swap::journal::MountWork;

    fn journal(run: &str, state: State, alive: bool) -> Journal {
        let mut owner = Owner::current();
        if !alive {
            owner.pid = u32::MAX - 3;
        }
        Journal {
            run: run.into(),
            owner,
            backup: format!("b-{run}"),
            container: "c".into(),
            state,
            attempts: 0,
            include: vec![],
            mounts: vec![MountWork {
                volume: String::new(),
                root: "/a".into(),
                paths: vec![],
                skips: vec![],
                fixups: vec![],
            }],
            files: vec![],
        }
    }

    fn kind(p: &Plan) -> &'static str {
        match p {
            Plan::Finish(_) => "finish",
            Plan::Clean(_) => "clean",
            Plan::Discard(_) => "discard",
            Plan::Busy(_) => "busy",
            Plan::Abandoned(_) => "abandoned",
        }
    }

    #[test]
    fn the_journal_on_the_host_alone_decides() {
        let plans = decide(&[
            journal("r1", State::Committed, true),
            journal("r2", State::Swapped, false),
            journal("r3", State::Staging, false),
            journal("r4", State::Staging, true),
        ]);
        let kinds: Vec<_> = plans.iter().map(kind).collect();
        // A committed restore is finished even while its owner lives: its swap helper is waited
        // for first, and the swap is idempotent.
        assert_eq!(kinds, ["finish", "clean", "discard", "busy"]);
    }
}
