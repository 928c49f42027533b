//! What an `ssh://[user@]host[:port]/path` URL says.

use std::path::PathBuf;

/// Where an `ssh://[user@]host[:port]/path` URL points, plus the client config to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    /// Login user; `None` leaves it to the ssh config.
    pub user: Option<String>,
    /// Host name or `Host` alias from the ssh config.
    pub host: String,
    /// Port; `None` leaves it to the ssh config.
    pub port: Option<u16>,
    /// Remote directory: absolute, or relative to the login directory (`ssh://host/~/backups`).
    pub path: String,
    /// An ssh config file to use instead of `~/.ssh/config` (`ssh -F`).
    pub config: Option<PathBuf>,
}

impl SshSpec {
    /// Parses the part after `ssh://`.
    pub fn parse(url: &str, rest: &str, config: Option<PathBuf>) -> Result<SshSpec, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let path = match path.strip_prefix("/~/") {
            Some(relative) => relative.trim_end_matches('/').to_string(),
            None => path.trim_end_matches('/').to_string(),
        };
        if path.is_empty() || path == "~" {
            return Err(format!(
                "{url:?}: give the remote directory, e.g. ssh://backup@nas/srv/backups or ssh://nas/~/backups"
            ));
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), Some(port))
            }
            _ => (hostport, None),
        };
        if host.is_empty() || host.starts_with('-') || user.as_deref() == Some("") {
            return Err(format!("{url:?}: expected ssh://[user@]host[:port]/path"));
        }
        Ok(SshSpec {
            user,
            host: host.to_string(),
            port,
            path,
            config,
        })
    }
}

impl std::fmt::Display for SshSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ssh://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if self.path.is_empty() {
            // A host only (a remote engine's DOCKER_HOST), no directory.
            Ok(())
        } else if self.path.starts_with('/') {
            write!(f, "{}", self.path)
        } else {
            write!(f, "/~/{}", self.path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rest: &str) -> Result<SshSpec, String> {
        SshSpec::parse(&format!("ssh://{rest}"), rest, None)
    }

    #[test]
    fn parses_user_host_port_and_path() {
        let s = parse("backup@nas.example:2222/srv/backups/").unwrap();
        assert_eq!(s.user.as_deref(), Some("backup"));
        assert_eq!((s.host.as_str(), s.port), ("nas.example", Some(2222)));
        assert_eq!(s.path, "/srv/backups");
        assert_eq!(s.to_string(), "ssh://backup@nas.example:2222/srv/backups");
    }

    #[test]
    fn alias_without_user_or_port_and_home_relative_path() {
        let s = parse("nas/~/backups").unwrap();
        assert_eq!(
            (s.user.as_deref(), s.port, s.path.as_str()),
            (None, None, "backups")
        );
        assert_eq!(s.to_string(), "ssh://nas/~/backups");
    }

    #[test]
    fn rejects_missing_path_bad_port_and_option_like_hosts() {
        assert!(parse("nas").unwrap_err().contains("remote directory"));
        assert!(parse("nas:abc/x").unwrap_err().contains("port"));
        assert!(parse("-oProxyCommand=x/y").is_err());
    }
}
