//! `config/compose.yml` brought up as it is, with Debian's docker-compose: the seed's Gunicorn app,
//! its PostgreSQL and dockyard's daemon (an image of this very binary), every backup setting a
//! label. The daemon, in its container, finds the labelled web service, backs up its uploads
//! with the database's dump streamed into the archive, and rotates and ships Gunicorn's logs, on
//! the schedules the labels give.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{docker, list, peers, unique, wait_until};

/// The compose project this test brought up, and the dockyard image it built; both removed when
/// dropped.
struct Stack {
    name: String,
    env: Vec<(String, String)>,
    image: String,
}

impl Stack {
    /// `docker-compose -f config/compose.yml -p NAME ARGS...` with the stack's variables.
    fn compose(&self, args: &[&str]) -> std::process::Output {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.yml");
        let out = Command::new("docker-compose")
            .arg("-f")
            .arg(file)
            .args(["-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect(
                "docker-compose runs (Debian's docker-compose package; .ci/lib.sh installs it)",
            );
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.yml");
        let _ = Command::new("docker-compose")
            .arg("-f")
            .arg(file)
            .args(["-p", &self.name, "down", "-v", "-t", "5"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
    }
}

/// An image of this dockyard binary as the Dockerfile makes one (`FROM scratch`: the static
/// binary, the daemon its default command), by `docker import`.
fn dockyard_image(tmp: &Path, tag: &str) {
    let root = tmp.join("image");
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_dockyard"),
        root.join("usr/local/bin/dockyard"),
    )
    .unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} -c . | docker import -c 'ENTRYPOINT [\"/usr/local/bin/dockyard\"]' -c 'CMD [\"daemon\"]' - {tag} >/dev/null",
            root.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "docker import of the dockyard image");
}

/// Every file below `dir`, as paths relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(dir)
        .args(["-type", "f"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| Path::new(l).strip_prefix(dir).ok())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn the_compose_example_backs_up_with_the_dump_and_ships_logs_on_the_labels_schedules() {
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("compose");
    let image = format!("dockyard-test/dockyard:{name}");
    let (web_image, db_image) = (
        peers::var("DOCKYARD_TEST_GUNICORN_IMAGE"),
        peers::var("DOCKYARD_TEST_DB_IMAGE"),
    );
    dockyard_image(tmp.path(), &image);
    let backups: PathBuf = tmp.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // The example's daemon config, as shipped, for this stack's instance.
    let config = tmp.path().join("compose.toml");
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.toml"))
            .unwrap();
    let ours = shipped.replace("instance = \"hello\"", &format!("instance = \"{name}\""));
    assert_ne!(ours, shipped, "compose.toml names its instance");
    std::fs::write(&config, ours).unwrap();
    let env = |k: &str, v: &str| (k.to_string(), v.to_string());
    let stack = Stack {
        env: vec![
            env("STACK", &name),
            env("WEB_IMAGE", &web_image),
            env("DB_IMAGE", &db_image),
            env("DOCKYARD_IMAGE", &image),
            env("BACKUPS", backups.to_str().unwrap()),
            env("DOCKYARD_CONFIG_FILE", config.to_str().unwrap()),
            // Every few seconds: the test waits for the runs, not for a time of day.
            env("BACKUP_SCHEDULE", "*/4 * * * * *"),
            env("LOG_SCHEDULE", "*/4 * * * * *"),
            env("POSTGRES_PASSWORD", "compose-secret"),
        ],
        name: name.clone(),
        image,
    };
    // The app and its database first, with data in both; then the daemon.
    stack.compose(&["up", "-d", "web", "db"]);
    let (web, db) = (format!("{name}-web"), format!("{name}-db"));
    docker(&["exec", &db, "ready-postgres"]);
    docker(&["exec", "-u", "postgres", &db, "createdb", "app"]);
    docker(&[
        "exec",
        "-u",
        "postgres",
        &db,
        "psql",
        "-XAtq",
        "-d",
        "app",
        "-c",
        "CREATE TABLE uploads (name text); INSERT INTO uploads VALUES ('harbour.jpg');",
    ]);
    docker(&[
        "exec",
        &web,
        "sh",
        "-c",
        "head -c 300000 /dev/urandom > /srv/media/harbour.jpg",
    ]);
    let photo = docker(&["exec", &web, "sha256sum", "/srv/media/harbour.jpg"]);
    stack.compose(&["up", "-d", "dockyard"]);

    // A backup of the web service, with the dump, and the logs shipped.
    let mut found = None;
    wait_until(
        "the daemon's first backup with the dump, and shipped logs",
        Duration::from_secs(180),
        || {
            found = list(&backups).into_iter().find(|m| {
                m["container"] == web.as_str() && m["dumps"][0]["size"].as_u64() > Some(0)
            });
            found.is_some()
                && files_below(&backups.join("logs"))
                    .iter()
                    .any(|f| f.contains("gunicorn"))
        },
    );
    let m = found.unwrap();
    assert_eq!(m["dumps"][0]["container"], db.as_str(), "{m}");
    assert_eq!(m["dumps"][0]["database"], "app", "{m}");
    assert_eq!(m["paths"][0]["path"], "/srv/media", "{m}");
    let id = m["id"].as_str().unwrap();
    // The uploads came with it, byte for byte.
    let dumped = Command::new(env!("CARGO_BIN_EXE_dockyard"))
        .args(["dump", id, "/srv/media/harbour.jpg", "--to"])
        .arg(&backups)
        .output()
        .unwrap();
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let saved = tmp.path().join("harbour.jpg");
    std::fs::write(&saved, &dumped.stdout).unwrap();
    let sum = Command::new("sha256sum").arg(&saved).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next(),
        photo.split_whitespace().next()
    );
    // The daemon said what it found, in its JSON log lines.
    let logs = Command::new("docker")
        .args(["logs", &format!("{name}-dockyard")])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&logs.stderr);
    assert!(
        said.contains("a labelled container's job") && said.contains(&web),
        "{said}"
    );
    // docker stop: the daemon ends (0 between jobs, 130 mid-job), never killed.
    stack.compose(&["stop", "-t", "60", "dockyard"]);
    let code = docker(&[
        "inspect",
        "-f",
        "{{.State.ExitCode}}",
        &format!("{name}-dockyard"),
    ]);
    assert!(["0", "130"].contains(&code.trim()), "exit {code}");
}
