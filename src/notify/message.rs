//! What a notification says: a title and a text a person reads, and the generic webhook's JSON
//! (docs/json.md, "Notifications").

use serde_json::{json, Value};

use super::Notice;

/// The host dockyard runs on, as the kernel names it.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this host".into())
}

/// How the job ended, in a word or two.
fn status(n: &Notice) -> &'static str {
    if n.ok {
        "succeeded"
    } else if n.skipped {
        "skipped (another run holds the lock)"
    } else {
        "FAILED"
    }
}

/// A one-line title: `dockyard: job media FAILED on host1`.
pub fn title(n: &Notice) -> String {
    format!("dockyard: job {} {} on {}", n.job, status(n), host())
}

/// The text: what happened, each destination, and the command that shows more.
pub fn text(n: &Notice) -> String {
    let mut out = format!(
        "Job {} (container {}) {} after {:.1} s",
        n.job,
        n.container,
        status(n),
        n.seconds
    );
    match &n.error {
        Some(e) => out.push_str(&format!(": {e}\n")),
        None => out.push_str(&format!(", {} written.\n", human_bytes(n.bytes))),
    }
    if n.error.is_some() && n.bytes > 0 {
        out.push_str(&format!(
            "{} written where it succeeded.\n",
            human_bytes(n.bytes)
        ));
    }
    for d in &n.destinations {
        let how = match (&d.backup_id, &d.error) {
            (_, Some(e)) => format!("FAILED: {e}"),
            (Some(id), None) => format!("ok, backup {id}"),
            (None, None) => "ok".into(),
        };
        out.push_str(&format!("- {}: {how}\n", d.name));
    }
    if !n.ok && !n.skipped {
        out.push_str(&format!(
            "To look further, run `{}` (it prints every step), or read the daemon's log (journalctl -u dockyard).\n",
            n.command
        ));
    }
    out
}

/// The generic webhook's body.
pub fn webhook(n: &Notice) -> Value {
    let ids: Vec<&str> = n
        .destinations
        .iter()
        .filter_map(|d| d.backup_id.as_deref())
        .collect();
    json!({
        "version": 1,
        "result": if n.ok { "success" } else if n.skipped { "skipped" } else { "failure" },
        "ok": n.ok,
        "host": host(),
        "job": n.job,
        "container": n.container,
        "destination": n.destinations.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "),
        "destinations": n.destinations,
        "backup_id": ids.first(),
        "error": n.error,
        "bytes": n.bytes,
        "duration_seconds": n.seconds,
        "finished": n.finished,
        "command": n.command,
        "title": title(n),
        "message": text(n),
    })
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
