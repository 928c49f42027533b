//! The Debian package (README, Install), as an operator meets it: packaging/deb.sh builds it from
//! the test build, dpkg installs it on this machine, and then the version, the manual pages `man`
//! finds, the completions, the units systemd-analyze accepts and the conffile are checked. The
//! package is purged at the end, whatever happened; one install at a time on this machine.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Runs a command, returning its output whatever its exit status.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Holds the machine-wide lock for installing the package (other checkouts' test runs share
/// this machine's /usr and /etc) and purges the package when dropped, a failed assertion
/// included.
struct Installed {
    _lock: std::fs::File,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let out = run("dpkg", &["--purge", "dockyard"]);
        if !out.status.success() {
            eprintln!(
                "dpkg --purge dockyard failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Why the package cannot be installed here without harming the machine, if it cannot.
fn cannot_install() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("dpkg -i needs root".into());
    }
    for tool in ["dpkg", "dpkg-deb", "man", "systemd-analyze"] {
        if run("sh", &["-c", &format!("command -v {tool}")])
            .stdout
            .is_empty()
        {
            return Some(format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    None
}

/// Takes the machine-wide lock, then checks that nothing of an operator's is in the way.
fn lock_and_check() -> Result<Installed, String> {
    let lock = std::fs::File::create(std::env::temp_dir().join("dockyard-deb-test.lock"))
        .map_err(|e| format!("cannot create the lock file: {e}"))?;
    // SAFETY: a valid open descriptor; flock blocks until the other test run purged its package.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err("cannot lock the install".into());
    }
    let status = run("dpkg-query", &["-W", "-f=${Status}", "dockyard"]);
    if String::from_utf8_lossy(&status.stdout).contains("installed") {
        return Err("a dockyard package is installed already; not replacing it".into());
    }
    if Path::new("/etc/dockyard").exists() {
        return Err("/etc/dockyard exists already; not touching it".into());
    }
    Ok(Installed { _lock: lock })
}

#[test]
fn the_deb_installs_the_binary_manual_completions_units_and_a_conffile_and_purges_cleanly() {
    if let Some(why) = cannot_install() {
        eprintln!("SKIPPED: the .deb cannot be installed on this machine: {why}");
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb.sh");
    ok(
        "bash",
        &[
            script.to_str().unwrap(),
            "--bin",
            env!("CARGO_BIN_EXE_dockyard"),
            "--out",
            out.path().to_str().unwrap(),
            "--fast",
        ],
    );
    let deb = out.path().join(format!("dockyard_{version}_amd64.deb"));
    assert!(deb.is_file(), "no {}", deb.display());
    let deb = deb.to_str().unwrap();
    let fields = ok(
        "dpkg-deb",
        &["-f", deb, "Package", "Version", "Architecture"],
    );
    assert_eq!(
        fields,
        format!("Package: dockyard\nVersion: {version}\nArchitecture: amd64\n")
    );

    let installed = match lock_and_check() {
        Ok(guard) => guard,
        Err(why) => {
            eprintln!("SKIPPED: not installing the .deb: {why}");
            return;
        }
    };
    // Minimal images exclude /usr/share/man and /usr/share/doc from every package; the pages
    // are part of what is tested, so they are let in.
    ok(
        "dpkg",
        &[
            "--path-include=/usr/share/man/man1/dockyard*",
            "--path-include=/usr/share/doc/dockyard/*",
            "-i",
            deb,
        ],
    );

    let said = ok("/usr/bin/dockyard", &["--version"]);
    assert_eq!(said.trim(), format!("dockyard {version}"));

    // The manual: the main page and the subcommands' pages, found the way `man` looks.
    for page in ["dockyard", "dockyard-restore", "dockyard-config-check"] {
        let path = ok("man", &["-w", page]);
        assert_eq!(
            path.trim(),
            format!("/usr/share/man/man1/{page}.1.gz"),
            "man -w {page}"
        );
    }
    let rotate = Command::new("man")
        .arg("dockyard-logs-rotate")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let rotate = String::from_utf8_lossy(&rotate.stdout);
    assert!(rotate.contains("--keep-local"), "{rotate}");

    // Completions where bash-completion, zsh and fish look; bash loads its script.
    for file in [
        "/usr/share/bash-completion/completions/dockyard",
        "/usr/share/zsh/vendor-completions/_dockyard",
        "/usr/share/fish/vendor_completions.d/dockyard.fish",
    ] {
        assert!(Path::new(file).is_file(), "no {file}");
    }
    let complete = ok(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/dockyard && complete -p dockyard",
        ],
    );
    assert!(complete.contains("_dockyard"), "{complete}");

    // The systemd units, installed (never enabled) and clean for systemd-analyze.
    let units: Vec<String> = [
        "dockyard.service",
        "dockyard-run.service",
        "dockyard-run.timer",
    ]
    .iter()
    .map(|u| format!("/usr/lib/systemd/system/{u}"))
    .collect();
    let mut args = vec!["verify"];
    args.extend(units.iter().map(String::as_str));
    let verify = run("systemd-analyze", &args);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );

    // The example config is a conffile (an upgrade keeps the operator's edits), root's only.
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "dockyard"]);
    assert!(
        conffiles.contains("/etc/dockyard/dockyard.toml"),
        "{conffiles}"
    );
    let mode = std::fs::metadata("/etc/dockyard/dockyard.toml")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    drop(installed);
    for gone in [
        "/usr/bin/dockyard",
        "/etc/dockyard/dockyard.toml",
        "/usr/lib/systemd/system/dockyard.service",
        "/usr/share/man/man1/dockyard.1.gz",
        // deb-systemd-helper masks a removed package's units; purging unmasks them.
        "/etc/systemd/system/dockyard.service",
        "/etc/systemd/system/dockyard-run.timer",
    ] {
        assert!(
            std::fs::symlink_metadata(gone).is_err(),
            "{gone} is left after dpkg --purge"
        );
    }
}
