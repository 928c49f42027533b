//! Progress on long work: a live line on a terminal (bytes read, rate, compressed size), nothing
//! otherwise — cron gets the one summary line the command prints at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Byte counters shared with the worker thread, and the bar that shows them.
pub struct Progress {
    /// Bytes read from the source (the engine's tar stream, or an archive).
    pub read: Arc<AtomicU64>,
    /// Bytes written to the destination (compressed).
    pub written: Arc<AtomicU64>,
    started: Instant,
    bar: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    /// Starts counting; shows a bar only if `show` and stderr is a terminal.
    pub fn start(label: String, show: bool) -> Progress {
        let read = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            bar.set_prefix(label);
            let (r, w, b) = (read.clone(), written.clone(), bar.clone());
            let ticker = tokio::spawn(async move {
                loop {
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    let read = r.load(Ordering::Relaxed);
                    b.set_message(format!(
                        "read {} ({}/s) → {} compressed",
                        HumanBytes(read),
                        HumanBytes((read as f64 / secs) as u64),
                        HumanBytes(w.load(Ordering::Relaxed))
                    ));
                    b.tick();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            (bar, ticker)
        });
        Progress {
            read,
            written,
            started,
            bar,
        }
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some((bar, ticker)) = self.bar {
            ticker.abort();
            bar.finish_and_clear();
        }
    }
}
