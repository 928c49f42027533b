//! Named fault-injection points (src/fault.rs) for the crash and race tests: dockyard started
//! with `DOCKYARD_FAULT` stops at a point of its own (or of one of its helpers) and waits there,
//! so a test reaches its instant by name, never by a sleep.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{docker, wait_until, App};

/// How long a point may take to be reached on a busy machine.
const LIMIT: Duration = Duration::from_secs(300);

/// A dockyard run started with fault points, its stderr collected as it comes.
pub struct Faulted {
    /// The process.
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Faulted {
    /// Starts dockyard with `args`, stopping at `points` (`DOCKYARD_FAULT` syntax), plus `env`.
    pub fn start(args: &[&str], points: &str, env: &[(&str, &str)]) -> Faulted {
        Faulted::start_in(&[], args, points, env)
    }

    /// As [`Faulted::start`], run by `wrapper` (e.g. `unshare --pid --fork`) when not empty.
    pub fn start_in(
        wrapper: &[&str],
        args: &[&str],
        points: &str,
        env: &[(&str, &str)],
    ) -> Faulted {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = super::dockyard_cmd(args, env);
        if let Some((program, rest)) = wrapper.split_first() {
            let inner = cmd;
            cmd = Command::new(program);
            cmd.args(rest)
                .arg(inner.get_program())
                .args(inner.get_args());
            for (k, v) in inner.get_envs() {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
        }
        cmd.env("DOCKYARD_FAULT", points)
            .env("DOCKYARD_FAULT_DIR", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Faulted {
            child,
            stderr,
            reader: Some(reader),
            dir,
        }
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until dockyard itself stops at `point`.
    pub fn reached(&mut self, point: &str) {
        let marker = self.dir.path().join(format!("reached-{point}"));
        let child = &mut self.child;
        let stderr = self.stderr.clone();
        wait_until(&format!("dockyard reached {point}"), LIMIT, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "dockyard ended ({status}) before {point}: {}",
                    stderr.lock().unwrap()
                );
            }
            marker.exists()
        });
    }

    /// Lets dockyard go on from `point`.
    pub fn release(&self, point: &str) {
        std::fs::write(self.dir.path().join(format!("release-{point}")), b"").unwrap();
    }

    /// Waits until a helper of `app` stops at `point`; returns its id.
    pub fn helper_reached(&mut self, app: &App, point: &str) -> String {
        let child = &mut self.child;
        let stderr = self.stderr.clone();
        let mut found = None;
        wait_until(&format!("a helper reached {point}"), LIMIT, || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "dockyard ended ({status}) before a helper reached {point}: {}",
                    stderr.lock().unwrap()
                );
            }
            found = helper_at(app, point);
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits until a line of stderr contains `text`.
    pub fn said(&self, text: &str) {
        wait_until(&format!("dockyard said {text:?}"), LIMIT, || {
            self.stderr().contains(text)
        });
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for it to end: its exit code (-1 for a signal) and all of its stderr.
    pub fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        (status.code().unwrap_or(-1), self.stderr())
    }
}

/// The helper of `app` that stopped at `point`, if one has.
pub fn helper_at(app: &App, point: &str) -> Option<String> {
    let marker = format!("/.dockyard-fault-reached-{point}");
    app.helpers_now().into_iter().find(|id| {
        Command::new("docker")
            .args(["diff", id])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&marker))
            .unwrap_or(false)
    })
}

/// Lets a helper stopped at a fault point go on.
pub fn release_helper(id: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("release");
    std::fs::write(&file, b"").unwrap();
    docker(&[
        "cp",
        file.to_str().unwrap(),
        &format!("{id}:/.dockyard-fault-release"),
    ]);
}

/// Waits until no helper of `app` is left (a restore's clean-up runs on after it reports).
pub fn helpers_gone(app: &App) {
    wait_until("the helpers are gone", LIMIT, || app.helpers().is_empty());
}
