//! Named fault-injection points, so crash and race tests reach their instant by name instead of
//! by a sleep. `DOCKYARD_FAULT=point[=kill],…` makes dockyard stop at `point`: it writes
//! `$DOCKYARD_FAULT_DIR/reached-<point>` and waits until `release-<point>` appears there, or
//! with `=kill` it kills itself with SIGKILL on the spot. Helper containers get the same
//! variable: their scripts and the agent stop at their own points, mark
//! `/.dockyard-fault-reached-<point>` in the helper (visible to `docker diff`) and wait for
//! `/.dockyard-fault-release` there. Only debug builds (the ones the tests run) read the
//! variable; a release build compiles every point to nothing.

/// The variable naming the points.
pub const VAR: &str = "DOCKYARD_FAULT";

/// Stops here if `DOCKYARD_FAULT` names `point` (debug builds only).
pub async fn point(point: &str) {
    #[cfg(debug_assertions)]
    imp::point(point).await;
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// How far into an archive read (`read-midway`) or write (`write-midway`) those points stop
/// (16 MiB).
pub const MIDWAY: u64 = 16 << 20;

/// As [`point`], in a thread that may block (a reader feeding a blocking decoder).
pub fn point_blocking(point: &str) {
    #[cfg(debug_assertions)]
    imp::point_blocking(point);
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// Stops here, inside a helper (the agent), if `DOCKYARD_FAULT` names `point`; `true` when it
/// names it with `=fail` (the step is to fail there, as the scripts' points do).
pub fn in_helper(point: &str) -> bool {
    #[cfg(debug_assertions)]
    return imp::in_helper(point);
    #[cfg(not(debug_assertions))]
    {
        let _ = point;
        false
    }
}

/// The environment a helper container gets: `DOCKYARD_FAULT` when set (debug builds only).
pub fn helper_env() -> Vec<String> {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var_os(VAR) {
        return vec![format!("{VAR}={}", v.to_string_lossy())];
    }
    Vec::new()
}

#[cfg(debug_assertions)]
mod imp {
    use std::path::PathBuf;
    use std::time::Duration;

    /// The action set for `point`, if any: `Some("wait")`, `Some("kill")` or `Some("fail")`.
    fn named(point: &str) -> Option<String> {
        let all = std::env::var(super::VAR).ok()?;
        all.split(',').find_map(|item| match item.split_once('=') {
            Some((p, action)) if p == point => Some(action.to_string()),
            None if item == point => Some("wait".into()),
            _ => None,
        })
    }

    /// The action set for `point`, if any: `Some(true)` to kill, `Some(false)` to wait.
    fn action(point: &str) -> Option<bool> {
        named(point).map(|a| a == "kill")
    }

    fn dir() -> PathBuf {
        std::env::var_os("DOCKYARD_FAULT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    }

    pub async fn point(point: &str) {
        let Some(kill) = action(point) else {
            return;
        };
        eprintln!("dockyard-fault {point}");
        if kill {
            // SAFETY: kill(2) on this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        let _ = std::fs::write(dir().join(format!("reached-{point}")), b"");
        let release = dir().join(format!("release-{point}"));
        while !release.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn point_blocking(point: &str) {
        let Some(kill) = action(point) else {
            return;
        };
        eprintln!("dockyard-fault {point}");
        if kill {
            // SAFETY: kill(2) on this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        let _ = std::fs::write(dir().join(format!("reached-{point}")), b"");
        let release = dir().join(format!("release-{point}"));
        while !release.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Nothing is said on stderr: the agent's stderr carries its protocol's frames only. The
    // mark file in the helper is what tests wait for.
    pub fn in_helper(point: &str) -> bool {
        match named(point).as_deref() {
            None => return false,
            Some("fail") => return true,
            Some(_) => {}
        }
        let _ = std::fs::write(format!("/.dockyard-fault-reached-{point}"), b"");
        while !std::path::Path::new("/.dockyard-fault-release").exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}
