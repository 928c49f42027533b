//! A Docker engine of the test's own (its own socket, data root, exec root and pid file), for the
//! tests that stop and start an engine: the shared one, and the second one other tests use, are
//! never restarted. Stopped and removed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

/// A dockerd this test started.
pub struct PrivateEngine {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateEngine {
    /// Starts one (with the test image loaded) and waits until it answers.
    pub fn start() -> PrivateEngine {
        // A short path: the socket's must fit in 108 bytes.
        let dir = PathBuf::from(format!("/tmp/{}", super::unique("eng")));
        std::fs::create_dir_all(&dir).unwrap();
        let mut e = PrivateEngine { dir, child: None };
        e.up();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {} | docker -H {} load >/dev/null",
                super::image(),
                e.host()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "loading the test image failed");
        e
    }

    /// The `DOCKER_HOST` of this engine.
    pub fn host(&self) -> String {
        format!("unix://{}/d.sock", self.dir.display())
    }

    fn up(&mut self) {
        let log = std::fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--host", &self.host()])
            .arg("--data-root")
            .arg(self.dir.join("root"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd runs");
        self.child = Some(child);
        let host = self.host();
        wait_until(
            "the private engine answers",
            Duration::from_secs(120),
            || {
                Command::new("docker")
                    .args(["-H", &host, "version"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
    }

    /// Stops the engine (its containers die with it) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Stops and starts it again: an engine restart.
    pub fn restart(&mut self) {
        self.stop();
        self.up();
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.join("exec"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
