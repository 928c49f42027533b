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

/// How it ended, in a word or two.
fn status(n: &Notice) -> &'static str {
    if n.ok {
        "succeeded"
    } else if n.skipped {
        "skipped (another run holds the lock)"
    } else {
        "FAILED"
    }
}

/// What the notice is about: `job media`, or a command run on its own, `backup of web` (`prune
/// at /var/backups/dockyard` for every container).
fn subject(n: &Notice) -> String {
    match (n.one_off, n.container.is_empty(), &n.destination) {
        (false, _, _) => format!("job {}", n.job),
        (true, false, _) => format!("{} of {}", n.job, n.container),
        (true, true, Some(dest)) => format!("{} at {dest}", n.job),
        (true, true, None) => n.job.clone(),
    }
}

/// A one-line title: `dockyard: job media FAILED on host1`, `dockyard: backup of web succeeded
/// on host1`.
pub fn title(n: &Notice) -> String {
    format!("dockyard: {} {} on {}", subject(n), status(n), host())
}

/// The text: what happened, each destination, and the command that shows more.
pub fn text(n: &Notice) -> String {
    let outcome = status(n);
    let mut out = if n.one_off {
        format!("dockyard {} {outcome} after {:.1} s", subject(n), n.seconds)
    } else {
        format!(
            "Job {} (container {}) {outcome} after {:.1} s",
            n.job, n.container, n.seconds
        )
    };
    match &n.error {
        Some(e) => out.push_str(&format!(": {e}\n")),
        // A prune or a log run on its own writes no archive to count.
        None if n.one_off && n.bytes == 0 => out.push_str(".\n"),
        None => out.push_str(&format!(", {} written.\n", human_bytes(n.bytes))),
    }
    if n.error.is_some() && n.bytes > 0 {
        out.push_str(&format!(
            "{} written where it succeeded.\n",
            human_bytes(n.bytes)
        ));
    }
    // A command run on its own about a container: where (its subject says where otherwise).
    if let (true, false, Some(dest)) = (
        n.destinations.is_empty(),
        n.container.is_empty(),
        &n.destination,
    ) {
        out.push_str(&format!("Destination: {dest}\n"));
    }
    for d in &n.destinations {
        let how = match (&d.backup_id, &d.error) {
            (_, Some(e)) => format!("FAILED: {e}"),
            (Some(id), None) => format!("ok, backup {id}"),
            (None, None) => "ok".into(),
        };
        out.push_str(&format!("- {}: {how}\n", d.name));
    }
    if n.skipped {
    } else if !n.ok && n.one_off {
        out.push_str(&format!(
            "To look further, run `{}` by hand (add -v for every step).\n",
            n.command
        ));
    } else if !n.ok {
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
    let destination = match &n.destination {
        Some(d) => d.clone(),
        None => n
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    };
    json!({
        "version": 1,
        "result": if n.ok { "success" } else if n.skipped { "skipped" } else { "failure" },
        "ok": n.ok,
        "host": host(),
        "job": n.job,
        "one_off": n.one_off,
        "container": (!n.container.is_empty()).then_some(&n.container),
        "destination": destination,
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
