//! Verifying: a backup re-read end to end against its manifest.

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Serialize;

use crate::archive::verify::{verify, Report};
use crate::destination::{DestSpec, Destination};
use crate::error::Failure;
use crate::manifest::{self, Manifest, Store};
use crate::pipeline::read_blocking;
use crate::progress::Progress;
use std::sync::Arc;

/// A backup that passed (the `verify` JSON document when `ok` is true, docs/json.md).
#[derive(Debug, Serialize)]
pub struct Verified {
    /// The backup's id.
    pub id: String,
    /// Always true here.
    pub ok: bool,
    /// What the check found.
    #[serde(flatten)]
    pub report: Report,
}

impl Verified {
    /// `report` of backup `id`.
    pub fn new(id: &str, report: Report) -> Verified {
        Verified {
            id: id.to_string(),
            ok: true,
            report,
        }
    }
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

/// Streams the archive of `m` through the full check; a mismatch is a verification failure that
/// names the backup and what is wrong.
pub async fn verify_backup(
    dest: &dyn Destination,
    m: &Manifest,
    show_progress: bool,
) -> Result<Report> {
    let owned = m.clone();
    let progress = Progress::sized(format!("verify {}", m.id), Some(m.size), show_progress);
    let result = read_blocking(dest, &m.archive, Some(progress.read.clone()), move |r| {
        verify(r, &owned)
    })
    .await;
    progress.finish();
    let result = result.with_context(|| format!("cannot read backup {}", m.id))?;
    result.map_err(|why| {
        Failure::verify(format!(
            "backup {} at {} failed verification: {why}",
            m.id,
            dest.describe()
        ))
        .into()
    })
}
