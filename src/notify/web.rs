//! Notifications over HTTP: the generic JSON webhook, ntfy (plain text with a title header),
//! Slack and Discord incoming webhooks.

use std::time::Duration;

use serde_json::json;

use super::{message, Notice};

/// Which HTTP format a target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebKind {
    /// `POST` of dockyard's JSON (docs/json.md).
    Webhook,
    /// `POST` of the text to an ntfy topic URL, with `Title`, `Priority` and `Tags` headers.
    Ntfy,
    /// A Slack incoming webhook: `{"text": ...}`.
    Slack,
    /// A Discord webhook: `{"content": ...}` (at most 2000 characters).
    Discord,
}

impl WebKind {
    fn name(self) -> &'static str {
        match self {
            WebKind::Webhook => "webhook",
            WebKind::Ntfy => "ntfy",
            WebKind::Slack => "slack",
            WebKind::Discord => "discord",
        }
    }
}

/// An HTTP target. Its URL is a secret (webhook URLs carry their token): `Debug` hides it.
#[derive(Clone)]
pub struct Web {
    kind: WebKind,
    url: url::Url,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Web({})", self.describe())
    }
}

impl Web {
    /// Checks the URL: http or https, with a host.
    pub fn new(kind: WebKind, url: &str) -> Result<Web, String> {
        let what = kind.name();
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("the {what} notification URL is not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(format!(
                "the {what} notification URL must be http:// or https:// with a host"
            ));
        }
        Ok(Web { kind, url: parsed })
    }

    /// Kind and host, for logs.
    pub fn describe(&self) -> String {
        format!(
            "{} at {}",
            self.kind.name(),
            self.url.host_str().unwrap_or("?")
        )
    }

    /// One `POST`, bounded by `within`.
    pub async fn send(&self, n: &Notice, within: Duration) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(within)
            .connect_timeout(within)
            .user_agent(concat!("dockyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(explain)?;
        let request = client.post(self.url.clone());
        let request = match self.kind {
            WebKind::Webhook => request.json(&message::webhook(n)),
            WebKind::Ntfy => request
                .header("Title", message::title(n))
                .header("Priority", if n.ok { "default" } else { "high" })
                .header("Tags", if n.ok { "white_check_mark" } else { "warning" })
                .body(message::text(n)),
            WebKind::Slack => request.json(&json!({
                "text": format!("*{}*\n{}", message::title(n), message::text(n)),
            })),
            WebKind::Discord => {
                let text = format!("**{}**\n{}", message::title(n), message::text(n));
                request.json(&json!({ "content": text.chars().take(2000).collect::<String>() }))
            }
        };
        let response = request.send().await.map_err(explain)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the server answered {status}"))
        }
    }
}

/// A request's error and its causes (`error sending request: ...: Connection refused`), without
/// the URL, which holds the target's token.
fn explain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}
