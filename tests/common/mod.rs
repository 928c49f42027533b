//! The real-engine test harness: a busybox test image built offline, app containers with volumes
//! and unique names that remove themselves, and the dockyard binary run as a user would run it.
#![allow(dead_code)]

pub mod daemon;
pub mod dest;
pub mod engine;
pub mod fault;
pub mod forge;
pub mod measure;
pub mod peers;
pub mod sinks;
pub mod swarm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Every kind of entry a volume holds: owners, modes, old mtimes, links, empty dirs, long unicode
/// names, and a few MB of random data.
pub const FIXTURE: &str = r#"set -e
cd /srv/media
mkdir -p docs/empty photos/2024
dd if=/dev/urandom of=photos/2024/big.bin bs=1024 count=3072 2>/dev/null
echo secret > docs/private.txt && chmod 600 docs/private.txt
printf '#!/bin/sh\necho hi\n' > docs/run.sh && chmod 755 docs/run.sh
ln docs/private.txt docs/hardlink.txt
ln -s ../docs/run.sh photos/link-to-run
L="dir-ünïcödé-$(printf 'x%.0s' $(seq 1 60))"
mkdir "$L" && echo long > "$L/file-名前-$(printf 'y%.0s' $(seq 1 50)).txt"
chown -R 1000:1000 docs photos "$L"
chmod 700 docs/empty
touch -d "2001-02-03 04:05:06" docs/private.txt photos/2024/big.bin docs/run.sh
touch -d "2002-03-04 05:06:07" docs/empty photos/2024
echo "GET / 200" > /srv/logs/access.log
"#;

/// Hard links, symlinks (one pointing out of the volume), odd names, owners, modes, times before
/// 1970 and past 2242, a FIFO, an empty directory, a setgid directory and a sparse disk image.
pub const TRICKY: &str = r#"set -e
cd /srv/media
mkdir -p a/b emptydir shared && chmod 2775 shared && chown 33:33 shared
echo one > a/b/one && ln a/b/one hard && ln a/b/one a/hard2
ln -s /etc/passwd outside && ln -s b/one a/inside
printf x > "$(printf 'bad\377name')" && printf y > 'sp ace' && printf z > "$(printf 'new\nline')"
echo id > owned && chown 3000000:3000001 owned && chmod 0640 owned
echo ro > readonly && chmod 0444 readonly && echo t > sticky && chmod 1604 sticky
echo old > old && touch -d "1965-03-04 05:06:07" old
echo fut > future && touch -d "2300-01-01 00:00:00" future
mkfifo fifo && chown 1000:1000 fifo
truncate -s 300M disk.img && printf MID | dd of=disk.img bs=1 seek=104857600 conv=notrunc 2>/dev/null
touch -d "1999-01-01 00:00:00" emptydir a/b a
"#;

/// The `user.note` xattr [`App::fill_tricky`] sets on `owned`.
pub const TRICKY_NOTE: &[u8] = b"photo of the harbour";

/// The image every test container runs: busybox-static imported as a rootfs (no pull needed).
pub const IMAGE: &str = "dockyard-test/busybox:1";

/// Runs `docker` with `args`, panicking with its stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `docker` against `engine` (a `docker -H` address; `None` for the shared engine), panicking
/// with its stderr on failure.
pub fn docker_on(engine: Option<&str>, args: &[&str]) -> String {
    match engine {
        None => docker(args),
        Some(e) => docker(&[&["-H", e], args].concat()),
    }
}

/// The test image on the engine at `engine` too (copied from the shared engine once).
pub fn image_on(engine: &str) -> &'static str {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let there = Command::new("docker")
            .args(["-H", engine, "image", "inspect", IMAGE])
            .output()
            .expect("docker CLI runs");
        if there.status.success() {
            return;
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {} | docker -H {engine} load >/dev/null",
                image()
            ))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "loading the test image into {engine} failed"
        );
    });
    IMAGE
}

/// Builds the test image once per test binary (importing it again is harmless).
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let ok = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .expect("docker CLI runs");
        if ok.status.success() {
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("busybox-static is installed (/bin/busybox)");
        let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        for dir in ["etc", "tmp", "srv"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/:/bin/sh\n",
        )
        .unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | docker import -c 'CMD [\"/bin/sh\"]' - {IMAGE} >/dev/null",
                root.path().display()
            ))
            .status()
            .unwrap();
        assert!(status.success(), "docker import of the test image failed");
    });
    IMAGE
}

/// A busybox image whose `mv` sleeps a little before each call: a restore's swap through it takes
/// seconds, long enough to be interrupted on purpose (`--helper-image`).
pub const SLOW_MV_IMAGE: &str = "dockyard-test/slow-mv:1";

/// Builds [`SLOW_MV_IMAGE`] once (from the busybox files, offline).
pub fn slow_mv_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        image();
        let ok = Command::new("docker")
            .args(["image", "inspect", SLOW_MV_IMAGE])
            .output()
            .expect("docker CLI runs");
        if ok.status.success() {
            return;
        }
        let c = unique("slowmv-build");
        docker(&[
            "run", "--name", &c, "--network", "none", IMAGE, "sh", "-c",
            "rm /bin/mv && printf '#!/bin/sh\\nsleep 0.3\\nexec /bin/busybox mv \"$@\"\\n' > /bin/mv && chmod 755 /bin/mv",
        ]);
        docker(&["commit", &c, SLOW_MV_IMAGE]);
        docker(&["rm", "-f", &c]);
    });
    SLOW_MV_IMAGE
}

/// An image whose `/bin/sh` is bash (RHEL, UBI, Fedora and Amazon Linux images are like this):
/// the Debian test image (`DOCKYARD_TEST_GUNICORN_IMAGE`) with `/bin/sh -> bash`, committed once.
pub fn bash_sh_image() -> String {
    const TAG: &str = "dockyard-test/bash-sh:1";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let ok = Command::new("docker")
            .args(["image", "inspect", TAG])
            .output()
            .expect("docker CLI runs");
        if ok.status.success() {
            return;
        }
        let base = peers::var("DOCKYARD_TEST_GUNICORN_IMAGE");
        let c = unique("bash-sh-build");
        docker(&[
            "run",
            "--name",
            &c,
            "--network",
            "none",
            &base,
            "/bin/bash",
            "-c",
            "ln -sf bash /bin/sh && readlink /bin/sh",
        ]);
        docker(&["commit", "-c", "CMD [\"sleep\", \"100000\"]", &c, TAG]);
        docker(&["rm", "-f", &c]);
    });
    TAG.to_string()
}

/// A unique name for something a test creates.
pub fn unique(what: &str) -> String {
    format!("dyt-{what}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos
        ^ (std::process::id() << 12)
        ^ COUNTER.fetch_add(0x9e37_79b9, std::sync::atomic::Ordering::Relaxed)
}
static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// A container the test owns; removed (with its anonymous volumes) when dropped.
pub struct App {
    /// Its unique name.
    pub name: String,
    /// The engine it runs on (`docker -H`); `None` for the shared one.
    pub engine: Option<String>,
}

impl App {
    /// A container by name, created by the test itself, on the shared engine.
    pub fn named(name: String) -> App {
        App { name, engine: None }
    }

    /// A running container with anonymous volumes at `volumes`.
    pub fn running(what: &str, volumes: &[&str]) -> App {
        let app = App::created(what, volumes);
        app.start();
        app
    }

    /// A created container with anonymous volumes at `volumes` on the engine at `engine` (a
    /// `docker -H` address), from the test image (loaded there first).
    pub fn created_on(engine: &str, what: &str, volumes: &[&str]) -> App {
        let name = unique(what);
        let mut args = vec!["create", "--name", &name, "--network", "none"];
        for v in volumes {
            args.extend(["-v", v]);
        }
        args.extend([image_on(engine), "sleep", "100000"]);
        docker_on(Some(engine), &args);
        App {
            name,
            engine: Some(engine.to_string()),
        }
    }

    /// `docker` against this container's engine.
    fn docker(&self, args: &[&str]) -> String {
        docker_on(self.engine.as_deref(), args)
    }

    /// A created, never started container with anonymous volumes at `volumes`.
    pub fn created(what: &str, volumes: &[&str]) -> App {
        let mut extra = Vec::new();
        for v in volumes {
            extra.push("-v");
            extra.push(v);
        }
        App::create_with(what, &extra, image())
    }

    /// A created container with extra `docker create` arguments (`-v`, `--user`, `-e`), from
    /// `image`, running `sleep`.
    pub fn create_with(what: &str, extra: &[&str], image: &str) -> App {
        let name = unique(what);
        let mut args = vec!["create", "--name", &name, "--network", "none"];
        args.extend_from_slice(extra);
        args.extend([image, "sleep", "100000"]);
        docker(&args);
        App::named(name)
    }

    /// A started container whose PID 1 is `sh -c script` (a log writer, say), with `extra`
    /// `docker run` arguments (its volumes).
    pub fn running_sh(what: &str, extra: &[&str], script: &str) -> App {
        let name = unique(what);
        let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
        args.extend_from_slice(extra);
        args.extend([image(), "sh", "-c", script]);
        docker(&args);
        App::named(name)
    }

    /// The host directory (or file) behind the mount at `destination`.
    pub fn mount_source(&self, destination: &str) -> PathBuf {
        let out = self.docker(&[
            "inspect",
            "-f",
            &format!("{{{{range .Mounts}}}}{{{{if eq .Destination \"{destination}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"),
            &self.name,
        ]);
        PathBuf::from(out.trim())
    }

    /// Runs a shell script inside the (running) container and returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        self.docker(&["exec", &self.name, "sh", "-c", script])
    }

    /// Runs a shell script inside the (running) container as root, whatever its user.
    pub fn root_sh(&self, script: &str) -> String {
        self.docker(&["exec", "-u", "0", &self.name, "sh", "-c", script])
    }

    /// Fills /srv/media of the (running) container with [`TRICKY`] and puts the
    /// [`TRICKY_NOTE`] xattr on `owned` (through the volume's directory on the engine's host).
    pub fn fill_tricky(&self) {
        self.sh(TRICKY);
        setxattr(
            &self.mount_source("/srv/media").join("owned"),
            "user.note",
            TRICKY_NOTE,
        );
    }

    /// Starts the container (e.g. after restoring into it while it was only created).
    pub fn start(&self) {
        self.docker(&["start", &self.name]);
    }

    /// Every entry under `path` with type, mode, owner, size, mtime, link count, content hash or
    /// link target: what a user would compare after a restore. The path's own mtime is left out,
    /// since restoring necessarily changes it.
    pub fn tree(&self, path: &str) -> String {
        self.settled();
        self.sh(&format!(
            r#"cd {path} && find . | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "$f L $(stat -c '%a %u %g' "$f") -> $(readlink "$f")";
  elif [ "$f" = . ]; then echo ". D $(stat -c '%a %u %g' .)";
  elif [ -p "$f" ]; then echo "$f P $(stat -c '%a %u %g %Y' "$f")";
  elif [ -c "$f" ] || [ -b "$f" ]; then echo "$f V $(stat -c '%a %u %g %Y %t:%T' "$f")";
  elif [ -d "$f" ]; then echo "$f D $(stat -c '%a %u %g %Y' "$f")";
  else echo "$f F $(stat -c '%a %u %g %Y %s %h' "$f") $(md5sum < "$f" | cut -c1-32)"; fi
done"#
        ))
    }

    /// After a failed or interrupted restore: `path` holds exactly the tree it held (`tree`
    /// shows hidden names, so a work directory left behind fails it) and no helper is left.
    pub fn assert_as_before(&self, path: &str, before: &str) {
        assert_eq!(self.tree(path), before, "{path} changed");
        assert!(self.helpers().is_empty(), "a helper was left");
    }

    /// Waits until no clean-up of a restore runs in this container's volumes: a restore reports
    /// once its swap is done and deletes the old contents in the background, as a user sees it
    /// (`restore --wait-cleanup` waits instead).
    pub fn settled(&self) {
        let filter = format!("label=dockyard.for={}", self.name);
        wait_until(
            "the restore's clean-up is done",
            std::time::Duration::from_secs(300),
            || {
                // In any state: one the engine is still removing counts too.
                self.docker(&[
                    "ps",
                    "-aq",
                    "--filter",
                    &filter,
                    "--filter",
                    "label=dockyard.role=cleanup",
                ])
                .trim()
                .is_empty()
            },
        );
    }

    /// Helper containers dockyard left for this container (once a restore's clean-up is done).
    pub fn helpers(&self) -> Vec<String> {
        self.settled();
        self.helpers_now()
    }

    /// Helper containers of this container right now, a running clean-up's included.
    pub fn helpers_now(&self) -> Vec<String> {
        let out = self.docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=dockyard.for={}", self.name),
        ]);
        out.lines().map(str::to_string).collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let rm = |args: &[&str]| {
            let mut cmd = Command::new("docker");
            if let Some(engine) = &self.engine {
                cmd.args(["-H", engine]);
            }
            let _ = cmd.args(["rm", "-f"]).args(args).output();
        };
        rm(&["-v", &self.name]);
        // Helpers a failed test may have left: only those created for this container.
        for h in self.helpers() {
            rm(&[&h]);
        }
    }
}

/// The result of running dockyard.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "dockyard failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs the dockyard binary with `args`.
pub fn dockyard(args: &[&str]) -> Run {
    dockyard_env(args, &[])
}

/// The dockyard binary as a command with a clean environment for its own settings, plus `env`.
pub fn dockyard_cmd(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dockyard"));
    cmd.args(args);
    for var in [
        "DOCKYARD_DEST",
        "DOCKYARD_SSH_CONFIG",
        "DOCKYARD_S3_ENDPOINT",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "DOCKYARD_AGENT",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs the dockyard binary with `args` and extra environment `env`.
pub fn dockyard_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out: Output = dockyard_cmd(args, env).output().expect("dockyard runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads an xattr of a file on this host (a volume's directory), `None` if it has none.
pub fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let len = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// Sets an xattr of a file on this host (a volume's directory); panics if refused.
pub fn setxattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a value of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const libc::c_void,
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setting {name} on {} failed", path.display());
}

/// Parses `dockyard list --json`; nothing when `dest` was never made (`list` says it does not
/// exist, exit 4).
pub fn list(dest: &Path) -> Vec<serde_json::Value> {
    if !dest.exists() {
        return Vec::new();
    }
    backups(&dockyard(&["list", "--json", "--to", dest.to_str().unwrap()]).ok())
}

/// The backups in the stdout of `dockyard list --json`: one document `{"version", "backups"}`.
pub fn backups(stdout: &str) -> Vec<serde_json::Value> {
    let v = one_document(stdout);
    v["backups"].as_array().expect("a backups array").clone()
}

/// Stdout parsed strictly as exactly one JSON object with the shapes' `version` (docs/json.md).
pub fn one_document(stdout: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
    assert_eq!(v["version"], 1, "no version: {v}");
    v
}

/// Stdout parsed strictly as JSON Lines (`run`, `daemon`): one object per line, each with `type`
/// and `version`.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{stdout}"));
            assert!(v["type"].is_string() && v["version"] == 1, "{v}");
            v
        })
        .collect()
}

/// The `job` events of a `run --json`, by job name.
pub fn job_events(stdout: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    json_lines(stdout)
        .into_iter()
        .filter(|e| e["type"] == "job")
        .map(|e| (e["job"].as_str().unwrap().to_string(), e))
        .collect()
}

/// Files at a destination directory, hidden ones included, sorted.
pub fn files(dest: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dest) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// A temp directory for a destination.
pub fn dest_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backups");
    (dir, path)
}

/// Starts a level-19 backup of `/srv/media` holding 48 MiB of random data (slow enough to
/// interrupt) with `extra` flags, and returns once it is writing its temp file in `dest`.
pub fn start_slow_backup(app: &App, dest: &Path, extra: &[&str]) -> std::process::Child {
    app.sh("dd if=/dev/urandom of=/srv/media/big bs=1M count=48 2>/dev/null");
    let mut child = dockyard_cmd(
        &[
            &["backup", &app.name, "--to", dest.to_str().unwrap()],
            &["--level", "19", "--path", "/srv/media"][..],
            extra,
        ]
        .concat(),
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let writing = std::fs::read_dir(dest)
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    e.file_name().to_string_lossy().ends_with(".partial")
                        && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
                })
            })
            .unwrap_or(false);
        if writing {
            return child;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backup never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be interrupted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends SIGTERM to a child.
pub fn sigterm(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

/// Polls `done` every 50 ms until it holds; fails naming `what` after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Writes `<tmp>/dockyard.toml`: locks under `tmp`, one destination `local` at `dest`, then
/// `jobs` (TOML text); returns its path.
pub fn local_config(tmp: &Path, dest: &Path, jobs: &str) -> PathBuf {
    let path = tmp.join("dockyard.toml");
    std::fs::write(
        &path,
        format!(
            "lock_dir = \"{}\"\nstate_dir = \"{}\"\n[destinations.local]\nurl = \"{}\"\n{jobs}",
            tmp.join("locks").display(),
            tmp.join("state").display(),
            dest.display()
        ),
    )
    .unwrap();
    path
}

/// [`local_config`] with one backup job, `media`, of `container` to that destination, its other
/// keys `keys` (TOML lines).
pub fn media_job(tmp: &Path, dest: &Path, container: &str, keys: &str) -> PathBuf {
    local_config(
        tmp,
        dest,
        &format!("[jobs.media]\ncontainer = \"{container}\"\ndestinations = [\"local\"]\n{keys}"),
    )
}

/// Runs `cmd` with its output captured, killing it (and failing the test) if it has not ended
/// after `limit`: a run that hangs must fail its test, not the whole suite.
pub fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("it runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let o = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let e = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}
