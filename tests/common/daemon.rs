//! `dockyard daemon --json` as a test drives it: its JSON Lines arrive on a channel, and SIGTERM
//! must end an idle one with exit 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::Value;

use super::sigterm;

/// A daemon whose JSON Lines arrive on a channel.
pub struct Daemon {
    child: Child,
    events: Receiver<Value>,
}

impl Daemon {
    /// Starts `dockyard daemon --config CONFIG --json` with `env` added.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dockyard"));
        cmd.args(["daemon", "--config", config.to_str().unwrap(), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: Value = serde_json::from_str(&line).expect("a JSON line");
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Daemon { child, events }
    }

    /// The next event, failing the test after a minute.
    pub fn next(&self) -> Value {
        self.events
            .recv_timeout(Duration::from_secs(60))
            .expect("the daemon said nothing for a minute")
    }

    /// Stops it with SIGTERM (it must exit 0: idle); returns the events not yet read.
    pub fn stop(self) -> Vec<Value> {
        sigterm(&self.child);
        let out = self.child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.events.try_iter().collect()
    }

    /// Stops it with SIGTERM, idle or not (a job may be running: then it exits 130).
    pub fn interrupt(self) {
        sigterm(&self.child);
        let _ = self.child.wait_with_output();
    }
}
