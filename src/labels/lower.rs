//! A labelled container's labels lowered into jobs: written out as a job's TOML
//! ([`keys`](super::keys)), parsed by the config file's structs and lowered by the file's own
//! functions, with errors traced back to the label that caused them.

use crate::config::{JobConfig, LogJobConfig};
use crate::docker::discover::Labelled;
use crate::error::Category;
use crate::settings::file::{backup_plan, log_plan, LabelSource};
use crate::settings::JobPlan;

use super::{filter, keys};

/// A job's name: the container's (`web`, `web.logs` for its log job), after its engine's name
/// (`edge/web`) when the config has more than one engine.
pub fn job_name(source: &LabelSource, engine: Option<&str>, container: &str, logs: bool) -> String {
    let base = if logs {
        format!("{container}.logs")
    } else {
        container.to_string()
    };
    match engine {
        Some(e) if source.qualify => format!("{e}/{base}"),
        _ => base,
    }
}

/// The jobs one labelled container asks for, or one [`JobPlan::Invalid`] saying why it cannot
/// have them.
pub fn plans_of(source: &LabelSource, engine: Option<&str>, c: &Labelled) -> Vec<JobPlan> {
    // A Swarm task's job keeps its service and slot's name when the task is replaced.
    let base = crate::docker::swarm::backup_name(&c.name, &c.labels);
    let invalid = |error: String| {
        vec![JobPlan::Invalid {
            name: job_name(source, engine, &base, false),
            engine: engine.map(str::to_string),
            container: c.name.clone(),
            error: format!("container {:?}: {error}", c.name),
            category: Category::Usage,
        }]
    };
    let asked = match keys::sort(&c.name, &c.labels) {
        Ok(asked) => asked,
        Err(e) => return invalid(e),
    };
    if asked.backup.is_none() && asked.logs.is_none() {
        return invalid(format!(
            "{} is set but neither {}to (where backups go) nor {}logs.to (where logs ship)",
            filter(),
            keys::PREFIX,
            keys::PREFIX
        ));
    }
    let mut plans = Vec::new();
    if let Some(text) = &asked.backup {
        let name = job_name(source, engine, &base, false);
        match lower_backup(source, engine, &name, text) {
            Ok(plan) => plans.push(plan),
            Err(e) => return invalid(e),
        }
    }
    if let Some(text) = &asked.logs {
        let name = job_name(source, engine, &base, true);
        match lower_logs(source, engine, &name, text) {
            Ok(plan) => plans.push(plan),
            Err(e) => {
                plans.push(JobPlan::Invalid {
                    name,
                    engine: engine.map(str::to_string),
                    container: c.name.clone(),
                    error: format!("container {:?}: {e}", c.name),
                    category: Category::Usage,
                });
            }
        }
    }
    plans
}

/// A TOML error as a label error: the label its line came from, and toml's own words.
fn label_error(text: &keys::JobText, error: &str) -> String {
    let reason = error
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(error)
        .trim();
    match text.label_at(error) {
        Some(label) => format!("label {label}: {reason}"),
        None => format!("labels: {}", reason.replace('`', "")),
    }
}

fn lower_backup(
    source: &LabelSource,
    engine: Option<&str>,
    name: &str,
    text: &keys::JobText,
) -> Result<JobPlan, String> {
    let mut job: JobConfig = toml::from_str(&text.text).map_err(|e| {
        let e = e.to_string();
        if e.contains("missing field `destinations`") {
            format!(
                "{}to (the destinations backups go to) is not set",
                keys::PREFIX
            )
        } else {
            label_error(text, &e)
        }
    })?;
    for d in &job.destinations {
        if !source.config.destinations.contains_key(d) {
            return Err(undefined(source, "to", d));
        }
    }
    job.engine = engine.map(str::to_string);
    backup_plan(&source.config, name, &job, &source.remote).map_err(|e| format!("labels: {e}"))
}

fn lower_logs(
    source: &LabelSource,
    engine: Option<&str>,
    name: &str,
    text: &keys::JobText,
) -> Result<JobPlan, String> {
    let mut job: LogJobConfig = toml::from_str(&text.text).map_err(|e| {
        let e = e.to_string();
        if e.contains("missing field `destination`") {
            format!(
                "{}logs.to (the destination logs ship to) is not set",
                keys::PREFIX
            )
        } else {
            label_error(text, &e)
        }
    })?;
    if !source.config.destinations.contains_key(&job.destination) {
        return Err(undefined(source, "logs.to", &job.destination));
    }
    job.engine = engine.map(str::to_string);
    log_plan(&source.config, name, &job, &source.remote).map_err(|e| format!("labels: {e}"))
}

/// The error for a label naming a destination the config does not define.
fn undefined(source: &LabelSource, key: &str, name: &str) -> String {
    format!(
        "label {}{key} names destination {name:?}, which is not defined under [destinations] in {} (labels name destinations, never URLs); defined: {}",
        keys::PREFIX,
        source.path.display(),
        source
            .config
            .destinations
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    )
}
