//! `dockyard restore`: put a backup back into a container's volumes, safely.
//!
//! Order of work, so that a bad archive never harms live data and an interruption at any instant
//! leaves every volume exactly as before or exactly as restored:
//! 1. lock the container; finish or undo any interrupted restore of it (`swap::recover`);
//! 2. pick the backup (`latest` skips safety backups and future-dated ones) and check its manifest;
//! 3. read each path's own entry from the start of the archive, to plan where each path goes;
//! 4. stage each path into `<mount>/.dockyard-restore/new-<k>/` with a journal (a single-file
//!    mount beside its host file), checking the whole archive on the way as `verify` does (one
//!    decode per path: sha256, every entry, the counts; device nodes refused unless
//!    `--allow-devices`); a failure or signal here removes the staging;
//! 5. save what is there as a `pre-restore` backup (to `--safety-backup-to`, else `--from`);
//! 6. in one helper that no signal interrupts: mark every work dir ready, move single files into
//!    place, swap each path (old contents aside, restored ones in), delete the old contents.

use anyhow::{Context, Result};
use chrono::Utc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::backup::backup;
use super::quiesce::{self, Quiesce};
use super::restore_report::{render, shorten, DryRun, Outcome, Restored, SafetyBackup};
use super::Ctx;
use crate::agent::host::{self, Unavailable, UnpackFailed};
use crate::agent::UnpackJob;
use crate::archive::entry::{Kind, Privileges};
use crate::archive::listing::{self, Origin};
use crate::archive::pack::Compression;
use crate::archive::stage::{stage, RootMeta, StageSpec, Staged};
use crate::archive::verify::Expect;
use crate::archive::writer::TarWriter;
use crate::destination::{DestSpec, Destination};
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec, Mount};
use crate::error::Failure;
use crate::lock::{Access, ContainerLock};
use crate::manifest::{self, Manifest, Store, SAFETY_TAG};
use crate::owner::Owner;
use crate::pipeline::{read_blocking, streams, ChannelWriter};
use crate::progress::Progress;
use crate::settings::{BackupSettings, RestoreSettings};
use crate::shell;
use crate::swap::journal::{Journal, MountWork, PathRecord, State};
use crate::swap::member::stage_member;
use crate::swap::recover::{self, Work};
use crate::swap::{self};
use crate::values::AgentMode;

/// Runs `dockyard restore` and prints what it did; with `--stop`, with the target (and others)
/// stopped around it.
pub async fn run(ctx: &Ctx, s: RestoreSettings) -> Result<()> {
    let engine = ctx.engine().await?;
    let (stop, stop_timeout, container) = (s.stop.clone(), s.stop_timeout, s.container.clone());
    let quiet = Quiesce {
        container: &container,
        stop: &stop,
        stop_timeout,
        pre_hook: None,
        post_hook: None,
    };
    let (mut outcome, downtime) = quiesce::around(engine, quiet, restore(ctx, s)).await?;
    if let Outcome::Restored(r) = &mut outcome {
        r.downtime_seconds = downtime;
    }
    render(ctx, &outcome);
    Ok(())
}

/// One path to restore into a directory: where it is staged and how it is swapped.
#[derive(Debug, Clone)]
struct DirPath {
    /// Its number within its mount's work dir.
    k: usize,
    /// The container path.
    path: String,
    /// Relative to the mount root.
    rel: Vec<u8>,
    /// Names (relative to the path) of the target's own nested mount points directly inside it.
    skip: Vec<Vec<u8>>,
    /// Names (relative to the path) that belong to another path of the backup.
    elsewhere: Vec<Vec<u8>>,
    /// Owner, mode and time for the path itself.
    root: RootMeta,
    /// The path's own entry as planning read it (`None` if the archive has none); staging must
    /// find the same.
    archived: Option<RootMeta>,
}

/// All paths restored into one mount.
#[derive(Debug, Clone)]
struct DirMember {
    mount: String,
    paths: Vec<DirPath>,
}

/// A single-file bind mount to restore.
#[derive(Debug, Clone)]
struct FileMember {
    /// The container path.
    path: String,
    /// The host directory holding the mount's source file.
    dir: String,
    /// The source file's name there.
    name: String,
}

/// What the restore will do.
#[derive(Debug, Default)]
struct Plan {
    dirs: Vec<DirMember>,
    files: Vec<FileMember>,
}

impl Plan {
    /// The journal of a restore of backup `m` into `target` by this plan, before staging.
    fn journal(&self, m: &Manifest, target: &ContainerInfo, include: &[String]) -> Journal {
        Journal {
            run: crate::owner::run_id(),
            owner: Owner::current(),
            backup: m.id.clone(),
            container: target.id.clone(),
            state: State::Staging,
            attempts: 0,
            include: include.to_vec(),
            mounts: self
                .dirs
                .iter()
                .map(|d| MountWork {
                    root: d.mount.clone(),
                    volume: mount_identity(target, &d.mount),
                    paths: d
                        .paths
                        .iter()
                        .map(|p| PathRecord {
                            k: p.k,
                            rel: p.rel.clone(),
                            root: p.root,
                        })
                        .collect(),
                    skips: d
                        .paths
                        .iter()
                        .flat_map(|p| p.skip.iter().map(|n| (p.k, n.clone())))
                        .collect(),
                    fixups: vec![],
                })
                .collect(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
        }
    }
}

/// The restore itself; prints nothing.
async fn restore(ctx: &Ctx, s: RestoreSettings) -> Result<Outcome> {
    let engine = ctx.engine().await?;
    let dest = s.dest.open().await;
    let store = Store::new(dest.clone());
    let target = engine.inspect(&s.container).await?;
    let image = s
        .helper_image
        .clone()
        .unwrap_or_else(|| target.image_id.clone());
    if engine.is_local() {
        crate::binds::check(&target)?;
    }
    let _lock =
        ContainerLock::take_on(engine, &ctx.lock_dir, &target, "restore", Access::Exclusive)
            .await?;
    let ledger = recover::ledger(engine).await?;
    let work = Work {
        engine,
        target: &target,
        image: &image,
        ledger: &ledger,
    };
    let mut recovered = Vec::new();
    if !s.dry_run {
        engine.remove_stale_helpers().await?;
        let outcome = finish_interrupted(ctx, &work, true).await?;
        if let Some(why) = outcome.busy.first() {
            return Err(Failure::busy(format!("{why}; wait for it and run again")).into());
        }
        if let Some(e) = outcome.stuck {
            return Err(e);
        }
        if let Some(f) = outcome.foreign.first() {
            return Err(Failure::usage(format!(
                "{f}. dockyard stages restores there and will not touch something it did not create; move it away, then run again"
            ))
            .into());
        }
        if let Some(w) = outcome.warnings.first() {
            return Err(Failure::busy(format!(
                "{w}; a restore needs that work directory gone first"
            ))
            .into());
        }
        recovered = outcome.done;
    }
    let source = s.source.clone().unwrap_or_else(|| target.name.clone());
    let select = match s.archive.as_str() {
        "latest" => manifest::Select::Container(&source),
        id => manifest::Select::Id(id),
    };
    let catalog = store.load(select).await?;
    let m = catalog
        .select(&s.archive, &source, &s.dest.to_string(), Utc::now())?
        .clone();
    if m.container != source && !s.force {
        return Err(Failure::usage(format!(
            "backup {} is of container {:?}, not {:?}; to restore it into {:?}, say so with --container {} (or --force)",
            m.id,
            m.container,
            source,
            target.name,
            shell_words::quote(&m.container)
        ))
        .into());
    }
    let wanted = pick_paths(&m, &s.paths, &target)?;
    if !s.dry_run && !s.allow_open_files {
        refuse_open_files(engine, &target, &wanted).await?;
    }

    let safety_dest = s.safety_dest.clone().unwrap_or_else(|| s.dest.clone());
    if s.dry_run {
        let report = super::verify::verify_backup(dest.as_ref(), &m, ctx.output.progress).await?;
        refuse_devices(&m, &report.devices, &s)?;
        let plan = plan(&m, &wanted, &target, &report.roots, engine.is_local())?;
        return dry_run(
            engine,
            dest.as_ref(),
            &m,
            &target,
            &plan,
            &image,
            &s,
            &safety_dest,
            &report,
        )
        .await
        .map(Outcome::DryRun);
    }

    let roots = archived_roots(dest.as_ref(), &m).await?;
    let mut plan = plan(&m, &wanted, &target, &roots, engine.is_local())?;
    if !s.include.is_empty() && !plan.files.is_empty() {
        tracing::info!(container = %target.name, "--include restores entries of directories: the single-file mounts are left as they are");
        plan.files.clear();
    }
    let (staged, mut journal) = stage_all(ctx, &work, dest.as_ref(), &m, &plan, &s).await?;
    let safety = if s.safety_backup {
        match safety_backup(ctx, engine, &target, &plan, &image, &s, &safety_dest).await {
            Ok(safety) => safety,
            Err(e) => {
                discard(ctx, engine).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let old_contents = commit(ctx, &work, &mut journal, s.wait_cleanup).await?;

    let stripped: Vec<String> = staged.iter().flat_map(|s| s.stripped.clone()).collect();
    if !stripped.is_empty() {
        tracing::warn!(files = %shorten(&stripped), "removed set-user-ID/set-group-ID bits (restore with --keep-setuid to keep them)");
    }
    let dropped: Vec<String> = staged
        .iter()
        .flat_map(|s| s.dropped_xattrs.clone())
        .collect();
    if !dropped.is_empty() {
        tracing::warn!(files = %shorten(&dropped), "dropped security.*/trusted.* extended attributes, file capabilities among them (restore with --keep-capabilities to keep them)");
    }
    Ok(Outcome::Restored(Restored {
        result: "ok",
        restored: m.id.clone(),
        into: target.name.clone(),
        paths: wanted,
        safety_backup: safety,
        stripped_setid: stripped,
        dropped_xattrs: dropped,
        skipped: staged.iter().flat_map(|s| s.skipped.clone()).collect(),
        notes: plan
            .files
            .iter()
            .map(|f| {
                format!(
                    "{} is a single-file bind mount of {}/{}: the container sees the restored file after it restarts",
                    f.path, f.dir, f.name
                )
            })
            .collect(),
        recovered,
        old_contents,
        downtime_seconds: None,
    }))
}

/// Refuses to restore paths in which processes of the (running) target hold files open: the swap
/// would move those files away and delete them while the app keeps writing into them. Best effort:
/// a target without /bin/sh is not checked (a warning says so).
async fn refuse_open_files(
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
    let listed = match engine.exec_script(&target.id, &script, Some("0")).await {
        Ok((0, out)) => out,
        Ok((code, _)) => {
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

/// What is mounted at `root` of `target`: a volume's name, or a bind mount's host path.
fn mount_identity(target: &ContainerInfo, root: &str) -> String {
    target
        .mounts
        .iter()
        .find(|m| m.destination.trim_end_matches('/') == root)
        .map(|m| m.volume.clone().unwrap_or_else(|| m.source.clone()))
        .unwrap_or_default()
}

/// Refuses a backup holding device nodes unless `--allow-devices`.
fn refuse_devices(m: &Manifest, devices: &[String], s: &RestoreSettings) -> Result<()> {
    if devices.is_empty() || s.privileges.allow_devices {
        return Ok(());
    }
    Err(Failure::verify(format!(
        "backup {} holds device nodes ({}); restoring them would let whoever can open them reach host devices. Nothing was changed; pass --allow-devices if you trust them",
        m.id,
        shorten(devices)
    ))
    .into())
}

/// Each manifest path's own entry, read from the start of the archive only as far as needed to
/// plan (a single-path archive: its first entry); if that fails, the full verification says why.
/// Staging checks the whole archive and that these agree, so nothing here is trusted further.
async fn archived_roots(
    dest: &dyn Destination,
    m: &Manifest,
) -> Result<Vec<Option<(Kind, RootMeta)>>> {
    let paths: Vec<String> = m.paths.iter().map(|p| p.path.clone()).collect();
    let scanned = read_blocking(dest, &m.archive, None, move |r| {
        crate::archive::verify::roots(r, &paths)
    })
    .await
    .with_context(|| format!("cannot read backup {}", m.id))?;
    match scanned {
        Ok(roots) => Ok(roots),
        // Say what is wrong as `verify` would (a checksum mismatch before a decoding error).
        Err(_) => super::verify::verify_backup(dest, m, false)
            .await
            .map(|report| report.roots),
    }
}

/// A verification failure of backup `m` at `dest`, which changed nothing.
fn failed_verification(m: &Manifest, dest: &dyn Destination, why: &str) -> anyhow::Error {
    Failure::verify(format!(
        "backup {} at {} failed verification: {why}; nothing was changed",
        m.id,
        dest.describe()
    ))
    .into()
}

/// Finishes, undoes or cleans up after earlier restores of the target, in a critical section.
pub async fn finish_interrupted(
    ctx: &Ctx,
    work: &Work<'_>,
    for_restore: bool,
) -> Result<recover::Outcome> {
    let _critical = ctx.critical.enter();
    recover::run(work, for_restore).await
}

/// The backup's paths to restore (all, or the `--path` ones).
fn pick_paths(m: &Manifest, wanted: &[String], target: &ContainerInfo) -> Result<Vec<String>> {
    let in_archive: Vec<String> = m.paths.iter().map(|p| p.path.clone()).collect();
    let chosen = if wanted.is_empty() {
        in_archive.clone()
    } else {
        wanted.to_vec()
    };
    for p in &chosen {
        if !in_archive.contains(p) {
            return Err(Failure::usage(format!(
                "backup {} has no path {p}; it holds {}",
                m.id,
                in_archive.join(", ")
            ))
            .into());
        }
        if mount_of(target, p).is_none() {
            let list: Vec<&str> = target
                .mounts
                .iter()
                .map(|mt| mt.destination.as_str())
                .collect();
            return Err(Failure::usage(format!(
                "container {:?} has no volume at {p} to restore into; its mounts are: {}",
                target.name,
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join(", ")
                }
            ))
            .into());
        }
    }
    Ok(chosen)
}

/// The target's volume or bind mount holding `path` (the innermost one).
fn mount_of<'a>(target: &'a ContainerInfo, path: &str) -> Option<&'a Mount> {
    target
        .mounts
        .iter()
        .filter(|m| (m.kind == "volume" || m.kind == "bind") && m.contains(path))
        .max_by_key(|m| m.destination.len())
}

/// Where each path goes: directories into their mount's work dir, single files beside their host
/// file. Nested mount points directly inside a path stay in place; deeper ones cannot.
fn plan(
    m: &Manifest,
    wanted: &[String],
    target: &ContainerInfo,
    roots: &[Option<(Kind, RootMeta)>],
    local: bool,
) -> Result<Plan> {
    let mut plan = Plan::default();
    for path in wanted {
        let index = m
            .paths
            .iter()
            .position(|p| &p.path == path)
            .expect("picked from the manifest");
        let mount = mount_of(target, path).expect("checked by pick_paths");
        match roots[index] {
            Some((Kind::File, _)) => {
                if mount.destination != *path || mount.kind != "bind" {
                    return Err(Failure::usage(format!(
                        "backup {} holds a single file at {path}, but {path} in container {:?} is not a single-file bind mount",
                        m.id, target.name
                    ))
                    .into());
                }
                let (dir, name) = recover::file_source(target, path, local)?;
                plan.files.push(FileMember {
                    path: path.clone(),
                    dir,
                    name,
                });
            }
            root => {
                let mut skip = Vec::new();
                let below = format!("{path}/");
                for nested in target
                    .mounts
                    .iter()
                    .filter(|n| n.destination.starts_with(&below))
                {
                    let rel = &nested.destination[path.len() + 1..];
                    if rel.contains('/') {
                        return Err(Failure::usage(format!(
                            "cannot restore {path} into container {:?}: it has a mount at {} below a directory of {path}, which a restore would have to move; restore the paths around it with --path",
                            target.name, nested.destination
                        ))
                        .into());
                    }
                    skip.push(rel.as_bytes().to_vec());
                }
                let elsewhere = m
                    .paths
                    .iter()
                    .filter_map(|p| p.path.strip_prefix(&format!("{path}/")))
                    .map(|r| r.as_bytes().to_vec())
                    .collect();
                let mount_root = mount.destination.trim_end_matches('/').to_string();
                let rel = path
                    .strip_prefix(&mount_root)
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .as_bytes()
                    .to_vec();
                let archived = root.map(|(_, meta)| meta);
                let root = match root {
                    Some((_, meta)) => meta,
                    None => RootMeta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: Utc::now().timestamp(),
                    },
                };
                let member = match plan.dirs.iter_mut().find(|d| d.mount == mount_root) {
                    Some(d) => d,
                    None => {
                        plan.dirs.push(DirMember {
                            mount: mount_root.clone(),
                            paths: vec![],
                        });
                        plan.dirs.last_mut().expect("pushed")
                    }
                };
                let k = member.paths.len();
                member.paths.push(DirPath {
                    k,
                    path: path.clone(),
                    rel,
                    skip,
                    elsewhere,
                    root,
                    archived,
                });
            }
        }
    }
    Ok(plan)
}

/// Which names of a path a set of patterns takes: a name matching one, or below a directory
/// that does; with no patterns, every name.
#[derive(Clone)]
struct Filter {
    globs: crate::archive::exclude::Globs,
    path: String,
}

impl Filter {
    fn new(patterns: &[String], path: &str) -> Filter {
        Filter {
            globs: crate::archive::exclude::Globs::new(patterns).unwrap_or_default(),
            path: path.to_string(),
        }
    }

    fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// Whether `rel` (a name relative to the path) is taken.
    fn takes(&self, rel: &[u8]) -> bool {
        self.globs.is_empty() || self.globs.matches_or_above(&self.path, rel)
    }
}

/// Streams a live path of `target` through a read-only helper into `each` with `state` (at most
/// `limit` entries), leaving out dockyard's work dir and `exclude`d names; returns the state.
#[allow(clippy::too_many_arguments)]
async fn live_each<S: Send + 'static>(
    engine: &Engine,
    target: &ContainerInfo,
    path: &str,
    exclude: Vec<Vec<u8>>,
    image: &str,
    limit: Option<usize>,
    mut state: S,
    each: fn(&mut S, &[u8], listing::Signature),
) -> Result<S> {
    let helper = engine
        .create_helper(HelperSpec::archive(target, image, true))
        .await?;
    let stream = Box::pin(engine.download(&helper, path));
    let owned = path.to_string();
    let mut exclude = exclude;
    exclude.push(swap::WORK_DIR.as_bytes().to_vec());
    let listed = tokio::task::spawn_blocking(move || {
        listing::each(
            SyncIoBridge::new(StreamReader::new(stream)),
            Origin::Engine,
            &owned,
            &exclude,
            limit,
            |name, sig| each(&mut state, name, sig),
        )
        .map(|_| state)
    })
    .await
    .expect("listing thread panicked");
    engine.remove_helper(&helper).await?;
    Ok(listed.map_err(|e| DockerError::Api {
        action: format!("list {path} of {:?}", target.name),
        message: e.to_string(),
    })?)
}

/// The container paths that hold anything today (and so deserve a safety backup): directories
/// with an entry, and every single file.
async fn occupied_paths(
    engine: &Engine,
    target: &ContainerInfo,
    plan: &Plan,
    image: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in &plan.dirs {
        for p in &d.paths {
            let seen = live_each(
                engine,
                target,
                &p.path,
                p.skip.clone(),
                image,
                Some(1),
                0usize,
                |n, _, _| *n += 1,
            )
            .await?;
            if seen > 0 {
                out.push(p.path.clone());
            }
        }
    }
    out.extend(plan.files.iter().map(|f| f.path.clone()));
    Ok(out)
}

/// Backs up what the restore will replace, tagged `pre-restore`, and removes expired safety
/// backups of the container there. Returns the new backup's id (`None` if nothing was there).
async fn safety_backup(
    ctx: &Ctx,
    engine: &Engine,
    target: &ContainerInfo,
    plan: &Plan,
    image: &str,
    s: &RestoreSettings,
    safety_dest: &DestSpec,
) -> Result<Option<SafetyBackup>> {
    let occupied = occupied_paths(engine, target, plan, image).await?;
    if occupied.is_empty() {
        return Ok(None);
    }
    let settings = BackupSettings {
        container: target.id.clone(),
        paths: occupied,
        dest: safety_dest.clone(),
        tags: vec![SAFETY_TAG.into()],
        compression: Compression {
            level: 3,
            workers: crate::values::zstd_workers(),
        },
        helper_image: s.helper_image.clone(),
        agent: s.agent,
        exclude: Default::default(),
        snapshot: false,
        include_env: false,
        stop: Vec::new(),
        stop_timeout: 0,
        pre_hook: None,
        post_hook: None,
        dry_run: false,
    };
    let (safety, secs) = backup(ctx, engine, &settings, ctx.output.progress)
        .await
        .with_context(|| {
            format!(
                "safety backup of {:?} to {safety_dest} before restoring; nothing was changed. If that destination is read-only (a disaster-recovery key, a read-only share), write the safety backup elsewhere with --safety-backup-to DEST, or skip it with --no-safety-backup",
                target.name
            )
        })?;
    expire_safety_backups(safety_dest, &target.name, s.safety_keep_secs).await;
    Ok(Some(SafetyBackup {
        undo: format!(
            "dockyard restore {} --from {safety_dest} --backup {}",
            target.name, safety.id
        ),
        id: safety.id,
        destination: safety_dest.to_string(),
        size: safety.size,
        seconds: secs,
    }))
}

/// Removes `container`'s safety backups older than `keep_secs` at `dest` (best effort: a failure
/// is a warning, the restore goes on).
async fn expire_safety_backups(dest: &DestSpec, container: &str, keep_secs: i64) {
    let store = Store::new(dest.open().await);
    let cutoff = Utc::now() - chrono::Duration::seconds(keep_secs);
    let catalog = match store.load(manifest::Select::Container(container)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for expired safety backups");
            return;
        }
    };
    for m in catalog
        .manifests
        .iter()
        .filter(|m| m.container == container && m.is_safety() && m.created < cutoff)
    {
        match store.remove(&m.id).await {
            Ok(()) => {
                tracing::info!(id = %m.id, "removed an expired safety backup")
            }
            Err(e) => {
                tracing::warn!(id = %m.id, error = %e, "could not remove an expired safety backup")
            }
        }
    }
}

/// Says what a restore would add, change and remove, and what it would refuse, strip and save;
/// changes nothing.
#[allow(clippy::too_many_arguments)]
async fn dry_run(
    engine: &Engine,
    dest: &dyn Destination,
    m: &Manifest,
    target: &ContainerInfo,
    plan: &Plan,
    image: &str,
    s: &RestoreSettings,
    safety_dest: &DestSpec,
    report: &crate::archive::verify::Report,
) -> Result<DryRun> {
    let mut report_paths = Vec::new();
    for d in &plan.dirs {
        for p in &d.paths {
            let owned = p.path.clone();
            let mut skip = p.skip.clone();
            skip.extend(p.elsewhere.iter().cloned());
            skip.push(crate::archive::names::LOG_STATE.as_bytes().to_vec());
            // What a restore would take from the archive (`--include`), and which live names it
            // keeps as they are: those the backup left out, or with `--include` everything.
            let include = Filter::new(&s.include, &owned);
            let excluded = Filter::new(&m.exclude, &owned);
            // Bounded memory whatever the file count: the archive's side as hashes, the target
            // streamed past them, the archive read again for the names only if it has some the
            // target lacks.
            let archive_pass = |compare: listing::Compare, added: bool| {
                let (owned, skip, include) = (owned.clone(), skip.clone(), include.clone());
                read_blocking(dest, &m.archive, None, move |r| {
                    let mut compare = compare;
                    listing::each(r, Origin::Archive, &owned, &skip, None, |name, sig| {
                        if !include.takes(name) {
                            return;
                        }
                        if added {
                            compare.added(name)
                        } else {
                            compare.wanted(name, &sig)
                        }
                    })
                    .map(|_| compare)
                })
            };
            let mut compare = archive_pass(listing::Compare::default(), false)
                .await?
                .with_context(|| format!("list {} in backup {}", p.path, m.id))?;
            compare.wanted_done();
            let merging = !s.include.is_empty();
            let (mut compare, _, _, mut kept) = live_each(
                engine,
                target,
                &p.path,
                skip.clone(),
                image,
                None,
                (compare, include.clone(), excluded.clone(), 0u64),
                |(c, include, excluded, kept), name, sig| {
                    if excluded.takes(name) && !excluded.is_empty() {
                        *kept += 1;
                    } else if include.takes(name) {
                        c.current(name, &sig);
                    } else {
                        *kept += 1;
                    }
                },
            )
            .await?;
            if compare.missing() > 0 {
                compare = archive_pass(compare, true)
                    .await?
                    .with_context(|| format!("list {} in backup {}", p.path, m.id))?;
            }
            let mut diff = compare.finish();
            if merging {
                // A merge deletes nothing: what only the target has stays.
                kept += diff.totals[2];
                diff.removed.clear();
                diff.totals[2] = 0;
            }
            report_paths.push((p.path.clone(), diff, kept));
        }
    }
    let safety = if !s.safety_backup {
        "no safety backup (--no-safety-backup)".to_string()
    } else {
        let occupied = occupied_paths(engine, target, plan, image).await?;
        if occupied.is_empty() {
            "no safety backup: the target's paths are empty".to_string()
        } else {
            format!(
                "a safety backup (tag {SAFETY_TAG}) of {} would first be written to {safety_dest}",
                occupied.join(", ")
            )
        }
    };
    Ok(DryRun {
        backup: m.id.clone(),
        into: target.name.clone(),
        paths: report_paths,
        files: plan.files.iter().map(|f| f.path.clone()).collect(),
        safety,
        setid: report.setid.clone(),
        keep_setid: s.privileges.keep_setid,
        privileged_xattrs: report.privileged_xattrs.clone(),
        keep_capabilities: s.privileges.keep_capabilities,
        devices: report.devices.clone(),
    })
}

/// Stages every path, the journal on the host written first; on any failure (or a signal,
/// through `ctx`'s clean-up) the staging is removed and nothing live has changed. Returns what
/// each path staged and the journal, now holding the times the engine could not set.
async fn stage_all(
    ctx: &Ctx,
    work: &Work<'_>,
    dest: &dyn Destination,
    m: &Manifest,
    plan: &Plan,
    s: &RestoreSettings,
) -> Result<(Vec<Staged>, Journal)> {
    let (engine, target, image) = (work.engine, work.target, work.image);
    let mut journal = plan.journal(m, target, &s.include);
    work.ledger.write(&journal)?;
    ctx.set_pending(Some(super::Pending {
        target: target.clone(),
        image: image.to_string(),
        journal: journal.clone(),
        ledger: work.ledger.clone(),
    }));
    let staged = stage_each(ctx, work, dest, m, plan, s, &mut journal).await;
    let staged = match staged {
        Ok(staged) => staged,
        Err(e) => {
            discard(ctx, engine).await;
            return Err(e);
        }
    };
    work.ledger.write(&journal)?;
    ctx.set_pending(Some(super::Pending {
        target: target.clone(),
        image: image.to_string(),
        journal: journal.clone(),
        ledger: work.ledger.clone(),
    }));
    if s.include.is_empty() && !m.exclude.is_empty() {
        if let Err(e) = keep_excluded(work, plan, m).await {
            discard(ctx, engine).await;
            return Err(e);
        }
    }
    crate::fault::point("staged").await;
    Ok((staged, journal))
}

/// Stages each directory path into its mount's work dir (through a helper holding the volumes),
/// then each single file beside its host file (through one holding only their directories).
async fn stage_each(
    ctx: &Ctx,
    work: &Work<'_>,
    dest: &dyn Destination,
    m: &Manifest,
    plan: &Plan,
    s: &RestoreSettings,
    journal: &mut Journal,
) -> Result<Vec<Staged>> {
    let (engine, target, image) = (work.engine, work.target, work.image);
    // The engine path's helper, made only if the agent cannot stage (it starts helpers of its
    // own).
    let mut stager: Option<String> = None;
    let show_progress = ctx.output.progress;
    let mut staged = Vec::new();
    let mut agent = match s.agent {
        AgentMode::Auto => Ok(()),
        AgentMode::Never => Err(Unavailable("--agent never".into())),
    };
    let mut result: Result<()> = Ok(());
    'members: for (i, member) in plan.dirs.iter().enumerate() {
        for p in &member.paths {
            let spec = StageSpec {
                path: p.path.clone(),
                into: swap::new_dir(p.k).into_bytes(),
                skip: p.skip.clone(),
                privileges: s.privileges,
                root: Kind::Dir,
                include: s.include.clone(),
            };
            let first = p.k == 0;
            let mut done = None;
            if agent.is_ok() {
                let job = UnpackJob {
                    mount: member.mount.clone(),
                    spec: spec.clone(),
                    first,
                    expect: Expect::of(m),
                };
                let source = Source {
                    engine,
                    helper: "",
                    dest,
                    m,
                    show_progress,
                };
                match stage_by_agent(&source, target, image, &job).await {
                    Ok(st) => done = Some(Ok(st)),
                    Err(AgentStaging::Unavailable(why)) => agent = Err(why),
                    Err(AgentStaging::Error(e)) => done = Some(Err(e)),
                }
            }
            let done = match done {
                Some(d) => d,
                None => {
                    if let Err(why) = &agent {
                        tracing::info!(container = %target.name, path = %p.path, "staging through the engine's archive endpoint: {why}");
                    }
                    if stager.is_none() {
                        match engine
                            .create_helper(HelperSpec::archive(target, image, false))
                            .await
                        {
                            Ok(h) => stager = Some(h),
                            Err(e) => {
                                result = Err(e.into());
                                break 'members;
                            }
                        }
                    }
                    let helper = stager.clone().expect("made above");
                    let source = Source {
                        engine,
                        helper: &helper,
                        dest,
                        m,
                        show_progress,
                    };
                    stage_one(&source, &member.mount, spec, first).await
                }
            };
            match done.and_then(|st| agrees(m, dest, p, &st).map(|()| st)) {
                Ok(st) => {
                    journal.mounts[i]
                        .fixups
                        .extend(st.fixups.iter().map(|f| (p.k, f.secs, f.rel.clone())));
                    staged.push(st);
                }
                Err(e) => {
                    result = Err(e.context(format!("staging {} of backup {}", p.path, m.id)));
                    break 'members;
                }
            }
        }
    }
    let removed = match &stager {
        Some(h) => engine.remove_helper(h).await,
        None => Ok(()),
    };
    result?;
    removed?;
    if !plan.files.is_empty() {
        staged.extend(stage_files(ctx, work, dest, m, plan, s).await?);
    }
    Ok(staged)
}

/// Stages each single-file path beside its live file, through a helper that holds only those
/// files' host directories (never the app's volumes).
async fn stage_files(
    ctx: &Ctx,
    work: &Work<'_>,
    dest: &dyn Destination,
    m: &Manifest,
    plan: &Plan,
    s: &RestoreSettings,
) -> Result<Vec<Staged>> {
    let paths: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();
    let (binds, _) = recover::file_binds(work.target, &paths, work.engine.is_local())?;
    let mut spec = HelperSpec::archive(work.target, work.image, false);
    spec.volumes = false;
    spec.binds = binds;
    let helper = work.engine.create_helper(spec).await?;
    let source = Source {
        engine: work.engine,
        helper: &helper,
        dest,
        m,
        show_progress: ctx.output.progress,
    };
    let mut staged = Vec::new();
    let mut result = Ok(());
    for (i, f) in plan.files.iter().enumerate() {
        let spec = StageSpec {
            path: f.path.clone(),
            into: swap::staged_file_name(&f.name).into_bytes(),
            skip: vec![],
            privileges: s.privileges,
            root: Kind::File,
            include: vec![],
        };
        match stage_file(&source, &format!("/.dockyard-file-{i}"), spec).await {
            Ok(st) => staged.push(st),
            Err(e) => {
                result = Err(e.context(format!("staging {} of backup {}", f.path, m.id)));
                break;
            }
        }
    }
    let removed = work.engine.remove_helper(&helper).await;
    result?;
    removed?;
    Ok(staged)
}

/// Links the live names the backup left out (its `--exclude` patterns) into the staged trees, so
/// the swap keeps them as they are, through dockyard's agent.
async fn keep_excluded(work: &Work<'_>, plan: &Plan, m: &Manifest) -> Result<()> {
    for d in &plan.dirs {
        let job = crate::agent::merge::MergeJob {
            mount: d.mount.clone(),
            paths: d.paths.iter().map(merge_path).collect(),
            patterns: m.exclude.clone(),
        };
        let json = serde_json::to_string(&job).expect("job serialises");
        let kept = host::run(
            work.engine,
            work.target,
            work.image,
            vec!["keep".into(), json],
            vec![],
            crate::docker::Role::Script,
            true,
        )
        .await;
        match kept {
            Ok(n) => tracing::info!(container = %work.target.name, mount = %d.mount, kept = %n.unwrap_or_default(), "kept the live names the backup left out"),
            Err(host::CleanupFailed::Unavailable(why)) => {
                return Err(Failure::usage(format!(
                    "backup {} left names out ({}); keeping the live ones needs dockyard's agent in the helper, which cannot run: {why}",
                    m.id,
                    m.exclude.join(", ")
                ))
                .into())
            }
            Err(host::CleanupFailed::Failed(why)) => {
                return Err(DockerError::Api {
                    action: format!(
                        "keep the names backup {} left out in {} of {:?}",
                        m.id, d.mount, work.target.name
                    ),
                    message: why,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// A path of a mount, for the agent's keep and merge.
fn merge_path(p: &DirPath) -> crate::agent::merge::MergePath {
    crate::agent::merge::MergePath {
        k: p.k,
        path: p.path.clone(),
        rel: String::from_utf8_lossy(&p.rel).into_owned(),
        skip: p
            .skip
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
    }
}

/// Checks that staging found the path's own entry as planning read it: the archive was read
/// twice, and only the staging pass checked all of it.
fn agrees(m: &Manifest, dest: &dyn Destination, p: &DirPath, st: &Staged) -> Result<()> {
    if st.root == p.archived {
        return Ok(());
    }
    Err(failed_verification(
        m,
        dest,
        &format!(
            "the entry of {} changed between two reads of the archive ({:?}, then {:?})",
            p.path, p.archived, st.root
        ),
    ))
}

/// Why staging through the agent did not happen.
enum AgentStaging {
    /// The agent could not run; nothing was written.
    Unavailable(Unavailable),
    /// Staging failed.
    Error(anyhow::Error),
}

/// Stages one directory path through `agent unpack`: the archive's compressed bytes go to the
/// agent, which checks, decodes and writes them inside the volume.
async fn stage_by_agent(
    source: &Source<'_>,
    target: &ContainerInfo,
    image: &str,
    job: &UnpackJob,
) -> Result<Staged, AgentStaging> {
    let Source {
        engine, dest, m, ..
    } = *source;
    let error = |e: anyhow::Error| AgentStaging::Error(e);
    let archive = dest.get(&m.archive).await.map_err(|e| error(e.into()))?;
    let progress = Progress::sized(
        format!("restore into {}", job.spec.path),
        Some(m.size),
        source.show_progress,
    );
    let unpacked = host::unpack(
        engine,
        target,
        image,
        vec![],
        job,
        archive,
        progress.read.clone(),
    )
    .await;
    progress.finish();
    match unpacked {
        Ok(staged) => Ok(staged),
        Err(UnpackFailed::Unavailable(why)) => Err(AgentStaging::Unavailable(why)),
        Err(UnpackFailed::Source(error)) => Err(AgentStaging::Error(
            crate::destination::DestError::reading(dest, &m.archive, error).into(),
        )),
        Err(UnpackFailed::Refused(why)) => {
            Err(AgentStaging::Error(failed_verification(m, dest, &why)))
        }
        Err(UnpackFailed::Failed(message)) => Err(AgentStaging::Error(
            DockerError::Api {
                action: format!(
                    "stage {} into container {:?} through dockyard's agent",
                    job.spec.path, target.name
                ),
                message,
            }
            .into(),
        )),
    }
}

/// What staging reads (the archive at its destination) and writes through (a helper).
struct Source<'a> {
    engine: &'a Engine,
    helper: &'a str,
    dest: &'a dyn Destination,
    m: &'a Manifest,
    /// Show a progress bar on a terminal.
    show_progress: bool,
}

/// Streams one directory path of the archive into `<mount>/.dockyard-restore/new-<k>/`, with the
/// work directory and its phase first (for the mount's first path).
async fn stage_one(
    source: &Source<'_>,
    mount: &str,
    spec: StageSpec,
    first: bool,
) -> Result<Staged> {
    let expect = Expect::of(source.m);
    stage_through(source, mount, move |r, w| {
        stage_member(r, &expect, &spec, first, w)
    })
    .await
}

/// Streams a single-file path of the archive into its staged name beside the live file.
async fn stage_file(source: &Source<'_>, into: &str, spec: StageSpec) -> Result<Staged> {
    let m = source.m;
    let expect = Expect::of(m);
    let path = spec.path.clone();
    let staged = stage_through(source, into, move |r, w| stage(r, &expect, &spec, w)).await?;
    if !staged.single_file {
        return Err(Failure::verify(format!(
            "backup {}: {path} is not a single file in the archive",
            m.id
        ))
        .into());
    }
    Ok(staged)
}

/// Reads the archive of `m` through `build`, which writes the tar to stage, and uploads that tar
/// into `into` through the helper, both streaming. Which side failed decides the error: the
/// destination's transport (exit 4), the engine (3), or the archive's content (5).
async fn stage_through<F>(source: &Source<'_>, into: &str, build: F) -> Result<Staged>
where
    F: FnOnce(
            Box<dyn std::io::Read + Send>,
            &mut TarWriter<ChannelWriter>,
        ) -> std::io::Result<Staged>
        + Send
        + 'static,
{
    let Source {
        engine,
        helper,
        dest,
        m,
        show_progress,
    } = *source;
    let (writer, rx) = streams::channel();
    let progress = Progress::sized(format!("restore into {into}"), Some(m.size), show_progress);
    let staged = read_blocking(
        dest,
        &m.archive,
        Some(progress.read.clone()),
        move |r| -> std::io::Result<Staged> {
            let mut w = TarWriter::new(writer);
            let staged = build(r, &mut w)?;
            w.finish()?.close()?;
            Ok(staged)
        },
    );
    let uploaded = engine.upload(helper, into, streams::receiver_stream(rx));
    let (staged, uploaded) = tokio::join!(staged, uploaded);
    progress.finish();
    match staged? {
        Ok(staged) => {
            uploaded?;
            Ok(staged)
        }
        // The engine stopped taking the stream: its error, not the archive's.
        Err(_) if uploaded.is_err() => Err(uploaded.unwrap_err().into()),
        Err(e) => Err(failed_verification(m, dest, &e.to_string())),
    }
}

/// Removes the staging of this run (after a failure, or on a signal through `ctx`'s clean-up),
/// and its journal.
pub async fn discard(ctx: &Ctx, engine: &Engine) {
    let Some(p) = ctx.take_pending() else {
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
async fn commit(
    ctx: &Ctx,
    work: &Work<'_>,
    journal: &mut Journal,
    wait_cleanup: bool,
) -> Result<String> {
    let critical = ctx.critical.enter();
    journal.state = State::Committed;
    work.ledger.write(journal)?;
    ctx.set_pending(None);
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
async fn swapped_after_all(work: &Work<'_>, journal: &mut Journal) -> bool {
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

/// Privileges as the restore applies them (for the settings).
pub fn privileges(allow_devices: bool, keep_setid: bool, keep_capabilities: bool) -> Privileges {
    Privileges {
        allow_devices,
        keep_setid,
        keep_capabilities,
    }
}
