//! A Swarm of one node on a private engine, for the tests of `--stop` on a service's task: the
//! shared engine and the second one are never made Swarm managers. Services run the test image
//! with a volume; what the tests read is what `docker service ps` and `docker ps` show.

use std::time::Duration;

use super::engine::PrivateEngine;
use super::{docker_on, wait_until};

/// How long a service may take to reach its tasks on a busy machine.
const LIMIT: Duration = Duration::from_secs(120);

/// The writer each task runs: appends the same number to `slot<N>.a` and then `slot<N>.b`,
/// again and again, and ends between two rounds on SIGTERM (never between the two appends), so
/// a backup of a stopped service holds two equal files per slot.
pub const PAIRED_WRITER: &str = r#"stop=; trap 'stop=1' TERM
i=$(cat /srv/media/slot$SLOT.a 2>/dev/null | wc -l)
while [ -z "$stop" ]; do
  i=$((i+1)); echo $i >> /srv/media/slot$SLOT.a; echo $i >> /srv/media/slot$SLOT.b
  usleep 20000
done"#;

/// One task of a service, as `docker service ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// What the orchestrator wants of it (`Running`, `Shutdown`, `Remove`).
    pub desired: String,
    /// What it is (`Running 3 seconds ago`, `Failed ...`).
    pub state: String,
    /// Its error, if any.
    pub error: String,
}

/// A private engine that is a Swarm manager; stopped and removed when dropped.
pub struct Swarm {
    /// The engine.
    pub engine: PrivateEngine,
}

impl Swarm {
    /// Starts a private engine and makes it a one-node Swarm, listening on a free port of
    /// 127.0.0.1 (not 2377: several such engines may run at once).
    pub fn start() -> Swarm {
        let engine = PrivateEngine::start();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let swarm = Swarm { engine };
        swarm.docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            &format!("127.0.0.1:{port}"),
        ]);
        swarm
    }

    /// Its `DOCKER_HOST`.
    pub fn host(&self) -> String {
        self.engine.host()
    }

    /// Runs `docker` against it, panicking with its stderr on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        docker_on(Some(&self.host()), args)
    }

    /// Creates service `name` from the test image, with volume `volume` at `/srv/media`,
    /// running `script`, each task with `SLOT` set to its slot, plus `extra` flags (`--replicas
    /// 2`, `--mode global`); waits until `tasks` of its tasks run, as containers and as tasks.
    pub fn service(&self, name: &str, volume: &str, extra: &[&str], script: &str, tasks: usize) {
        let mount = format!("type=volume,source={volume},target=/srv/media");
        let mut args = vec![
            "service",
            "create",
            "--detach",
            "--quiet",
            "--name",
            name,
            "--env",
            "SLOT={{.Task.Slot}}",
            "--mount",
            &mount,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[super::IMAGE, "sh", "-c", script]);
        self.docker(&args);
        wait_until(&format!("{tasks} task(s) of {name} run"), LIMIT, || {
            self.containers(name).len() == tasks && self.running_tasks(name).len() == tasks
        });
    }

    /// The names of the running containers of service `name`'s tasks.
    pub fn containers(&self, name: &str) -> Vec<String> {
        let label = format!("label=com.docker.swarm.service.name={name}");
        let out = self.docker(&["ps", "--filter", &label, "--format", "{{.Names}}"]);
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    }

    /// Every task of service `name` the engine still lists, running or not.
    pub fn tasks(&self, name: &str) -> Vec<Task> {
        let format = "{{.ID}}|{{.DesiredState}}|{{.CurrentState}}|{{.Error}}";
        let out = self.docker(&["service", "ps", "--no-trunc", "--format", format, name]);
        out.lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, '|').collect();
                Task {
                    id: f[0].to_string(),
                    desired: f[1].to_string(),
                    state: f[2].to_string(),
                    error: f.get(3).unwrap_or(&"").trim().to_string(),
                }
            })
            .collect()
    }

    /// The ids of service `name`'s tasks that run and are meant to.
    pub fn running_tasks(&self, name: &str) -> Vec<String> {
        self.tasks(name)
            .into_iter()
            .filter(|t| t.desired == "Running" && t.state.starts_with("Running"))
            .map(|t| t.id)
            .collect()
    }

    /// The replica count service `name`'s spec asks for.
    pub fn replicas(&self, name: &str) -> u64 {
        let format = "{{.Spec.Mode.Replicated.Replicas}}";
        let out = self.docker(&["service", "inspect", "--format", format, name]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("service {name} has no replica count: {out}"))
    }
}
