//! `restore-db`: one database dump of a backup loaded back into a database, the same or another,
//! in the same container or another. The dump's bytes are read and checked against the manifest
//! whole before the database sees any; then they are read again, straight into the load, which
//! goes into a new database (PostgreSQL) or file (SQLite) that takes the target's place only once
//! it loaded whole and matched again. A target that holds tables is refused without `--force`.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::key::Key;
use super::Session;
use crate::destination::DestSpec;
use crate::docker::exec::Capture;
use crate::docker::Engine;
use crate::dumps::load::Framing;
use crate::dumps::read::read_parts;
use crate::dumps::tools::{self, Step};
use crate::dumps::{DumpKind, DumpRecord};
use crate::encryption::Unlock;
use crate::error::Failure;
use crate::manifest::{self, Manifest, Store};

/// What `restore-db` was asked.
#[derive(Debug, Clone)]
pub struct RestoreDbSettings {
    /// Where the backup is.
    pub dest: DestSpec,
    /// Its id, or `latest`.
    pub archive: String,
    /// With `latest`: the newest backup of this container.
    pub source: Option<String>,
    /// Which dump: `CONTAINER` or `CONTAINER/FILE` (default: the backup's only one).
    pub dump: Option<String>,
    /// The running container to load it in (default: the one it was dumped from).
    pub into: Option<String>,
    /// The database (or SQLite file) to load it into (default: the one it was dumped from).
    pub database: Option<String>,
    /// An `exec` dump's load command (stdin: the dump).
    pub command: Option<String>,
    /// Replace a target that holds tables.
    pub force: bool,
    /// Say what would happen; change nothing.
    pub dry_run: bool,
    /// What opens an encrypted backup.
    pub unlock: Unlock,
}

/// How it went (`restore-db`'s JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct RestoredDb {
    /// `ok`, or `dry-run`.
    pub result: &'static str,
    /// The backup's id.
    pub backup: String,
    /// The dump's name in the archive (`dumps/<container>/<file>`).
    pub dump: String,
    /// Its kind.
    pub kind: String,
    /// Its bytes.
    pub size: u64,
    /// The container it was loaded in.
    pub container: String,
    /// The database or SQLite file it was loaded into (none: the one the container's
    /// environment names, or an `exec` command's own).
    pub target: Option<String>,
    /// What the target held before: `absent`, `empty`, `tables N` (unknown for `exec`).
    pub target_before: Option<String>,
    /// A dry run: whether the load would be refused (the target holds tables, no `--force`).
    pub would_refuse: bool,
    /// Seconds it took.
    pub seconds: f64,
}

/// Runs `restore-db`.
pub async fn run(session: &Session, s: &RestoreDbSettings) -> Result<RestoredDb> {
    let t0 = std::time::Instant::now();
    let dest = s.dest.open().await;
    let store = Store::new(dest.clone());
    let select = match (s.archive.as_str(), s.source.as_deref()) {
        ("latest", Some(c)) => manifest::Select::Container(c),
        ("latest", None) => {
            return Err(Failure::usage(
                "restore-db latest needs --container NAME (the backed-up container whose newest backup holds the dump)",
            )
            .into())
        }
        (id, _) => manifest::Select::Id(id),
    };
    let m = store
        .load(select)
        .await?
        .select(
            &s.archive,
            s.source.as_deref().unwrap_or_default(),
            &s.dest.to_string(),
            Utc::now(),
        )?
        .clone();
    let (index, record) = choose(&m, s.dump.as_deref())?;
    let kind = record.kind().expect("checked with the manifest");
    let kind = match (kind, &s.command) {
        (DumpKind::Exec { .. }, Some(c)) => DumpKind::Exec { command: c.clone() },
        (DumpKind::Exec { .. }, None) => {
            return Err(Failure::usage(format!(
                "{} of backup {} was made by a command; give the command that loads it from stdin with --command, or load it by hand (README, \"Databases\")",
                record.entry(),
                m.id
            ))
            .into())
        }
        (_, Some(_)) => {
            return Err(Failure::usage(format!(
                "--command is for dumps made by a command; {} is a {} dump, which dockyard loads itself",
                record.entry(),
                record.kind
            ))
            .into())
        }
        (kind, None) => kind,
    };
    let target = target_of(&kind, s.database.as_deref())?;
    let engine = session.engine().await?;
    let into = s.into.as_deref().unwrap_or(&record.container);
    let info = engine.inspect(into).await?;
    if !info.running {
        return Err(Failure::usage(format!(
            "container {:?} is not running; a dump is loaded by the database's own tools, in its running container",
            info.name
        ))
        .into());
    }
    let before = match tools::command(&kind, Step::Probe, target.as_deref()) {
        Some(probe) => Some(run_step(engine, &info.name, &probe, "look at the target").await?),
        None => None,
    };
    let full = before
        .as_deref()
        .is_some_and(|b| b != "absent" && b != "empty");
    let shown = target
        .clone()
        .unwrap_or_else(|| "its default database".into());
    let mut outcome = RestoredDb {
        result: "ok",
        backup: m.id.clone(),
        dump: record.entry(),
        kind: record.kind.clone(),
        size: record.size,
        container: info.name.clone(),
        target: target.clone(),
        target_before: before.clone(),
        would_refuse: full && !s.force,
        seconds: 0.0,
    };
    if s.dry_run {
        outcome.result = "dry-run";
        return Ok(outcome);
    }
    if full && !s.force {
        return Err(Failure::usage(format!(
            "{shown} in container {:?} is not empty ({}); nothing was changed. --force replaces it",
            info.name,
            before.unwrap_or_default()
        ))
        .into());
    }
    let key = Key::open(dest.as_ref(), &m, &s.unlock).await?;
    let parts: Vec<String> = m.dumps.iter().flat_map(|d| d.part_names()).collect();
    let from: usize = m.dumps[..index].iter().map(|d| d.parts as usize).sum();
    let to = from + record.parts as usize;
    // First pass: the dump whole, against the manifest, before the database sees a byte.
    let names = parts.clone();
    let checked = key
        .read_start(dest.as_ref(), &m, move |r| {
            let mut hash = (Sha256::new(), 0u64);
            read_parts(r, &names, from, to, |chunk| {
                hash.0.update(chunk);
                hash.1 += chunk.len() as u64;
                Ok(())
            })
            .map(|()| (hex::encode(hash.0.finalize()), hash.1))
        })
        .await?;
    let damaged = |why: String| -> anyhow::Error {
        Failure::verify(format!(
            "backup {} at {} failed verification: {why}; nothing was changed",
            m.id,
            dest.describe()
        ))
        .into()
    };
    match checked {
        Ok((sha, size)) if sha == record.sha256 && size == record.size => {}
        Ok((sha, size)) => {
            return Err(damaged(format!(
                "{} does not match its manifest: manifest says sha256 {} and {} bytes, the archive holds {sha} and {size}",
                record.entry(),
                record.sha256,
                record.size
            )))
        }
        Err(e) => return Err(damaged(e.to_string())),
    }
    // Second pass: straight into the load.
    let load =
        tools::command(&kind, Step::Load(s.force), target.as_deref()).expect("every kind loads");
    let (running, mut stdout, stdin) = engine
        .exec_streaming(&info.name, load.argv, load.user, true)
        .await?;
    let mut stdin = stdin.expect("asked for");
    let drained = tokio::spawn(async move {
        use futures_util::StreamExt;
        while stdout.next().await.is_some() {}
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let hash = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let hashed = hash.clone();
    let names = parts;
    let reading = key.read_start(dest.as_ref(), &m, move |r| {
        read_parts(r, &names, from, to, |chunk| {
            let mut h = hashed.lock().expect("not poisoned");
            h.0.update(chunk);
            h.1 += chunk.len() as u64;
            drop(h);
            tx.blocking_send(chunk.to_vec())
                .map_err(|_| std::io::Error::other("the load stopped reading"))
        })
    });
    let mut framing = Framing::for_kind(&kind);
    let writing = async {
        let mut written = stdin.write_all(&framing.start()).await;
        let mut first = true;
        while let Some(chunk) = rx.recv().await {
            if written.is_ok() {
                written = stdin.write_all(&framing.feed(&chunk)).await;
            }
            // Tests stop a restore here, the load under way with part of the dump.
            if std::mem::take(&mut first) {
                let _ = stdin.flush().await;
                crate::fault::point("dump-loading").await;
            }
        }
        written
    };
    let (read, written) = tokio::join!(reading, writing);
    let read = read?;
    let again = {
        let h = std::mem::take(&mut *hash.lock().expect("not poisoned"));
        (hex::encode(h.0.finalize()), h.1)
    };
    let whole = read.is_ok() && again == (record.sha256.clone(), record.size);
    // A damaged second read ends the input early: the load may still see a whole statement
    // stream, so its result is undone below rather than trusted (a MySQL load, which goes into
    // its target, is only kept by its script once it printed the line the framing adds last).
    let written = match written {
        Ok(()) => stdin.write_all(&framing.end(whole)).await,
        Err(e) => Err(e),
    };
    let _ = stdin.shutdown().await;
    drop(stdin);
    let code = engine.exit_code(&running).await?;
    let _ = drained.await;
    let said = running.stderr_tail();
    if !whole {
        discard(
            engine,
            &info.name,
            &kind,
            target.as_deref(),
            before.as_deref(),
        )
        .await;
        let why = match read {
            Err(e) => e.to_string(),
            Ok(()) => format!(
                "{} changed between two reads: it now has sha256 {} and {} bytes",
                record.entry(),
                again.0,
                again.1
            ),
        };
        return Err(damaged(why));
    }
    match code {
        0 => {}
        3 => {
            return Err(Failure::usage(format!(
                "{shown} in container {:?} is no longer empty; nothing was changed ({said})",
                info.name
            ))
            .into())
        }
        code => {
            let w = written
                .err()
                .map(|e| format!("; writing to it: {e}"))
                .unwrap_or_default();
            return Err(anyhow::anyhow!(
                "loading {} into {shown} in container {:?} failed (exit code {code}){w}: {said}",
                record.entry(),
                info.name
            ));
        }
    }
    // Tests stop a restore here: the dump loaded beside the target, which is not touched yet.
    crate::fault::point("dump-loaded").await;
    if let Some(promote) = tools::command(&kind, Step::Promote(s.force), target.as_deref()) {
        run_step(
            engine,
            &info.name,
            &promote,
            "put the loaded database in place",
        )
        .await?;
    }
    outcome.seconds = t0.elapsed().as_secs_f64();
    tracing::info!(backup = %m.id, dump = %record.entry(), container = %info.name, "database dump loaded");
    Ok(outcome)
}

/// The dump of `m` that `wanted` (`CONTAINER`, `CONTAINER/FILE` or `dumps/CONTAINER/FILE`)
/// names, with its index; the only one when nothing is named.
fn choose<'a>(m: &'a Manifest, wanted: Option<&str>) -> Result<(usize, &'a DumpRecord)> {
    let listed = || {
        m.dumps
            .iter()
            .map(|d| format!("{}/{}", d.container, d.file))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if m.dumps.is_empty() {
        return Err(Failure::usage(format!(
            "backup {} holds no database dumps (`backup --dump` makes them)",
            m.id
        ))
        .into());
    }
    let matching: Vec<(usize, &DumpRecord)> = m
        .dumps
        .iter()
        .enumerate()
        .filter(|(_, d)| match wanted {
            None => true,
            Some(w) => {
                let w = w.strip_prefix("dumps/").unwrap_or(w);
                w == d.container || w == format!("{}/{}", d.container, d.file)
            }
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::usage(format!(
            "backup {} holds no dump {}; it holds {}",
            m.id,
            wanted.unwrap_or_default(),
            listed()
        ))
        .into()),
        _ => Err(Failure::usage(format!(
            "backup {} holds several dumps ({}); choose one with --dump CONTAINER/FILE",
            m.id,
            listed()
        ))
        .into()),
    }
}

/// The database or file `--database` names, checked for `kind`.
fn target_of(kind: &DumpKind, given: Option<&str>) -> Result<Option<String>> {
    let Some(given) = given else {
        return Ok(match kind {
            DumpKind::Sqlite { path } => Some(path.clone()),
            _ => kind.database().map(str::to_string),
        });
    };
    match kind {
        DumpKind::Postgres { .. } | DumpKind::Mysql { .. } => {
            if !crate::dumps::spec::is_database_name(given) || given.starts_with("dockyard_") {
                return Err(Failure::usage(format!(
                    "--database {given:?}: dockyard loads into databases named with letters, digits, `_` and `-`, not its own `dockyard_*` ones"
                ))
                .into());
            }
        }
        DumpKind::Sqlite { .. } => {
            let ok = given
                .parse::<crate::values::ContainerPath>()
                .is_ok_and(|p| p.as_str() == given);
            if !ok {
                return Err(Failure::usage(format!(
                    "--database {given:?}: a SQLite dump loads into a file, named by its absolute path in the container"
                ))
                .into());
            }
        }
        DumpKind::Exec { .. } => {
            return Err(Failure::usage(
                "--database is for the dumps dockyard loads itself; an exec dump's --command names its own target",
            )
            .into())
        }
    }
    Ok(Some(given.to_string()))
}

/// Runs one step (probe, promote) in `container` and returns what it printed, trimmed; a
/// non-zero exit is an error naming `what` and its last lines.
async fn run_step(
    engine: &Engine,
    container: &str,
    command: &tools::Command,
    what: &str,
) -> Result<String> {
    let out = engine
        .run_argv(container, &command.argv, command.user, Capture::Parse(4096))
        .await?;
    if out.code == 3 {
        return Err(Failure::usage(format!(
            "container {container:?}: {}",
            out.stderr_tail.trim()
        ))
        .into());
    }
    if out.code != 0 {
        return Err(anyhow::anyhow!(
            "could not {what} in container {container:?} (exit code {}): {}",
            out.code,
            out.stderr_tail.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Undoes a load whose dump turned out damaged (a logged warning if that fails too).
async fn discard(
    engine: &Engine,
    container: &str,
    kind: &DumpKind,
    target: Option<&str>,
    before: Option<&str>,
) {
    let Some(mut command) = tools::command(kind, Step::Discard, target) else {
        tracing::warn!(
            container,
            "an exec dump's load cannot be undone by dockyard; check the target"
        );
        return;
    };
    command.argv.push(
        before
            .unwrap_or("empty")
            .split(' ')
            .next()
            .unwrap_or("empty")
            .into(),
    );
    if let Err(e) = run_step(engine, container, &command, "undo the load")
        .await
        .context("undo")
    {
        tracing::warn!(container, error = %e, "could not undo a load whose dump was damaged");
    }
}
