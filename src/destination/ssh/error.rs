//! SSH failures by case: what ssh and the remote script said on stderr, and their exit code, become
//! a [`DestError`] that says what to check (the host key, the login, the network, the remote
//! directory's permissions).

use super::super::{DestError, Destination};
use super::{SshDir, NOT_FOUND};

impl SshDir {
    /// Turns a failed run into a message that says what to check.
    pub(super) fn failure(&self, action: &str, code: Option<i32>, stderr: &str) -> DestError {
        let host = &self.spec.host;
        let detail = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| {
                !l.is_empty()
                    && !l.starts_with("@@@")
                    && !l.starts_with("Warning: Permanently added")
            })
            .unwrap_or("")
            .to_string();
        let has = |s: &str| stderr.contains(s);
        let dest = self.describe();
        let auth = |message| DestError::Authentication {
            dest: dest.clone(),
            message,
        };
        let unreachable = |message| DestError::Unreachable {
            dest: dest.clone(),
            message,
        };
        let message = if has("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || has("Host key for") && has("has changed")
        {
            return auth(format!("the host key of {host} has CHANGED since it was recorded in known_hosts; this may be an attack or a reinstalled host. Verify it out of band, then update known_hosts (ssh-keygen -R {host}); dockyard never accepts host keys on its own"));
        } else if has("Host key verification failed") || has("No ") && has("host key is known") {
            return auth(format!("the host key of {host} is not in known_hosts; verify its fingerprint and add it (e.g. ssh-keyscan {host} >> ~/.ssh/known_hosts after checking), or connect once with ssh by hand; dockyard never accepts host keys on its own"));
        } else if has("Permission denied (") || has("Too many authentication failures") {
            return auth(format!("authentication to {host} failed ({detail}); check the user, the key (IdentityFile in the ssh config), the agent, and the remote authorized_keys"));
        } else if has("Could not resolve hostname") {
            return unreachable(format!("cannot resolve host name {host:?}; check the URL and the Host entries of the ssh config"));
        } else if has("Connection refused")
            || has("Connection timed out")
            || has("No route to host")
            || has("Network is unreachable")
            || has("Connection closed by")
            || has("Connection reset")
        {
            return unreachable(format!("cannot reach {host} ({detail}); check that the host is up, the port, and the network"));
        } else if code == Some(255) {
            format!("ssh to {host} failed: {detail}")
        } else if code == Some(NOT_FOUND) {
            return DestError::NotFound {
                dest: self.describe(),
                name: action.to_string(),
            };
        } else if detail.contains("Permission denied") || detail.contains("Read-only") {
            return DestError::AccessDenied {
                dest,
                message: format!("cannot {action} on {host}: {detail}; check that the remote user may write there"),
            };
        } else {
            format!("cannot {action} on {host}: {detail}")
        };
        DestError::Unusable { dest, message }
    }
}
