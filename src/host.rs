//! Facts about this host that several modules record or check: its name, and whether a process of
//! an earlier run is still alive (to tell stale helpers, temp files and uploads from live ones).

/// This host's name, recorded on helpers, upload markers and manifests.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether process `pid` exists on this host.
pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
