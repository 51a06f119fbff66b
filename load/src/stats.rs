//! What a latency run measures: per-request latencies in histograms (µs), counters, errors by
//! kind; and how they are printed (a live progress line, a table, one `RESULT {json}` line).
//!
//! Latency definitions (all instants on the generator's one monotonic clock):
//! - **added (issue 7)** = client's first `ai_response` chunk − the stub's first-chunk write;
//! - **added total** = (client's first chunk − scheduled send time) − (stub's first-chunk
//!   write − stub's request arrival): everything but the upstream's own think time, including
//!   client-side queueing of the open loop and the server's path to the upstream;
//! - **added from send** = the same, from the actual send instead of the scheduled one (the
//!   difference is the generator's own queueing and timer granularity);
//! - **ttfc** = client's first chunk − scheduled send time (what a user sees);
//! - **queue** = actual send − scheduled send (client-side wait for a free connection).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::stub::StubTimes;

/// Counters and histograms of one run step, shared by every connection task.
#[derive(Debug)]
pub struct Stats {
    /// Messages scheduled so far.
    pub scheduled: AtomicU64,
    /// Messages written to a connection.
    pub sent: AtomicU64,
    /// Messages sent later than scheduled by more than 2 ms (no free connection).
    pub delayed: AtomicU64,
    /// Requests whose first chunk arrived.
    pub first_chunks: AtomicU64,
    /// Replies completed (`done` frame / `[DONE]`).
    pub done: AtomicU64,
    /// Replies completed with every chunk seen.
    pub complete: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
    /// Requests that ended (done, error frame, connection lost).
    pub finished: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    added: Histogram<u64>,
    added_total: Histogram<u64>,
    added_from_send: Histogram<u64>,
    ttfc: Histogram<u64>,
    queue: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    unmatched: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Self {
        Self {
            scheduled: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            first_chunks: AtomicU64::new(0),
            done: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                added: histogram(),
                added_total: histogram(),
                added_from_send: histogram(),
                ttfc: histogram(),
                queue: histogram(),
                errors: BTreeMap::new(),
                unmatched: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A message was written at `sent_us`, scheduled for `scheduled_us`.
    pub fn sent(&self, scheduled_us: u64, sent_us: u64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let queue = sent_us.saturating_sub(scheduled_us);
        if queue > 2_000 {
            self.delayed.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.lock().queue.record(queue.max(1));
    }

    /// The first chunk of a request scheduled at `scheduled_us` and sent at `sent_us` arrived
    /// at `client_us`; the stub's times for it, if it recorded them.
    pub fn first_chunk(
        &self,
        scheduled_us: u64,
        sent_us: u64,
        client_us: u64,
        stub: Option<StubTimes>,
    ) {
        self.first_chunks.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let ttfc = client_us.saturating_sub(scheduled_us);
        let _ = inner.ttfc.record(ttfc.max(1));
        match stub {
            Some(s) => {
                let added = client_us.saturating_sub(s.first_chunk_us);
                let think = s.first_chunk_us.saturating_sub(s.received_us);
                let _ = inner.added.record(added.max(1));
                let _ = inner.added_total.record(ttfc.saturating_sub(think).max(1));
                let from_send = client_us.saturating_sub(sent_us).saturating_sub(think);
                let _ = inner.added_from_send.record(from_send.max(1));
            }
            None => inner.unmatched += 1,
        }
    }

    /// A reply completed; `all_chunks` when every chunk of it was seen.
    pub fn done(&self, all_chunks: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.finished();
        if all_chunks {
            self.complete.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A request ended without a reply (its error is counted separately).
    pub fn finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// An error of kind `kind` (an error frame's code, `connect`, `closed`, `timeout`, …).
    pub fn error(&self, kind: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.lock().errors.entry(kind.to_string()).or_default() += 1;
    }

    /// p99 of the total added latency so far, in ms.
    pub fn p99_total_ms(&self) -> f64 {
        let inner = self.lock();
        if inner.added_total.is_empty() {
            0.0
        } else {
            inner.added_total.value_at_quantile(0.99) as f64 / 1000.0
        }
    }

    /// Everything as JSON (latencies in ms).
    pub fn to_json(&self) -> Value {
        let inner = self.lock();
        let summary = |h: &Histogram<u64>| {
            let q =
                |p: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1000.0 };
            json!({
                "count": h.len(),
                "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
                "max_ms": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
                "mean_ms": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            })
        };
        json!({
            "scheduled": self.scheduled.load(Ordering::Relaxed),
            "sent": self.sent.load(Ordering::Relaxed),
            "delayed_client_side": self.delayed.load(Ordering::Relaxed),
            "first_chunks": self.first_chunks.load(Ordering::Relaxed),
            "done": self.done.load(Ordering::Relaxed),
            "complete": self.complete.load(Ordering::Relaxed),
            "errors_total": self.errors.load(Ordering::Relaxed),
            "errors": inner.errors,
            "unmatched_first_chunks": inner.unmatched,
            "added": summary(&inner.added),
            "added_total": summary(&inner.added_total),
            "added_from_send": summary(&inner.added_from_send),
            "ttfc": summary(&inner.ttfc),
            "queue": summary(&inner.queue),
        })
    }
}

/// Prints a latency summary row set from [`Stats::to_json`].
pub fn print_latency_table(report: &Value) {
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "max"
    );
    for (key, label) in [
        ("added", "added: client 1st chunk - stub 1st"),
        ("added_total", "added total (excl. upstream think)"),
        ("added_from_send", "added from actual send"),
        ("ttfc", "time to first chunk (from sched.)"),
        ("queue", "client-side queue (sent - sched.)"),
    ] {
        let h = &report[key];
        let f = |k: &str| h[k].as_f64().unwrap_or(0.0);
        println!(
            "  {:<34} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            label,
            f("p50_ms"),
            f("p90_ms"),
            f("p99_ms"),
            f("p999_ms"),
            f("max_ms")
        );
    }
}
