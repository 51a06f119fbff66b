//! `chatbox-load churn`: sessions created and ended in a loop, and what stays resident.
//!
//! Each worker is one user on one WebSocket. A cycle sends a `user_message` with a fresh
//! session id (the server creates a session, stores the message, streams the stub's reply),
//! waits for the `done` frame, then ends the session with `POST {P}/sessions/{id}/end`; the
//! TTL sweeper drops it `SESSION_TTL` later. The scenario shortens the session timings
//! (`SESSION_TTL=10s`, `RECONNECT_TIMEOUT=10s`, `SESSION_CLEANUP_INTERVAL=1s`) and lifts the
//! per-user message limit (`RATE_LIMIT=1000000`), unless `--server-env` says otherwise; it
//! samples the server's RSS and its session gauges over time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chatbox_core::session::{SWEEP_BATCH_BUCKETS, SWEEP_HOLD_GOAL};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::frame::ServerFrame;
use crate::server::{ServerArgs, Target};
use crate::stub::Stub;
use crate::util::{self, now_us, spawn, HttpConn};

/// Options of `churn`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    /// Sessions to create and end in total.
    #[arg(long, default_value_t = 1_000_000)]
    pub sessions: u64,
    /// Concurrent users (one connection and one session at a time each).
    #[arg(long, default_value_t = 200)]
    pub workers: usize,
    /// Time between samples.
    #[arg(long, default_value = "5s", value_parser = util::parse_duration)]
    pub sample_interval: Duration,
    /// Keep sampling this long after the last session ended (the sweeper's tail).
    #[arg(long, default_value = "20s", value_parser = util::parse_duration)]
    pub tail: Duration,
    /// The server's SESSION_TTL (also RECONNECT_TIMEOUT) for the run.
    #[arg(long, default_value = "10s", value_parser = util::parse_duration)]
    pub session_ttl: Duration,
}

#[derive(Debug, Default)]
struct Counts {
    created: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counts {
    fn error(&self, kind: &str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.into())
            .or_default() += 1;
    }
}

/// Runs the scenario and prints the time series and a `RESULT` line.
pub async fn churn(server: &ServerArgs, args: &ChurnArgs, stub: Stub) {
    let ttl = chatbox_core::godur::format(args.session_ttl);
    let env = [
        ("SESSION_TTL", ttl.clone()),
        ("RECONNECT_TIMEOUT", ttl),
        ("SESSION_CLEANUP_INTERVAL", "1s".to_string()),
        ("RATE_LIMIT", "1000000".to_string()),
    ];
    let target = match Target::start(server, &stub.endpoint(), &env).await {
        Ok(target) => Arc::new(target),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    println!(
        "# chatbox-load churn: {} sessions by {} users, SESSION_TTL {:?}, server {} pid {:?}, \
         loadavg {}",
        args.sessions,
        args.workers,
        args.session_ttl,
        target.addr,
        target.pid,
        util::loadavg()
    );
    let counts = Arc::new(Counts::default());
    let claimed = Arc::new(AtomicU64::new(0));
    let start = now_us();
    let mut workers = Vec::new();
    for k in 0..args.workers {
        let (target, counts, claimed) =
            (Arc::clone(&target), Arc::clone(&counts), Arc::clone(&claimed));
        let from = util::source_ip(k, server.source_addrs);
        let total = args.sessions;
        workers.push(spawn(async move { worker(k, from, target, counts, claimed, total).await }));
    }
    println!(
        "{:>8} {:>10} {:>9} {:>10} {:>10} {:>10} {:>12} {:>10} {:>8}",
        "t (s)",
        "created",
        "per s",
        "active",
        "srv created",
        "srv ended",
        "est. resident",
        "RSS MiB",
        "load"
    );
    let mut series = Vec::new();
    let mut ended_history: Vec<(u64, f64)> = Vec::new();
    let mut last = (start, 0u64);
    let mut finished_at: Option<u64> = None;
    loop {
        tokio::time::sleep(args.sample_interval).await;
        let now = now_us();
        let created = counts.created.load(Ordering::Relaxed);
        let metrics = target.metrics().await.unwrap_or_default();
        let gauge = |name: &str| util::prom_value(&metrics, name);
        let active = gauge("chatbox_active_sessions_total");
        let srv_created = gauge("chatbox_sessions_created_total");
        let srv_ended = gauge("chatbox_sessions_ended_total");
        // Ended sessions stay resident for SESSION_TTL (+ up to one sweep interval): the
        // estimate adds the sessions ended within that window to the active ones.
        let window_us = args.session_ttl.as_micros() as u64 + 1_000_000;
        if let Some(e) = srv_ended {
            ended_history.push((now, e));
        }
        let ended_before = ended_history
            .iter()
            .rev()
            .find(|(t, _)| *t + window_us <= now)
            .map(|(_, e)| *e)
            .unwrap_or(0.0);
        let resident = match (active, srv_ended) {
            (Some(a), Some(e)) => Some(a + (e - ended_before)),
            _ => None,
        };
        let rss = target.rss().map(|r| r.0);
        let per_s = (created - last.1) as f64 / ((now - last.0) as f64 / 1e6);
        last = (now, created);
        let t = (now - start) as f64 / 1e6;
        let show = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into());
        println!(
            "{t:>8.0} {created:>10} {per_s:>9.0} {:>10} {:>10} {:>10} {:>12} {:>10} {:>8}",
            show(active),
            show(srv_created),
            show(srv_ended),
            show(resident),
            rss.map(util::mib).unwrap_or_else(|| "?".into()),
            util::loadavg()
        );
        series.push(json!({"t_s": t, "created": created, "per_s": per_s, "active": active,
            "server_created": srv_created, "server_ended": srv_ended,
            "est_resident": resident, "rss_kib": rss}));
        if finished_at.is_none() && workers.iter().all(|w| w.is_finished()) {
            finished_at = Some(now);
        }
        if let Some(at) = finished_at {
            if now >= at + args.tail.as_micros() as u64 {
                break;
            }
        }
    }
    let elapsed = (finished_at.unwrap_or_else(now_us) - start) as f64 / 1e6;
    let created = counts.created.load(Ordering::Relaxed);
    let errors = counts.errors.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let hwm = target.rss().map(|r| r.1);
    println!(
        "{created} sessions in {elapsed:.1} s ({:.0}/s); errors {errors:?}; server HWM {hwm:?} KiB",
        created as f64 / elapsed.max(1e-9)
    );
    let holds = sweep_holds(&target.metrics().await.unwrap_or_default());
    println!("sweep lock holds (batches by duration): {holds}");
    let report = json!({"scenario": "churn", "sessions": created, "elapsed_s": elapsed,
        "per_s": created as f64 / elapsed.max(1e-9), "errors": errors, "hwm_kib": hwm,
        "sweep_holds": holds, "series": series});
    println!("RESULT {report}");
    if let Ok(target) = Arc::try_unwrap(target) {
        target.stop().await;
    }
}

async fn worker(
    k: usize,
    from: std::net::IpAddr,
    target: Arc<Target>,
    counts: Arc<Counts>,
    claimed: Arc<AtomicU64>,
    total: u64,
) {
    let token = util::user_token(&target.secret, &format!("churn-u{k}"));
    let auth = format!("Bearer {token}");
    let mut ws = None;
    let mut http: Option<HttpConn> = None;
    while claimed.fetch_add(1, Ordering::Relaxed) < total {
        if ws.is_none() {
            match client::ws_connect(
                &target.ws_url(),
                target.addr,
                from,
                &token,
                Duration::from_secs(20),
            )
            .await
            {
                Ok((socket, _)) => ws = Some(socket),
                Err(_) => {
                    counts.error("connect");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let Some(socket) = ws.as_mut() else { continue };
        if socket.send(util::user_message(&util::random_id(), "load-0")).await.is_err() {
            counts.error("send");
            ws = None;
            continue;
        }
        // Read until the reply's done frame; adopt the session id the server assigned.
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            let mut session = None;
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else { continue };
                let Some(frame) = ServerFrame::parse(text.as_str()) else { continue };
                if let Some(id) = frame.session_id.as_deref() {
                    session = Some(id.to_string());
                }
                if frame.is_done() {
                    return Ok(session);
                }
                if frame.kind == "error" {
                    return Err(frame.error_code().unwrap_or("error").to_string());
                }
            }
            Err("closed".to_string())
        })
        .await;
        let session = match outcome {
            Ok(Ok(Some(session))) => session,
            Ok(Ok(None)) => {
                counts.error("no_session_id");
                continue;
            }
            Ok(Err(kind)) => {
                counts.error(&kind);
                if kind == "closed" {
                    ws = None;
                }
                continue;
            }
            Err(_) => {
                counts.error("reply_timeout");
                ws = None;
                continue;
            }
        };
        if http.is_none() {
            http = HttpConn::open(from, target.addr).await.ok();
        }
        let Some(conn) = http.as_mut() else {
            counts.error("http_connect");
            continue;
        };
        let path = target.path(&format!("/sessions/{session}/end"));
        match conn.request("POST", &path, &[("authorization", &auth)], None).await {
            Ok((200, _)) => {
                counts.created.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, _)) => counts.error(&format!("end_http_{status}")),
            Err(_) => {
                counts.error("end_failed");
                http = None;
            }
        }
    }
}

/// How long the server's sweep batches held its session table's lock, from its histogram
/// `chatbox_session_sweep_batch_seconds`: the batch count, their mean, how many fell within each
/// bucket bound up to core's `SWEEP_HOLD_GOAL` (issue 18 item 5: 10 ms), and how many beyond it.
fn sweep_holds(metrics: &str) -> serde_json::Value {
    const NAME: &str = "chatbox_session_sweep_batch_seconds";
    let value = |suffix: &str| util::prom_value(metrics, &format!("{NAME}{suffix}"));
    let count = value("_count").unwrap_or(0.0);
    let goal = SWEEP_HOLD_GOAL.as_secs_f64();
    let ms = |seconds: f64| (seconds * 1e6).round() / 1e3;
    let mut holds = serde_json::Map::new();
    holds.insert("batches".into(), json!(count));
    holds.insert("mean_ms".into(), json!(value("_sum").map(|sum| 1e3 * sum / count.max(1.0))));
    let mut within_goal = None;
    // The exposition writes a bound as Rust prints the f64 (`0.001`).
    for bound in SWEEP_BATCH_BUCKETS.into_iter().filter(|&b| b <= goal) {
        let within = value(&format!("_bucket{{le=\"{bound}\"}}"));
        holds.insert(format!("within_{}ms", ms(bound)), json!(within));
        within_goal = within;
    }
    holds.insert(format!("over_{}ms", ms(goal)), json!(within_goal.map(|n| count - n)));
    serde_json::Value::Object(holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_holds_count_each_bucket_up_to_the_goal_and_the_batches_beyond() {
        // As the prometheus crate writes the histogram (a bound is the f64 printed by Rust).
        let mut metrics = String::from("# TYPE chatbox_session_sweep_batch_seconds histogram\n");
        let counts = [5, 7, 8, 9, 9, 10, 10, 10, 10];
        for (bound, n) in SWEEP_BATCH_BUCKETS.iter().zip(counts) {
            metrics.push_str(&format!(
                "chatbox_session_sweep_batch_seconds_bucket{{le=\"{bound}\"}} {n}\n"
            ));
        }
        metrics.push_str("chatbox_session_sweep_batch_seconds_bucket{le=\"+Inf\"} 10\n");
        metrics.push_str("chatbox_session_sweep_batch_seconds_sum 0.03\n");
        metrics.push_str("chatbox_session_sweep_batch_seconds_count 10\n");
        let holds = sweep_holds(&metrics);
        assert_eq!(holds["batches"], json!(10.0));
        let mean = holds["mean_ms"].as_f64().expect("a mean");
        assert!((mean - 3.0).abs() < 1e-9, "{mean}");
        for (key, n) in [("0.5", 5.0), ("1", 7.0), ("2", 8.0), ("5", 9.0), ("10", 9.0)] {
            assert_eq!(holds[format!("within_{key}ms")], json!(n), "{key} ms");
        }
        assert_eq!(holds["over_10ms"], json!(1.0));
        assert!(holds.get("within_25ms").is_none(), "only bounds up to the goal");
    }
}
