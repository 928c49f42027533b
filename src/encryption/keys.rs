//! Who can read an encrypted backup: recipients (`--encrypt-to`: an age X25519 key, an SSH public
//! key, or `@FILE` of them), identities (`--identity`: an age identity file or an SSH private
//! key), and a passphrase read from a file. Keys are parsed where they are used and never
//! printed: `Debug` shows a recipient's fingerprint and a file's path only.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::error::Failure;

/// One recipient, as given (its text is a public key: not secret, but long).
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    text: String,
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.fingerprint())
    }
}

impl Recipient {
    /// Parses one recipient: `age1…`, `ssh-ed25519 …` or `ssh-rsa …`.
    /// A rejected value is never echoed: it may be a private key given by mistake.
    pub fn parse(text: &str) -> Result<Recipient, String> {
        let text = text.trim();
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("AGE-SECRET-KEY-") || upper.contains("PRIVATE KEY") {
            return Err(
                "this is a private key, not a recipient: give its public key (`age-keygen -y FILE`, or the .pub file of an SSH key)"
                    .into(),
            );
        }
        let ok = if text.starts_with("age1") {
            age::x25519::Recipient::from_str(text).is_ok()
        } else if text.starts_with("ssh-ed25519 ") || text.starts_with("ssh-rsa ") {
            age::ssh::Recipient::from_str(text).is_ok()
        } else {
            return Err(
                "not a recipient: give an age public key (age1…), an SSH public key (ssh-ed25519 … or ssh-rsa …), or @FILE with one per line"
                    .into(),
            );
        };
        if !ok {
            let kind = if text.starts_with("age1") {
                "age"
            } else if text.starts_with("ssh-rsa") {
                "ssh-rsa"
            } else {
                "ssh-ed25519"
            };
            return Err(format!("not a valid {kind} public key"));
        }
        Ok(Recipient {
            text: canonical(text),
        })
    }

    /// What a manifest records: the first 16 hex digits of the sha256 of the key's canonical text
    /// (an SSH key without its comment), never the key.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.text)
    }

    /// The age recipient.
    pub fn to_age(&self) -> Box<dyn age::Recipient + Send> {
        if self.text.starts_with("age1") {
            Box::new(age::x25519::Recipient::from_str(&self.text).expect("checked when parsed"))
        } else {
            Box::new(age::ssh::Recipient::from_str(&self.text).expect("checked when parsed"))
        }
    }
}

/// A parsed key's text as age writes it: an SSH key's type and base64, without its comment.
fn canonical(text: &str) -> String {
    match age::ssh::Recipient::from_str(text) {
        Ok(key) => key.to_string(),
        Err(_) => text.to_string(),
    }
}

/// The fingerprint of a public key's canonical text.
fn fingerprint(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))[..16].to_string()
}

/// The most recipients one backup may be encrypted to (a manifest with more is refused).
pub const MAX_RECIPIENTS: usize = 32;

/// Every recipient `values` name (`--encrypt-to`, repeatable): keys, and `@FILE` read one per
/// line (`#` comments and blank lines skipped).
pub fn recipients(values: &[String]) -> Result<Vec<Recipient>, Failure> {
    let mut out = Vec::new();
    for v in values {
        match v.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| {
                    Failure::usage(format!("cannot read the recipients file {file}: {e}"))
                })?;
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    out.push(
                        Recipient::parse(line)
                            .map_err(|e| Failure::usage(format!("{file}, line {}: {e}", n + 1)))?,
                    );
                }
            }
            None => out.push(Recipient::parse(v).map_err(Failure::usage)?),
        }
    }
    if out.is_empty() && !values.is_empty() {
        return Err(Failure::usage(format!(
            "no recipient in {}",
            values.join(", ")
        )));
    }
    if out.len() > MAX_RECIPIENTS {
        return Err(Failure::usage(format!(
            "{} recipients; at most {MAX_RECIPIENTS} are supported",
            out.len()
        )));
    }
    Ok(out)
}

/// A passphrase, read from a file (its first line); never shown.
#[derive(Clone)]
pub struct Passphrase(SecretString, PathBuf);

/// Equal passphrases (settings are compared in tests; nothing prints either).
impl PartialEq for Passphrase {
    fn eq(&self, other: &Passphrase) -> bool {
        use age::secrecy::ExposeSecret;
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for Passphrase {}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<hidden>)")
    }
}

impl Passphrase {
    /// The first line of `path`, which must not be empty.
    pub fn read(path: &Path) -> Result<Passphrase, Failure> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the passphrase file {}: {e}",
                path.display()
            ))
        })?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(Failure::usage(format!(
                "the passphrase file {} is empty",
                path.display()
            )));
        }
        Ok(Passphrase(
            SecretString::from(line.to_string()),
            path.to_path_buf(),
        ))
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.1
    }

    /// The secret, for age.
    pub(super) fn secret(&self) -> SecretString {
        self.0.clone()
    }
}

/// A file holding identities (`--identity`): an age identity file, or an SSH private key. Read
/// when a backup is decrypted, on the host only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFile(pub PathBuf);

impl IdentityFile {
    /// The identities in the file.
    pub(super) fn load(&self) -> Result<Vec<Box<dyn age::Identity>>, String> {
        let path = &self.0;
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
        if is_ssh_key(&bytes) {
            let id = age::ssh::Identity::from_buffer(&bytes[..], Some(path.display().to_string()))
                .map_err(|e| format!("{}: not a usable SSH private key: {e}", path.display()))?;
            if let age::ssh::Identity::Encrypted(_) = id {
                return Err(format!(
                    "{}: the SSH key is protected by a passphrase; give an unprotected copy (or an age identity)",
                    path.display()
                ));
            }
            if let age::ssh::Identity::Unsupported(_) = id {
                return Err(format!(
                    "{}: this kind of SSH key is not supported (ssh-ed25519 and ssh-rsa are)",
                    path.display()
                ));
            }
            return Ok(vec![Box::new(id)]);
        }
        age::IdentityFile::from_buffer(&bytes[..])
            .map_err(|e| e.to_string())
            .and_then(|f| f.into_identities().map_err(|e| e.to_string()))
            .map_err(|e| format!("{}: not an age identity file: {e}", path.display()))
    }
}

impl IdentityFile {
    /// The public keys of the identities in the file, as recipients (to encrypt a safety backup
    /// to whoever can read the backup it replaces, and to name fingerprints in messages).
    pub fn recipients(&self) -> Result<Vec<Recipient>, String> {
        let path = &self.0;
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
        if is_ssh_key(&bytes) {
            let id = age::ssh::Identity::from_buffer(&bytes[..], None)
                .map_err(|e| format!("{}: not a usable SSH private key: {e}", path.display()))?;
            let key = age::ssh::Recipient::try_from(id)
                .map_err(|_| format!("{}: its public key cannot be read", path.display()))?;
            return Ok(vec![Recipient {
                text: key.to_string(),
            }]);
        }
        // The lines age's own identity-file reader takes: every one not empty or a comment.
        let text = String::from_utf8_lossy(&bytes);
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = age::x25519::Identity::from_str(line).map_err(|_| {
                format!(
                    "{}, line {}: not an age identity whose public key dockyard can read",
                    path.display(),
                    n + 1
                )
            })?;
            out.push(Recipient {
                text: id.to_public().to_string(),
            });
        }
        Ok(out)
    }
}

/// Whether `bytes` hold an SSH private key (OpenSSH or PEM RSA).
fn is_ssh_key(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains("-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.contains("-----BEGIN RSA PRIVATE KEY-----")
}
