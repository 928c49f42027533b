//! Notifications by e-mail over SMTP (lettre): `smtp://host:587?tls=required` for STARTTLS,
//! `smtps://host:465` for TLS from the start, `smtp://host:25` for a local relay without TLS;
//! a user and password in the URL (or the password from `DOCKYARD_SMTP_PASSWORD`) log in.

use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{message, Notice};

/// An SMTP target. The URL may hold a password: `Debug` shows the host only.
#[derive(Clone)]
pub struct Email {
    url: url::Url,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Email({})", self.describe())
    }
}

impl Email {
    /// Checks the server URL and the addresses; `password` (from the environment) is used when
    /// the URL names a user but no password.
    pub fn new(
        smtp: &str,
        password: Option<String>,
        from: &str,
        to: &[String],
    ) -> Result<Email, String> {
        let mut url = url::Url::parse(smtp)
            .map_err(|e| format!("the SMTP server URL is not a URL ({e}); write e.g. smtp://user@mail.example.com:587?tls=required"))?;
        if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
            return Err("the SMTP server URL must be smtp:// or smtps:// with a host".into());
        }
        if let Some(pw) =
            password.filter(|_| !url.username().is_empty() && url.password().is_none())
        {
            url.set_password(Some(&pw))
                .map_err(|_| "cannot add the SMTP password to the URL".to_string())?;
        }
        // lettre reads the URL; check it now so a mistake is a usage error, not a lost mail.
        AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str()).map_err(|e| {
            format!(
                "the SMTP server URL is not usable: {}",
                redact(&e.to_string(), &url)
            )
        })?;
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("notification sender {from:?}: {e}"))?;
        if to.is_empty() {
            return Err(
                "e-mail notifications need at least one recipient (email_to / --notify-email-to)"
                    .into(),
            );
        }
        let to = to
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| format!("notification recipient {a:?}: {e}"))
            })
            .collect::<Result<Vec<Mailbox>, String>>()?;
        Ok(Email { url, from, to })
    }

    /// Server and port, for logs.
    pub fn describe(&self) -> String {
        format!(
            "email via {}{}",
            self.url.host_str().unwrap_or("?"),
            self.url.port().map(|p| format!(":{p}")).unwrap_or_default()
        )
    }

    /// One delivery, bounded by `within`.
    pub async fn send(&self, n: &Notice, within: Duration) -> Result<(), String> {
        let mut mail = Message::builder()
            .from(self.from.clone())
            .subject(message::title(n))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            mail = mail.to(to.clone());
        }
        let mail = mail
            .body(message::text(n))
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(self.url.as_str())
            .map_err(|e| redact(&e.to_string(), &self.url))?
            .timeout(Some(within))
            .build();
        transport
            .send(mail)
            .await
            .map(|_| ())
            .map_err(|e| redact(&e.to_string(), &self.url))
    }
}

/// `text` with the URL's password and the URL itself removed.
fn redact(text: &str, url: &url::Url) -> String {
    let mut out = text.replace(url.as_str(), "<smtp url>");
    if let Some(pw) = url.password().filter(|p| !p.is_empty()) {
        out = out.replace(pw, "<password>");
    }
    out
}
