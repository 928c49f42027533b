//! Finishing or undoing a restore that was interrupted (SIGKILL, an engine restart, a full disk):
//! every dockyard run on a container first looks for restore work dirs in its mounts. A restore
//! whose swap began (or whose members were all staged and marked ready) is finished; one still
//! staging is removed once its owner is gone. Nothing is ever half-undone: the decision is per
//! run of restore, across all of its volumes.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::Result;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::journal::{FileRecord, Journal, Phase};
use super::{staged_file_name, WORK_DIR};
use crate::archive::entry::{self, Kind};
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec, PathKind, Role};
use crate::owner::Liveness;
use crate::shell;

/// A restore of another host is taken as abandoned after this long.
const FOREIGN_LIMIT_SECS: i64 = 24 * 3600;
/// Journals larger than this are not dockyard's.
const JOURNAL_LIMIT: u64 = 4 << 20;

/// What one mount holds at `.dockyard-restore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Something dockyard did not make (a symlink, a file, a directory not owned by root 0700).
    Foreign {
        /// The mount root.
        mount: String,
        /// What it is.
        why: String,
    },
    /// dockyard's work dir without a journal (a run killed as it began staging).
    Orphan {
        /// The mount root.
        mount: String,
    },
    /// A restore's work dir.
    Work {
        /// The mount root.
        mount: String,
        /// Its journal.
        journal: Box<Journal>,
        /// Its phase.
        phase: Phase,
    },
}

/// What to do about the work of one interrupted restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The swap began (or could begin): finish it in every listed mount.
    Forward {
        /// The backup it restores.
        backup: String,
        /// Mount roots with work to finish.
        roots: Vec<String>,
        /// Single files of that restore.
        files: Vec<FileRecord>,
    },
    /// The restore never became ready and its owner is gone: remove its work.
    Discard {
        /// The backup it was restoring (empty if unknown).
        backup: String,
        /// Mount roots with work to remove.
        roots: Vec<String>,
        /// Single files of that restore.
        files: Vec<FileRecord>,
    },
    /// Another run may still be working on it.
    Busy {
        /// Who, and where.
        why: String,
    },
}

/// Decides, from what the mounts hold, what to do about each interrupted restore.
pub fn decide(found: &[Found]) -> Vec<Plan> {
    let mut runs: BTreeMap<&str, Vec<(&str, &Journal, Phase)>> = BTreeMap::new();
    let mut plans = Vec::new();
    for f in found {
        match f {
            Found::Work {
                mount,
                journal,
                phase,
            } => runs
                .entry(journal.run.as_str())
                .or_default()
                .push((mount, journal, *phase)),
            Found::Orphan { mount } => plans.push(Plan::Discard {
                backup: String::new(),
                roots: vec![mount.clone()],
                files: vec![],
            }),
            Found::Foreign { .. } => {}
        }
    }
    for members in runs.values() {
        let journal = members[0].1;
        let roots: Vec<String> = members.iter().map(|(m, _, _)| m.to_string()).collect();
        let began = members.iter().any(|(_, _, p)| p.began_swap());
        let all_ready = journal
            .members
            .iter()
            .all(|m| members.iter().any(|(r, _, p)| r == m && *p >= Phase::Ready));
        let files = journal.files.clone();
        let backup = journal.backup.clone();
        if began || all_ready {
            plans.push(Plan::Forward {
                backup,
                roots,
                files,
            });
        } else if journal.owner.liveness(FOREIGN_LIMIT_SECS) == Liveness::Gone {
            plans.push(Plan::Discard {
                backup,
                roots,
                files,
            });
        } else {
            plans.push(Plan::Busy {
                why: format!(
                    "a restore of backup {backup} into {} is being staged by another run ({})",
                    roots.join(", "),
                    journal.owner
                ),
            });
        }
    }
    plans
}

/// Looks at `.dockyard-restore` in every directory mount of `target`.
pub async fn discover(engine: &Engine, target: &ContainerInfo) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for m in target
        .mounts
        .iter()
        .filter(|m| m.kind == "volume" || m.kind == "bind")
    {
        let mount = m.destination.trim_end_matches('/').to_string();
        let work = format!("{mount}/{WORK_DIR}");
        let kind = match engine.stat(&target.id, &work).await {
            Ok(k) => k,
            // A single-file bind mount has nothing below it.
            Err(e) if m.kind == "bind" => {
                tracing::debug!(mount = %mount, error = %e, "no restore work dir");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match kind {
            PathKind::Missing => continue,
            PathKind::Dir => {}
            other => {
                found.push(Found::Foreign {
                    mount,
                    why: format!("it is a {other:?}, not a directory"),
                });
                continue;
            }
        }
        let stream = Box::pin(engine.download(&target.id, &work));
        let read = tokio::task::spawn_blocking(move || {
            read_work_dir(SyncIoBridge::new(StreamReader::new(stream)))
        })
        .await
        .expect("reader thread panicked");
        found.push(match read {
            Ok(WorkDir::Foreign(why)) => Found::Foreign { mount, why },
            Ok(WorkDir::Ours(None, _)) => Found::Orphan { mount },
            Ok(WorkDir::Ours(Some(text), phase)) => match Journal::parse(&text) {
                Ok(journal) => Found::Work {
                    mount,
                    journal: Box::new(journal),
                    phase: phase.unwrap_or(Phase::Staging),
                },
                Err(why) => Found::Foreign {
                    mount,
                    why: format!("its journal is not dockyard's: {why}"),
                },
            },
            Err(e) => {
                return Err(DockerError::Api {
                    action: format!("read {work} in container {:?}", target.name),
                    message: e.to_string(),
                }
                .into())
            }
        });
    }
    Ok(found)
}

enum WorkDir {
    Foreign(String),
    Ours(Option<String>, Option<Phase>),
}

/// Reads the work dir's own entry, its journal and its phase from the engine's tar of it, and
/// stops there (the staged data that follows can be large).
fn read_work_dir(reader: impl Read) -> std::io::Result<WorkDir> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries()?;
    let Some(first) = entries.next() else {
        return Ok(WorkDir::Foreign("it is empty".into()));
    };
    let mut first = first?;
    let (meta, _) = entry::read(&mut first).map_err(std::io::Error::other)?;
    if meta.kind != Kind::Dir || meta.uid != 0 || meta.mode != 0o700 {
        return Ok(WorkDir::Foreign(format!(
            "it is owned by uid {} with mode {:o}; dockyard's is root's with mode 700",
            meta.uid, meta.mode
        )));
    }
    let (mut journal, mut phase) = (None, None);
    for e in entries {
        let mut e = e?;
        let name = e.path_bytes().into_owned();
        let Some(rest) = name.strip_prefix(format!("{WORK_DIR}/").as_bytes()) else {
            continue;
        };
        if !rest.starts_with(b"0-") {
            if journal.is_some() && phase.is_some() {
                break;
            }
            continue;
        }
        let mut text = String::new();
        if e.size() <= JOURNAL_LIMIT {
            Read::take(&mut e, JOURNAL_LIMIT).read_to_string(&mut text)?;
        }
        match rest {
            b"0-journal" => journal = Some(text),
            b"0-phase" => phase = Phase::parse(text.lines().next().unwrap_or("")),
            _ => {}
        }
    }
    Ok(WorkDir::Ours(journal, phase))
}

/// What finishing or undoing found and did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// What was done, one sentence each.
    pub done: Vec<String>,
    /// Restore work another run may still be doing.
    pub busy: Vec<String>,
    /// `.dockyard-restore` entries dockyard did not make, with why.
    pub foreign: Vec<String>,
}

/// Finishes or removes the work of interrupted restores of `target` (waiting first for a swap
/// that still runs). The caller holds the container's lock exclusively, and wraps this in a
/// critical section: a finishing swap is never interrupted.
pub async fn run(engine: &Engine, target: &ContainerInfo, image: &str) -> Result<Outcome> {
    engine.wait_for_swaps(&target.name).await?;
    let found = discover(engine, target).await?;
    let mut outcome = Outcome::default();
    for f in &found {
        if let Found::Foreign { mount, why } = f {
            outcome.foreign.push(format!("{mount}/{WORK_DIR}: {why}"));
        }
    }
    for plan in decide(&found) {
        let (mode, backup, roots, files) = match plan {
            Plan::Busy { why } => {
                outcome.busy.push(why);
                continue;
            }
            Plan::Forward {
                backup,
                roots,
                files,
            } => ("forward", backup, roots, files),
            Plan::Discard {
                backup,
                roots,
                files,
            } => ("discard", backup, roots, files),
        };
        let (binds, pairs) = file_binds(&files);
        let script = shell::restore(mode, &roots, &pairs);
        let mut spec = HelperSpec::script(target, image, script);
        spec.role = Role::Swap;
        spec.binds = binds;
        let ran = engine.run_script(spec, false).await?;
        if ran.code != 0 {
            return Err(DockerError::HelperFailed {
                container: target.name.clone(),
                action: format!(
                    "{} the interrupted restore of backup {backup} in {}",
                    if mode == "forward" {
                        "finishing"
                    } else {
                        "removing"
                    },
                    roots.join(", ")
                ),
                code: ran.code,
                output: ran.stderr.trim().to_string(),
            }
            .into());
        }
        let what = if backup.is_empty() {
            "an interrupted restore".to_string()
        } else {
            format!("the interrupted restore of backup {backup}")
        };
        outcome.done.push(if mode == "forward" {
            format!(
                "finished {what} into container {:?} ({}): its swap had begun, so the restored contents are now in place",
                target.name,
                roots.join(", ")
            )
        } else {
            format!(
                "removed the staging of {what} into container {:?} ({}): it never reached its swap, so nothing live had changed",
                target.name,
                roots.join(", ")
            )
        });
        tracing::warn!(container = %target.name, "{}", outcome.done.last().expect("pushed"));
    }
    Ok(outcome)
}

/// Bind mounts for the host directories of single-file mounts, and the (staged, live) pairs as the
/// helper sees them.
pub fn file_binds(files: &[FileRecord]) -> (Vec<String>, Vec<(String, String)>) {
    let mut binds = Vec::new();
    let mut pairs = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let inside = format!("/.dockyard-file-{i}");
        binds.push(format!("{}:{inside}", f.host_dir));
        pairs.push((
            format!("{inside}/{}", staged_file_name(&f.name)),
            format!("{inside}/{}", f.name),
        ));
    }
    (binds, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::Owner;

    fn work(mount: &str, run: &str, members: &[&str], phase: Phase, alive: bool) -> Found {
        let mut owner = Owner::current();
        if !alive {
            owner.pid = u32::MAX - 3;
        }
        Found::Work {
            mount: mount.into(),
            journal: Box::new(Journal {
                run: run.into(),
                owner,
                backup: format!("b-{run}"),
                members: members.iter().map(|m| m.to_string()).collect(),
                paths: vec![],
                skips: vec![],
                files: vec![],
            }),
            phase,
        }
    }

    fn kinds(plans: &[Plan]) -> Vec<(&'static str, Vec<String>)> {
        plans
            .iter()
            .map(|p| match p {
                Plan::Forward { roots, .. } => ("forward", roots.clone()),
                Plan::Discard { roots, .. } => ("discard", roots.clone()),
                Plan::Busy { .. } => ("busy", vec![]),
            })
            .collect()
    }

    #[test]
    fn once_any_member_began_its_swap_every_member_is_finished() {
        let ab = ["/a", "/b"];
        let plans = decide(&[
            work("/a", "r1", &ab, Phase::Swapped, false),
            work("/b", "r1", &ab, Phase::Ready, false),
        ]);
        assert_eq!(
            kinds(&plans),
            vec![("forward", vec!["/a".into(), "/b".into()])]
        );
        // A member already cleaned up after its swap: the others are still finished.
        let plans = decide(&[work("/b", "r1", &ab, Phase::Swapping(0), true)]);
        assert_eq!(kinds(&plans), vec![("forward", vec!["/b".into()])]);
    }

    #[test]
    fn all_members_ready_is_the_commit_point() {
        let ab = ["/a", "/b"];
        let plans = decide(&[
            work("/a", "r1", &ab, Phase::Ready, false),
            work("/b", "r1", &ab, Phase::Ready, false),
        ]);
        assert_eq!(kinds(&plans)[0].0, "forward");
        // Killed while marking members ready: nothing live changed, so it is undone.
        let plans = decide(&[
            work("/a", "r1", &ab, Phase::Ready, false),
            work("/b", "r1", &ab, Phase::Staging, false),
        ]);
        assert_eq!(
            kinds(&plans),
            vec![("discard", vec!["/a".into(), "/b".into()])]
        );
    }

    #[test]
    fn staging_of_a_live_owner_is_left_alone() {
        let plans = decide(&[work("/a", "r2", &["/a"], Phase::Staging, true)]);
        assert_eq!(kinds(&plans)[0].0, "busy");
        let plans = decide(&[Found::Orphan { mount: "/c".into() }]);
        assert_eq!(kinds(&plans), vec![("discard", vec!["/c".into()])]);
    }
}
