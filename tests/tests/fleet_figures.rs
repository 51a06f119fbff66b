#![cfg(not(madsim))]
//! The fleet figures of BENCHMARKS.md (issue 14, "Figures"): measured, never asserted, and not
//! part of CI (`#[ignore]`). Two real chatbox processes on one SecantusDB and one Redis:
//!
//! 1. added latency of a frame relayed across instances against the same instance: one user with
//!    a connection on A and one on B, a reply streamed by A at about 100 and 1 000 frames/s;
//!    per frame, arrival on B minus arrival on A (p50/p99);
//! 2. Redis commands per reply (`INFO commandstats` before and after N replies);
//! 3. memory Redis holds per streaming reply (`MEMORY USAGE` of its stream and state keys);
//! 4. what a user's fleet-wide turn adds before a message is handled: the take (and, after the
//!    reply, the give-back) round trip of `RedisLimits` against the fleet's Redis, uncontended.
//!
//! Run: `scripts/load.sh fleet` (release build), or
//! `cargo test -p chatbox-tests --test fleet_figures -- --ignored --nocapture` (debug build).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use chatbox::adapters::limits::RedisLimits;
use chatbox::engine::turns::{SharedTurns, Take};
use chatbox_tests::fleet::Fleet;
use chatbox_tests::harness::{is_done, now, Client};
use chatbox_tests::upstream::Script;

const STEP: Duration = Duration::from_secs(60);

fn redis_cli(port: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", port])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cmdstat_<name>` → calls, from `INFO commandstats`.
fn command_calls(port: &str) -> HashMap<String, u64> {
    redis_cli(port, &["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Reads `client` until the `done` of the reply that starts next (a late frame of an earlier
/// reply is skipped); arrival instant of each of its seqs.
async fn arrivals(client: &mut Client) -> HashMap<u64, Instant> {
    let mut seen = HashMap::new();
    let mut reply: Option<String> = None;
    loop {
        let frame = client.recv_frame(STEP).await;
        if frame["type"] != "ai_response" {
            continue;
        }
        let meta = &frame["metadata"];
        let Some(seq) = meta["seq"].as_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
        let id = meta["reply_id"].as_str().unwrap_or_default();
        if reply.is_none() && seq == 1 {
            reply = Some(id.to_string());
        }
        if reply.as_deref() != Some(id) {
            continue;
        }
        seen.insert(seq, now());
        if is_done(&frame) {
            return seen;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::test]
#[ignore = "figures for BENCHMARKS.md, not a check: scripts/load.sh fleet"]
async fn fleet_figures() {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# load average before: {}", loadavg.trim());
    let Fleet { mongo: _mongo, redis, upstream, a, b } =
        Fleet::start(&[("LOG_LEVEL", "info"), ("RATE_LIMIT", "100000")]).await;
    let port =
        redis.url().rsplit(':').next().and_then(|p| p.split('/').next()).unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let token = a.token("figures", &["user"], None);

    // Both connections bound to one session: the phone on A, the laptop on B.
    let short = || Script::reply((0..20).map(|i| format!("token{i} ")).collect::<Vec<_>>());
    upstream.set_default(short());
    let mut phone = a.connect(&token).await;
    let mut laptop = b.connect(&token).await;
    phone.send_user_message("new", "bind A").await;
    let warm = phone.recv_until(is_done, STEP).await;
    let session = warm.last().and_then(|f| f["session_id"].as_str()).unwrap().to_string();
    let first = warm.last().map(|f| f["metadata"]["reply_id"].clone()).unwrap_or_default();
    laptop.send_user_message(&session, "bind B").await;
    // The first reply's `done` may still reach the laptop through the bus after it bound (A
    // published it just before): wait for the laptop's own reply.
    laptop.recv_until(|f| is_done(f) && f["metadata"]["reply_id"] != first, STEP).await;
    phone.recv_until(is_done, STEP).await;

    // 1. Relay latency at ~100 and ~1 000 frames/s.
    for (rate, frames) in [(100u64, 1000usize), (1000, 3000)] {
        let chunks: Vec<String> = (0..frames).map(|i| format!("token{i} ")).collect();
        let interval = Duration::from_micros(1_000_000 / rate);
        upstream.set_default(Script::reply(chunks).with_chunk_interval(interval));
        let started = now();
        phone.send_user_message(&session, "stream").await;
        let (on_a, on_b) = tokio::join!(arrivals(&mut phone), arrivals(&mut laptop));
        let elapsed = started.elapsed();
        let mut added: Vec<f64> = on_a
            .iter()
            .filter_map(|(seq, t_a)| {
                on_b.get(seq).map(|t_b| t_b.saturating_duration_since(*t_a).as_secs_f64() * 1e3)
            })
            .collect();
        let missing = on_a.len() - added.len();
        added.sort_by(|x, y| x.total_cmp(y));
        println!(
            "relay rate={rate}/s frames={} achieved={:.0}/s missing_on_b={missing} \
             added_ms p50={:.3} p99={:.3} max={:.3}",
            on_a.len(),
            on_a.len() as f64 / elapsed.as_secs_f64(),
            percentile(&added, 0.5),
            percentile(&added, 0.99),
            added.last().copied().unwrap_or(f64::NAN)
        );
    }
    upstream.set_default(short());

    // 2 and 3. Commands per reply, and memory per streaming reply.
    let before = command_calls(&port);
    let replies = 20u64;
    for _ in 0..replies {
        phone.send_user_message(&session, "count").await;
        phone.recv_until(is_done, STEP).await;
        laptop.recv_until(is_done, STEP).await;
    }
    let after = command_calls(&port);
    let mut per_reply: Vec<(String, f64)> = after
        .iter()
        .map(|(name, calls)| {
            (name.clone(), (calls - before.get(name).copied().unwrap_or(0)) as f64 / replies as f64)
        })
        .filter(|(name, per)| *per > 0.0 && !name.starts_with("info"))
        .collect();
    per_reply.sort_by(|x, y| x.0.cmp(&y.0));
    let total: f64 = per_reply.iter().map(|(_, n)| n).sum();
    println!("redis commands per reply (20 chunks + done = 21 frames, a connection on each instance): total={total:.1} {per_reply:?}");

    for frames in [100usize, 1000] {
        upstream.set_default(
            Script::reply((0..frames).map(|i| format!("token{i} ")).collect::<Vec<_>>())
                .with_chunk_interval(Duration::from_millis(2)),
        );
        phone.send_user_message(&session, "memory").await;
        let first = phone.recv_until(|f| f["type"] == "ai_response", STEP).await;
        let reply = first.last().unwrap()["metadata"]["reply_id"].as_str().unwrap().to_string();
        let mut seen = 1;
        let near_end = |f: &serde_json::Value| {
            seen += usize::from(f["type"] == "ai_response");
            seen >= frames - 1
        };
        phone.recv_until(near_end, STEP).await;
        let stream = redis_cli(
            &port,
            &["MEMORY", "USAGE", &format!("chatbox:replay:{reply}"), "SAMPLES", "0"],
        );
        let state =
            redis_cli(&port, &["MEMORY", "USAGE", &format!("chatbox:replay:{reply}:state")]);
        let len = redis_cli(&port, &["XLEN", &format!("chatbox:replay:{reply}")]);
        let stream: f64 = stream.trim().parse().unwrap_or(f64::NAN);
        let len: f64 = len.trim().parse().unwrap_or(f64::NAN);
        println!(
            "redis memory per streaming reply after {len} frames: stream={stream} B ({:.0} B/frame) state={} B",
            stream / len,
            state.trim()
        );
        phone.recv_until(is_done, STEP).await;
        laptop.recv_until(is_done, STEP).await;
    }

    // 4. The turn's round trips, uncontended (the first message of each user's turn).
    let turns = RedisLimits::open(&redis.url()).expect("redis url");
    let ttl = Duration::from_secs(15);
    turns.take("warm", "w", ttl).await.expect("redis answers");
    let (mut takes, mut gives) = (Vec::new(), Vec::new());
    for i in 0..2000 {
        let (user, holder) = (format!("figures-{}", i % 100), format!("h{i}"));
        let started = now();
        assert_eq!(turns.take(&user, &holder, ttl).await, Ok(Take::Held));
        takes.push(started.elapsed().as_secs_f64() * 1e3);
        let started = now();
        turns.give_back(&user, &holder).await.expect("redis answers");
        gives.push(started.elapsed().as_secs_f64() * 1e3);
    }
    for (name, times) in [("take", &mut takes), ("give back", &mut gives)] {
        times.sort_by(|x, y| x.total_cmp(y));
        println!(
            "turn {name}, uncontended, 2000 rounds: p50={:.3} ms p99={:.3} ms",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# load average after: {}", loadavg.trim());
}
