//! The host's side of what the agent says: its stderr, frames only ([`super::frame`]), decoded
//! as the engine's attach stream brings it in pieces. Progress goes to [`Counters`] at once;
//! warnings, errors and the closing report are kept, bounded, for when the agent has ended.
//! Nothing from the helper is trusted: a frame over [`MAX_FROM_AGENT`] is refused unread, and
//! what is not a frame ends the decoding; what came instead is kept as text (its tail) and
//! reported as such, naming the container.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::frame::{Decoder, FrameError, Message, Report, MAX_FROM_AGENT};
use super::spool::Spool;
use super::{ERROR, REFUSED};

/// Where the agent's progress goes: bytes it has packed so far, and the quick count of what its
/// paths hold (0 until known).
#[derive(Clone, Default)]
pub struct Counters {
    /// Uncompressed bytes packed so far.
    pub read: Arc<AtomicU64>,
    /// What the paths hold, by the agent's quick count.
    pub total: Arc<AtomicU64>,
}

/// How much of the agent's warnings and errors is kept: 1 MiB, however long an agent failing in
/// a loop (or a hostile helper) goes on.
const KEPT: usize = 1 << 20;

/// How much text that is not a frame is kept (its tail), and of a job's stdout lines.
const TEXT: usize = 64 << 10;

/// What the agent said, as it arrives.
pub struct Said {
    decoder: Decoder,
    counters: Counters,
    /// The container the helper serves, for messages.
    container: String,
    warnings: Vec<String>,
    /// Error lines as shown: the agent's own after [`ERROR`], then anything else.
    errors: Vec<String>,
    refused: Option<String>,
    report: Option<Report>,
    /// Whether the agent said an error of its own (so it ran).
    ran: bool,
    /// Bytes kept in `warnings` and `errors`, and messages left out past [`KEPT`].
    kept: usize,
    left_out: u64,
    /// Once a frame could not be read: why, and the text that came instead (its tail).
    broken: Option<(FrameError, VecDeque<u8>)>,
    /// The tail of its stdout as text, for a job whose stdout is not an archive.
    stdout: VecDeque<u8>,
    ended: bool,
    index: Option<Spool>,
    deleted: Option<Spool>,
}

/// What the agent said, once it has ended.
#[derive(Debug, Default)]
pub struct Heard {
    /// Its closing report, if it sent one.
    pub report: Option<Report>,
    /// Its error lines (its own, then what else came, then a note if it broke the protocol).
    pub errors: Vec<String>,
    /// Its message, if it refused the archive's content.
    pub refused: Option<String>,
    /// Whether it said an error of its own: it ran, and failed.
    pub ran: bool,
    /// Its stdout's last lines (a swap's `PHASE` lines), for a failure's message.
    pub stdout_lines: Vec<String>,
    /// The file index it sent (pack).
    pub index: Option<Spool>,
    /// The deletion list it sent (an incremental pack).
    pub deleted: Option<Spool>,
}

impl Said {
    /// Nothing said yet by the agent in the helper for `container`; progress to `counters`.
    pub fn new(container: &str, counters: Counters) -> Said {
        Said {
            decoder: Decoder::new(MAX_FROM_AGENT),
            counters,
            container: container.to_string(),
            warnings: Vec::new(),
            errors: Vec::new(),
            refused: None,
            report: None,
            ran: false,
            kept: 0,
            left_out: 0,
            broken: None,
            stdout: VecDeque::new(),
            ended: false,
            index: None,
            deleted: None,
        }
    }

    /// Takes the next piece of its stderr.
    pub fn stderr(&mut self, data: &[u8]) {
        if let Some((_, text)) = &mut self.broken {
            push_tail(text, data);
            return;
        }
        self.decoder.push(data);
        loop {
            match self.decoder.next() {
                Ok(Some(message)) => self.take(message),
                Ok(None) => break,
                Err(e) => {
                    let mut text = VecDeque::new();
                    push_tail(&mut text, &self.decoder.rest());
                    self.broken = Some((e, text));
                    break;
                }
            }
        }
    }

    /// Takes the next piece of its stdout, when that is text (not an archive).
    pub fn stdout(&mut self, data: &[u8]) {
        push_tail(&mut self.stdout, data);
    }

    fn take(&mut self, message: Message) {
        match message {
            Message::Progress(n) => self.counters.read.store(n, Relaxed),
            Message::Total(n) => self.counters.total.store(n, Relaxed),
            Message::Warning(w) => {
                if self.keep(&w) {
                    self.warnings.push(w);
                }
            }
            Message::Error(e) => self.error(format!("{ERROR}{e}"), true),
            Message::Refused(e) => {
                self.error(format!("{REFUSED}{e}"), true);
                self.refused.get_or_insert(e);
            }
            Message::Done(report) => self.report = Some(report),
            Message::Index(piece) => self.index.get_or_insert_default().push_base64(&piece),
            Message::Deleted(piece) => self.deleted.get_or_insert_default().push_base64(&piece),
            Message::Job(_) => self.error(
                format!(
                    "the helper for container {:?} sent a job, which only dockyard sends",
                    self.container
                ),
                false,
            ),
        }
    }

    fn error(&mut self, line: String, own: bool) {
        self.ran |= own;
        if self.keep(&line) {
            self.errors.push(line);
        }
    }

    /// Whether `text` still fits what is kept (counted if so).
    fn keep(&mut self, text: &str) -> bool {
        if self.kept + text.len() > KEPT {
            self.left_out += 1;
            return false;
        }
        self.kept += text.len();
        true
    }

    /// The agent has ended (its stderr is closed): what it said, its warnings logged. A stream
    /// that ended inside a frame, or with something else than frames, is an error line naming
    /// the container, with the text that came (as the agent's errors are).
    pub fn end(&mut self) -> Heard {
        if !std::mem::replace(&mut self.ended, true) {
            if self.broken.is_none() {
                if let Err(e) = self.decoder.end() {
                    let mut text = VecDeque::new();
                    push_tail(&mut text, &self.decoder.rest());
                    self.broken = Some((e, text));
                }
            }
            for w in &self.warnings {
                tracing::warn!("{w}");
            }
        }
        let mut errors = self.errors.clone();
        if let Some((e, text)) = &self.broken {
            let text = String::from_utf8_lossy(&text.iter().copied().collect::<Vec<u8>>())
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            errors.push(format!(
                "the helper for container {:?} sent what dockyard's agent does not send ({e}){}",
                self.container,
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            ));
        }
        if self.left_out > 0 {
            errors.push(format!("({} more messages left out)", self.left_out));
        }
        let stdout = String::from_utf8_lossy(&self.stdout.iter().copied().collect::<Vec<u8>>())
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        Heard {
            report: self.report.clone(),
            errors,
            refused: self.refused.clone(),
            ran: self.ran,
            stdout_lines: stdout,
            index: self.index.take(),
            deleted: self.deleted.take(),
        }
    }
}

/// Appends `data` to `tail`, keeping its last [`TEXT`] bytes.
fn push_tail(tail: &mut VecDeque<u8>, data: &[u8]) {
    let data = &data[data.len().saturating_sub(TEXT)..];
    tail.extend(data);
    let over = tail.len().saturating_sub(TEXT);
    tail.drain(..over);
}

/// The agent's stdout as a byte stream (the archive, for a pack over the attach stream); its
/// stderr goes to `said` on the way.
pub fn stdout_of(
    output: std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    said: Arc<Mutex<Said>>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    output.filter_map(move |item| {
        let said = said.clone();
        async move {
            match item {
                Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
                Ok(LogOutput::StdErr { message }) => {
                    said.lock().unwrap().stderr(&message);
                    None
                }
                Ok(_) => None,
                Err(e) => Some(Err(io::Error::other(format!(
                    "the engine's attach stream broke: {e}"
                )))),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::frame::encode;
    use super::*;

    fn said() -> Said {
        Said::new("web", Counters::default())
    }

    #[test]
    fn frames_split_anywhere_are_heard_whole_and_progress_goes_to_the_counters() {
        let mut s = said();
        let mut stream = Vec::new();
        for m in [
            Message::Total(1000),
            Message::Progress(500),
            Message::Warning("changed while read".into()),
            Message::Done(Report::Count(4)),
        ] {
            stream.extend(encode(&m));
        }
        for piece in stream.chunks(3) {
            s.stderr(piece);
        }
        assert_eq!(s.counters.total.load(Relaxed), 1000);
        assert_eq!(s.counters.read.load(Relaxed), 500);
        let heard = s.end();
        assert!(matches!(heard.report, Some(Report::Count(4))));
        assert!(heard.errors.is_empty() && !heard.ran);
    }

    #[test]
    fn the_agents_errors_read_as_they_did_on_stderr() {
        let mut s = said();
        s.stderr(&encode(&Message::Error("Permission denied".into())));
        s.stderr(&encode(&Message::Refused("sha256 mismatch".into())));
        let heard = s.end();
        assert_eq!(
            heard.errors,
            [
                "dockyard agent: Permission denied",
                "dockyard agent: refused: sha256 mismatch"
            ]
        );
        assert!(heard.ran);
        assert_eq!(heard.refused.as_deref(), Some("sha256 mismatch"));
    }

    #[test]
    fn what_is_not_a_frame_is_an_error_naming_the_container_with_its_text() {
        let mut s = said();
        s.stderr(&encode(&Message::Progress(1)));
        s.stderr(b"exec /.dockyard-agent: exec format error\n");
        s.stderr(&encode(&Message::Done(Report::Nothing)));
        let heard = s.end();
        assert!(heard.report.is_none() && !heard.ran);
        let e = &heard.errors[0];
        assert!(
            e.starts_with("the helper for container \"web\" sent what dockyard's agent does not send (a message of")
                && e.contains("exec format error"),
            "{e}"
        );
        // Cut short: the same, saying so.
        let mut s = said();
        s.stderr(&encode(&Message::Warning("w".into()))[..5]);
        assert!(s.end().errors[0].contains("cut short"));
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let mut s = said();
        let line = "x".repeat(1000);
        for _ in 0..3000 {
            s.stderr(&encode(&Message::Error(line.clone())));
        }
        s.stderr(&vec![b'y'; 10 << 20]);
        let heard = s.end();
        let kept: usize = heard.errors.iter().map(String::len).sum();
        assert!(kept < KEPT + 2 * TEXT, "{kept}");
        assert!(heard
            .errors
            .last()
            .unwrap()
            .contains("more messages left out"));
    }
}
