//! What the target holds today, read through a read-only helper: the live side of a dry run's
//! comparison, and the paths a safety backup must save.

use anyhow::Result;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::plan::Plan;
use crate::archive::listing::{self, Origin};
use crate::docker::{ContainerInfo, DockerError, Engine, HelperSpec};
use crate::swap;

/// Streams a live path of `target` through a read-only helper into `each` with `state` (at most
/// `limit` entries), leaving out dockyard's work dir and `exclude`d names; returns the state.
#[allow(clippy::too_many_arguments)]
pub(super) async fn live_each<S: Send + 'static>(
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
        .helper(HelperSpec::archive(target, image, true))
        .await?;
    let stream = Box::pin(engine.download(helper.id(), path));
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
    helper.remove().await?;
    Ok(listed.map_err(|e| DockerError::Api {
        action: format!("list {path} of {:?}", target.name),
        message: e.to_string(),
    })?)
}

/// The container paths that hold anything today (and so deserve a safety backup): directories
/// with an entry, and every single file.
pub(super) async fn occupied_paths(
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
