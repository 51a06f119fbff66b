//! A count of live things that can be awaited down to zero — used for replies in flight, so the
//! shutdown driver can let cut replies send their error frame before connections are closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Counter with "wait until zero".
#[derive(Debug, Default)]
pub struct Gauge {
    live: AtomicUsize,
    zero: Notify,
}

/// Decrements the gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard<'a>(&'a Gauge);

impl Gauge {
    /// Counts one more until the guard drops.
    pub fn enter(&self) -> GaugeGuard<'_> {
        self.live.fetch_add(1, Ordering::AcqRel);
        GaugeGuard(self)
    }

    /// How many are live.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until none is live, or `limit` passes. Returns whether it reached zero.
    pub async fn settled(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.zero.notified();
                if self.live() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}
