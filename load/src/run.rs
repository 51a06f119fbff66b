//! `chatbox-load run`: latency against an open-loop message rate, one step per rate.
//!
//! Message i of a step is due at `t0 + i / rate` whatever happened to earlier ones. It goes to
//! the next connection with a free reply slot (`WS_MAX_IN_FLIGHT`) and room in its user's
//! message budget (`RATE_LIMIT` per minute, tracked client-side); when none has, it waits in
//! a client-side queue and its latency still counts from the due time. Each step opens fresh
//! connections (one user each), so steps do not share sessions or rate budgets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::client::{self, Ctx, HttpTarget, Job, Slot};
use crate::server::{ServerArgs, Target};
use crate::stats::{self, Stats};
use crate::stub::{Stub, StubConfig};
use crate::util::{self, now_us, spawn};

/// Options of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Message rates to step through, messages/s.
    #[arg(long, value_delimiter = ',', default_value = "50,500,2000,5000")]
    pub rates: Vec<f64>,
    /// How long each rate is held.
    #[arg(long, default_value = "30s", value_parser = util::parse_duration)]
    pub duration: Duration,
    /// Connections (one user each) per step; default: enough for the rate limit (below).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Replies in flight per connection. The server allows WS_MAX_IN_FLIGHT (3) but frees a
    /// slot only once the reply is stored, after the `done` frame; 2 leaves that slack.
    #[arg(long, default_value_t = 2)]
    pub max_in_flight: usize,
    /// Messages per user per minute the client stays within (the server's RATE_LIMIT,
    /// minus a margin).
    #[arg(long, default_value_t = 95)]
    pub user_rate_limit: usize,
    /// How long to wait for replies after the last message is due.
    #[arg(long, default_value = "15s", value_parser = util::parse_duration)]
    pub drain: Duration,
    /// Pause between steps (lets the server settle).
    #[arg(long, default_value = "2s", value_parser = util::parse_duration)]
    pub pause: Duration,
    /// `ws` (chatbox) or `http` (an OpenAI-compatible streaming endpoint, --url).
    #[arg(long, default_value = "ws")]
    pub target: String,
    /// Base URL of the OpenAI-compatible endpoint for --target http, e.g.
    /// http://127.0.0.1:4000 (requests go to {url}/v1/chat/completions).
    #[arg(long)]
    pub url: Option<String>,
    /// `model` sent with --target http.
    #[arg(long, default_value = "stub")]
    pub model: String,
    /// Bearer key sent with --target http.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Hide the live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// The connections a step needs at `rate` msg/s for `duration` with `args`' limits.
fn auto_connections(rate: f64, args: &RunArgs, stub: &StubConfig, http: bool) -> usize {
    let stream = stub.first_chunk_delay + stub.chunk_interval * stub.chunks.saturating_sub(1);
    // Enough reply slots for twice the concurrency with 100 ms of added latency…
    let slots = (rate * (stream.as_secs_f64() + 0.1) * 2.0).ceil();
    if http {
        // One reply per connection and no idea of the proxy's latency: room for 1 s of it, so
        // the connection count never throttles the open loop.
        return (rate.ceil() as usize).max(slots as usize).clamp(16, 19_000);
    }
    let by_slots = slots / args.max_in_flight.max(1) as f64;
    // …and enough users that nobody needs more than its minute's budget.
    let window = (args.duration.as_secs_f64() + 1.0).min(61.0);
    let by_budget = rate * window / args.user_rate_limit.max(1) as f64 * 1.1;
    (by_slots.max(by_budget).ceil() as usize).clamp(4, 19_000)
}

/// Runs every step; prints a table and a `RESULT` line per step.
pub async fn run(server: &ServerArgs, args: &RunArgs, stub_config: StubConfig, stub: Stub) {
    let http = args.target == "http";
    let mut target = if http {
        None
    } else {
        match Target::start(server, &stub.endpoint(), &[]).await {
            Ok(target) => Some(target),
            Err(error) => {
                eprintln!("{error}");
                std::process::exit(2);
            }
        }
    };
    let http_target = if http {
        let Some(url) = &args.url else {
            eprintln!("--target http needs --url");
            std::process::exit(2);
        };
        let rest = url.trim_start_matches("http://").trim_end_matches('/');
        let (host, base) = rest
            .split_once('/')
            .map(|(h, p)| (h, format!("/{p}")))
            .unwrap_or((rest, String::new()));
        let addr = match tokio::net::lookup_host(host).await.ok().and_then(|mut a| a.next()) {
            Some(addr) => addr,
            None => {
                eprintln!("cannot resolve {host}");
                std::process::exit(2);
            }
        };
        Some(HttpTarget {
            addr,
            path: format!("{base}/v1/chat/completions"),
            model: args.model.clone(),
            api_key: args.api_key.clone(),
        })
    } else {
        None
    };
    let pid = target.as_ref().and_then(|t| t.pid).or(server.server_pid);
    println!(
        "# chatbox-load run: target {} | stub {} (first chunk {:?}, {} chunks every {:?}) | \
         source addrs {} | loadavg {}",
        if http {
            format!("http {:?}", args.url)
        } else {
            format!("ws {}", target.as_ref().map(|t| t.ws_url()).unwrap_or_default())
        },
        stub.endpoint(),
        stub_config.first_chunk_delay,
        stub_config.chunks,
        stub_config.chunk_interval,
        server.source_addrs,
        util::loadavg()
    );
    let mut id_base = 0u64;
    for (step, &rate) in args.rates.iter().enumerate() {
        let report = run_step(
            step,
            rate,
            server,
            args,
            &stub_config,
            &stub,
            target.as_ref(),
            http_target.as_ref(),
            pid,
            id_base,
        )
        .await;
        id_base += 10_000_000;
        println!("RESULT {report}");
        stub.clear();
        tokio::time::sleep(args.pause).await;
    }
    if let Some(target) = target.take() {
        target.stop().await;
    }
}

#[allow(clippy::too_many_arguments)] // one step of one scenario: every input is needed
pub(crate) async fn run_step(
    step: usize,
    rate: f64,
    server: &ServerArgs,
    args: &RunArgs,
    stub_config: &StubConfig,
    stub: &Stub,
    target: Option<&Target>,
    http_target: Option<&HttpTarget>,
    pid: Option<u32>,
    id_base: u64,
) -> Value {
    let stats = Arc::new(Stats::new());
    let (tokens_tx, tokens) = std::sync::mpsc::channel::<usize>();
    let ctx = Ctx {
        stats: Arc::clone(&stats),
        stub: Some(stub.clone()),
        tokens: tokens_tx,
        chunks: stub_config.chunks.max(1),
    };
    let http = http_target.is_some();
    let count = args.connections.unwrap_or_else(|| auto_connections(rate, args, stub_config, http));
    let capacity = if http { 1 } else { args.max_in_flight.max(1) };
    let rss_before = pid.and_then(util::rss_kib);

    // Open the connections (at most 256 handshakes at once).
    let mut slots = Vec::with_capacity(count);
    let gate = Arc::new(Semaphore::new(256));
    let mut opening = Vec::with_capacity(count);
    for k in 0..count {
        let from = util::source_ip(k, server.source_addrs);
        let (tx, rx) = mpsc::unbounded_channel();
        let alive = Arc::new(AtomicBool::new(true));
        slots.push(Slot { tx, alive: Arc::clone(&alive) });
        let ctx = ctx.clone();
        if let Some(http_target) = http_target {
            spawn(client::http_loop(k, from, http_target.clone(), rx, ctx));
            continue;
        }
        let Some(target) = target else { continue };
        let (url, addr) = (target.ws_url(), target.addr);
        let token = util::user_token(&target.secret, &format!("load-s{step}-u{k}"));
        let gate = Arc::clone(&gate);
        opening.push(spawn(async move {
            let _permit = gate.acquire().await;
            match client::ws_connect(&url, addr, from, &token, Duration::from_secs(20)).await {
                Ok((ws, _greeting)) => {
                    spawn(client::ws_loop(k, ws, rx, ctx, alive));
                    true
                }
                Err(error) => {
                    alive.store(false, Ordering::Relaxed);
                    ctx.stats.error(error.split(':').next().unwrap_or("connect"));
                    false
                }
            }
        }));
    }
    let mut connected = if http { count } else { 0 };
    for handle in opening {
        if matches!(handle.await, Ok(true)) {
            connected += 1;
        }
    }
    let connect_errors = stats.errors.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = pid.and_then(util::rss_kib);
    let cpu_before = (pid.and_then(util::cpu_time), util::cpu_time(std::process::id()));
    let stub_connections_before = stub.connections();

    // The open loop, on a thread of its own so that due times are kept to the OS timer's
    // precision rather than the runtime's 1 ms timer wheel.
    let total = (rate * args.duration.as_secs_f64()).round() as u64;
    let start_us = now_us() + 100_000;
    let plan = Plan {
        rate,
        total,
        start_us,
        id_base,
        capacity,
        limit: if http { usize::MAX } else { args.user_rate_limit },
        give_up_us: start_us + (args.duration.as_micros() as u64) + args.drain.as_micros() as u64,
    };
    let progress = (!args.quiet)
        .then(|| spawn(progress_line(format!("{rate}/s"), Arc::clone(&stats), pid, start_us)));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let scheduler_stats = Arc::clone(&stats);
    let thread = std::thread::Builder::new().name("open-loop".into());
    #[allow(clippy::disallowed_methods)] // a client's timing thread, not server work
    let spawned = thread.spawn(move || {
        let outcome = open_loop(&plan, &slots, &tokens, &scheduler_stats);
        let _ = done_tx.send((outcome, slots));
    });
    if let Err(error) = spawned {
        eprintln!("cannot start the open-loop thread: {error}");
        std::process::exit(2);
    }
    let Ok(((dispatched, not_sent), slots)) = done_rx.await else {
        eprintln!("the open-loop thread failed");
        std::process::exit(2);
    };
    for _ in 0..not_sent {
        stats.error("not_sent_in_time");
    }
    let end_us = start_us + args.duration.as_micros() as u64;
    let last_due = now_us();
    // Wait for the replies still streaming.
    let drain_end = end_us.max(last_due) + args.drain.as_micros() as u64;
    while stats.finished.load(Ordering::Relaxed) < dispatched && now_us() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed_s = (now_us().saturating_sub(start_us)) as f64 / 1e6;
    let still_open =
        stats.sent.load(Ordering::Relaxed).saturating_sub(stats.finished.load(Ordering::Relaxed));
    for _ in 0..still_open {
        stats.error("no_reply_within_drain");
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    let rss_after = pid.and_then(util::rss_kib);
    let cpu_after = (pid.and_then(util::cpu_time), util::cpu_time(std::process::id()));
    let fds = pid.and_then(util::open_fds);
    drop(slots); // closes the connections
    let mut report = stats.to_json();
    let sent = report["sent"].as_u64().unwrap_or(0);
    let done = report["done"].as_u64().unwrap_or(0);
    let send_span_s = (last_due.min(end_us).saturating_sub(start_us)) as f64 / 1e6;
    report["dispatched"] = json!(dispatched);
    report["rate_target"] = json!(rate);
    report["duration_s"] = json!(args.duration.as_secs_f64());
    report["connections"] = json!(count);
    report["connected"] = json!(connected);
    report["connect_errors"] = json!(connect_errors);
    report["sent_per_s"] = json!(if send_span_s > 0.0 { sent as f64 / send_span_s } else { 0.0 });
    report["done_per_s"] = json!(done as f64 / elapsed_s.max(1e-9));
    report["target"] = json!(if http { "http" } else { "ws" });
    report["loadavg"] = json!(util::loadavg());
    report["server_rss_kib"] = json!({
        "before_connect": rss_before.map(|r| r.0),
        "after_connect": rss_connected.map(|r| r.0),
        "after_run": rss_after.map(|r| r.0),
        "hwm": rss_after.map(|r| r.1),
        "per_connection_bytes": match (rss_before, rss_connected) {
            (Some(b), Some(c)) if connected > 0 => json!((c.0 as f64 - b.0 as f64) * 1024.0 / connected as f64),
            _ => Value::Null,
        },
    });
    report["server_fds_at_end"] = json!(fds);
    // Upstream connections the server opened during the step: fewer than replies when it
    // keeps them alive (chatbox's client pool; the relay's pool).
    report["stub_connections"] = json!(stub.connections() - stub_connections_before);
    // CPU time per reply: steadier than latency on a shared box, and it bounds the rate one
    // core can carry. The generator's own share shows how much of the box it took.
    let per_reply = |before: Option<Duration>, after: Option<Duration>| match (before, after) {
        (Some(b), Some(a)) if done > 0 => json!((a - b).as_secs_f64() * 1e6 / done as f64),
        _ => Value::Null,
    };
    report["server_cpu_us_per_reply"] = per_reply(cpu_before.0, cpu_after.0);
    report["generator_cpu_us_per_reply"] = per_reply(cpu_before.1, cpu_after.1);
    print_step(&report);
    report
}

/// A figure in µs, or `?` when it was not measured.
fn micros(v: &Value) -> String {
    v.as_f64().map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into())
}

fn print_step(r: &Value) {
    println!(
        "\n== rate {}/s for {}s over {} connections ({} connected): sent {} ({:.1}/s), \
         first chunks {}, done {} (complete {}), client-delayed {}, errors {} {}",
        r["rate_target"],
        r["duration_s"],
        r["connections"],
        r["connected"],
        r["sent"],
        r["sent_per_s"].as_f64().unwrap_or(0.0),
        r["first_chunks"],
        r["done"],
        r["complete"],
        r["delayed_client_side"],
        r["errors_total"],
        r["errors"]
    );
    stats::print_latency_table(r);
    let rss = &r["server_rss_kib"];
    println!(
        "  server RSS KiB: before {} / connected {} / after {} / HWM {}; per connection {} B; \
         fds {}; loadavg {}\n  CPU per reply: server {} µs, generator {} µs; upstream connections {}",
        rss["before_connect"],
        rss["after_connect"],
        rss["after_run"],
        rss["hwm"],
        rss["per_connection_bytes"]
            .as_f64()
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "?".into()),
        r["server_fds_at_end"],
        r["loadavg"],
        micros(&r["server_cpu_us_per_reply"]),
        micros(&r["generator_cpu_us_per_reply"]),
        r["stub_connections"],
    );
}

/// The live progress line (stderr, rewritten every second).
pub async fn progress_line(label: String, stats: Arc<Stats>, pid: Option<u32>, start_us: u64) {
    let mut last_sent = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = stats.sent.load(Ordering::Relaxed);
        let rss = pid.and_then(util::rss_kib).map(|r| util::mib(r.0)).unwrap_or_else(|| "?".into());
        eprint!(
            "\r[{label}] {:>6.1}s sent {:>8} ({:>6}/s) first {:>8} done {:>8} err {:>6} \
             p99 total {:>7.3} ms rss {rss} MiB   ",
            now_us().saturating_sub(start_us) as f64 / 1e6,
            sent,
            sent - last_sent,
            stats.first_chunks.load(Ordering::Relaxed),
            stats.done.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            stats.p99_total_ms()
        );
        last_sent = sent;
    }
}

/// What the open loop is to do.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rate: f64,
    total: u64,
    start_us: u64,
    id_base: u64,
    capacity: usize,
    limit: usize,
    give_up_us: u64,
}

/// The open loop: message i is due at `start + i / rate`; it goes to the next connection with
/// a free slot and budget, or waits in the client-side queue. Returns (jobs handed to
/// connections, jobs never handed out before `give_up_us`).
fn open_loop(
    plan: &Plan,
    slots: &[Slot],
    tokens: &std::sync::mpsc::Receiver<usize>,
    stats: &Stats,
) -> (u64, u64) {
    let count = slots.len();
    let mut ready: VecDeque<usize> = VecDeque::with_capacity(count * plan.capacity);
    for _ in 0..plan.capacity {
        ready.extend(0..count);
    }
    let mut windows: Vec<VecDeque<u64>> = vec![VecDeque::new(); count];
    let window_us = 61_000_000u64;
    let due = |i: u64| plan.start_us + (i as f64 * 1e6 / plan.rate) as u64;
    let (mut next, mut dispatched) = (0u64, 0u64);
    let mut queue: VecDeque<Job> = VecDeque::new();
    loop {
        while let Ok(index) = tokens.try_recv() {
            ready.push_back(index);
        }
        let now = now_us();
        while next < plan.total && due(next) <= now {
            queue.push_back(Job { id: plan.id_base + next, scheduled_us: due(next) });
            stats.scheduled.fetch_add(1, Ordering::Relaxed);
            next += 1;
        }
        let mut tries = 0;
        while !queue.is_empty() && tries < ready.len() {
            let Some(index) = ready.pop_front() else { break };
            if !slots[index].alive.load(Ordering::Relaxed) {
                continue;
            }
            let window = &mut windows[index];
            while window.front().is_some_and(|&t| t + window_us < now) {
                window.pop_front();
            }
            if window.len() >= plan.limit {
                ready.push_back(index);
                tries += 1;
                continue;
            }
            let Some(job) = queue.pop_front() else { break };
            if slots[index].tx.send(job).is_err() {
                queue.push_front(job);
                continue;
            }
            dispatched += 1;
            window.push_back(now);
            tries = 0;
        }
        if next >= plan.total && queue.is_empty() {
            return (dispatched, 0);
        }
        if now > plan.give_up_us {
            return (dispatched, queue.len() as u64);
        }
        // Until the next message is due, or a slot frees up for a queued one (every 10 ms
        // when the free slots are out of budget).
        let mut wake = if next < plan.total { due(next) } else { now + 1_000_000 };
        if !queue.is_empty() && !ready.is_empty() {
            wake = wake.min(now + 10_000);
        }
        let wait = std::time::Duration::from_micros(wake.saturating_sub(now_us()));
        if wait.is_zero() {
            continue;
        }
        if queue.is_empty() {
            std::thread::sleep(wait);
        } else if let Ok(index) = tokens.recv_timeout(wait) {
            ready.push_back(index);
        }
    }
}
