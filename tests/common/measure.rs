//! Peak memory of one dockyard run, measured by GNU time, for tests that bound it.

use std::process::Command;

use super::dockyard_cmd;

/// Runs dockyard with `args` (and extra environment `env`) under GNU time; returns (exit code,
/// stdout, stderr, peak RSS in KiB) of dockyard alone. (wait4 on a child of this process would
/// count this process's own peak: the child starts as a vfork of it.)
pub fn run_measured(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String, u64) {
    let dir = tempfile::tempdir().unwrap();
    let rss_file = dir.path().join("rss");
    let cmd = dockyard_cmd(args, env);
    let program = cmd.get_program().to_owned();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(program)
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
    for (k, v) in cmd.get_envs() {
        if v.is_none() {
            timed.env_remove(k);
        }
    }
    let out = timed.output().expect("GNU time runs (Debian package time)");
    let rss = std::fs::read_to_string(&rss_file).unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        rss.trim()
            .lines()
            .last()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0),
    )
}
