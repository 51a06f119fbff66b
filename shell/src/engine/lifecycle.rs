//! The shutdown driver (seed fix #15): begins core's drain plan and carries out its effects —
//! stop accepting (readiness turns not-ready), let replies finish, close every connection with
//! 1001 "Server shutting down", flush storage, cut what is left at the deadline — and returns
//! when the plan says `Exit`, which is never later than the configured deadline.

use std::collections::VecDeque;
use std::sync::Arc;

use chatbox_core::shutdown::Effect;
use tokio::sync::mpsc;

use super::hub::Engine;

/// Close code and reason sent to every connection at shutdown (PROTOCOL.md §3.12).
pub const SHUTDOWN_CLOSE: (u16, &str) = (1001, "Server shutting down");

/// Longest wait for cut replies to send their error frame.
use chatbox_core::budgets::CUT_GRACE;

/// What happened during a shutdown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Replies cut at the drain deadline.
    pub cut_replies: usize,
    /// Connections dropped at the hard deadline.
    pub forced_connections: usize,
}

/// Runs the drain plan to its end.
pub async fn run(
    engine: Arc<Engine>,
    mut effects: mpsc::UnboundedReceiver<Effect>,
) -> ShutdownReport {
    let timeout = engine.config.server.shutdown_timeout;
    tracing::info!(?timeout, "shutdown started");
    let mut report = ShutdownReport::default();
    let mut pending: VecDeque<Effect> = engine.shutdown.begin(engine.clock.now(), timeout).into();
    loop {
        while let Some(effect) = pending.pop_front() {
            match effect {
                Effect::StopAccepting => engine.signal_stop(),
                Effect::CutReplies { count } => {
                    tracing::warn!(count, "cutting replies still in flight");
                    report.cut_replies += count;
                    engine.signal_cut();
                    // Let each cut reply queue its error frame before the close frames go out;
                    // bounded, so a stuck reply cannot hold the plan past its deadline.
                    let left = engine.shutdown.deadline() - engine.clock.now();
                    engine.replies.live().settled(CUT_GRACE.min(left / 2)).await;
                }
                Effect::CloseConnections => {
                    let count = engine.delivery.close_all(SHUTDOWN_CLOSE.0, SHUTDOWN_CLOSE.1);
                    tracing::info!(count, "closing connections");
                }
                Effect::FlushStorage => {
                    let flusher = Arc::clone(&engine);
                    engine.supervisor.spawn("flush-storage", async move {
                        if let Err(error) = flusher.persistence.flush().await {
                            tracing::error!(%error, "storage flush failed");
                        }
                        flusher
                            .forward_effects(flusher.shutdown.storage_flushed(flusher.clock.now()));
                    });
                }
                Effect::ForceClose { count } => {
                    tracing::warn!(count, "dropping connections at the shutdown deadline");
                    report.forced_connections += count;
                    // Flag first, then kick: a connection registering in between sees the flag.
                    engine.signal_force();
                    engine.delivery.kick_all();
                }
                Effect::Exit => {
                    // A reply finished while draining may have been resumed on another instance:
                    // its last frames must leave through the bus before the process ends.
                    let left = engine.shutdown.deadline() - engine.clock.now();
                    engine
                        .delivery
                        .flush_bus(chatbox_core::budgets::BUS_FLUSH_GRACE.min(left))
                        .await;
                    // The drained connections' fleet slots are released by the lease task; the
                    // process must not end before it sent them (bounded: else they expire).
                    let left = engine.shutdown.deadline() - engine.clock.now();
                    let grace = chatbox_core::budgets::CONNECTION_LEASE_RELEASE_GRACE.min(left);
                    if !engine.limits.leases_released(grace).await {
                        tracing::debug!(
                            "connection leases not all released; they expire by themselves"
                        );
                    }
                    tracing::info!(
                        cut_replies = report.cut_replies,
                        forced_connections = report.forced_connections,
                        "shutdown finished"
                    );
                    return report;
                }
            }
        }
        let deadline = engine.shutdown.poll_timeout().unwrap_or(chatbox_core::Instant::MAX);
        tokio::select! {
            received = effects.recv() => match received {
                Some(effect) => pending.push_back(effect),
                None => pending.extend(engine.shutdown.handle_timeout(engine.clock.now())),
            },
            _ = tokio::time::sleep_until(engine.clock.to_runtime(deadline)) => {
                pending.extend(engine.shutdown.handle_timeout(engine.clock.now()));
            }
        }
    }
}
