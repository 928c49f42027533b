//! `--reopen METHOD`: how the app is told to reopen its log files after they were renamed.

use std::fmt;

/// A reopen method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopen {
    /// Send this signal (name without `SIG`) to the container's main process through the engine.
    Signal(String),
    /// Run this shell command inside the app container.
    Exec(String),
    /// Copy the file, copy again what grew meanwhile, truncate it. For apps that cannot reopen;
    /// lines written between the last copy and the truncation are lost.
    CopyTruncate,
    /// Do nothing: the app notices the rename itself (e.g. Python's WatchedFileHandler).
    None,
}

impl Reopen {
    /// Parses `signal:USR1`, `signal:HUP`, `exec:<command>`, `copytruncate` or `none`.
    pub fn parse(s: &str) -> Result<Reopen, String> {
        let usage = "use signal:<NAME> (e.g. signal:USR1), exec:<command>, copytruncate or none";
        match s.split_once(':') {
            Some(("signal", name)) => {
                let upper = name.trim().to_ascii_uppercase();
                let name = upper.strip_prefix("SIG").unwrap_or(&upper).to_string();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(format!("--reopen {s:?}: bad signal name; {usage}"));
                }
                Ok(Reopen::Signal(name))
            }
            Some(("exec", cmd)) if !cmd.trim().is_empty() => Ok(Reopen::Exec(cmd.to_string())),
            None if s == "copytruncate" => Ok(Reopen::CopyTruncate),
            None if s == "none" => Ok(Reopen::None),
            _ => Err(format!("--reopen {s:?}: unknown method; {usage}")),
        }
    }
}

impl fmt::Display for Reopen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reopen::Signal(n) => write!(f, "signal:{n}"),
            Reopen::Exec(c) => write!(f, "exec:{c}"),
            Reopen::CopyTruncate => write!(f, "copytruncate"),
            Reopen::None => write!(f, "none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_method() {
        assert_eq!(
            Reopen::parse("signal:USR1"),
            Ok(Reopen::Signal("USR1".into()))
        );
        assert_eq!(
            Reopen::parse("signal:sighup"),
            Ok(Reopen::Signal("HUP".into()))
        );
        assert_eq!(
            Reopen::parse("exec:nginx -s reopen"),
            Ok(Reopen::Exec("nginx -s reopen".into()))
        );
        assert_eq!(Reopen::parse("copytruncate"), Ok(Reopen::CopyTruncate));
        assert_eq!(Reopen::parse("none"), Ok(Reopen::None));
    }

    #[test]
    fn rejects_unknown_methods_and_bad_signals() {
        assert!(Reopen::parse("restart")
            .unwrap_err()
            .contains("unknown method"));
        assert!(Reopen::parse("signal:").unwrap_err().contains("bad signal"));
        assert!(Reopen::parse("signal:US R1").is_err());
        assert!(Reopen::parse("exec:").is_err());
    }
}
