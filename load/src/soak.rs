//! `chatbox-load soak` (issue 16, Deliver 7): steady chat for a long while with connections
//! churning, watching the server for drift. Every connection is one user; it sends its share
//! of the rate one message at a time, closes its socket after `--messages-per-connection`
//! messages and opens a new one (same user, same session), and every `--end-every` such cycles
//! ends its session through `POST {P}/sessions/:id/end`, so sessions churn too. Each
//! `--sample` interval the server's RSS, open files, connections, outbox depth and error frames
//! (from `/metrics/prometheus`) are printed with the interval's messages, errors and reply
//! times; the summary gives the RSS drift from the end of `--warmup` to the end.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chatbox_core::budgets::RESUME_WINDOW;
use serde_json::{json, Value};

use crate::convo::{self, Convo};
use crate::server::{ServerArgs, Target};
use crate::stub::Stub;
use crate::util::{self, now_us, spawn, HttpConn};

/// Options of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the soak runs; by default the warm-up and then 10 minutes of drift.
    #[arg(long, value_parser = util::parse_duration)]
    pub duration: Option<Duration>,
    /// Messages per second across all connections.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Users (one connection open at a time each); each sends rate/users msg/s, which must stay
    /// under the server's per-user RATE_LIMIT.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Messages a connection carries before it is closed and a new one opened.
    #[arg(long, default_value_t = 20)]
    pub messages_per_connection: u64,
    /// Every this many connections, the user ends its session over HTTP first (0: never).
    #[arg(long, default_value_t = 5)]
    pub end_every: u64,
    /// Interval between samples of the server.
    #[arg(long, default_value = "60s", value_parser = util::parse_duration)]
    pub sample: Duration,
    /// RSS drift is measured from the first sample at or after this. The default is one minute
    /// past the longer of `RESUME_WINDOW` (5 min: every reply is held for a resume) and the
    /// server's `SESSION_TTL` (15 min unless `--server-env SESSION_TTL=…`: every ended session
    /// is held): until then memory grows by design, with the rate of replies and of ends.
    #[arg(long, value_parser = util::parse_duration)]
    pub warmup: Option<Duration>,
    /// How long one message may take to reach its outcome before it counts as an error.
    #[arg(long, default_value = "30s", value_parser = util::parse_duration)]
    pub reply_limit: Duration,
    /// Run on a real MongoDB-compatible server (SecantusDB) instead of the embedded store.
    #[arg(long)]
    pub mongo: bool,
}

/// What the users report, reset per sample interval (`interval_*`) or kept (totals).
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    acknowledged: u64,
    replies: u64,
    late: u64,
    errors: BTreeMap<String, u64>,
    connections: u64,
    ends: u64,
    reply_us: Vec<u64>,
    interval_messages: u64,
    interval_errors: u64,
    interval_reply_us: Vec<u64>,
    /// When the previous sample was taken (generator clock, µs).
    interval_start_us: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the drift is measured after the warm-up when `--duration` is not given.
const MEASURED: Duration = Duration::from_secs(10 * 60);

/// The warm-up in force: `--warmup`, else one minute past the longer of `RESUME_WINDOW` and
/// the server's `SESSION_TTL` (its `--server-env` value, else the default).
fn warmup(server: &ServerArgs, args: &SoakArgs) -> Duration {
    if let Some(warmup) = args.warmup {
        return warmup;
    }
    let session_ttl = server
        .server_env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("SESSION_TTL="))
        .and_then(|v| util::parse_duration(v).ok())
        .unwrap_or(chatbox_core::session::SessionLimits::default().ended_ttl);
    RESUME_WINDOW.max(session_ttl) + Duration::from_secs(60)
}

/// Runs the soak; prints a line per sample, a summary and one `RESULT` line.
pub async fn soak(server: &ServerArgs, args: &SoakArgs, stub: Stub) {
    let warmup = warmup(server, args);
    let duration = args.duration.unwrap_or(warmup + MEASURED);
    let mongo =
        if args.mongo { Some(chatbox_tests::mongo::MongoServer::start().await) } else { None };
    let mut env = Vec::new();
    if let Some(mongo) = &mongo {
        env.push(("MONGO_URI", mongo.uri()));
        env.push(("MONGO_DATABASE", chatbox_tests::mongo::fresh_database()));
    }
    let target = match Target::start(server, &stub.endpoint(), &env).await {
        Ok(target) => Arc::new(target),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let users = args.users.max(1);
    println!(
        "# chatbox-load soak: {} msg/s for {:?} over {users} users ({:.2} msg/s each), a new \
         connection every {} messages, session ended every {} connections, store {}, drift \
         from {:?} | {} | loadavg {}",
        args.rate,
        duration,
        args.rate / users as f64,
        args.messages_per_connection,
        args.end_every,
        if args.mongo { "SecantusDB" } else { "embedded" },
        warmup,
        target.ws_url(),
        util::loadavg()
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start_us = now_us() + 1_000_000;
    let end_us = start_us + duration.as_micros() as u64;
    let period_us = users as f64 * 1e6 / args.rate.max(0.001);
    let mut tasks = Vec::with_capacity(users);
    for k in 0..users {
        let user = User {
            k,
            token: util::user_token(&target.secret, &format!("soak-u{k}")),
            from: util::source_ip(k, server.source_addrs),
            target: Arc::clone(&target),
            tally: Arc::clone(&tally),
        };
        let plan = (start_us + (k as f64 * 1e6 / args.rate.max(0.001)) as u64, period_us, end_us);
        tasks.push(spawn(user.run(plan, args.clone())));
    }

    let mut samples = Vec::new();
    let mut next = start_us;
    println!(
        "  {:>6} {:>9} {:>9} {:>6} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9}  loadavg",
        "t (s)",
        "RSS MiB",
        "msgs",
        "msg/s",
        "errors",
        "fds",
        "conns",
        "outbox",
        "ended",
        "errfr",
        "reply p50",
        "reply p99"
    );
    while next <= end_us {
        sleep_until(next).await;
        let sample = sample(&target, &tally, start_us).await;
        print_sample(&sample);
        samples.push(sample);
        next += args.sample.as_micros() as u64;
    }
    for task in tasks {
        let _ = task.await;
    }
    let last = sample(&target, &tally, start_us).await;
    print_sample(&last);
    samples.push(last);
    let report = report(args, (warmup, duration), &tally, &samples);
    print_summary(&report);
    println!("RESULT {report}");
    if let Ok(target) = Arc::try_unwrap(target) {
        target.stop().await;
    }
    drop(mongo);
}

/// Sleeps until the generator's clock reads `at_us`.
async fn sleep_until(at_us: u64) {
    let wait = at_us.saturating_sub(now_us());
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait)).await;
    }
}

/// One simulated user.
struct User {
    k: usize,
    token: String,
    from: IpAddr,
    target: Arc<Target>,
    tally: Arc<Mutex<Tally>>,
}

impl User {
    /// Sends on schedule `(first due, period, end)` until the end, churning connections.
    async fn run(self, (first_us, period_us, end_us): (u64, f64, u64), args: SoakArgs) {
        let (url, addr) = (self.target.ws_url(), self.target.addr);
        let mut convo: Option<Convo> = None;
        let mut session = util::random_id();
        let mut cycle = 0u64;
        let mut in_cycle = 0u64;
        for i in 0u64.. {
            let due = first_us + (i as f64 * period_us) as u64;
            // A user behind its schedule (a saturated box) stops at the end too, instead of
            // sending its backlog as fast as it can after the measured time.
            if due >= end_us || now_us() >= end_us {
                break;
            }
            sleep_until(due).await;
            if convo.is_none() {
                match Convo::connect(&url, addr, self.from, &self.token).await {
                    Ok(mut fresh) => {
                        fresh.session.clone_from(&session);
                        lock(&self.tally).connections += 1;
                        convo = Some(fresh);
                    }
                    Err(error) => {
                        let mut tally = lock(&self.tally);
                        *tally.errors.entry(format!("connect: {error}")).or_default() += 1;
                        tally.interval_errors += 1;
                        continue;
                    }
                }
            }
            let Some(c) = convo.as_mut() else { continue };
            let id = self.k as u64 * 10_000_000 + i;
            let record = c.exchange(self.k, id, due, args.reply_limit).await;
            session.clone_from(&c.session);
            {
                let mut tally = lock(&self.tally);
                tally.messages += 1;
                tally.interval_messages += 1;
                tally.acknowledged += u64::from(record.ack_us.is_some());
                tally.replies += u64::from(record.done_us.is_some());
                tally.late += u64::from(record.sent_us > record.scheduled_us + 100_000);
                if let Some(error) = &record.error {
                    *tally.errors.entry(error.clone()).or_default() += 1;
                    tally.interval_errors += 1;
                }
                if let Some(us) = record.reply_us() {
                    tally.reply_us.push(us);
                    tally.interval_reply_us.push(us);
                }
            }
            in_cycle += 1;
            if in_cycle >= args.messages_per_connection.max(1) {
                in_cycle = 0;
                cycle += 1;
                if let Some(mut old) = convo.take() {
                    old.close().await;
                }
                if args.end_every > 0 && cycle.is_multiple_of(args.end_every) {
                    self.end(&session).await;
                    session = util::random_id();
                }
            }
        }
        if let Some(mut c) = convo {
            c.close().await;
        }
    }

    /// Ends `session` through `POST {P}/sessions/:id/end`.
    async fn end(&self, session: &str) {
        let path = self.target.path(&format!("/sessions/{session}/end"));
        let auth = format!("Bearer {}", self.token);
        let outcome = async {
            let mut conn = HttpConn::open(IpAddr::V4(Ipv4Addr::LOCALHOST), self.target.addr)
                .await
                .map_err(|e| e.to_string())?;
            conn.request("POST", &path, &[("authorization", &auth)], None).await
        };
        let outcome = tokio::time::timeout(Duration::from_secs(30), outcome).await;
        let mut tally = lock(&self.tally);
        match outcome {
            Ok(Ok((200, _))) => tally.ends += 1,
            Ok(Ok((status, _))) => {
                *tally.errors.entry(format!("end_http_{status}")).or_default() += 1;
            }
            _ => *tally.errors.entry("end_failed".into()).or_default() += 1,
        }
    }
}

/// One sample of the server and of the interval since the previous one.
async fn sample(target: &Target, tally: &Mutex<Tally>, start_us: u64) -> Value {
    let metrics = target.metrics().await.unwrap_or_default();
    let metric = |name: &str| util::prom_value(&metrics, name);
    let now = now_us();
    let (interval_messages, interval_errors, reply, interval_s) = {
        let mut tally = lock(tally);
        let reply = std::mem::take(&mut tally.interval_reply_us);
        let since = std::mem::replace(&mut tally.interval_start_us, now).max(start_us);
        (
            std::mem::take(&mut tally.interval_messages),
            std::mem::take(&mut tally.interval_errors),
            reply,
            now.saturating_sub(since) as f64 / 1e6,
        )
    };
    let (messages, errors) = {
        let tally = lock(tally);
        (tally.messages, tally.errors.values().sum::<u64>())
    };
    json!({
        "t_s": now_us().saturating_sub(start_us) as f64 / 1e6,
        "rss_kib": target.rss().map(|r| r.0),
        "fds": target.fds(),
        "messages": messages,
        "interval_messages": interval_messages,
        "interval_rate": if interval_s > 0.0 { interval_messages as f64 / interval_s } else { 0.0 },
        "interval_errors": interval_errors,
        "errors": errors,
        "connections": metric("chatbox_websocket_connections_total"),
        "active_sessions": metric("chatbox_active_sessions_total"),
        "outbox_depth": metric("chatbox_outbox_depth"),
        "ended_sessions": metric("chatbox_ended_sessions_in_memory"),
        "error_frames": metric("chatbox_message_errors_total"),
        "reply": convo::summary(reply),
        "loadavg": util::loadavg(),
    })
}

fn print_sample(s: &Value) {
    let f = |k: &str| s[k].as_f64().map(|v| format!("{v:.0}")).unwrap_or_else(|| "?".into());
    println!(
        "  {:>6.0} {:>9} {:>9} {:>6.0} {:>6} {:>7} {:>8} {:>8} {:>7} {:>7} {:>9.1} {:>9.1}  {}",
        s["t_s"].as_f64().unwrap_or(0.0),
        s["rss_kib"].as_u64().map(util::mib).unwrap_or_else(|| "?".into()),
        s["messages"].to_string(),
        s["interval_rate"].as_f64().unwrap_or(0.0),
        s["errors"].to_string(),
        f("fds"),
        f("connections"),
        f("outbox_depth"),
        f("ended_sessions"),
        f("error_frames"),
        s["reply"]["p50_ms"].as_f64().unwrap_or(0.0),
        s["reply"]["p99_ms"].as_f64().unwrap_or(0.0),
        s["loadavg"].as_str().unwrap_or("?")
    );
}

/// The soak's figures as JSON.
fn report(
    args: &SoakArgs,
    (warmup, duration): (Duration, Duration),
    tally: &Mutex<Tally>,
    samples: &[Value],
) -> Value {
    let tally = lock(tally);
    let rss = |s: &Value| s["rss_kib"].as_f64();
    let warm = samples.iter().find(|s| s["t_s"].as_f64().unwrap_or(0.0) >= warmup.as_secs_f64());
    let last = samples.last();
    let drift = match (warm.and_then(rss), last.and_then(rss)) {
        (Some(w), Some(l)) if w > 0.0 => json!((l - w) / w * 100.0),
        _ => Value::Null,
    };
    let max_fds = samples.iter().filter_map(|s| s["fds"].as_u64()).max();
    let max_outbox = samples
        .iter()
        .filter_map(|s| s["outbox_depth"].as_f64())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let elapsed = samples.last().and_then(|s| s["t_s"].as_f64()).unwrap_or(1.0).max(1.0);
    json!({
        "scenario": "soak",
        "rate_target": args.rate,
        "duration_s": duration.as_secs_f64(),
        "users": args.users,
        "store": if args.mongo { "secantusdb" } else { "embedded" },
        "messages": tally.messages,
        "messages_per_s": tally.messages as f64 / elapsed,
        "acknowledged": tally.acknowledged,
        "replies": tally.replies,
        "late_over_100ms": tally.late,
        "errors_total": tally.errors.values().sum::<u64>(),
        "errors": tally.errors,
        "connections_opened": tally.connections,
        "sessions_ended": tally.ends,
        "reply": convo::summary(tally.reply_us.clone()),
        "warmup_s": warmup.as_secs_f64(),
        "rss_drift_after_warmup_pct": drift,
        "rss_warm_kib": warm.and_then(rss),
        "rss_last_kib": last.and_then(rss),
        "max_fds": max_fds,
        "max_outbox_depth": max_outbox,
        "error_frames": last.map(|s| s["error_frames"].clone()),
        "samples": samples,
        "loadavg": util::loadavg(),
    })
}

fn print_summary(r: &Value) {
    println!(
        "\n== soak: {} messages ({:.1}/s of {} target), {} acknowledged, {} replies, errors {} {}, \
         late {}; {} connections opened, {} sessions ended\n  reply p50 {:.1} ms p99 {:.1} ms; \
         RSS {} → {} KiB, drift after warm-up {}%; max fds {}; max outbox {}; loadavg {}",
        r["messages"],
        r["messages_per_s"].as_f64().unwrap_or(0.0),
        r["rate_target"],
        r["acknowledged"],
        r["replies"],
        r["errors_total"],
        r["errors"],
        r["late_over_100ms"],
        r["connections_opened"],
        r["sessions_ended"],
        r["reply"]["p50_ms"].as_f64().unwrap_or(0.0),
        r["reply"]["p99_ms"].as_f64().unwrap_or(0.0),
        r["rss_warm_kib"],
        r["rss_last_kib"],
        r["rss_drift_after_warmup_pct"].as_f64().map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into()),
        r["max_fds"],
        r["max_outbox_depth"],
        r["loadavg"]
    );
}
