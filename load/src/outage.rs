//! `chatbox-load outage` (issue 16, Deliver 1): steady chat across many sessions on a release
//! chatbox backed by a real MongoDB-compatible server (SecantusDB, `scripts/mongo-server.sh`),
//! the database killed for a while and started again on the same data (or, with `--freeze`,
//! stopped with SIGSTOP and continued: connections hang instead of being refused). Reported: acknowledged
//! messages lost (each one looked for in the store after recovery, through the REST API), the
//! reply time before, during and after the outage, and how long `/readyz` took to turn
//! not-ready after the kill and ready again after the restart (and the outbox to drain).
//!
//! Each connection is one user in one session, sending one message at a time on its own
//! schedule (connection k sends at `start + (k + i·connections) / rate`), so the total rate is
//! steady; a message whose predecessor is still unanswered goes out late, and its reply time
//! still counts from its actual send (the lateness is reported as `late`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::convo::{self, Convo, Record};
use crate::server::{ServerArgs, Target};
use crate::stub::Stub;
use crate::util::{self, now_us, spawn, HttpConn};

/// Options of `outage`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutageArgs {
    /// Messages per second across all connections.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Connections, one user and session each (each sends rate/connections msg/s).
    #[arg(long, default_value_t = 200)]
    pub connections: usize,
    /// Steady chat before the database is killed.
    #[arg(long, default_value = "20s", value_parser = util::parse_duration)]
    pub before: Duration,
    /// How long the database stays down (then it is started again; its start-up adds to this).
    #[arg(long, default_value = "60s", value_parser = util::parse_duration)]
    pub outage: Duration,
    /// Steady chat after the database is back.
    #[arg(long, default_value = "30s", value_parser = util::parse_duration)]
    pub after: Duration,
    /// How long one message may take to reach its outcome before it counts as an error.
    #[arg(long, default_value = "30s", value_parser = util::parse_duration)]
    pub reply_limit: Duration,
    /// How long to wait, after the last message, for `/readyz` to be ready with an empty outbox.
    #[arg(long, default_value = "180s", value_parser = util::parse_duration)]
    pub drain: Duration,
    /// Freeze the database (SIGSTOP, then SIGCONT) instead of killing and restarting it: its
    /// connections stay open and hang, as in a network partition, rather than being refused.
    #[arg(long)]
    pub freeze: bool,
    /// Hide the live progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// One `/readyz` sample.
#[derive(Debug, Clone)]
struct Sample {
    at_us: u64,
    status: u16,
    outbox: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the scenario; prints a summary and one `RESULT` line.
pub async fn outage(server: &ServerArgs, args: &OutageArgs, stub: Stub) {
    let mut mongo = chatbox_tests::mongo::MongoServer::start().await;
    let env =
        [("MONGO_URI", mongo.uri()), ("MONGO_DATABASE", chatbox_tests::mongo::fresh_database())];
    let target = match Target::start(server, &stub.endpoint(), &env).await {
        Ok(target) => Arc::new(target),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let loadavg_start = util::loadavg();
    println!(
        "# chatbox-load outage: {} msg/s over {} connections; {:?} before, database down {:?}, \
         {:?} after | {} | loadavg {loadavg_start}",
        args.rate,
        args.connections,
        args.before,
        args.outage,
        args.after,
        target.ws_url()
    );
    let users = args.connections.max(1);
    let tokens: Vec<String> =
        (0..users).map(|k| util::user_token(&target.secret, &format!("outage-u{k}"))).collect();
    let mut convos = Vec::with_capacity(users);
    let gate = Arc::new(Semaphore::new(64));
    let mut opening = Vec::with_capacity(users);
    for (k, token) in tokens.iter().enumerate() {
        let (url, addr, from) =
            (target.ws_url(), target.addr, util::source_ip(k, server.source_addrs));
        let (gate, token) = (Arc::clone(&gate), token.clone());
        opening.push(spawn(async move {
            let _permit = gate.acquire().await;
            Convo::connect(&url, addr, from, &token).await
        }));
    }
    for handle in opening {
        match handle.await {
            Ok(Ok(convo)) => convos.push(convo),
            Ok(Err(error)) => {
                eprintln!("cannot connect: {error}");
                std::process::exit(2);
            }
            Err(error) => {
                eprintln!("connect task failed: {error}");
                std::process::exit(2);
            }
        }
    }

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampler = spawn(sample_readyz(Arc::clone(&target), Arc::clone(&samples)));
    let records = Arc::new(Mutex::new(Vec::<Record>::new()));
    let start_us = now_us() + 500_000;
    let end_us = start_us + (args.before + args.outage + args.after).as_micros() as u64;
    let period_us = users as f64 * 1e6 / args.rate.max(0.001);
    let mut tasks = Vec::with_capacity(users);
    for (k, mut convo) in convos.into_iter().enumerate() {
        let records = Arc::clone(&records);
        let limit = args.reply_limit;
        let offset = k as f64 * 1e6 / args.rate.max(0.001);
        tasks.push(spawn(async move {
            for i in 0u64.. {
                let due = start_us + (offset + i as f64 * period_us) as u64;
                if due >= end_us {
                    break;
                }
                sleep_until(due).await;
                let id = k as u64 * 1_000_000 + i;
                let record = convo.exchange(k, id, due, limit).await;
                lock(&records).push(record);
            }
            convo.close().await;
        }));
    }
    let progress = (!args.quiet).then(|| spawn(progress(Arc::clone(&records), start_us)));

    sleep_until(start_us + args.before.as_micros() as u64).await;
    let frozen = mongo.pid().filter(|_| args.freeze);
    match frozen {
        Some(pid) => signal(pid, "-STOP"),
        None => mongo.kill().await,
    }
    let killed_us = now_us();
    let verb = if frozen.is_some() { "frozen" } else { "killed" };
    eprintln!("\n# database {verb} at {:.1}s", (killed_us - start_us) as f64 / 1e6);
    sleep_until(killed_us + args.outage.as_micros() as u64).await;
    let restart_us = now_us();
    match frozen {
        Some(pid) => signal(pid, "-CONT"),
        None => mongo.restart().await,
    }
    let back_us = now_us();
    eprintln!(
        "\n# database back at {:.1}s (after {:.1}s of start-up)",
        (back_us - start_us) as f64 / 1e6,
        (back_us - restart_us) as f64 / 1e6
    );
    for task in tasks {
        let _ = task.await;
    }
    let sent_end_us = now_us();
    // Recovered: ready, with every write kept in the outbox stored.
    let drain_deadline = sent_end_us + args.drain.as_micros() as u64;
    loop {
        let drained = lock(&samples)
            .last()
            .is_some_and(|s| s.at_us > sent_end_us && s.status == 200 && s.outbox == Some(0));
        if drained || now_us() > drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sampler.abort();
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    let records = std::mem::take(&mut *lock(&records));
    let samples = std::mem::take(&mut *lock(&samples));
    let verified = verify(&target, &tokens, &records).await;
    let report = report(args, &records, &samples, (start_us, killed_us, back_us), verified);
    print_report(&report);
    println!("RESULT {report}");
    if let Ok(target) = Arc::try_unwrap(target) {
        target.stop().await;
    }
}

/// Sends `sig` (`-STOP`, `-CONT`) to process `pid`.
#[allow(clippy::disallowed_methods, reason = "a client tool signalling the database it started")]
fn signal(pid: u32, sig: &str) {
    match std::process::Command::new("kill").args([sig, &pid.to_string()]).status() {
        Ok(status) if status.success() => {}
        outcome => eprintln!("kill {sig} {pid}: {outcome:?}"),
    }
}

/// Sleeps until the generator's clock reads `at_us`.
async fn sleep_until(at_us: u64) {
    let wait = at_us.saturating_sub(now_us());
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait)).await;
    }
}

/// Samples `/readyz` every 100 ms until aborted.
async fn sample_readyz(target: Arc<Target>, samples: Arc<Mutex<Vec<Sample>>>) {
    let path = target.path("/readyz");
    loop {
        let at_us = now_us();
        let (status, outbox) = match util::http_get(target.addr, &path).await {
            Ok((status, body)) => {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                (status, body.pointer("/checks/outbox/depth").and_then(Value::as_u64))
            }
            Err(_) => (0, None),
        };
        lock(&samples).push(Sample { at_us, status, outbox });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The live progress line.
async fn progress(records: Arc<Mutex<Vec<Record>>>, start_us: u64) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (count, errors, slowest) = {
            let records = lock(&records);
            let recent = records.iter().rev().take(100);
            let slowest = recent.filter_map(Record::reply_us).max().unwrap_or(0);
            (records.len(), records.iter().filter(|r| r.error.is_some()).count(), slowest)
        };
        eprint!(
            "\r[outage] {:>6.1}s messages {count:>7} errors {errors:>5} slowest of last 100 {:>8.1} ms   ",
            now_us().saturating_sub(start_us) as f64 / 1e6,
            slowest as f64 / 1000.0
        );
    }
}

/// What the store holds of the acknowledged messages.
#[derive(Debug, Default)]
struct Verified {
    acknowledged: usize,
    found: usize,
    lost: Vec<u64>,
    duplicated: usize,
    sessions_read: usize,
    unreadable: Vec<String>,
}

/// Reads every session an acknowledged message went to and looks for each message in it.
async fn verify(target: &Target, tokens: &[String], records: &[Record]) -> Verified {
    let mut by_session: BTreeMap<(usize, String), Vec<&Record>> = BTreeMap::new();
    let mut verified = Verified::default();
    for record in records.iter().filter(|r| r.ack_us.is_some()) {
        verified.acknowledged += 1;
        match &record.session {
            Some(session) => {
                by_session.entry((record.user, session.clone())).or_default().push(record)
            }
            None => verified.lost.push(record.id),
        }
    }
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut conn = match HttpConn::open(localhost, target.addr).await {
        Ok(conn) => conn,
        Err(error) => {
            verified.unreadable.push(format!("connect: {error}"));
            return verified;
        }
    };
    for ((user, session), acked) in by_session {
        let path = target.path(&format!("/sessions/{session}"));
        let stored = match convo::stored_user_messages(&mut conn, &path, &tokens[user]).await {
            Ok(stored) => stored,
            Err(error) => {
                verified.unreadable.push(error);
                verified.lost.extend(acked.iter().map(|r| r.id));
                if let Ok(fresh) = HttpConn::open(localhost, target.addr).await {
                    conn = fresh;
                }
                continue;
            }
        };
        verified.sessions_read += 1;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for content in &stored {
            *counts.entry(content.as_str()).or_default() += 1;
        }
        verified.duplicated += counts.values().filter(|&&n| n > 1).count();
        for record in acked {
            if counts.contains_key(record.content().as_str()) {
                verified.found += 1;
            } else {
                verified.lost.push(record.id);
            }
        }
    }
    verified
}

/// The scenario's figures as JSON.
fn report(
    args: &OutageArgs,
    records: &[Record],
    samples: &[Sample],
    (start_us, killed_us, back_us): (u64, u64, u64),
    verified: Verified,
) -> Value {
    let phase = |r: &Record| {
        if r.sent_us < killed_us {
            "before"
        } else if r.sent_us < back_us {
            "during"
        } else {
            "after"
        }
    };
    let mut phases = serde_json::Map::new();
    for name in ["before", "during", "after"] {
        let of: Vec<&Record> = records.iter().filter(|r| phase(r) == name).collect();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for error in of.iter().filter_map(|r| r.error.as_ref()) {
            *errors.entry(error.clone()).or_default() += 1;
        }
        let late = of.iter().filter(|r| r.sent_us > r.scheduled_us + 100_000).count();
        phases.insert(
            name.into(),
            json!({
                "messages": of.len(),
                "acknowledged": of.iter().filter(|r| r.ack_us.is_some()).count(),
                "replies": of.iter().filter(|r| r.done_us.is_some()).count(),
                "late_over_100ms": late,
                "errors": errors,
                "reply": convo::summary(of.iter().filter_map(|r| r.reply_us()).collect()),
                "ack": convo::summary(
                    of.iter().filter_map(|r| Some(r.ack_us?.saturating_sub(r.sent_us))).collect()
                ),
            }),
        );
    }
    let p = |phase: &str, q: &str| phases[phase]["reply"][q].as_f64().unwrap_or(0.0);
    let added = json!({
        "p50_ms": p("during", "p50_ms") - p("before", "p50_ms"),
        "p99_ms": p("during", "p99_ms") - p("before", "p99_ms"),
    });
    let ms =
        |from: u64, to: Option<&Sample>| to.map(|s| (s.at_us.saturating_sub(from)) as f64 / 1e3);
    let not_ready = samples.iter().find(|s| s.at_us >= killed_us && s.status != 200);
    let ready_again = samples.iter().find(|s| s.at_us >= back_us && s.status == 200);
    let drained =
        samples.iter().find(|s| s.at_us >= back_us && s.status == 200 && s.outbox == Some(0));
    let max_outbox = samples.iter().filter_map(|s| s.outbox).max();
    json!({
        "scenario": "outage",
        "how": if args.freeze { "frozen (SIGSTOP/SIGCONT)" } else { "killed (SIGKILL) and restarted" },
        "rate": args.rate,
        "connections": args.connections,
        "before_s": args.before.as_secs_f64(),
        "outage_s": args.outage.as_secs_f64(),
        "after_s": args.after.as_secs_f64(),
        "database_down_s": (back_us - killed_us) as f64 / 1e6,
        "killed_at_s": (killed_us - start_us) as f64 / 1e6,
        "messages": records.len(),
        "acknowledged": verified.acknowledged,
        "acknowledged_found_in_store": verified.found,
        "acknowledged_lost": verified.lost.len(),
        "lost_ids": verified.lost.iter().take(20).collect::<Vec<_>>(),
        "duplicated_in_store": verified.duplicated,
        "sessions_read": verified.sessions_read,
        "unreadable": verified.unreadable.iter().take(5).collect::<Vec<_>>(),
        "phases": phases,
        "added_reply_during_outage": added,
        "readyz": {
            "not_ready_after_kill_ms": ms(killed_us, not_ready),
            "ready_after_restart_ms": ms(back_us, ready_again),
            "outbox_drained_after_restart_ms": ms(back_us, drained),
            "max_outbox_depth": max_outbox,
        },
        "loadavg": util::loadavg(),
    })
}

fn print_report(r: &Value) {
    println!(
        "\n== outage: {} messages, {} acknowledged, {} found in the store, LOST {}, duplicated {}; \
         database down {:.1}s",
        r["messages"],
        r["acknowledged"],
        r["acknowledged_found_in_store"],
        r["acknowledged_lost"],
        r["duplicated_in_store"],
        r["database_down_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  {:<8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}  errors",
        "phase", "msgs", "acked", "replies", "reply p50", "reply p99", "reply max", "ack p99"
    );
    for phase in ["before", "during", "after"] {
        let p = &r["phases"][phase];
        let f = |k: &str, q: &str| p[k][q].as_f64().unwrap_or(0.0);
        println!(
            "  {:<8} {:>8} {:>8} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.1}  {}",
            phase,
            p["messages"].to_string(),
            p["acknowledged"].to_string(),
            p["replies"].to_string(),
            f("reply", "p50_ms"),
            f("reply", "p99_ms"),
            f("reply", "max_ms"),
            f("ack", "p99_ms"),
            p["errors"]
        );
    }
    let readyz = &r["readyz"];
    println!(
        "  added reply time during the outage: p50 {:.1} ms, p99 {:.1} ms\n  /readyz: not ready \
         {} ms after the kill; ready {} ms after the restart; outbox (max {}) drained {} ms after \
         it; loadavg {}",
        r["added_reply_during_outage"]["p50_ms"].as_f64().unwrap_or(0.0),
        r["added_reply_during_outage"]["p99_ms"].as_f64().unwrap_or(0.0),
        readyz["not_ready_after_kill_ms"],
        readyz["ready_after_restart_ms"],
        readyz["max_outbox_depth"],
        readyz["outbox_drained_after_restart_ms"],
        r["loadavg"]
    );
}
