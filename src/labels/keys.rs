//! The label keys dockyard reads, each the label form of a config-file key (`dockyard.keep-daily`
//! is a job's `[retention] keep_daily`), and the config-file text a container's labels make: the
//! same parser, checks and messages as the file, with every line traced back to its label.

use std::collections::BTreeMap;

/// Every label dockyard reads starts so.
pub const PREFIX: &str = "dockyard.";
/// Opts a container in: `dockyard.enable=true`.
pub const ENABLE: &str = "dockyard.enable";
/// Which dockyard's config discovers the container: one whose `[labels] instance` is the same.
pub const INSTANCE: &str = "dockyard.instance";
/// Lets other containers' labels reach this one: stop it (`stop-also`), dump from it (`dump`)
/// and run hooks in it (`exec-before`, `exec-after`): `dockyard.reachable=true`.
pub const REACHABLE: &str = "dockyard.reachable";

/// How a label's text becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Text,
    /// A whole number (a string when it is not one, so the file's message says what is wanted).
    Int,
    /// A number, whole or not.
    Float,
    /// `true` or `false`.
    Bool,
    /// Comma-separated strings (commas inside `{...}` globs stay).
    List,
    /// One command per label: `dockyard.KEY` or numbered `dockyard.KEY.1`, `dockyard.KEY.2`, ...,
    /// taken in number order (commands hold commas).
    Commands,
}

/// The keys of a backup job: label suffix, config key, kind.
const BACKUP: &[(&str, &str, Kind)] = &[
    ("to", "destinations", Kind::List),
    ("paths", "paths", Kind::List),
    ("schedule", "schedule", Kind::Text),
    ("timezone", "timezone", Kind::Text),
    ("catch-up", "catch_up", Kind::Bool),
    ("tags", "tags", Kind::List),
    ("level", "level", Kind::Int),
    ("stop", "stop_during_backup", Kind::Bool),
    ("stop-also", "stop_also", Kind::List),
    ("stop-timeout", "stop_timeout", Kind::Int),
    ("pre-hook", "pre_hook", Kind::Text),
    ("post-hook", "post_hook", Kind::Text),
    ("exclude", "exclude", Kind::List),
    ("agent", "agent", Kind::Text),
    ("incremental", "incremental", Kind::Bool),
    ("full-every", "full_every", Kind::Int),
    ("full-after", "full_after", Kind::Text),
    ("dump", "dumps", Kind::Commands),
    ("exec-before", "exec_before", Kind::Commands),
    ("exec-after", "exec_after", Kind::Commands),
];

/// The keys of a backup job's `[retention]`.
const RETENTION: &[(&str, &str, Kind)] = &[
    ("keep-last", "keep_last", Kind::Int),
    ("keep-hourly", "keep_hourly", Kind::Int),
    ("keep-daily", "keep_daily", Kind::Int),
    ("keep-weekly", "keep_weekly", Kind::Int),
    ("keep-monthly", "keep_monthly", Kind::Int),
    ("keep-yearly", "keep_yearly", Kind::Int),
    ("keep-within", "keep_within", Kind::Text),
    ("keep-tags", "keep_tags", Kind::List),
];

/// The keys of a log job, after `dockyard.logs.`.
const LOGS: &[(&str, &str, Kind)] = &[
    ("to", "destination", Kind::Text),
    ("path", "path", Kind::Text),
    ("patterns", "patterns", Kind::List),
    ("reopen", "reopen", Kind::Text),
    ("min-size", "min_size", Kind::Text),
    ("max-age", "max_age", Kind::Text),
    ("schedule", "schedule", Kind::Text),
    ("timezone", "timezone", Kind::Text),
    ("catch-up", "catch_up", Kind::Bool),
    ("prune-after", "prune_after", Kind::Text),
    ("settle", "settle", Kind::Float),
];

/// Config keys a label may not set: they name files or images on the host, or secrets, which
/// whoever labels a container must not choose. The config file sets them.
const REFUSED: &[&str] = &[
    "helper-image",
    "encrypt-to",
    "passphrase-file",
    "identity-files",
    "container",
    "destinations",
    "logs.helper-image",
    "logs.encrypt-to",
    "logs.passphrase-file",
    "logs.container",
    "logs.destination",
];

/// The config-file text of one job made from labels, and which label made each line.
#[derive(Debug, Default)]
pub struct JobText {
    /// TOML, one key per line; the retention table last.
    pub text: String,
    /// The label behind each line (1-based line `n` at index `n - 1`; "" for lines dockyard
    /// wrote itself).
    pub lines: Vec<String>,
}

impl JobText {
    fn line(&mut self, label: &str, text: String) {
        self.text.push_str(&text);
        self.text.push('\n');
        self.lines.push(label.to_string());
    }

    /// The label a TOML error points at (`... at line N ...`), if it points at one.
    pub fn label_at(&self, error: &str) -> Option<&str> {
        let rest = error.split("line ").nth(1)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let n: usize = digits.parse().ok()?;
        self.lines
            .get(n.checked_sub(1)?)
            .map(String::as_str)
            .filter(|l| !l.is_empty())
    }
}

/// What a container's labels ask for.
#[derive(Debug, Default)]
pub struct Asked {
    /// A backup job: `dockyard.to` or another backup key is set.
    pub backup: Option<JobText>,
    /// A log job: a `dockyard.logs.*` key is set.
    pub logs: Option<JobText>,
}

/// Sorts a container's `dockyard.*` labels into the text of its jobs. `container` becomes each
/// job's `container`. An unknown or refused key is an error naming the label.
pub fn sort(container: &str, labels: &BTreeMap<String, String>) -> Result<Asked, String> {
    let mut backup: Vec<(&str, &str, Kind, String)> = Vec::new();
    let mut retention = Vec::new();
    let mut logs = Vec::new();
    let mut commands: BTreeMap<&str, Vec<(u64, String, String)>> = BTreeMap::new();
    for (label, value) in labels {
        let Some(key) = label.strip_prefix(PREFIX) else {
            continue;
        };
        if label == ENABLE || label == INSTANCE || label == REACHABLE {
            continue;
        }
        if REFUSED.contains(&key) {
            return Err(format!(
                "label {label} is not read from labels (it names a file, an image, a secret or what the engine already says); set it in the config file"
            ));
        }
        let find = |table: &[(&'static str, &'static str, Kind)], k: &str| {
            table.iter().find(|(s, _, _)| *s == k).copied()
        };
        if let Some(k) = key.strip_prefix("logs.") {
            match find(LOGS, k) {
                Some((_, config, kind)) => logs.push((label.as_str(), config, kind, value.clone())),
                None => return Err(unknown(label)),
            }
        } else if let Some((_, config, kind)) = find(BACKUP, key) {
            if kind == Kind::Commands {
                commands
                    .entry(config)
                    .or_default()
                    .push((0, label.clone(), value.clone()));
            } else {
                backup.push((label.as_str(), config, kind, value.clone()));
            }
        } else if let Some((_, config, kind)) = find(RETENTION, key) {
            retention.push((label.as_str(), config, kind, value.clone()));
        } else if let Some((base, n)) = key.rsplit_once('.') {
            match (find(BACKUP, base), n.parse::<u64>()) {
                (Some((_, config, Kind::Commands)), Ok(n)) => commands
                    .entry(config)
                    .or_default()
                    .push((n, label.clone(), value.clone())),
                _ => return Err(unknown(label)),
            }
        } else {
            return Err(unknown(label));
        }
    }
    let mut asked = Asked::default();
    if !backup.is_empty() || !retention.is_empty() || !commands.is_empty() {
        let mut job = JobText::default();
        job.line("", format!("container = {}", quoted(container)));
        for (label, config, kind, value) in &backup {
            job.line(label, format!("{config} = {}", toml_value(*kind, value)));
        }
        for (config, mut each) in commands {
            each.sort();
            let labels: Vec<&str> = each.iter().map(|(_, l, _)| l.as_str()).collect();
            let values: Vec<String> = each.iter().map(|(_, _, v)| quoted(v)).collect();
            // One line per command, so an error points at its label.
            job.line("", format!("{config} = ["));
            for (label, value) in labels.iter().zip(values) {
                job.line(label, format!("  {value},"));
            }
            job.line("", "]".to_string());
        }
        if !retention.is_empty() {
            job.line("", "[retention]".to_string());
            for (label, config, kind, value) in &retention {
                job.line(label, format!("{config} = {}", toml_value(*kind, value)));
            }
        }
        asked.backup = Some(job);
    }
    if !logs.is_empty() {
        let mut job = JobText::default();
        job.line("", format!("container = {}", quoted(container)));
        for (label, config, kind, value) in &logs {
            job.line(label, format!("{config} = {}", toml_value(*kind, value)));
        }
        asked.logs = Some(job);
    }
    Ok(asked)
}

/// The error for a `dockyard.*` label dockyard does not know, with the keys it does.
fn unknown(label: &str) -> String {
    let mut keys: Vec<String> = BACKUP
        .iter()
        .chain(RETENTION)
        .map(|(k, _, _)| format!("{PREFIX}{k}"))
        .chain(LOGS.iter().map(|(k, _, _)| format!("{PREFIX}logs.{k}")))
        .collect();
    keys.insert(0, ENABLE.into());
    keys.insert(1, INSTANCE.into());
    keys.insert(2, REACHABLE.into());
    format!(
        "unknown label {label}; dockyard reads {} (README, \"Labels\")",
        keys.join(", ")
    )
}

/// `s` as a TOML string (escaped by the toml crate, whatever it holds).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A label's text as the TOML value of its kind. Numbers and booleans that do not read as such
/// stay strings, so the file's own message ("expected an integer") names what is wanted.
fn toml_value(kind: Kind, value: &str) -> String {
    let v = value.trim();
    let number = |frac: bool| {
        let digits = v.strip_prefix('-').unwrap_or(v);
        let (whole, part) = match digits.split_once('.') {
            Some((w, p)) if frac => (w, Some(p)),
            _ => (digits, None),
        };
        let all = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        all(whole) && part.is_none_or(all)
    };
    match kind {
        Kind::Int if number(false) => v.to_string(),
        Kind::Float if number(true) => v.to_string(),
        Kind::Bool if v == "true" || v == "false" => v.to_string(),
        Kind::List => {
            let items: Vec<String> = split_list(value).iter().map(|i| quoted(i)).collect();
            format!("[{}]", items.join(", "))
        }
        _ => quoted(value),
    }
}

/// Splits a comma-separated label value; commas inside `{...}` (glob alternatives) stay, and
/// items are trimmed, empty ones dropped.
fn split_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_become_the_config_files_keys_with_their_types() {
        let asked = sort(
            "web",
            &labels(&[
                ("dockyard.enable", "true"),
                ("dockyard.to", "nas, s3"),
                ("dockyard.level", "7"),
                ("dockyard.stop", "true"),
                ("dockyard.exclude", "*.tmp,/srv/media/{cache,thumbs}/**"),
                ("dockyard.keep-daily", "7"),
                ("dockyard.keep-within", "2d"),
                ("dockyard.dump.2", "db:exec:pg_dumpall, then more"),
                ("dockyard.dump.1", "db:postgres"),
                ("dockyard.logs.to", "nas"),
                ("dockyard.logs.settle", "0.5"),
                ("com.docker.compose.project", "shop"),
            ]),
        )
        .unwrap();
        let backup = asked.backup.unwrap().text;
        let parsed: toml::Table = backup.parse().unwrap();
        assert_eq!(parsed["destinations"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["level"].as_integer(), Some(7));
        assert_eq!(parsed["stop_during_backup"].as_bool(), Some(true));
        assert_eq!(
            parsed["exclude"].as_array().unwrap()[1].as_str(),
            Some("/srv/media/{cache,thumbs}/**")
        );
        let dumps: Vec<&str> = parsed["dumps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(dumps, ["db:postgres", "db:exec:pg_dumpall, then more"]);
        assert_eq!(parsed["retention"]["keep_daily"].as_integer(), Some(7));
        let logs: toml::Table = asked.logs.unwrap().text.parse().unwrap();
        assert_eq!(logs["settle"].as_float(), Some(0.5));
        assert_eq!(logs["container"].as_str(), Some("web"));
    }

    #[test]
    fn unknown_and_refused_labels_are_named() {
        let err = sort("web", &labels(&[("dockyard.keep-dayly", "7")])).unwrap_err();
        assert!(
            err.contains("dockyard.keep-dayly") && err.contains("dockyard.keep-daily"),
            "{err}"
        );
        let err = sort(
            "web",
            &labels(&[("dockyard.passphrase-file", "/etc/shadow")]),
        )
        .unwrap_err();
        assert!(
            err.contains("dockyard.passphrase-file") && err.contains("config file"),
            "{err}"
        );
        let err = sort("web", &labels(&[("dockyard.dump.x", "db:postgres")])).unwrap_err();
        assert!(err.contains("dockyard.dump.x"), "{err}");
    }

    #[test]
    fn a_value_cannot_escape_its_string() {
        let asked = sort(
            "web",
            &labels(&[
                ("dockyard.to", "nas"),
                (
                    "dockyard.pre-hook",
                    "x\"\nlevel = 22\n[retention]\nkeep_last = 1",
                ),
                ("dockyard.level", "3\nstop_during_backup = true"),
            ]),
        )
        .unwrap();
        let parsed: toml::Table = asked.backup.unwrap().text.parse().unwrap();
        assert!(parsed["pre_hook"].as_str().unwrap().contains("level = 22"));
        assert!(parsed["level"].is_str(), "a non-number stays a string");
        assert!(parsed.get("retention").is_none() && parsed.get("stop_during_backup").is_none());
    }

    #[test]
    fn an_error_line_is_traced_to_its_label() {
        let asked = sort(
            "web",
            &labels(&[("dockyard.to", "nas"), ("dockyard.level", "high")]),
        )
        .unwrap();
        let job = asked.backup.unwrap();
        let err = toml::from_str::<crate::config::JobConfig>(&job.text)
            .unwrap_err()
            .to_string();
        assert_eq!(job.label_at(&err), Some("dockyard.level"), "{err}");
    }
}
