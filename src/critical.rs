//! Critical sections: work that a signal must not cut short, because stopping halfway would leave
//! a volume neither old nor new (a restore's swap) or a destination with an archive but no
//! manifest. SIGTERM/SIGINT during one is noted, and the process stops once it ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts the critical sections in progress.
#[derive(Clone, Default)]
pub struct Critical(Arc<Inner>);

#[derive(Default)]
struct Inner {
    count: AtomicUsize,
    idle: Notify,
}

/// One critical section; it ends when dropped.
pub struct Guard(Critical);

impl Critical {
    /// Begins a critical section.
    pub fn enter(&self) -> Guard {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        Guard(self.clone())
    }

    /// Whether any critical section is in progress.
    pub fn active(&self) -> bool {
        self.0.count.load(Ordering::SeqCst) > 0
    }

    /// Waits until no critical section is in progress.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.active() {
                return;
            }
            notified.await;
        }
    }
}

impl Guard {
    /// Keeps the section open until the process ends: what the command does from here on (a
    /// restore that is done, reporting so) is not cut short by a signal either.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0 .0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0 .0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_every_section_to_end() {
        let c = Critical::default();
        c.idle().await; // nothing in progress
        let a = c.enter();
        let b = c.enter();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.idle().await }
        });
        drop(a);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one section is still open");
        drop(b);
        waiter.await.unwrap();
        assert!(!c.active());
    }
}
