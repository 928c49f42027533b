//! Notifications for a command cron runs on its own (`backup`, `snapshot`, `logs`, `prune`): what
//! its notice says, from how the command ended. The notifier and the command line are lowered with
//! the other settings (`settings::notify`); main sends the notice on every way out.

use chrono::Utc;

use super::{Notice, NoticeDest, Notifier};

/// A command run on its own that says how it went.
#[derive(Debug, Clone)]
pub struct OneOff {
    /// Where and when to notify.
    pub notifier: Notifier,
    /// The command: `backup`, `snapshot`, `logs` or `prune`.
    pub command: &'static str,
    /// The container it is about (`prune` without `--container`: none).
    pub container: Option<String>,
    /// Where it writes or reads (`logs rotate`: none).
    pub destination: Option<String>,
    /// The command line that runs it again by hand: as given, without the options that only say
    /// where to notify (so running it by hand notifies no one).
    pub rerun: String,
}

impl OneOff {
    /// The notice for a command that wrote `backup` (its id and bytes, for `backup` and
    /// `snapshot`) or failed with `error`, after `seconds`.
    pub fn notice(
        &self,
        backup: Option<(&str, u64)>,
        error: Option<String>,
        seconds: f64,
    ) -> Notice {
        let ok = error.is_none();
        let destinations = match (backup, &self.destination) {
            (Some((id, _)), Some(dest)) if ok => vec![NoticeDest {
                name: dest.clone(),
                ok: true,
                backup_id: Some(id.to_string()),
                error: None,
            }],
            _ => Vec::new(),
        };
        Notice {
            job: self.command.to_string(),
            one_off: true,
            container: self.container.clone().unwrap_or_default(),
            destination: self.destination.clone(),
            ok,
            skipped: false,
            error,
            bytes: backup.map_or(0, |(_, bytes)| bytes),
            seconds,
            finished: Utc::now(),
            destinations,
            command: self.rerun.clone(),
        }
    }

    /// Sends the notice for how the command ended, if the policy says so; never fails.
    pub async fn send(&self, backup: Option<(&str, u64)>, error: Option<String>, seconds: f64) {
        self.notifier
            .send(&self.notice(backup, error, seconds))
            .await;
    }
}
