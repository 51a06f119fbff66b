//! `chatbox-load idle`: server memory per idle connection. Opens connections (one user each,
//! nothing sent after the handshake but the answers to pings), reads the server's RSS at each
//! checkpoint once it settles, and fits bytes per connection (least squares over every
//! checkpoint, and between consecutive ones).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::client;
use crate::server::{ServerArgs, Target};
use crate::stub::Stub;
use crate::util::{self, spawn};

/// Options of `idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Connections to open (default: the open-file limit minus 150, for the server's own
    /// files and this tool's).
    #[arg(long)]
    pub connections: Option<usize>,
    /// Connection counts at which RSS is read (the last one is always `connections`).
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,5000,10000,20000")]
    pub checkpoints: Vec<usize>,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Wait at each checkpoint before reading RSS.
    #[arg(long, default_value = "2s", value_parser = util::parse_duration)]
    pub settle: Duration,
    /// Keep the connections this long after the last checkpoint (e.g. past a ping period).
    #[arg(long, default_value = "0s", value_parser = util::parse_duration)]
    pub hold: Duration,
}

/// Runs the scenario and prints its table and `RESULT` line.
pub async fn idle(server: &ServerArgs, args: &IdleArgs, nofile: u64, stub: Stub) {
    let target = match Target::start(server, &stub.endpoint(), &[]).await {
        Ok(target) => target,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let total = args.connections.unwrap_or((nofile as usize).saturating_sub(150));
    let mut checkpoints: Vec<usize> =
        args.checkpoints.iter().copied().filter(|&c| c > 0 && c < total).collect();
    checkpoints.push(total);
    checkpoints.sort_unstable();
    checkpoints.dedup();
    println!(
        "# chatbox-load idle: {} connections (nofile {nofile}), checkpoints {:?}, server {} pid \
         {:?}, loadavg {}",
        total,
        checkpoints,
        target.addr,
        target.pid,
        util::loadavg()
    );
    tokio::time::sleep(args.settle).await;
    let base = target.rss();
    let mut rows = vec![(0usize, base.map(|r| r.0).unwrap_or(0), target.fds().unwrap_or(0))];
    println!(
        "{:>12} {:>12} {:>10} {:>16} {:>8}",
        "connections", "RSS KiB", "RSS MiB", "Δ B/conn", "fds"
    );
    println!(
        "{:>12} {:>12} {:>10} {:>16} {:>8}",
        0,
        rows[0].1,
        util::mib(rows[0].1),
        "-",
        rows[0].2
    );
    let failures = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut opened = 0usize;
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    let mut keep = Vec::with_capacity(total);
    for &checkpoint in &checkpoints {
        let mut handles = Vec::new();
        for k in opened..checkpoint {
            let (url, addr) = (target.ws_url(), target.addr);
            let token = util::user_token(&target.secret, &format!("idle-u{k}"));
            let from = util::source_ip(k, server.source_addrs);
            let gate = Arc::clone(&gate);
            handles.push(spawn(async move {
                let _permit = gate.acquire().await;
                client::ws_connect(&url, addr, from, &token, Duration::from_secs(30)).await
            }));
        }
        for handle in handles {
            match handle.await {
                Ok(Ok((ws, _))) => {
                    // Keep reading so pings are answered; the task ends when the server closes.
                    keep.push(spawn(async move {
                        let mut ws = ws;
                        while let Some(Ok(_)) = ws.next().await {}
                    }));
                }
                Ok(Err(error)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    *errors.entry(error.chars().take(60).collect()).or_default() += 1;
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        opened = checkpoint;
        tokio::time::sleep(args.settle).await;
        let live = keep.iter().filter(|h| !h.is_finished()).count();
        let rss = target.rss().map(|r| r.0).unwrap_or(0);
        let fds = target.fds().unwrap_or(0);
        let (prev_n, prev_rss, _) = rows[rows.len() - 1];
        let delta = if live > prev_n {
            format!("{:.0}", (rss as f64 - prev_rss as f64) * 1024.0 / (live - prev_n) as f64)
        } else {
            "-".into()
        };
        println!("{live:>12} {rss:>12} {:>10} {delta:>16} {fds:>8}", util::mib(rss));
        rows.push((live, rss, fds));
    }
    if !args.hold.is_zero() {
        tokio::time::sleep(args.hold).await;
        let live = keep.iter().filter(|h| !h.is_finished()).count();
        let rss = target.rss().map(|r| r.0).unwrap_or(0);
        println!("after holding {:?}: {live} open, RSS {rss} KiB", args.hold);
        rows.push((live, rss, target.fds().unwrap_or(0)));
    }
    // Least-squares slope of RSS over connections.
    let n = rows.len() as f64;
    let (sx, sy) =
        rows.iter().fold((0.0, 0.0), |(a, b), r| (a + r.0 as f64, b + r.1 as f64 * 1024.0));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = rows.iter().fold((0.0, 0.0), |(a, b), r| {
        let dx = r.0 as f64 - mx;
        (a + dx * (r.1 as f64 * 1024.0 - my), b + dx * dx)
    });
    let slope = if den > 0.0 { num / den } else { 0.0 };
    let hwm = target.rss().map(|r| r.1);
    println!(
        "slope (least squares over {} points): {slope:.0} bytes/connection ({:.2} KiB); \
         failures {}; server HWM {:?} KiB; loadavg {}",
        rows.len(),
        slope / 1024.0,
        failures.load(Ordering::Relaxed),
        hwm,
        util::loadavg()
    );
    if !errors.is_empty() {
        println!("connect errors: {errors:?}");
    }
    let report = json!({
        "scenario": "idle",
        "nofile": nofile,
        "rows": rows.iter().map(|r| json!({"connections": r.0, "rss_kib": r.1, "fds": r.2})).collect::<Vec<_>>(),
        "slope_bytes_per_connection": slope,
        "failures": failures.load(Ordering::Relaxed),
        "errors": errors,
        "hwm_kib": hwm,
        "loadavg": util::loadavg(),
    });
    println!("RESULT {report}");
    drop(keep);
    target.stop().await;
}
