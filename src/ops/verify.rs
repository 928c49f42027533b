//! Verifying: a backup re-read end to end against its manifest.

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Serialize;

use super::key::{stored_match, Key};
use crate::archive::verify::{verify, Report};
use crate::destination::DestError;
use crate::destination::{DestSpec, Destination};
use crate::encryption::Unlock;
use crate::error::Failure;
use crate::manifest::{self, Manifest, Store};
use crate::pipeline::ArchiveSource;
use crate::progress::Progress;
use std::sync::Arc;

/// A backup that passed (the `verify` JSON document when `ok` is true, docs/json.md).
#[derive(Debug, Serialize)]
pub struct Verified {
    /// The backup's id.
    pub id: String,
    /// Always true here.
    pub ok: bool,
    /// `archive`: the archive was read whole (decrypted, if encrypted) and checked; `stored`:
    /// an encrypted backup checked without its key, its stored bytes' sha256 and size only (the
    /// content fields are then the manifest's, unchecked).
    pub checked: &'static str,
    /// What the check found.
    #[serde(flatten)]
    pub report: Report,
}

impl Verified {
    /// `report` of backup `id`, read whole.
    pub fn new(id: &str, report: Report) -> Verified {
        Verified {
            id: id.to_string(),
            ok: true,
            checked: "archive",
            report,
        }
    }
}

/// Verifies backup `m` at `dest`: whole (decrypted with `unlock` if it is encrypted), or, for
/// an encrypted backup with nothing to open it, its stored bytes against the manifest.
pub async fn check(
    dest: &Arc<dyn Destination>,
    m: &Manifest,
    unlock: &Unlock,
    show_progress: bool,
) -> Result<Verified> {
    if m.is_incremental() {
        // The whole chain: a missing or broken link is named.
        let links = super::chain::manifests(&Store::new(dest.clone()), m).await?;
        if !applicable(m, unlock) {
            let mut last = None;
            for link in &links {
                last = Some(verify_stored(dest.as_ref(), link, show_progress).await?);
            }
            return Ok(last.expect("a chain has a backup"));
        }
        let chain = super::chain::open(dest.as_ref(), links, unlock).await?;
        let report = verify_chain(dest.as_ref(), &chain, show_progress).await?;
        return Ok(Verified::new(&m.id, report));
    }
    let dest = dest.as_ref();
    if !applicable(m, unlock) {
        return verify_stored(dest, m, show_progress).await;
    }
    let key = Key::open(dest, m, unlock).await?;
    let report = verify_backup(dest, m, &key, show_progress).await?;
    Ok(Verified::new(&m.id, report))
}

/// Whether `unlock` could open `m`: without anything that could (a passphrase for a backup
/// made for keys counts for nothing), an encrypted backup's stored bytes are what can be
/// checked.
fn applicable(m: &Manifest, unlock: &Unlock) -> bool {
    match &m.encryption {
        None => true,
        Some(e) if e.recipients == ["passphrase"] => unlock.passphrase.is_some(),
        Some(_) => !unlock.identities.is_empty(),
    }
}

/// Reads the stored bytes of `m`'s archive and checks their sha256 and size: all that can be
/// checked of an encrypted backup without its key.
async fn verify_stored(
    dest: &dyn Destination,
    m: &Manifest,
    show_progress: bool,
) -> Result<Verified> {
    let progress = Progress::sized(format!("verify {}", m.id), Some(m.size), show_progress);
    let read = ArchiveSource::new(dest, &m.archive)
        .hashed()
        .read_blocking(Some(progress.read.clone()), |mut r| {
            std::io::copy(&mut r, &mut std::io::sink())
        })
        .await;
    progress.finish();
    let read = read.with_context(|| format!("cannot read backup {}", m.id))?;
    read.value
        .map_err(|e| anyhow::Error::from(DestError::reading(dest, &m.archive, e)))?;
    let sha256 = read.sha256.unwrap_or_default();
    stored_match(dest, m, &sha256, read.stored)?;
    Ok(Verified {
        id: m.id.clone(),
        ok: true,
        checked: "stored",
        report: Report {
            size: read.stored,
            sha256,
            tar_bytes: m.tar_bytes,
            entries: m.entries,
            devices: Vec::new(),
            setid: Vec::new(),
            privileged_xattrs: Vec::new(),
            roots: Vec::new(),
        },
    })
}

/// The backup `wanted` names at `dest` (an id, or `latest` of `container` or of all).
pub async fn select(
    dest: &Arc<dyn Destination>,
    spec: &DestSpec,
    wanted: &str,
    container: Option<&str>,
) -> Result<Manifest> {
    let select = match (wanted, container) {
        ("latest", None) => manifest::Select::All,
        ("latest", Some(c)) => manifest::Select::Container(c),
        (id, _) => manifest::Select::Id(id),
    };
    let catalog = Store::new(dest.clone()).load(select).await?;
    let now = Utc::now();
    let m = match (wanted, container) {
        ("latest", None) => catalog
            .manifests
            .iter()
            .find(|m| !m.in_future(now))
            .ok_or_else(|| Failure::usage(format!("no backups at {}", dest.describe())))?,
        (_, c) => catalog.select(wanted, c.unwrap_or_default(), &spec.to_string(), now)?,
    };
    Ok(m.clone())
}

/// Verifies every layer of an incremental backup's chain (`chain`: the full backup first, the
/// backup itself last), each archive whole, and its index and deletion list against their
/// manifest records: the last layer's report, with every layer's device nodes, set-id files
/// and privileged xattrs. The first link that fails is named.
pub async fn verify_chain(
    dest: &dyn Destination,
    chain: &[super::chain::Layer],
    show_progress: bool,
) -> Result<Report> {
    let mut all: Option<Report> = None;
    for layer in chain {
        let mut report = verify_backup(dest, &layer.m, &layer.key, show_progress).await?;
        if let Some(stored) = &layer.m.index {
            layer
                .key
                .read_stored(dest, &layer.m, stored, |mut r| {
                    std::io::copy(&mut r, &mut std::io::sink())
                })
                .await?;
        }
        if let Some(before) = all.take() {
            report.devices.extend(before.devices);
            report.setid.extend(before.setid);
            report.privileged_xattrs.extend(before.privileged_xattrs);
        }
        all = Some(report);
    }
    let mut report = all.expect("a chain has a backup");
    for list in [
        &mut report.devices,
        &mut report.setid,
        &mut report.privileged_xattrs,
    ] {
        list.sort();
        list.dedup();
    }
    Ok(report)
}

/// Streams the archive of `m` through the full check (read with `key`: see [`Key::open`]); a
/// mismatch is a verification failure that names the backup and what is wrong. The report's
/// sha256 and size are of the stored bytes (for an encrypted backup, checked by `key`).
pub async fn verify_backup(
    dest: &dyn Destination,
    m: &Manifest,
    key: &Key,
    show_progress: bool,
) -> Result<Report> {
    let expect = key.expect(m);
    let progress = Progress::sized(format!("verify {}", m.id), Some(m.size), show_progress);
    let result = key
        .read(dest, m, Some(progress.read.clone()), move |r| {
            verify(r, &expect)
        })
        .await;
    progress.finish();
    let result = result.with_context(|| format!("cannot read backup {}", m.id))?;
    let mut report = result.map_err(|why| {
        anyhow::Error::from(Failure::verify(format!(
            "backup {} at {} failed verification: {why}",
            m.id,
            dest.describe()
        )))
    })?;
    if key.is_sealed() {
        (report.sha256, report.size) = (m.sha256.clone(), m.size);
    }
    Ok(report)
}
