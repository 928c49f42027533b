//! Telling people how a job (or a command cron runs on its own, [`OneOff`]) went: a generic JSON
//! webhook, ntfy, Slack, Discord and e-mail over SMTP. Failures are sent by default, successes when asked. A notifier that is down or hangs
//! never fails a job and never holds it past the timeout: every target is tried at once, each
//! retried with a short back-off, all within one deadline. Target URLs and passwords are secrets:
//! they are never logged or printed (a failure names the kind of target and its host only).

mod email;
mod message;
mod one_off;
mod web;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

pub use email::Email;
pub use one_off::OneOff;
pub use web::{Web, WebKind};

/// How a job went: what every notification is made of.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    /// The job's name; for a command run on its own, the command (`backup`, `logs`, ...).
    pub job: String,
    /// A command run on its own (from cron or a script), not a job of the config file.
    pub one_off: bool,
    /// The container it is about (empty for a `prune` of every container).
    pub container: String,
    /// Where it wrote or read, for a command run on its own (a job names its destinations in
    /// `destinations`).
    pub destination: Option<String>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Whether it did not run at all: another run held a lock it needs.
    pub skipped: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Bytes written (backups: compressed archive bytes over every destination).
    pub bytes: u64,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// Each destination, for backup jobs and a backup run on its own that succeeded.
    pub destinations: Vec<NoticeDest>,
    /// The command that shows more (runs the job, or the command, again with its output).
    pub command: String,
}

/// How one destination of a backup job ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticeDest {
    /// Its name in the config file.
    pub name: String,
    /// Whether the backup is there.
    pub ok: bool,
    /// The backup id written.
    pub backup_id: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A place notifications go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An HTTP endpoint (webhook, ntfy, Slack, Discord).
    Web(Web),
    /// Mail over SMTP.
    Email(Email),
}

impl Target {
    /// What it is, for logs: its kind and host, never its URL or password.
    pub fn describe(&self) -> String {
        match self {
            Target::Web(w) => w.describe(),
            Target::Email(e) => e.describe(),
        }
    }

    /// One attempt, bounded by `within`.
    async fn send_once(&self, notice: &Notice, within: Duration) -> Result<(), String> {
        match self {
            Target::Web(w) => w.send(notice, within).await,
            Target::Email(e) => e.send(notice, within).await,
        }
    }
}

/// Where and when to notify.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// Every target; each gets every notification.
    pub targets: Vec<Target>,
    /// Also notify when a job succeeds.
    pub on_success: bool,
    /// The most a notification may add to a job, retries included.
    pub timeout: Duration,
    /// Attempts after the first, while time is left.
    pub retries: u32,
}

impl Notifier {
    /// Sends `notice` to every target if the policy says so. Never fails: a target that cannot
    /// be reached in time is logged (kind and host only) and given up.
    pub async fn send(&self, notice: &Notice) {
        if notice.ok && !self.on_success {
            return;
        }
        let deadline = Instant::now() + self.timeout;
        let sends = self
            .targets
            .iter()
            .map(|t| self.deliver(t, notice, deadline));
        futures_util::future::join_all(sends).await;
    }

    /// Tries one target until it takes the notice, the retries run out or the deadline passes.
    async fn deliver(&self, target: &Target, notice: &Notice, deadline: Instant) {
        let mut backoff = Duration::from_millis(250);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                last = format!("no answer within {:?}", self.timeout);
                break;
            }
            match tokio::time::timeout(left, target.send_once(notice, left)).await {
                Ok(Ok(())) => {
                    tracing::debug!(notifier = %target.describe(), attempt, "notification sent");
                    return;
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = format!("no answer within {:?}", self.timeout);
                    break;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if attempt == self.retries || left <= backoff {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        tracing::warn!(notifier = %target.describe(), job = %notice.job, error = %last, "notification not delivered; the job's result stands");
    }
}
