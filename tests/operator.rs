//! Fitting the operator's habits: shell completions that the shell parses, manual pages `man`
//! renders (one page, or one per command whose cross-references all exist), and a daemon that stops with exit 0 when SIGTERM finds it between jobs (systemd and
//! Compose read 130 as a failure).

mod common;

use std::process::Command;

use common::{dest_dir, dockyard, App};

#[test]
fn bash_parses_the_completion_script_and_it_completes_subcommands() {
    let script = dockyard(&["completions", "bash"]).ok();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dockyard.bash");
    std::fs::write(&file, &script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(dockyard res); COMP_CWORD=1; _dockyard dockyard res dockyard; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
        .output()
        .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(replies.trim(), "restore\nrestore-db", "{replies}");
    let bad = dockyard(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// Renders a roff page as `man` shows it (plain ASCII text, no formatting).
fn render_man(file: &std::path::Path) -> String {
    let out = Command::new("man")
        .args(["-l", file.to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "120")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.trim().is_empty(),
        "man -l {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Every command as typed (`["logs", "rotate"]`), found the way a user would: through the
/// "Commands:" lists of `--help`, without clap's `help`.
fn commands_from_help(parent: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = parent.to_vec();
    args.push("--help");
    let help = dockyard(&args).ok();
    let mut found = Vec::new();
    let Some((_, list)) = help.split_once("Commands:\n") else {
        return found;
    };
    for line in list.lines().take_while(|l| !l.trim().is_empty()) {
        // "  backup       Back up ..." (a name starts at column 2; wrapped text is indented more)
        let Some(name) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) else {
            continue;
        };
        let name = name.split_whitespace().next().unwrap();
        if name == "help" {
            continue;
        }
        let mut cmd: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
        cmd.push(name.to_string());
        let words: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let nested = commands_from_help(&words);
        found.push(cmd);
        found.extend(nested);
    }
    found
}

/// The long flags `dockyard <cmd> --help` lists (`--dry-run`, `--json`, ...).
fn long_flags(cmd: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    args.push("--help");
    // clap indents an option 2 columns ("  -q, --quiet") or 6 ("      --json"), its text more.
    dockyard(&args)
        .ok()
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split([',', ' ']).find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches('.').to_string()) // "-v, --verbose..."
        .collect()
}

/// Whether a rendered page lists `flag` as an option (a tag line, not a mention in some text).
fn lists_flag(text: &str, flag: &str) -> bool {
    // man sets tags at column 7 and their text at 14, so text never passes for a tag.
    text.lines()
        .filter_map(|l| l.strip_prefix("       "))
        .filter(|l| l.starts_with('-'))
        .any(|l| l.split([',', ' ', '=']).any(|w| w == flag))
}

/// The `name(1)` references in page `own`'s rendered text to pages whose name starts with
/// `dockyard`, leaving out the page's own name (its header and footer say it).
fn page_refs(own: &str, text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for (at, _) in text.match_indices("(1)") {
        let before = &text[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |i| i + 1);
        let name = &before[start..];
        if name.starts_with("dockyard") && name != own {
            refs.push(name.to_string());
        }
    }
    refs
}

#[test]
fn man_dir_writes_a_page_per_command_each_with_its_options_and_only_true_references() {
    let commands = commands_from_help(&[]);
    assert!(
        commands.iter().any(|c| c == &["config", "check"])
            && commands.iter().any(|c| c == &["logs", "rotate"]),
        "{commands:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let printed = dockyard(&["man", "--dir", dir.to_str().unwrap()]).ok();
    let mut want: Vec<String> = vec!["dockyard".into()];
    want.extend(commands.iter().map(|c| format!("dockyard-{}", c.join("-"))));
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut want_files: Vec<String> = want.iter().map(|p| format!("{p}.1")).collect();
    want_files.sort();
    assert_eq!(written, want_files, "one page per command, nothing else");
    assert_eq!(
        printed.lines().count(),
        written.len(),
        "it lists the files it wrote:\n{printed}"
    );
    let mut referenced = std::collections::BTreeSet::new();
    for (page, cmd) in want
        .iter()
        .zip(std::iter::once(vec![]).chain(commands.clone()))
    {
        let text = render_man(&dir.join(format!("{page}.1")));
        for flag in long_flags(&cmd) {
            assert!(
                lists_flag(&text, &flag),
                "{page}(1) lacks {flag} of `dockyard {}`:\n{text}",
                cmd.join(" ")
            );
        }
        for r in page_refs(page, &text) {
            assert!(
                want.contains(&r),
                "{page}(1) names {r}(1), which was not written"
            );
            referenced.insert(r);
        }
    }
    // Every command's page can be found from dockyard(1), directly or through its parent's page.
    for page in &want[1..] {
        assert!(referenced.contains(page), "no page names {page}(1)");
    }
    let restore = render_man(&dir.join("dockyard-restore.1"));
    assert!(
        restore.contains("SEE ALSO") && restore.contains("dockyard(1)"),
        "{restore}"
    );
    let main = render_man(&dir.join("dockyard.1"));
    assert!(
        main.contains("EXIT STATUS") && main.contains("130"),
        "{main}"
    );
}

#[test]
fn man_prints_one_page_with_every_commands_options_and_no_references_to_other_pages() {
    let page = dockyard(&["man"]).ok();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dockyard.1");
    std::fs::write(&file, &page).unwrap();
    let text = render_man(&file);
    for want in ["NAME", "dockyard", "EXIT STATUS", "130"] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert_eq!(page_refs("dockyard", &text), Vec::<String>::new(), "{text}");
    // Each command has a section of its own (a heading at column 0, up to the next one) that
    // holds each of its flags; the global ones are said once, at the top.
    let globals: Vec<String> = long_flags(&[])
        .into_iter()
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    for cmd in commands_from_help(&[]) {
        let heading = format!("DOCKYARD {}", cmd.join(" ").to_uppercase());
        let section = text
            .split_once(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no section {heading}:\n{text}"))
            .1;
        let end = section
            .lines()
            .scan(0, |at, l| {
                let here = *at;
                *at += l.len() + 1;
                Some((here, l))
            })
            .find(|(_, l)| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map_or(section.len(), |(at, _)| at);
        let section = &section[..end];
        for flag in long_flags(&cmd) {
            if globals.contains(&flag) {
                assert!(!lists_flag(section, &flag), "{heading} repeats {flag}");
            } else {
                assert!(
                    lists_flag(section, &flag),
                    "{heading} lacks {flag}:\n{section}"
                );
            }
        }
    }
}

#[test]
fn the_version_is_the_changelogs_newest_release_and_the_manuals() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        dockyard(&["--version"]).ok().trim(),
        format!("dockyard {version}")
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md")).unwrap();
    let newest = changelog
        .lines()
        .find(|l| l.starts_with("## [") && !l.starts_with("## [Unreleased]"))
        .expect("a release in CHANGELOG.md");
    assert!(
        newest.starts_with(&format!("## [{version}] - ")),
        "CHANGELOG.md's newest release is {newest:?}, the crate is {version}"
    );
    let page = dockyard(&["man"]).ok();
    assert!(page.contains(&format!("\"dockyard {version}\"")), "{page}");
}

#[test]
fn an_idle_daemon_stops_with_exit_0_on_sigterm() {
    let app = App::running("idle", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let cfg = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.yearly]\ncontainer = \"{}\"\ndestinations = [\"local\"]\nschedule = \"0 0 0 1 1 *\"\n",
            app.name
        ),
    );
    let daemon = common::daemon::Daemon::start(&cfg, &[]);
    // The first event says when the job runs next: the daemon is waiting.
    let event = daemon.next();
    assert_eq!(
        (&event["type"], &event["job"]),
        (&"scheduled".into(), &"yearly".into())
    );
    // SIGTERM at once, as systemd may stop a daemon that just started.
    let rest = daemon.stop();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn the_shipped_systemd_units_verify_cleanly() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed; nothing to check here");
        return;
    };
    assert!(probe.status.success());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/systemd");
    let units: Vec<_> = [
        "dockyard.service",
        "dockyard-run.service",
        "dockyard-run.timer",
    ]
    .iter()
    .map(|u| dir.join(u))
    .collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
    let timer = std::fs::read_to_string(&units[2]).unwrap();
    assert!(timer.contains("Persistent=true"), "{timer}");
}

#[test]
fn quiet_prints_nothing_on_success_and_still_says_what_failed() {
    let app = App::running("quiet", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    let r = dockyard(&["backup", &app.name, "--to", d, "-q"]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", ""),
        "a quiet success prints nothing"
    );
    assert_eq!(common::list(&dest).len(), 1);
    let r = dockyard(&["backup", "no-such-container-xyz", "--to", d, "--quiet"]);
    assert_eq!((r.code, r.stdout.as_str()), (3, ""));
    assert!(r.stderr.contains("no-such-container-xyz"), "{}", r.stderr);
}

#[test]
fn config_check_passes_a_good_file_and_names_every_problem_of_a_bad_one() {
    let app = App::running("check", &["/srv/media"]);
    let (tmp, dest) = dest_dir();
    let good = common::local_config(
        tmp.path(),
        &dest,
        &format!(
            "[jobs.media]\ncontainer = \"{}\"\ndestinations = [\"local\"]\npaths = [\"/srv/media\"]\nschedule = \"@daily\"\ntimezone = \"Asia/Tokyo\"\n",
            app.name
        ),
    );
    let out = dockyard(&["config", "check", "--config", good.to_str().unwrap()]).ok();
    let first = format!(
        "job media (backup): container {}, /srv/media -> local",
        app.name
    );
    for want in [
        first.as_str(),
        "schedule \"@daily\": next ",
        " 00:00 Asia/Tokyo",
        "destination local",
        "reachable, writable",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert_eq!(out.lines().last(), Some("ok"), "{out}");
    // The probe was written and removed.
    assert_eq!(std::fs::read_dir(&dest).unwrap().count(), 0);

    let missing = common::unique("gone");
    let tmp2 = tempfile::tempdir().unwrap();
    let blocked = tmp2.path().join("a-file");
    std::fs::write(&blocked, "not a directory").unwrap();
    let bad = common::local_config(
        tmp2.path(),
        &blocked.join("backups"),
        &format!(
            "[jobs.gone]\ncontainer = \"{missing}\"\ndestinations = [\"local\"]\n\
             [jobs.nopath]\ncontainer = \"{}\"\ndestinations = [\"local\"]\npaths = [\"/srv/nope\"]\n",
            app.name
        ),
    );
    let r = dockyard(&["config", "check", "--config", bad.to_str().unwrap()]);
    assert_eq!(
        r.code, 3,
        "the first problem (a missing container) decides: {}",
        r.stderr
    );
    for want in [
        "3 problem(s)".to_string(),
        format!("job gone: no such container: \"{missing}\""),
        "job nopath: /srv/nope is not in a volume or bind mount".into(),
        "destination local (".into(),
    ] {
        assert!(
            r.stderr.contains(want.as_str()),
            "no {want:?} in:\n{}",
            r.stderr
        );
    }
    let r = dockyard(&[
        "config",
        "check",
        "--config",
        bad.to_str().unwrap(),
        "--json",
    ]);
    let doc = common::one_document(&r.stdout);
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 3, "{doc}");
    assert_eq!(doc["jobs"][0]["container_found"], false);
    assert_eq!(doc["destinations"][0]["ok"], false);
    assert_eq!(doc["error"]["exit_code"], 3, "{doc}");
}

/// Runs dockyard with `args` on a pseudo-terminal (util-linux `script`); returns what it drew.
fn on_a_terminal(args: &[&str]) -> String {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_dockyard"))
        .chain(args.iter().copied())
        .map(|a| shell_words::quote(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{cmd}: {text}");
    text
}

#[test]
fn verify_and_restore_show_percentage_and_eta_on_a_terminal_and_nothing_off_it() {
    let app = App::running("progress", &["/srv/media"]);
    app.sh("dd if=/dev/urandom of=/srv/media/photo.jpg bs=1M count=8 2>/dev/null");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let drawn = on_a_terminal(&["verify", "latest", "--to", d]);
    assert!(
        drawn.contains("verify ") && drawn.contains('%') && drawn.contains("ETA"),
        "{drawn}"
    );
    let drawn = on_a_terminal(&["restore", &app.name, "--from", d, "--no-safety-backup"]);
    assert!(
        drawn.contains("restore into ") && drawn.contains('%') && drawn.contains("ETA"),
        "{drawn}"
    );
    // Off a terminal (cron, a pipe): the result line only.
    let plain = dockyard(&["verify", "latest", "--to", d]);
    assert!(
        !plain.stderr.contains("ETA") && !plain.stdout.contains("ETA"),
        "{}",
        plain.stderr
    );
    let none = on_a_terminal(&["verify", "latest", "--to", d, "--no-progress"]);
    assert!(!none.contains("ETA"), "{none}");
}

#[test]
fn help_shows_each_command_only_its_options_and_one_name_for_a_backup() {
    let rotate = dockyard(&["logs", "rotate", "--help"]).ok();
    assert!(
        !rotate.contains("--s3-endpoint") && !rotate.contains("--ssh-config"),
        "{rotate}"
    );
    assert!(
        rotate.contains("Global options:") && rotate.contains("--json"),
        "{rotate}"
    );
    for cmd in ["completions", "man"] {
        let h = dockyard(&[cmd, "--help"]).ok();
        assert!(!h.contains("--s3-endpoint"), "{cmd}: {h}");
    }
    let backup = dockyard(&["backup", "--help"]).ok();
    let (own, rest) = backup
        .split_once("Remote destinations:")
        .expect("a remote heading");
    assert!(
        own.contains("--dry-run") && rest.contains("--s3-endpoint"),
        "{backup}"
    );
    assert!(rest.contains("Global options:"), "{backup}");
    let restore = dockyard(&["restore", "--help"]).ok();
    assert!(restore.contains("--backup <BACKUP>"), "{restore}");
    assert!(!restore.contains("--archive <"), "{restore}");
    let verify = dockyard(&["verify", "--help"]).ok();
    assert!(verify.contains("[BACKUP]"), "{verify}");
    // The older flag still works for scripts.
    let app = App::running("alias", &["/srv/media"]);
    app.sh("echo a > /srv/media/a");
    let (_tmp, dest) = dest_dir();
    let d = dest.to_str().unwrap();
    dockyard(&["backup", &app.name, "--to", d]).ok();
    let id = common::list(&dest)[0]["id"].as_str().unwrap().to_string();
    let old = dockyard(&[
        "restore",
        &app.name,
        "--archive",
        &id,
        "--from",
        d,
        "--dry-run",
    ])
    .ok();
    assert!(old.contains(&id), "{old}");
}
