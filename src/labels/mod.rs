//! Containers that opt in with labels (`dockyard.enable=true`) become jobs beside the config
//! file's: found on each engine, read by the same parser, checks and defaults as the file (the
//! labels are written out as a job's TOML and lowered like one), and merged with the file's jobs,
//! where a clash is an error naming both. A container's bad label fails its own job only.

pub mod keys;
mod lower;
mod reach;

pub use lower::{job_name, plans_of};

use std::collections::BTreeMap;

use crate::error::Category;
use crate::ops::Session;
use crate::settings::file::LabelSource;
use crate::settings::JobPlan;

/// The label filter the engine lists and reports by.
pub fn filter() -> String {
    format!("{}=true", keys::ENABLE)
}

/// Whether a labelled container belongs to this dockyard: its `dockyard.instance` is the
/// config's `[labels] instance` (both absent counts).
pub fn ours(source: &LabelSource, labels: &BTreeMap<String, String>) -> bool {
    labels.get(keys::INSTANCE).map(String::as_str) == source.instance.as_deref()
}

/// What finding labelled containers on every engine found.
pub struct Found {
    /// Their jobs.
    pub plans: Vec<JobPlan>,
    /// The engines that could not be asked (by name; `None`: the one engine), and why.
    pub failed: Vec<(Option<String>, anyhow::Error)>,
}

/// Finds the labelled containers on every engine and returns their jobs.
pub async fn discover(session: &Session, source: &LabelSource) -> Found {
    let mut found = Found {
        plans: Vec::new(),
        failed: Vec::new(),
    };
    for engine in &source.engines {
        match discover_on(session, source, engine.as_deref()).await {
            Ok(plans) => found.plans.extend(plans),
            Err(e) => found.failed.push((engine.clone(), e)),
        }
    }
    found
}

/// The labelled containers' jobs on one engine (`None`: the one engine).
pub async fn discover_on(
    session: &Session,
    source: &LabelSource,
    engine: Option<&str>,
) -> anyhow::Result<Vec<JobPlan>> {
    let e = session
        .engine_named(engine.unwrap_or(crate::ops::DEFAULT_ENGINE))
        .await?;
    let mut plans = Vec::new();
    for c in e.labelled_containers(&filter()).await? {
        if !ours(source, &c.labels) {
            continue;
        }
        for plan in plans_of(source, engine, &c) {
            plans.push(match reach::reach(e, source, &plan).await {
                Ok(()) => plan,
                Err(error) => JobPlan::Invalid {
                    name: plan.name().to_string(),
                    engine: engine.map(str::to_string),
                    container: c.name.clone(),
                    error: format!("container {:?}: {error}", c.name),
                    category: Category::Usage,
                },
            });
        }
    }
    Ok(plans)
}

/// Every job of a `run`, `daemon` or `config check`: the file's and, unless labels are off, the
/// labelled containers' found now; for `run JOB...`, only those named (a name no job has is an
/// error listing the jobs there are, or the engine's error when one could not be asked).
/// An engine that could not be asked is said once; when no file job runs there (which would fail
/// naming it), a failing job says so, so that a run that found nothing never looks fine.
pub async fn all_plans(
    session: &Session,
    jobs: &crate::settings::Jobs,
) -> anyhow::Result<Vec<JobPlan>> {
    let Some(source) = &jobs.labels else {
        return Ok(jobs.plans.clone());
    };
    let found = discover(session, source).await;
    let mut merged = merge(jobs.plans.clone(), found.plans);
    let mut first_failure = None;
    for (engine, e) in found.failed {
        let error = format!(
            "cannot find the labelled containers{}: {}",
            engine
                .as_deref()
                .map(|e| format!(" on engine {e:?}"))
                .unwrap_or_default(),
            crate::error::describe(&e)
        );
        tracing::error!(engine = engine.as_deref().unwrap_or(crate::ops::DEFAULT_ENGINE), error = %error, "label discovery failed");
        let category = crate::outcome::categorize(&e);
        if !jobs.plans.iter().any(|p| p.engine() == engine.as_deref()) {
            merged.push(JobPlan::Invalid {
                name: match &engine {
                    Some(e) if source.qualify => format!("{e}/labels"),
                    _ => "labels".to_string(),
                },
                engine: engine.clone(),
                container: String::new(),
                error: error.clone(),
                category,
            });
        }
        first_failure.get_or_insert(crate::error::Failure::new(category, error));
    }
    if jobs.wanted.is_empty() {
        return Ok(merged);
    }
    let mut known = jobs.file_names.clone();
    known.extend(
        merged
            .iter()
            .map(|p| p.name().to_string())
            .filter(|n| !jobs.file_names.contains(n)),
    );
    if let Err(unknown) = crate::settings::file::unknown_wanted(&jobs.wanted, &known) {
        // The name may be a label job's on the engine that could not be asked.
        return Err(first_failure.unwrap_or(unknown).into());
    }
    Ok(merged
        .into_iter()
        .filter(|p| jobs.wanted.iter().any(|w| w == p.name()))
        .collect())
}

/// The file's jobs and the labels' together. A label job that clashes with a file job (the same
/// name, or the same kind of job on the same container of the same engine) becomes a failing
/// job naming both; so does one whose name an earlier label job took.
pub fn merge(file: Vec<JobPlan>, labelled: Vec<JobPlan>) -> Vec<JobPlan> {
    let mut all = file;
    let from_file = all.len();
    for plan in labelled {
        let clash = all.iter().enumerate().find_map(|(i, other)| {
            let same_name = other.name() == plan.name();
            let same_work = plan.is_backup().is_some()
                && plan.is_backup() == other.is_backup()
                && plan.engine() == other.engine()
                && plan.container() == other.container();
            (same_name || same_work).then_some((i < from_file, other))
        });
        let Some((in_file, other)) = clash else {
            all.push(plan);
            continue;
        };
        let what = if plan.is_backup() == Some(false) {
            "log"
        } else {
            "backup"
        };
        let error = if in_file {
            format!(
                "container {:?}: its labels ask for {what} job {:?}, which clashes with the config file's job {:?} ({}); keep one: remove the labels, or the job from the file",
                plan.container(),
                plan.name(),
                other.name(),
                if other.name() == plan.name() {
                    "the same name".to_string()
                } else {
                    format!("the same {what} job of container {:?}", other.container())
                }
            )
        } else {
            format!(
                "container {:?}: its labels ask for {what} job {:?}, which another labelled container's job already is",
                plan.container(),
                plan.name()
            )
        };
        all.push(JobPlan::Invalid {
            name: plan.name().to_string(),
            engine: plan.engine().map(str::to_string),
            container: plan.container().to_string(),
            error,
            category: Category::Usage,
        });
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::destination::RemoteOptions;
    use crate::docker::discover::Labelled;

    fn source(text: &str) -> LabelSource {
        LabelSource {
            config: std::sync::Arc::new(parse(text).unwrap()),
            path: "/etc/dockyard.toml".into(),
            remote: RemoteOptions::default(),
            instance: None,
            engines: vec![None],
            qualify: false,
        }
    }

    fn labelled(name: &str, pairs: &[(&str, &str)]) -> Labelled {
        Labelled {
            id: format!("id-{name}"),
            name: name.into(),
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const FILE: &str = "[destinations.nas]\nurl = \"/srv/backups\"\n\
        [jobs.media]\ncontainer = \"web\"\ndestinations = [\"nas\"]\n";

    #[test]
    fn equal_labels_and_config_give_equal_plans() {
        let s = source(&format!(
            "{FILE}[jobs.other]\ncontainer = \"shop\"\ndestinations = [\"nas\"]\nschedule = \"@daily\"\n\
             stop_during_backup = true\nlevel = 9\nexclude = [\"*.tmp\"]\ndumps = [\"db:postgres:app\"]\n\
             [jobs.other.retention]\nkeep_daily = 7\n"
        ));
        let from_labels = plans_of(
            &s,
            None,
            &labelled(
                "shop",
                &[
                    ("dockyard.enable", "true"),
                    ("dockyard.to", "nas"),
                    ("dockyard.schedule", "@daily"),
                    ("dockyard.stop", "true"),
                    ("dockyard.level", "9"),
                    ("dockyard.exclude", "*.tmp"),
                    ("dockyard.dump", "db:postgres:app"),
                    ("dockyard.keep-daily", "7"),
                ],
            ),
        );
        let from_file =
            crate::settings::file::plans(&s.config, &["other".into()], &s.remote).unwrap();
        match (&from_labels[..], &from_file[..]) {
            (
                [JobPlan::Backup {
                    backups: a,
                    retention: ra,
                    schedule: sa,
                    ..
                }],
                [JobPlan::Backup {
                    backups: b,
                    retention: rb,
                    schedule: sb,
                    ..
                }],
            ) => {
                assert_eq!(a, b);
                assert_eq!(ra, rb);
                assert_eq!(
                    sa.as_ref().map(|s| s.timing.schedule.as_str()),
                    sb.as_ref().map(|s| s.timing.schedule.as_str())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_label_fails_its_container_job_naming_container_and_label() {
        let s = source(FILE);
        let error = |pairs: &[(&str, &str)]| match &plans_of(&s, None, &labelled("shop", pairs))[..]
        {
            [JobPlan::Invalid { error, name, .. }] => {
                assert_eq!(name, "shop");
                error.clone()
            }
            other => panic!("{other:?}"),
        };
        let e = error(&[("dockyard.to", "nas"), ("dockyard.level", "99")]);
        assert!(
            e.contains("\"shop\"") && e.contains("dockyard.level"),
            "{e}"
        );
        let e = error(&[("dockyard.to", "s3://bucket/x")]);
        assert!(e.contains("dockyard.to") && e.contains("never URLs"), "{e}");
        let e = error(&[("dockyard.stop", "true")]);
        assert!(e.contains("dockyard.to") && e.contains("not set"), "{e}");
        let e = error(&[("dockyard.enable", "true")]);
        assert!(e.contains("dockyard.logs.to"), "{e}");
        let e = error(&[("dockyard.to", "nas"), ("dockyard.schedule", "every day")]);
        assert!(e.contains("label dockyard.schedule"), "{e}");
    }

    #[test]
    fn label_jobs_that_clash_with_file_jobs_fail_naming_both() {
        let s = source(FILE);
        let file = crate::settings::file::plans(&s.config, &[], &s.remote).unwrap();
        let web = plans_of(
            &s,
            None,
            &labelled(
                "web",
                &[("dockyard.to", "nas"), ("dockyard.logs.to", "nas")],
            ),
        );
        let merged = merge(file, web);
        let names: Vec<&str> = merged.iter().map(JobPlan::name).collect();
        assert_eq!(names, ["media", "web", "web.logs"]);
        match &merged[1] {
            JobPlan::Invalid { error, .. } => {
                assert!(
                    error.contains("\"web\"") && error.contains("\"media\""),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(merged[2], JobPlan::Logs { .. }),
            "the log job does not clash"
        );
        // A file job named as a label job would be.
        let s = source("[destinations.nas]\nurl = \"/b\"\n[jobs.shop]\ncontainer = \"other\"\ndestinations = [\"nas\"]\n");
        let file = crate::settings::file::plans(&s.config, &[], &s.remote).unwrap();
        let shop = plans_of(&s, None, &labelled("shop", &[("dockyard.to", "nas")]));
        let merged = merge(file, shop);
        assert!(
            matches!(&merged[1], JobPlan::Invalid { error, .. } if error.contains("same name"))
        );
    }

    #[test]
    fn only_this_instances_containers_are_ours() {
        let mut s = source(FILE);
        let none = BTreeMap::new();
        let tagged = BTreeMap::from([(keys::INSTANCE.to_string(), "prod".to_string())]);
        assert!(ours(&s, &none) && !ours(&s, &tagged));
        s.instance = Some("prod".into());
        assert!(!ours(&s, &none) && ours(&s, &tagged));
    }
}
