//! `restore-db`: one database dump of a backup loaded back into a database, the same or another,
//! in the same container or another. The dump's bytes are read and checked against the manifest
//! whole before the database sees any; then they are read again, straight into the load, which
//! goes into a new database (PostgreSQL) or file (SQLite) that takes the target's place only once
//! it loaded whole and matched again. A target that holds tables is refused without `--force`.

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::key::Key;
use super::Session;
use crate::destination::{DestSpec, Destination};
use crate::docker::exec::Capture;
use crate::docker::Engine;
use crate::dumps::load::Framing;
use crate::dumps::read::read_parts;
use crate::dumps::tools::{self, Step};
use crate::dumps::{DumpKind, DumpRecord};
use crate::encryption::Unlock;
use crate::error::Failure;
use crate::manifest::Manifest;

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
    let m = super::verify::select(&dest, &s.dest, &s.archive, s.source.as_deref()).await?;
    let (index, record) = choose(&m, s.dump.as_deref())?;
    // The container a load runs in is one the operator named, never one a manifest (which whoever
    // holds the store can write) names alone.
    if s.dump.is_none() && s.into.is_none() {
        return Err(Failure::usage(format!(
            "name the database's container: --dump {}/{} (or --into CONTAINER); dockyard loads a dump only into a container named on its command line",
            record.container, record.file
        ))
        .into());
    }
    // So is the database or file: a dump's file name binds its database, but not a SQLite
    // file's directory.
    let file_named = s.dump.as_deref().is_some_and(|d| d.contains('/'));
    if s.database.is_none() {
        let c = &record.container;
        match record.kind.as_str() {
            "sqlite" => {
                return Err(Failure::usage(format!(
                    "name the file to load {}/{} into: --database PATH (it was {}); dockyard never takes a file's place from a manifest alone",
                    c,
                    record.file,
                    record.path.as_deref().unwrap_or_default()
                ))
                .into())
            }
            "postgres" | "mysql" if !file_named => {
                return Err(Failure::usage(format!(
                    "name the database: --dump {c}/{} or --database NAME; dockyard never takes it from a manifest alone",
                    record.file
                ))
                .into())
            }
            _ => {}
        }
    }
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
    let from: usize = m.dumps[..index].iter().map(|d| d.parts as usize).sum();
    let source = Source {
        dest: dest.as_ref(),
        m: &m,
        key: &key,
        record,
        parts: m.dumps.iter().flat_map(|d| d.part_names()).collect(),
        from,
        to: from + record.parts as usize,
    };
    // First pass: the dump whole, against the manifest, before the database sees a byte.
    match source.read(|_| Ok(())).await? {
        Ok(got) if source.matches(&got) => {}
        Ok((sha, size)) => {
            return Err(source.damaged(
                &format!(
                    "{} does not match its manifest: manifest says sha256 {} and {} bytes, the archive holds {sha} and {size}",
                    record.entry(),
                    record.sha256,
                    record.size
                ),
                "nothing was changed",
            ))
        }
        Err(e) => return Err(source.damaged(&e.to_string(), "nothing was changed")),
    }
    let t = Target {
        engine,
        container: &info.name,
        kind: &kind,
        name: target.as_deref(),
        shown,
        before: before.as_deref(),
        force: s.force,
    };
    // Second pass: straight into the load, which is undone if anything goes wrong.
    load(&source, &t).await?;
    // Tests stop a restore here: the dump loaded beside the target, which is not touched yet.
    crate::fault::point("dump-loaded").await;
    promote(&t).await?;
    outcome.seconds = t0.elapsed().as_secs_f64();
    tracing::info!(backup = %m.id, dump = %record.entry(), container = %info.name, "database dump loaded");
    Ok(outcome)
}

/// A dump's bytes in the store: how to read them, and what they must be.
struct Source<'a> {
    dest: &'a dyn Destination,
    m: &'a Manifest,
    key: &'a Key,
    record: &'a DumpRecord,
    /// Every dump part's name in the archive, in order.
    parts: Vec<String>,
    /// This dump's parts: `parts[from..to]`.
    from: usize,
    to: usize,
}

impl Source<'_> {
    /// Reads the archive from its start through the dump's last part, its bytes in chunks to
    /// `each`; their sha256 and count, or why the archive could not be read.
    async fn read(
        &self,
        mut each: impl FnMut(&[u8]) -> std::io::Result<()> + Send + 'static,
    ) -> Result<std::io::Result<(String, u64)>> {
        let (names, from, to) = (self.parts.clone(), self.from, self.to);
        self.key
            .read_start(self.dest, self.m, move |r| {
                let (mut hash, mut size) = (Sha256::new(), 0u64);
                read_parts(r, &names, from, to, |chunk| {
                    hash.update(chunk);
                    size += chunk.len() as u64;
                    each(chunk)
                })
                .map(|()| (hex::encode(hash.finalize()), size))
            })
            .await
    }

    /// Whether a read's sha256 and count are the manifest's.
    fn matches(&self, got: &(String, u64)) -> bool {
        got.0 == self.record.sha256 && got.1 == self.record.size
    }

    /// A verification failure of the backup (exit 5), and what became of the target.
    fn damaged(&self, why: &str, target: &str) -> anyhow::Error {
        Failure::verify(format!(
            "backup {} at {} failed verification: {why}; {target}",
            self.m.id,
            self.dest.describe()
        ))
        .into()
    }
}

/// Where a dump is loaded, and how to undo a load.
struct Target<'a> {
    engine: &'a Engine,
    container: &'a str,
    kind: &'a DumpKind,
    /// The database or SQLite file (`None`: the one the container's environment names).
    name: Option<&'a str>,
    /// It, for messages.
    shown: String,
    /// What the probe found there: `absent`, `empty`, `tables N` (`None` for `exec`).
    before: Option<&'a str>,
    force: bool,
}

impl Target<'_> {
    /// What an undone load leaves, for messages.
    fn after_undo(&self) -> String {
        let c = self.container;
        match (self.kind, self.before) {
            (DumpKind::Exec { .. }, _) => {
                format!("dockyard cannot undo a command's load: check the target in container {c:?}")
            }
            (DumpKind::Mysql { .. }, Some(b)) if b.starts_with("tables") => format!(
                "{} in container {c:?} was emptied for the load (--force) and is empty now: run the restore again",
                self.shown
            ),
            _ => format!("{} in container {c:?} is as it was", self.shown),
        }
    }

    /// Undoes a load (a warning if that fails too).
    async fn discard(&self) {
        discard(
            self.engine,
            self.container,
            self.kind,
            self.name,
            self.before,
        )
        .await;
    }
}

/// Streams the dump into the load in the target's container (second pass); undoes the load
/// unless it read the whole dump, its bytes matched again, and it ended with exit 0.
async fn load(source: &Source<'_>, t: &Target<'_>) -> Result<()> {
    let command = tools::command(t.kind, Step::Load(t.force), t.name).expect("every kind loads");
    let (running, mut stdout, stdin) = t
        .engine
        .exec_streaming(t.container, command.argv, command.user, true)
        .await?;
    let mut stdin = stdin.expect("asked for");
    let drained = tokio::spawn(async move {
        use futures_util::StreamExt;
        while stdout.next().await.is_some() {}
    });
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let reading = source.read(move |chunk| {
        tx.blocking_send(chunk.to_vec())
            .map_err(|_| std::io::Error::other("the load stopped reading"))
    });
    let mut framing = Framing::for_kind(t.kind);
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
    let read = match read {
        Ok(Ok(got)) if source.matches(&got) => Ok(()),
        Ok(Ok((sha, size))) => Err(format!(
            "{} changed between two reads: it now has sha256 {sha} and {size} bytes",
            source.record.entry()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("{e:#}")),
    };
    // A damaged second read ends the input early: the load may still see a whole statement
    // stream, so its result is undone below rather than trusted (a MySQL load, which goes into
    // its target, is only kept by its script once it printed the line the framing adds last).
    let written = match written {
        Ok(()) => stdin.write_all(&framing.end(read.is_ok())).await,
        Err(e) => Err(e),
    };
    let _ = stdin.shutdown().await;
    drop(stdin);
    // Its output ends when it does: indexes and constraints are built after the last byte.
    let _ = drained.await;
    let code = t.engine.exit_code(&running).await;
    let said = running.stderr_tail();
    let loads_itself = !matches!(t.kind, DumpKind::Exec { .. });
    if loads_itself && matches!(code, Ok(3)) {
        // The script's refusal: it changed nothing.
        return Err(Failure::usage(format!(
            "{} in container {:?} is no longer empty; nothing was changed ({said})",
            t.shown, t.container
        ))
        .into());
    }
    if let Err(why) = read {
        t.discard().await;
        return Err(source.damaged(&why, &t.after_undo()));
    }
    match (code, written) {
        (Ok(0), Ok(())) => Ok(()),
        (code, written) => {
            t.discard().await;
            let how = match code {
                Ok(0) => "it exited before reading the whole dump".to_string(),
                Ok(code) => format!("exit code {code}"),
                Err(e) => e.to_string(),
            };
            let w = written
                .err()
                .map(|e| format!("; writing to it: {e}"))
                .unwrap_or_default();
            Err(anyhow::anyhow!(
                "loading {} into {} in container {:?} failed ({how}){w}: {said}; {}",
                source.record.entry(),
                t.shown,
                t.container,
                t.after_undo()
            ))
        }
    }
}

/// Puts the loaded database or file in the target's place (nothing to do for MySQL and
/// `exec`); on failure the loaded one is dropped.
async fn promote(t: &Target<'_>) -> Result<()> {
    let Some(command) = tools::command(t.kind, Step::Promote(t.force), t.name) else {
        return Ok(());
    };
    let step = run_step(
        t.engine,
        t.container,
        &command,
        "put the loaded database in place",
    )
    .await;
    if step.is_err() {
        t.discard().await;
    }
    step.map(|_| ())
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
    let said = crate::docker::exec::last_lines(&out.stderr_tail);
    if out.code == 3 {
        return Err(Failure::usage(format!("container {container:?}: {said}")).into());
    }
    if out.code != 0 {
        return Err(anyhow::anyhow!(
            "could not {what} in container {container:?} (exit code {}): {said}",
            out.code
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
