//! Lowers `[notify]` and the `--notify-*` flags (read into the same [`NotifyConfig`] shape) into
//! one [`Notifier`]: a flag (or its environment variable) wins over the file's key of the same
//! kind; every URL is checked before any job (or command) runs. For a command run on its own, also
//! the command line its notice suggests running again.

use std::time::Duration;

use crate::config::NotifyConfig;
use crate::error::Failure;
use crate::notify::{Email, Notifier, Target, Web, WebKind};
use crate::values::Secret;

/// How long notifying may add to a job, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts after the first.
pub const DEFAULT_RETRIES: u32 = 3;

/// The notifier for a run, or `None` when no target is set anywhere.
pub fn lower(
    file: Option<&NotifyConfig>,
    flags: &NotifyConfig,
) -> Result<Option<Notifier>, Failure> {
    let empty = NotifyConfig::default();
    let file = file.unwrap_or(&empty);
    let either = |flag: &Option<Secret>, key: &Option<Secret>| flag.clone().or_else(|| key.clone());
    let mut targets = Vec::new();
    for (kind, url) in [
        (WebKind::Webhook, either(&flags.webhook, &file.webhook)),
        (WebKind::Ntfy, either(&flags.ntfy, &file.ntfy)),
        (WebKind::Slack, either(&flags.slack, &file.slack)),
        (WebKind::Discord, either(&flags.discord, &file.discord)),
    ] {
        if let Some(url) = url {
            targets.push(Target::Web(
                Web::new(kind, url.expose()).map_err(Failure::usage)?,
            ));
        }
    }
    if let Some(smtp) = either(&flags.smtp, &file.smtp) {
        let from = flags
            .email_from
            .clone()
            .or_else(|| file.email_from.clone())
            .ok_or_else(|| {
                Failure::usage(
                    "e-mail notifications need a sender (email_from / --notify-email-from)",
                )
            })?;
        let to = if flags.email_to.is_empty() {
            file.email_to.clone()
        } else {
            flags.email_to.clone()
        };
        let password = std::env::var("DOCKYARD_SMTP_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        targets.push(Target::Email(
            Email::new(smtp.expose(), password, &from, &to).map_err(Failure::usage)?,
        ));
    } else if flags.email_from.is_some() || !flags.email_to.is_empty() || !file.email_to.is_empty()
    {
        return Err(Failure::usage(
            "e-mail notifications need an SMTP server (smtp / --notify-smtp)",
        ));
    }
    if targets.is_empty() {
        return Ok(None);
    }
    Ok(Some(Notifier {
        targets,
        on_success: flags.on_success || file.on_success,
        timeout: flags
            .timeout
            .or(file.timeout)
            .map_or(DEFAULT_TIMEOUT, |a| a.0),
        retries: flags.retries.or(file.retries).unwrap_or(DEFAULT_RETRIES),
    }))
}

/// The program's command line `args` (its own name first) as a person runs it again by hand:
/// shell-quoted, without `--config` and the `--notify-*` options, which only say where to notify
/// (so the run by hand notifies no one). Commands that may hold a password (an `exec:` dump,
/// `restore-db --command`) are shown as `…`.
pub fn rerun(args: impl IntoIterator<Item = String>) -> String {
    let mut out = vec!["dockyard".to_string()];
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, _)) => (name, true),
            None => (arg.as_str(), false),
        };
        if name == "--config" || name.starts_with("--notify-") {
            if !inline_value && name != "--notify-on-success" {
                args.next();
            }
            continue;
        }
        if name == "--dump" || name == "--command" {
            let value = match inline_value {
                true => arg.split_once('=').map(|(_, v)| v.to_string()),
                false => args.next(),
            };
            let shown = match (name, value) {
                ("--dump", Some(v)) => v
                    .parse::<crate::dumps::DumpSpec>()
                    .map_or_else(|_| "…".to_string(), |d| d.to_string()),
                _ => "…".to_string(),
            };
            out.extend([name.to_string(), shown]);
            continue;
        }
        out.push(arg);
    }
    shell_words::join(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_to_run_again_leaves_out_only_where_to_notify() {
        let args = |line: &str| {
            rerun(
                std::iter::once("/usr/local/bin/dockyard".to_string())
                    .chain(line.split(' ').map(str::to_string)),
            )
        };
        assert_eq!(
            args("backup web --to /b --notify-webhook https://h/T0KEN --notify-on-success --config /etc/d.toml -q"),
            "dockyard backup web --to /b -q"
        );
        let given = |line: &[&str]| rerun(line.iter().map(|a| a.to_string()));
        assert_eq!(
            given(&[
                "dockyard",
                "backup",
                "web",
                "--dump",
                "db:postgres:app",
                "--dump=db:exec:mysqldump -pS3cret",
                "--dump",
                "not a spec -pS3cret"
            ]),
            "dockyard backup web --dump db:postgres:app --dump db:exec:… --dump …"
        );
        assert_eq!(
            given(&["dockyard", "restore-db", "--command", "mysql -pS3cret"]),
            "dockyard restore-db --command …"
        );
        assert_eq!(
            args("prune --to=s3://b/p --notify-slack=https://h/T --config=/x --keep-last 3 --notify-email-to a@b"),
            "dockyard prune '--to=s3://b/p' --keep-last 3"
        );
        assert_eq!(
            rerun(
                [
                    "dockyard",
                    "backup",
                    "my app",
                    "--pre-hook",
                    "sync; echo done"
                ]
                .map(String::from)
            ),
            "dockyard backup 'my app' --pre-hook 'sync; echo done'"
        );
    }
}
