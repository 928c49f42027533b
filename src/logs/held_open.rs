//! Which processes in the app container still hold a rotated log file open after the reopen: a
//! process writing there will lose its lines when the file ships and is deleted, and `tail -f`
//! (the seed's entrypoint) goes silent. Parses what `held-open.sh` lists.

use super::naming;

/// A process holding a rotated file open.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// Its pid in the container.
    pub pid: String,
    /// Its command name.
    pub command: String,
    /// The rotated file, as a path in the container.
    pub file: String,
}

/// The holders of rotated files in `dir` among `records` (NUL-separated pid, name, target).
pub fn holders(records: &[u8], dir: &str) -> Vec<Holder> {
    let dir = dir.trim_end_matches('/');
    open_files(records, |file| {
        file.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.contains('/') && naming::parse_rotated(name).is_some())
    })
}

/// The open files below any of `paths` among `records` (NUL-separated pid, name, target), but
/// for dockyard's own `work` directory at their top.
pub fn under(records: &[u8], paths: &[String], work: &str) -> Vec<Holder> {
    open_files(records, |file| {
        paths.iter().any(|p| {
            file.strip_prefix(p.trim_end_matches('/'))
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rel| !rel.is_empty() && rel.split('/').next() != Some(work))
        })
    })
}

/// The records whose file `keep` takes, sorted by file and pid, each once.
fn open_files(records: &[u8], keep: impl Fn(&str) -> bool) -> Vec<Holder> {
    let fields: Vec<String> = records
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let mut out: Vec<Holder> = fields
        .chunks_exact(3)
        .filter(|c| keep(&c[2]))
        .map(|c| Holder {
            pid: c[0].clone(),
            command: c[1].clone(),
            file: c[2].clone(),
        })
        .collect();
    out.sort_by(|a, b| (&a.file, &a.pid).cmp(&(&b.file, &b.pid)));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_files_below_the_restored_paths_count() {
        let listed = b"7\0gunicorn\0/srv/logs/access.log\0\
8\0sh\0/srv/media/.dockyard-restore/new-0/x\0\
9\0sh\0/srv/other/x\0\
3\0sh\0/srv/logsx/y\0";
        let found = super::under(
            listed,
            &["/srv/logs".into(), "/srv/media".into()],
            ".dockyard-restore",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file, "/srv/logs/access.log");
    }

    use super::*;

    #[test]
    fn only_rotated_files_in_the_log_directory_count() {
        let listed = b"7\0tail\0/srv/logs/app.log.20261128T020000.000Z\0\
7\0tail\0/srv/logs/app.log.20261128T020000.000Z\0\
9\0gunicorn\0/srv/logs/app.log\0\
9\0gunicorn\0/srv/other/x.log.20261128T020000.000Z\0\
3\0sh\0/srv/logs/sub/y.log.20261128T020000.000Z\0";
        assert_eq!(
            holders(listed, "/srv/logs/"),
            [Holder {
                pid: "7".into(),
                command: "tail".into(),
                file: "/srv/logs/app.log.20261128T020000.000Z".into()
            }]
        );
    }
}
