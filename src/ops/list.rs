//! Listing: the backups at a destination (all, or one container's), newest first, and the
//! manifests there that were refused.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::manifest::{self, Manifest, Store};

/// What a destination holds (the `list` JSON document, docs/json.md).
#[derive(Debug, Serialize)]
pub struct Listing {
    /// The backups, newest first.
    pub backups: Vec<Manifest>,
    /// Manifests that were refused, and why.
    pub rejected: Vec<Rejected>,
    /// Backups of other containers, by container (for "no backups of X, but of Y").
    #[serde(skip)]
    pub others: BTreeMap<String, usize>,
}

/// A manifest that was refused.
#[derive(Debug, Serialize)]
pub struct Rejected {
    /// Its object name.
    pub object: String,
    /// Why.
    pub reason: String,
}

/// The backups in `store`, only `container`'s when given.
pub async fn list(store: &Store, container: Option<&str>) -> Result<Listing> {
    let select = match container {
        Some(c) => manifest::Select::Container(c),
        None => manifest::Select::All,
    };
    let catalog = store.load(select).await?;
    let mut backups = catalog.manifests;
    if let Some(c) = container {
        backups.retain(|m| m.owner() == c);
    }
    Ok(Listing {
        backups,
        rejected: catalog
            .rejected
            .into_iter()
            .map(|(object, reason)| Rejected { object, reason })
            .collect(),
        others: catalog.others,
    })
}
