//! The helper scripts (`src/shell/*.sh`) run as helpers run them, `sh -c <script> <name> <args>`,
//! under busybox sh, dash and bash in POSIX mode (RHEL-style images whose /bin/sh is bash), on
//! temp directories holding hostile file names. No engine needed: the scripts are plain POSIX sh.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use dockyard::shell::{self, Script};

/// The shells a helper image may have as /bin/sh.
const SHELLS: &[&[&str]] = &[&["busybox", "sh"], &["dash"], &["bash", "--posix"]];

/// Hostile names: spaces, quotes, newlines, leading dashes, shell syntax, globs, non-UTF-8.
const NAMES: &[&[u8]] = &[
    b"plain.jpg",
    b"-f",
    b"--help",
    b"a b",
    b"it's",
    b"$(touch PWNED)",
    b"`touch PWNED`",
    b"new\nline",
    b"*",
    b".hidden",
    b"..dots",
    b"\xff\xfe",
];

struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

fn run(shell: &[&str], script: &Script, cwd: &Path) -> Ran {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg("-c")
        .arg(script.text)
        .arg(script.name)
        .args(&script.args)
        .current_dir(cwd)
        .output()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn name(b: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(b)
}

/// A listing of `dir`: relative name, kind and content, sorted (what a user would compare).
fn tree(dir: &Path) -> Vec<(Vec<u8>, String)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel =
                std::os::unix::ffi::OsStrExt::as_bytes(p.strip_prefix(base).unwrap().as_os_str())
                    .to_vec();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.push((rel, format!("-> {:?}", std::fs::read_link(&p).unwrap())));
            } else if meta.is_dir() {
                out.push((rel, format!("dir {:o}", meta.permissions().mode() & 0o7777)));
                walk(base, &p, out);
            } else {
                out.push((rel, format!("file {:?}", std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Fills `dir` with an entry per hostile name (`tag` in each file), a subdirectory and a symlink.
fn fill(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for n in NAMES {
        std::fs::write(dir.join(name(n)), format!("{tag} {n:?}")).unwrap();
    }
    std::fs::create_dir_all(dir.join("sub dir")).unwrap();
    std::fs::write(dir.join("sub dir").join("inner"), tag).unwrap();
    symlink("/etc/passwd", dir.join(format!("link-{tag}"))).unwrap();
}

/// The journal records of one mount, as dockyard writes them into the helper's own file system:
/// path 0 is the mount root (mode 750, a time before 1970), `nested-mount` stays in place, and
/// `plain.jpg` gets a time the engine could not set.
fn spec(dir: &Path) -> String {
    let path = dir.join("spec");
    std::fs::write(
        &path,
        format!(
            "path 0 0 0 750 -152391233 \nskip 0 {}\nfixup 0 -152391233 {}\n",
            dockyard::archive::names::octal_escape(b"nested-mount"),
            dockyard::archive::names::octal_escape(b"plain.jpg")
        ),
    )
    .unwrap();
    root_of(&path)
}

/// A mount root with live contents and a staged restore of path 0 (the root itself) in `phase`;
/// returns the expected tree after the swap.
fn staged_mount(root: &Path, phase: &str) -> Vec<(Vec<u8>, String)> {
    fill(root, "old");
    let expected_dir = root.parent().unwrap().join("expected");
    fill(&expected_dir, "new");
    std::fs::create_dir(expected_dir.join("nested-mount")).unwrap();
    let work = root.join(".dockyard-restore");
    std::fs::create_dir(&work).unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o700)).unwrap();
    fill(&work.join("new-0"), "new");
    // A nested mount point stays in place (with whatever it holds).
    std::fs::create_dir(root.join("nested-mount")).unwrap();
    std::fs::write(work.join("0-phase"), format!("{phase}\n")).unwrap();
    let want = tree(&expected_dir);
    std::fs::remove_dir_all(&expected_dir).unwrap();
    want
}

fn root_of(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

/// `restore.sh MODE ROOT PHASE SPEC`.
fn restore(mode: &str, root: &Path, phase: &str, spec: &str) -> Script {
    shell::restore(mode, vec![root_of(root), phase.into(), spec.into()])
}

#[test]
fn restore_commit_swaps_hostile_names_and_keeps_nested_mounts_in_place() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mnt");
        let want = staged_mount(&root, "staging");
        let spec = spec(tmp.path());
        let r = run(sh, &restore("commit", &root, "staging", &spec), tmp.path());
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        let out = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(out.contains(" swapped\n"), "{out}");
        let mtime = std::os::unix::fs::MetadataExt::mtime(
            &std::fs::symlink_metadata(root.join("plain.jpg")).unwrap(),
        );
        assert_eq!(mtime, -152391233, "{sh:?}: the fix-up was not applied");
        // The old contents wait in the work dir until `clean`, which gives the root its time.
        let r = run(
            sh,
            &shell::restore("clean", vec![root_of(&root), "-152391233".into()]),
            tmp.path(),
        );
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        assert_eq!(tree(&root), want, "{sh:?}");
        assert!(!tmp.path().join("PWNED").exists() && !root.join("PWNED").exists());
        let meta = std::fs::metadata(&root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{sh:?}");
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&meta), -152391233);
    }
}

/// Recreates what an interruption in `phase` leaves: half the old entries aside, half the staged
/// ones moved in.
fn interrupt_in(root: &Path, phase: &str) {
    let work = root.join(".dockyard-restore");
    if phase == "staging" {
        return;
    }
    std::fs::create_dir(work.join("old-0")).unwrap();
    for (i, n) in NAMES.iter().enumerate() {
        if phase == "aside 0" && i % 2 == 1 {
            continue;
        }
        std::fs::rename(root.join(name(n)), work.join("old-0").join(name(n))).unwrap();
    }
    if phase != "aside 0" {
        std::fs::rename(root.join("sub dir"), work.join("old-0/sub dir")).unwrap();
        std::fs::rename(root.join("link-old"), work.join("old-0/link-old")).unwrap();
        for (i, n) in NAMES.iter().enumerate() {
            if phase == "in 0" && i % 2 == 1 {
                continue;
            }
            std::fs::rename(work.join("new-0").join(name(n)), root.join(name(n))).unwrap();
        }
        if phase != "in 0" {
            std::fs::rename(work.join("new-0/sub dir"), root.join("sub dir")).unwrap();
            std::fs::rename(work.join("new-0/link-new"), root.join("link-new")).unwrap();
        }
    }
    if phase == "swapped" {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o750)).unwrap();
    }
}

/// Every name but the work dir's.
fn live(root: &Path) -> Vec<(Vec<u8>, String)> {
    tree(root)
        .into_iter()
        .filter(|(n, _)| !n.starts_with(b".dockyard-restore"))
        .collect()
}

#[test]
fn restore_commit_finishes_from_every_phase() {
    for sh in SHELLS {
        for phase in ["staging", "aside 0", "in 0", "meta 0", "swapped"] {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("mnt");
            let want = staged_mount(&root, phase);
            interrupt_in(&root, phase);
            let spec = spec(tmp.path());
            let r = run(sh, &restore("commit", &root, phase, &spec), tmp.path());
            assert_eq!(r.code, 0, "{sh:?} {phase}: {}", r.stderr);
            let want: Vec<_> = want
                .into_iter()
                .filter(|(n, _)| !n.starts_with(b".dockyard-restore"))
                .collect();
            assert_eq!(live(&root), want, "{sh:?}: finishing from {phase:?}");
        }
    }
}

#[test]
fn restore_rollback_puts_the_old_contents_back_from_every_phase() {
    for sh in SHELLS {
        for phase in ["aside 0", "in 0", "meta 0", "swapped", "undo 0"] {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("mnt");
            fill(&root, "old");
            std::fs::create_dir(root.join("nested-mount")).unwrap();
            let before = tree(&root);
            std::fs::remove_dir_all(&root).unwrap();
            staged_mount(&root, phase);
            if phase == "undo 0" {
                // A rollback cut short: the restored entries out of the way, half the old ones
                // back.
                interrupt_in(&root, "swapped");
                let work = root.join(".dockyard-restore");
                std::fs::create_dir(work.join("back-0")).unwrap();
                for e in std::fs::read_dir(&root).unwrap() {
                    let n = e.unwrap().file_name();
                    if n != ".dockyard-restore" && n != "nested-mount" {
                        std::fs::rename(root.join(&n), work.join("back-0").join(&n)).unwrap();
                    }
                }
                for (i, n) in NAMES.iter().enumerate() {
                    if i % 2 == 0 {
                        std::fs::rename(work.join("old-0").join(name(n)), root.join(name(n)))
                            .unwrap();
                    }
                }
            } else {
                interrupt_in(&root, phase);
            }
            let spec = spec(tmp.path());
            let r = run(sh, &restore("rollback", &root, phase, &spec), tmp.path());
            assert_eq!(r.code, 0, "{sh:?} {phase}: {}", r.stderr);
            assert_eq!(live(&root), before, "{sh:?}: rolling back from {phase:?}");
        }
    }
}

#[test]
fn restore_discard_removes_staging_only_before_the_swap() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mnt");
        staged_mount(&root, "staging");
        let live_before = live(&root);
        let discard =
            |root: &Path, phase: &str| shell::restore("discard", vec![root_of(root), phase.into()]);
        let r = run(sh, &discard(&root, "staging"), tmp.path());
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        assert_eq!(tree(&root), live_before, "{sh:?}");

        let root = tmp.path().join("mnt2");
        staged_mount(&root, "in 0");
        let r = run(sh, &discard(&root, "in 0"), tmp.path());
        assert_ne!(r.code, 0, "{sh:?}: a begun swap must not be discarded");
        assert!(r.stderr.contains("can only be finished"), "{}", r.stderr);
    }
}

#[test]
fn restore_never_acts_on_what_the_volume_says() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let spec = spec(tmp.path());
        // A symlink planted where the work dir goes: refused, and the target is untouched.
        let root = tmp.path().join("mnt");
        std::fs::create_dir_all(&root).unwrap();
        let victim = tmp.path().join("victim");
        fill(&victim, "v");
        symlink(&victim, root.join(".dockyard-restore")).unwrap();
        let before = tree(&victim);
        let r = run(sh, &restore("commit", &root, "staging", &spec), tmp.path());
        assert_ne!(r.code, 0, "{sh:?}");
        assert_eq!(tree(&victim), before);
        // A directory that is not mode 0700: refused.
        let root = tmp.path().join("mnt2");
        staged_mount(&root, "staging");
        std::fs::set_permissions(
            root.join(".dockyard-restore"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let r = run(sh, &restore("commit", &root, "staging", &spec), tmp.path());
        assert_ne!(r.code, 0, "{sh:?}");
        assert!(r.stderr.contains("not dockyard's"), "{}", r.stderr);
        // A journal or fix-ups planted in the work dir (format 1 kept them there) are data, never
        // read: the swap does what the spec says and nothing else.
        let root = tmp.path().join("mnt3");
        let want = staged_mount(&root, "staging");
        let work = root.join(".dockyard-restore");
        std::fs::write(
            work.join("0-journal"),
            "dockyard-restore 1\nrun r\nowner h 1 0 r 0\nbackup \\142\nmember \\057\npath 0 0 0 777 0 $(touch${IFS}PWNED)\nfile \\057 \\145\\164\\143 \\057\n",
        )
        .unwrap();
        std::fs::write(work.join("0-fixups-0"), "0 ../../victim\n").unwrap();
        let r = run(sh, &restore("commit", &root, "staging", &spec), tmp.path());
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        let r = run(
            sh,
            &shell::restore("clean", vec![root_of(&root), "-".into()]),
            tmp.path(),
        );
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        assert_eq!(tree(&root), want, "{sh:?}");
        assert!(!tmp.path().join("PWNED").exists() && !root.join("PWNED").exists());
        let meta = std::fs::metadata(&root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750, "{sh:?}");
    }
}

#[test]
fn restore_refuses_a_path_reached_through_a_symlink() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mnt");
        let outside = tmp.path().join("outside");
        fill(&outside, "keep");
        let before = tree(&outside);
        std::fs::create_dir_all(root.join(".dockyard-restore/new-0")).unwrap();
        std::fs::set_permissions(
            root.join(".dockyard-restore"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(root.join(".dockyard-restore/new-0/restored"), "x").unwrap();
        // The app made `uploads` a symlink to a directory outside its mount; the journal restores
        // `uploads/2024`.
        symlink(&outside, root.join("uploads")).unwrap();
        std::fs::create_dir(outside.join("2024")).unwrap();
        let before_2024 = tree(&outside);
        let spec_path = tmp.path().join("spec");
        std::fs::write(
            &spec_path,
            format!(
                "path 0 0 0 755 0 {}\n",
                dockyard::archive::names::octal_escape(b"uploads/2024")
            ),
        )
        .unwrap();
        let r = run(
            sh,
            &restore("commit", &root, "staging", &root_of(&spec_path)),
            tmp.path(),
        );
        assert_ne!(r.code, 0, "{sh:?}");
        assert!(
            r.stderr.contains("passes through a symlink"),
            "{}",
            r.stderr
        );
        assert_eq!(tree(&outside), before_2024, "{sh:?}");
        assert_ne!(before, before_2024);
    }
}

#[test]
fn restore_moves_staged_single_files_over_live_ones() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join(".app.conf.dockyard-restore");
        let live = tmp.path().join("app.conf");
        std::fs::write(&staged, "new").unwrap();
        std::fs::write(&live, "old").unwrap();
        let args = vec!["move".into(), root_of(&staged), root_of(&live)];
        let r = run(sh, &shell::restore("files", args), tmp.path());
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "new");
        assert!(!staged.exists());
    }
}

/// `logs-begin.sh` with the arguments dockyard passes.
fn begin(dir: &Path, max_age: Option<u64>, method: &str, globs: &[&str]) -> Script {
    let r = dockyard::logs::scripts::Rotation {
        patterns: globs.iter().map(|g| g.to_string()).collect(),
        stamp: "20261128T023000.123Z".into(),
        now: 1_800_000_000,
        min_size: None,
        max_age,
        method: if method == "copytruncate" {
            dockyard::logs::reopen::Reopen::CopyTruncate
        } else {
            dockyard::logs::reopen::Reopen::None
        },
    };
    dockyard::logs::scripts::begin(dir.to_str().unwrap(), "h 1 0 r 0", None, Some(&r))
}

#[test]
fn logs_rotate_hostile_names_and_skip_symlinks() {
    for sh in SHELLS {
        for method in ["rename", "copytruncate"] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("logs");
            std::fs::create_dir(&dir).unwrap();
            for n in [
                "-f.log",
                "a b.log",
                "$(touch PWNED).log",
                "it's.log",
                "--.log",
            ] {
                std::fs::write(dir.join(n), "line\n").unwrap();
            }
            let secret = tmp.path().join("secret");
            std::fs::write(&secret, "root only\n").unwrap();
            symlink(&secret, dir.join("evil.log")).unwrap();
            let r = run(sh, &begin(&dir, None, method, &["*.log"]), &dir);
            assert_eq!(r.code, 0, "{sh:?} {method}: {}", r.stderr);
            let records = dockyard::logs::scripts::records(&r.stdout);
            let rotated: Vec<&str> = dockyard::logs::scripts::tagged(&records, "ROTATED").collect();
            assert_eq!(
                rotated.len(),
                5,
                "{sh:?} {method}: {records:?} {}",
                r.stderr
            );
            assert!(
                rotated.contains(&"-f.log.20261128T023000.123Z"),
                "{records:?}"
            );
            let skipped: Vec<&str> = dockyard::logs::scripts::tagged(&records, "SKIPPED").collect();
            assert!(
                skipped.iter().any(|s| s.starts_with("evil.log:")),
                "{records:?}"
            );
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only\n");
            assert!(!dir.join("PWNED").exists() && !tmp.path().join("PWNED").exists());
            assert_eq!(
                dockyard::logs::scripts::files(&records).len(),
                5,
                "{records:?}"
            );
        }
    }
}

#[test]
fn logs_state_is_never_read_into_arithmetic_or_written_through_a_symlink() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir_all(dir.join(".dockyard")).unwrap();
        std::fs::write(dir.join("app.log"), "line\n").unwrap();
        std::fs::write(dir.join("web.log"), "line\n").unwrap();
        // The app controls the volume: a "last rotation" that would run code under bash.
        std::fs::write(
            dir.join(".dockyard/last-app.log"),
            format!("size[$(id>{}/pwned)]\n", dir.display()),
        )
        .unwrap();
        // ...and a state file symlinked to a file outside.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        symlink(&victim, dir.join(".dockyard/last-web.log")).unwrap();
        let r = run(sh, &begin(&dir, Some(3600), "rename", &["*.log"]), &dir);
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        assert!(
            !dir.join("pwned").exists(),
            "{sh:?}: code from the volume ran"
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "keep me\n",
            "{sh:?}"
        );
        assert!(
            !std::fs::symlink_metadata(dir.join(".dockyard/last-web.log"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

#[test]
fn logs_refuse_a_symlinked_state_dir() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("app.log"), "line\n").unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, dir.join(".dockyard")).unwrap();
        let r = run(sh, &begin(&dir, None, "rename", &["*.log"]), &dir);
        assert_eq!(r.code, 4, "{sh:?}: {}", r.stderr);
        assert!(r.stderr.contains("symlink"), "{}", r.stderr);
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert!(dir.join("app.log").exists(), "nothing rotated");
    }
}

#[test]
fn logs_finish_deletes_only_unchanged_files_and_releases_its_own_lock() {
    for sh in SHELLS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir_all(dir.join(".dockyard/lock")).unwrap();
        std::fs::write(dir.join(".dockyard/lock/owner"), "h 1 0 r 0\n").unwrap();
        std::fs::write(dir.join("-f.log.x"), "12345").unwrap();
        std::fs::write(dir.join("grew.log.x"), "123456").unwrap();
        let s = dockyard::logs::scripts::finish(
            dir.to_str().unwrap(),
            "h 1 0 r 0",
            &[
                ("-f.log.x".into(), 5, "k1".into()),
                ("grew.log.x".into(), 5, "k2".into()),
            ],
            &[],
        );
        let r = run(sh, &s, &dir);
        assert_eq!(r.code, 0, "{sh:?}: {}", r.stderr);
        let records = dockyard::logs::scripts::records(&r.stdout);
        assert_eq!(
            records,
            vec![
                "DELETED -f.log.x".to_string(),
                "KEPT grew.log.x".to_string()
            ]
        );
        assert!(!dir.join(".dockyard/lock").exists());
        let log = std::fs::read_to_string(dir.join(".dockyard/shipped.log")).unwrap();
        assert!(log.contains("-f.log.x 5 k1"), "{log}");
    }
}

/// Runs `remote.sh OP DIR ARG...` in `home` (where ssh starts) with `input` on stdin.
fn remote(shell: &[&str], home: &Path, op: &str, dir: &str, args: &[&[u8]], input: &[u8]) -> Ran {
    remote_in(shell, home, None, op, dir, args, input)
}

/// [`remote`] with `PATH` set to `path`.
fn remote_in(
    shell: &[&str],
    home: &Path,
    path: Option<&str>,
    op: &str,
    dir: &str,
    args: &[&[u8]],
    input: &[u8],
) -> Ran {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let script = shell::remote(op, dir, &[]);
    let mut command = Command::new(shell[0]);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command
        .args(&shell[1..])
        .arg("-c")
        .arg(script.text)
        .arg(script.name)
        .args(&script.args)
        .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
        .current_dir(home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `remote.sh list`'s lines as (name, size): `SIZE ./NAME` from stat, or an `ls -ln` line (the
/// size in its fifth field, `./NAME` after its eighth). The second line of a name that holds a
/// newline is left out.
fn listing(out: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut got: Vec<(Vec<u8>, u64)> = out
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let at = line.windows(3).position(|w| w == b" ./")?;
            let fields: Vec<&[u8]> = line[..at]
                .split(|b| *b == b' ')
                .filter(|f| !f.is_empty())
                .collect();
            let size = if fields.len() == 1 {
                fields[0]
            } else {
                fields[4]
            };
            let size = std::str::from_utf8(size).unwrap().parse().unwrap();
            Some((line[at + 3..].to_vec(), size))
        })
        .collect();
    got.sort();
    got
}

#[test]
fn remote_listing_gives_sizes_with_stat_or_without_it() {
    // A `stat` that fails, as a BSD one does on -c: the listing falls back to `ls -ln`.
    let fake = tempfile::tempdir().unwrap();
    std::fs::write(fake.path().join("stat"), "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(
        fake.path().join("stat"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let without_stat = format!(
        "{}:{}",
        fake.path().display(),
        std::env::var("PATH").unwrap()
    );
    for sh in SHELLS {
        for path in [None, Some(without_stat.as_str())] {
            let home = tempfile::tempdir().unwrap();
            let h = home.path();
            let d = h.join("b");
            std::fs::create_dir_all(d.join("logs/web/2026")).unwrap();
            std::fs::write(d.join("a b"), "abc").unwrap();
            std::fs::write(d.join("-f"), "").unwrap();
            std::fs::write(d.join("logs/web/2026/x.zst"), "x").unwrap();
            std::fs::write(d.join("logs/top"), "tt").unwrap();
            symlink("/etc/hostname", d.join("link")).unwrap();
            let run = |args: &[&[u8]]| {
                let r = remote_in(sh, h, path, "list", "b", args, b"");
                assert_eq!(r.code, 0, "{sh:?} {path:?}: {}", r.stderr);
                listing(&r.stdout)
            };
            assert_eq!(
                run(&[]),
                [(b"-f".to_vec(), 0), (b"a b".to_vec(), 3)],
                "{sh:?} {path:?}"
            );
            assert_eq!(
                run(&[b"logs"]),
                [
                    (b"logs/top".to_vec(), 2),
                    (b"logs/web/2026/x.zst".to_vec(), 1)
                ],
                "{sh:?} {path:?}"
            );
            assert!(run(&[b"none"]).is_empty(), "{sh:?} {path:?}");
            let r = remote_in(sh, h, path, "list", "missing", &[], b"");
            assert!(r.code == 0 && r.stdout.is_empty(), "{sh:?}: {}", r.stderr);
        }
    }
}

#[test]
fn remote_operations_treat_every_name_as_a_name() {
    for sh in SHELLS {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        // A directory name full of shell syntax, relative to the home directory.
        let dir = "b$(touch PWNED)'c d";
        let ok = |r: Ran, what: &str| {
            assert_eq!(r.code, 0, "{sh:?} {what}: {}", r.stderr);
            r.stdout
        };
        ok(remote(sh, h, "prepare", dir, &[], b""), "prepare");
        let mut want = Vec::new();
        for (i, n) in NAMES
            .iter()
            .filter(|n| !n.starts_with(b".") && !n.starts_with(b"-"))
            .enumerate()
        {
            let data = format!("object {i}\n");
            let temp = [b".", *n, b".partial"].concat();
            ok(
                remote(sh, h, "put", dir, &[&temp, b""], data.as_bytes()),
                "put",
            );
            let size = data.len().to_string();
            ok(
                remote(sh, h, "finish", dir, &[&temp, n, size.as_bytes()], b""),
                "finish",
            );
            let got = ok(remote(sh, h, "get", dir, &[n], b""), "get");
            assert_eq!(got, data.as_bytes(), "{sh:?} {:?}", name(n));
            want.push(n.to_vec());
        }
        // A nested object, and what list and list-under see.
        ok(
            remote(
                sh,
                h,
                "put",
                dir,
                &[b"logs/web/.x.partial", b"logs/web"],
                b"l",
            ),
            "put nested",
        );
        ok(
            remote(
                sh,
                h,
                "finish",
                dir,
                &[b"logs/web/.x.partial", b"logs/web/x", b"1"],
                b"",
            ),
            "finish nested",
        );
        // Each object once with its size, nested ones only when their folder is asked for.
        let listed = listing(&ok(remote(sh, h, "list", dir, &[], b""), "list"));
        want.sort();
        // A name holding a newline lists as two lines; everything else lists as itself.
        for w in want.iter().filter(|w| !w.contains(&b'\n')) {
            let size = std::fs::metadata(h.join(dir).join(name(w))).unwrap().len();
            assert!(
                listed.contains(&(w.clone(), size)),
                "{sh:?}: {:?} not listed",
                name(w)
            );
        }
        let under = listing(&ok(
            remote(sh, h, "list", dir, &[b"logs"], b""),
            "list logs",
        ));
        assert_eq!(under, [(b"logs/web/x".to_vec(), 1)], "{sh:?}");
        // A short upload is refused and leaves nothing; a missing object is exit 44.
        ok(
            remote(sh, h, "put", dir, &[b".short.partial", b""], b"abc"),
            "put short",
        );
        let r = remote(
            sh,
            h,
            "finish",
            dir,
            &[b".short.partial", b"short", b"10"],
            b"",
        );
        assert!(
            r.code != 0 && r.stderr.contains("uploaded 3 bytes, sent 10"),
            "{}",
            r.stderr
        );
        assert_eq!(remote(sh, h, "get", dir, &[b"short"], b"").code, 44);
        assert_eq!(remote(sh, h, "delete", dir, &[b"nothing"], b"").code, 44);
        // A symlink to a file outside is not read through.
        symlink("/etc/hostname", h.join(dir).join("link")).unwrap();
        assert_eq!(
            remote(sh, h, "get", dir, &[b"link"], b"").code,
            44,
            "{sh:?}"
        );
        ok(remote(sh, h, "delete", dir, &[b"a b"], b""), "delete");
        assert!(!h.join(dir).join("a b").exists());
        // A stale temp file (no writer holds its lock) is removed and named.
        std::fs::write(h.join(dir).join(".old.partial"), "x").unwrap();
        let stale = ok(
            remote(sh, h, "remove-stale", dir, &[b".partial"], b""),
            "remove-stale",
        );
        assert_eq!(stale, b".old.partial\n", "{sh:?}");
        assert!(
            !h.join("PWNED").exists() && !h.join(dir).join("PWNED").exists(),
            "{sh:?}: code ran"
        );
        let mode = std::fs::metadata(h.join(dir)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{sh:?}");
    }
}
