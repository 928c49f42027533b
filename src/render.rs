//! The one writer of stdout, and of the final error. Text lines; or, with `--json`, exactly one
//! JSON document per invocation (`run` and `daemon`: JSON Lines, one event per line); and on
//! failure the error as `{"error": {"exit_code", "category", "message"}}` (docs/json.md).
//! A closed stdout (`dockyard list | head -1`) is a normal end, not an error.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Map, Value};

use crate::error::Category;

/// The version of every JSON shape dockyard prints; it changes when a field changes meaning or
/// goes away (new fields do not change it).
pub const JSON_VERSION: u32 = 1;

/// How results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// JSON on stdout instead of text.
    pub json: bool,
    /// With `json`: JSON Lines of events (`run`, `daemon`) instead of one document.
    pub lines: bool,
    /// Progress bar allowed (still only on a terminal).
    pub progress: bool,
    /// No text on stdout (`-q`).
    pub quiet: bool,
}

/// Writes stdout for one invocation.
#[derive(Debug)]
pub struct Renderer {
    output: Output,
    closed: AtomicBool,
    wrote_document: AtomicBool,
}

impl Renderer {
    /// A renderer for `output`.
    pub fn new(output: Output) -> Renderer {
        Renderer {
            output,
            closed: AtomicBool::new(false),
            wrote_document: AtomicBool::new(false),
        }
    }

    /// The output style.
    pub fn output(&self) -> Output {
        self.output
    }

    /// One line of text on stdout (text mode only; nothing with `--json` or `-q`).
    pub fn line(&self, text: &str) {
        if !self.output.json && !self.output.quiet {
            self.write(text);
        }
    }

    /// The invocation's one JSON document (`--json`), with `version` added. A second call is a bug
    /// and is refused, so stdout always parses as one value.
    pub fn document(&self, value: Value) {
        if !self.output.json || self.wrote_document.swap(true, Ordering::SeqCst) {
            debug_assert!(self.output.json, "document() in text mode");
            return;
        }
        let text = serde_json::to_string_pretty(&versioned(value)).expect("serialisable");
        self.write(&text);
    }

    /// One JSON Lines event (`run`, `daemon` with `--json`): `{"type", "version", "job", ...}`.
    pub fn event(&self, kind: &str, job: Option<&str>, fields: Value) {
        if !self.output.json {
            return;
        }
        self.write(&event(kind, job, fields).to_string());
    }

    /// Bytes as they are (a completion script, a manual page), whatever the output style.
    pub fn raw(&self, bytes: &[u8]) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if out.write_all(bytes).and_then(|_| out.flush()).is_err() {
            self.closed.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the invocation's document is already out (then an error goes to stderr only).
    pub fn wrote_document(&self) -> bool {
        self.wrote_document.load(Ordering::SeqCst)
    }

    /// The final error on stdout with `--json`: one document, or one `error` event in JSON Lines.
    /// Nothing when the command already wrote its document (e.g. `verify` with `"ok": false`).
    pub fn error(&self, category: Category, message: &str) {
        if !self.output.json {
            return;
        }
        let body = error_body(category, message);
        if self.output.lines {
            self.event("error", None, json!({ "error": body }));
        } else if !self.wrote_document() {
            self.document(json!({ "error": body }));
        }
    }

    fn write(&self, text: &str) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush()) {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                tracing::warn!(error = %e, "cannot write to stdout");
            }
            self.closed.store(true, Ordering::Relaxed);
        }
    }
}

/// `{"exit_code", "category", "message"}`.
pub fn error_body(category: Category, message: &str) -> Value {
    json!({
        "exit_code": category.exit_code(),
        "category": category.name(),
        "message": message,
    })
}

/// One JSON Lines event: `{"type", "version", "job", ...fields}`.
pub fn event(kind: &str, job: Option<&str>, fields: Value) -> Value {
    let mut obj = Map::new();
    obj.insert("type".into(), kind.into());
    obj.insert("version".into(), JSON_VERSION.into());
    if let Some(job) = job {
        obj.insert("job".into(), job.into());
    }
    if let Value::Object(rest) = fields {
        obj.extend(rest);
    }
    Value::Object(obj)
}

/// `value` with `"version"` first, when it is an object (the one document of `--json`).
pub fn versioned(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut obj = Map::new();
            obj.insert("version".into(), JSON_VERSION.into());
            obj.extend(fields);
            Value::Object(obj)
        }
        other => other,
    }
}

/// Whether stderr gets colour: only on a terminal, and never with `NO_COLOR` set (no-color.org).
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_the_version_first() {
        let v = versioned(json!({"ok": true}));
        assert_eq!(v.to_string(), r#"{"version":1,"ok":true}"#);
    }

    #[test]
    fn an_error_body_names_code_and_category() {
        let b = error_body(Category::Destination, "cannot write /b");
        assert_eq!(
            b,
            json!({"exit_code": 4, "category": "destination", "message": "cannot write /b"})
        );
    }
}
