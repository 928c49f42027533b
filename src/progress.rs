//! Progress on long work: a live line on a terminal, nothing otherwise — cron gets the one
//! summary line the command prints at the end. With a known total (an archive's size, the logs to
//! ship) it is a bar with percentage, rate and ETA; without one (a backup: the engine does not
//! tell a volume's size cheaply) it counts bytes read, the rate and the compressed size.

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
    /// What the source holds, when it is learnt along the way (the agent's quick count); 0 until
    /// then.
    pub total: Arc<AtomicU64>,
    started: Instant,
    bar: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    /// Starts counting; shows a bar only if `show` and stderr is a terminal.
    pub fn start(label: String, show: bool) -> Progress {
        Progress::sized(label, None, show)
    }

    /// Counts toward `total` bytes read when it is known (a bar with percentage, rate and ETA),
    /// or just counts (bytes read, rate, compressed size); shows it only if `show` and stderr is a
    /// terminal.
    pub fn sized(label: String, total: Option<u64>, show: bool) -> Progress {
        let read = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let learnt = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::new(total),
                    "{prefix} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                ),
                None => (
                    ProgressBar::new_spinner(),
                    "{spinner} {prefix} {msg} [{elapsed}]",
                ),
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(label);
            bar.tick();
            let (r, w, b, l) = (read.clone(), written.clone(), bar.clone(), learnt.clone());
            let ticker = tokio::spawn(async move {
                loop {
                    let read = r.load(Ordering::Relaxed);
                    match total {
                        Some(total) => b.set_position(read.min(total)),
                        None => {
                            let secs = started.elapsed().as_secs_f64().max(0.001);
                            let of = match l.load(Ordering::Relaxed) {
                                0 => String::new(),
                                total => format!(
                                    " of ~{} ({}%)",
                                    HumanBytes(total),
                                    (read * 100 / total).min(100)
                                ),
                            };
                            b.set_message(format!(
                                "read {}{of} ({}/s) → {} compressed",
                                HumanBytes(read),
                                HumanBytes((read as f64 / secs) as u64),
                                HumanBytes(w.load(Ordering::Relaxed))
                            ));
                            b.tick();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            (bar, ticker)
        });
        Progress {
            read,
            written,
            total: learnt,
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
