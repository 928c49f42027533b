//! What dockyard's log output on stderr may show, whatever `-v`, `-vv` or `RUST_LOG` ask for. The
//! Docker client library (bollard) logs whole HTTP bodies at debug and trace: an inspect response
//! holds the app's environment (`APP_DB_PASSWORD=…`), which must never reach stderr, cron mail or
//! a log shipper. So bollard's own lines show at info and above only; dockyard's own lines never
//! carry an inspect document (`ContainerInfo`'s `Debug` leaves it out).

use tracing::{Level, Metadata};

/// Whether a span or event may be logged at all (an extra filter over the level filter).
pub fn allowed(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("bollard") && *meta.level() > Level::INFO)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bollard_bodies_never_show_even_at_trace() {
        let out = Buffer::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(move || writer.clone())
            .finish()
            .with(filter_fn(super::allowed));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "bollard::docker", "Decoded into string: APP_DB_PASSWORD=a");
            tracing::trace!(target: "bollard::uri", "APP_DB_PASSWORD=b");
            tracing::info!(target: "bollard::docker", "connected");
            tracing::trace!(target: "dockyard::docker", "created helper");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("APP_DB_PASSWORD"), "{text}");
        assert!(
            text.contains("connected") && text.contains("created helper"),
            "{text}"
        );
    }
}
