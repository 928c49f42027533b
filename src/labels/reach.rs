//! Which other containers a label job may reach (stop, dump from, run hooks in): only those that
//! let labels reach them. Whoever labels a container chooses its own backups, never what runs in,
//! is read from or stops in a container that did not say so.

use std::collections::BTreeMap;

use crate::settings::file::LabelSource;
use crate::settings::JobPlan;

use super::{keys, ours};

/// The other containers a label job reaches, each with the label that names it: those it stops
/// (`stop-also`), dumps from (`dump`) and runs hooks in (`exec-before`, `exec-after`).
fn reached(plan: &JobPlan) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    if let JobPlan::Backup { backups, .. } = plan {
        let own = plan.container();
        if let Some((_, s)) = backups.first() {
            out.extend(s.stop.iter().map(|c| ("stop-also", c.as_str())));
            out.extend(s.dumps.iter().map(|d| ("dump", d.container.as_str())));
            out.extend(
                s.exec_before
                    .iter()
                    .map(|h| ("exec-before", h.container.as_str())),
            );
            out.extend(
                s.exec_after
                    .iter()
                    .map(|h| ("exec-after", h.container.as_str())),
            );
        }
        out.retain(|(_, c)| *c != own);
    }
    out
}

/// Whether a label job may reach the other containers it names: only those that let labels
/// reach them (`dockyard.reachable=true`, and this dockyard's instance). Whoever labels a
/// container chooses its own backups, never what runs in, is read from or stops in another.
pub async fn reach(
    engine: &crate::docker::Engine,
    source: &LabelSource,
    plan: &JobPlan,
) -> Result<(), String> {
    for (key, other) in reached(plan) {
        let allowed = match engine.inspect(other).await {
            Ok(info) => {
                let labels: BTreeMap<String, String> = info
                    .inspect
                    .pointer("/Config/Labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                labels.get(keys::REACHABLE).map(String::as_str) == Some("true")
                    && ours(source, &labels)
            }
            Err(e) => {
                return Err(format!(
                    "label {}{key} names container {other:?}: {e}",
                    keys::PREFIX
                ))
            }
        };
        if !allowed {
            return Err(format!(
                "label {}{key} names container {other:?}, which does not let labelled containers reach it; label it {}=true{} (or name it in the config file's job)",
                keys::PREFIX,
                keys::REACHABLE,
                source
                    .instance
                    .as_deref()
                    .map(|i| format!(" and {}={i}", keys::INSTANCE))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}
