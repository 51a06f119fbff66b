//! `chatbox-load shutdown`: graceful shutdown under load. Opens N connections, starts one
//! slow reply on each (the stub runs in a child process of its own so neither process runs out
//! of file descriptors), sends SIGTERM once the replies stream, and reports the time from the
//! signal to the server's exit and what each client received: whether its reply finished, any
//! error frame, and how the connection ended (close code and reason, or EOF without a close
//! frame).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::client;
use crate::frame::ServerFrame;
use crate::server::{ServerArgs, Target};
use crate::stub::StubConfig;
use crate::util::{self, now_us, spawn};

/// Options of `shutdown`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShutdownArgs {
    /// Connections, each with one reply streaming when the signal is sent.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Longest wait for the replies to start streaming before the signal.
    #[arg(long, default_value = "60s", value_parser = util::parse_duration)]
    pub settle: Duration,
    /// Longest wait for the server to exit after the signal.
    #[arg(long, default_value = "120s", value_parser = util::parse_duration)]
    pub exit_limit: Duration,
}

#[derive(Debug, Default)]
struct Outcome {
    connected: bool,
    first_us: Option<u64>,
    done_us: Option<u64>,
    errors: Vec<String>,
    end: String,
    end_us: u64,
}

/// Starts `chatbox-load stub` as a child process; its endpoint and the child.
async fn stub_process(config: &StubConfig) -> Result<(String, tokio::process::Child), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "stub",
            "--first-chunk-delay",
            &format!("{}us", config.first_chunk_delay.as_micros()),
            "--chunks",
            &config.chunks.to_string(),
            "--chunk-interval",
            &format!("{}us", config.chunk_interval.as_micros()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn the stub: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stub stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(endpoint) = line.strip_prefix("stub endpoint ") {
            let endpoint = endpoint.trim().to_string();
            spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok((endpoint, child));
        }
    }
    Err("the stub process did not start".into())
}

/// Runs the scenario and prints its table and `RESULT` line.
pub async fn shutdown(server: &ServerArgs, args: &ShutdownArgs, stub_config: StubConfig) {
    let (endpoint, _stub) = match stub_process(&stub_config).await {
        Ok(pair) => pair,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let mut target = match Target::start(server, &endpoint, &[]).await {
        Ok(target) => target,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let stream_len = stub_config.first_chunk_delay
        + stub_config.chunk_interval * stub_config.chunks.saturating_sub(1);
    println!(
        "# chatbox-load shutdown: {} connections, replies of {} chunks every {:?} (~{:?} each), \
         server {} pid {:?}, loadavg {}",
        args.connections,
        stub_config.chunks,
        stub_config.chunk_interval,
        stream_len,
        target.addr,
        target.pid,
        util::loadavg()
    );
    let streaming = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(args.connections);
    for k in 0..args.connections {
        let (url, addr) = (target.ws_url(), target.addr);
        let token = util::user_token(&target.secret, &format!("shutdown-u{k}"));
        let from = util::source_ip(k, server.source_addrs);
        let (gate, streaming, connected) =
            (Arc::clone(&gate), Arc::clone(&streaming), Arc::clone(&connected));
        tasks.push(spawn(async move {
            let mut outcome = Outcome::default();
            let permit = gate.acquire().await;
            let ws = client::ws_connect(&url, addr, from, &token, Duration::from_secs(30)).await;
            drop(permit);
            let mut ws = match ws {
                Ok((ws, _)) => ws,
                Err(error) => {
                    outcome.end =
                        format!("connect failed: {}", error.split(':').next().unwrap_or(""));
                    return outcome;
                }
            };
            outcome.connected = true;
            connected.fetch_add(1, Ordering::Relaxed);
            let message = util::user_message(&util::random_id(), &format!("load-{k}"));
            if ws.send(message).await.is_err() {
                outcome.end = "send failed".into();
                return outcome;
            }
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let Some(frame) = ServerFrame::parse(text.as_str()) else {
                            continue;
                        };
                        match &*frame.kind {
                            "ai_response" => {
                                if frame.content.is_some() && outcome.first_us.is_none() {
                                    outcome.first_us = Some(now_us());
                                    streaming.fetch_add(1, Ordering::Relaxed);
                                }
                                if frame.is_done() {
                                    outcome.done_us = Some(now_us());
                                }
                            }
                            "error" => {
                                outcome.errors.push(frame.error_code().unwrap_or("?").to_string());
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(close))) => {
                        outcome.end = match close {
                            Some(c) => {
                                format!("close {} {:?}", u16::from(c.code), c.reason.as_str())
                            }
                            None => "close (no code)".into(),
                        };
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        outcome.end = format!(
                            "read error: {}",
                            error.to_string().chars().take(40).collect::<String>()
                        );
                        break;
                    }
                    None => {
                        outcome.end = "EOF without close frame".into();
                        break;
                    }
                }
            }
            outcome.end_us = now_us();
            outcome
        }));
    }
    // Wait until (nearly) every connection streams.
    let settle_end = now_us() + args.settle.as_micros() as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (s, c) = (streaming.load(Ordering::Relaxed), connected.load(Ordering::Relaxed));
        eprint!("\rconnected {c:>6}, streaming {s:>6}   ");
        if s as usize >= args.connections || now_us() > settle_end {
            break;
        }
    }
    eprintln!();
    let rss = target.rss();
    let fds = target.fds();
    let streaming_at_signal = streaming.load(Ordering::Relaxed);
    let connected_at_signal = connected.load(Ordering::Relaxed);
    let signal_us = now_us();
    if let Err(error) = target.sigterm() {
        eprintln!("{error}");
    }
    let exit = target.wait_exit(args.exit_limit).await;
    let exit_us = now_us();
    println!(
        "SIGTERM with {connected_at_signal} connected, {streaming_at_signal} streaming (server RSS \
         {rss:?} KiB, fds {fds:?}); exit: {}",
        match &exit {
            Some((status, took)) => format!("{status} after {:.3} s", took.as_secs_f64()),
            None => format!("still running after {:?}", args.exit_limit),
        }
    );
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    let mut close_times = Vec::new();
    for task in tasks {
        let Ok(Ok(o)) = tokio::time::timeout(Duration::from_secs(10), task).await else {
            *classes.entry("client task did not end".into()).or_default() += 1;
            continue;
        };
        let reply = match (o.first_us, o.done_us) {
            _ if !o.connected => "not connected".to_string(),
            (None, _) if o.errors.is_empty() => "no chunk before the end".to_string(),
            (_, Some(done)) if done < signal_us => "reply done before SIGTERM".to_string(),
            (_, Some(_)) => "reply done after SIGTERM".to_string(),
            (_, None) => "reply cut (no done)".to_string(),
        };
        let errors =
            if o.errors.is_empty() { String::new() } else { format!(", errors {:?}", o.errors) };
        *classes.entry(format!("{reply}{errors}; {}", o.end)).or_default() += 1;
        if o.end_us > signal_us {
            close_times.push(o.end_us - signal_us);
        }
    }
    close_times.sort_unstable();
    let pct = |p: f64| {
        close_times
            .get(((close_times.len() as f64 - 1.0) * p).round() as usize)
            .map(|&us| us as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!("{:>8}  what the client received", "clients");
    for (class, n) in &classes {
        println!("{n:>8}  {class}");
    }
    println!(
        "connection end after SIGTERM (s): min {:.3} p50 {:.3} p99 {:.3} max {:.3}; server exit \
         {:.3} s after SIGTERM; loadavg {}",
        pct(0.0),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        (exit_us - signal_us) as f64 / 1e6,
        util::loadavg()
    );
    let report = json!({
        "scenario": "shutdown",
        "connections": args.connections,
        "connected_at_signal": connected_at_signal,
        "streaming_at_signal": streaming_at_signal,
        "server_rss_kib_at_signal": rss.map(|r| r.0),
        "server_fds_at_signal": fds,
        "exit_status": exit.as_ref().map(|e| e.0.clone()),
        "exit_after_s": exit.as_ref().map(|e| e.1.as_secs_f64()),
        "classes": classes,
        "close_after_signal_s": {"min": pct(0.0), "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        "log_tail": target.log_tail(5),
    });
    println!("RESULT {report}");
}
