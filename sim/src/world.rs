//! One simulated world, all drawn from one seed: the real chatbox server on node `10.0.0.1`
//! (with a [`FaultyStore`] and a [`SimProvider`]), simulated users on their own nodes talking
//! WebSocket over madsim TCP, network clogs, and a SIGTERM-equivalent shutdown at a random moment.
//! [`run`] returns a [`Report`] listing every invariant violation (see SIMULATION.md); an empty
//! list is a pass.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatbox::engine::hub::Engine;
use chatbox::engine::llm::LlmProvider;
use chatbox::engine::persistence::MemoryOutbox;
use chatbox::engine::probe::Probe;
use chatbox::engine::replies::ReplyEnd;
use chatbox::http::auth::mint;
use chatbox_core::config::Config;
use chatbox_core::stream::StreamDeadlines;
use chatbox_core::Instant;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws, PORT, SECRET};
use crate::faults::{FaultyStore, StoreFaults};
use crate::provider::SimProvider;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Longest clock jump the world injects.
const MAX_JUMP: Duration = Duration::from_secs(40);
/// Longest network fault (clog or one-way partition) on one client.
const MAX_NET_FAULT: Duration = Duration::from_secs(30);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Simulated users (each on its own node).
    pub users: usize,
    /// Simulated time of traffic.
    pub duration: Duration,
    /// Shut the server down at a random moment in the second half of the run.
    pub shutdown: bool,
    /// Test-only invariant breaker (see `faults`).
    pub lose_acknowledged_every: Option<u64>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            users: 6,
            duration: Duration::from_secs(3600),
            shutdown: true,
            lose_acknowledged_every: None,
        }
    }
}

/// The outcome of one world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every invariant violation, in the order found.
    pub violations: Vec<String>,
    /// User messages acknowledged (a `loading` frame was received for them).
    pub acknowledged: usize,
    /// Replies started, by how they ended.
    pub replies: BTreeMap<String, usize>,
    /// Rate decisions observed.
    pub rate_decisions: usize,
    /// Store faults injected.
    pub store_faults: u64,
    /// Simulated seconds covered.
    pub simulated_secs: u64,
}

/// Server-side observations.
#[derive(Debug, Default)]
struct Observed {
    decisions: HashMap<String, Vec<(Instant, bool)>>,
    /// When each key started a fresh budget in the limiter (first use, cleanup, eviction).
    fresh: HashMap<String, Vec<Instant>>,
    replies: Vec<(String, Instant, Instant, ReplyEnd)>,
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Observed>);

impl Probe for Recorder {
    fn on_rate_decision(&self, key: &str, now: Instant, allowed: bool) {
        let mut o = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        o.decisions.entry(key.to_string()).or_default().push((now, allowed));
    }

    fn on_rate_fresh_key(&self, key: &str, now: Instant) {
        let mut o = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        o.fresh.entry(key.to_string()).or_default().push(now);
    }

    fn on_reply(&self, session: &str, started: Instant, decided: Instant, end: &ReplyEnd) {
        let mut o = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        o.replies.push((session.to_string(), started, decided, end.clone()));
    }
}

/// Client-side observations.
#[derive(Debug, Default)]
struct ClientLog {
    /// (content, session) of acknowledged user messages.
    acked: Vec<(String, String)>,
    violations: Vec<String>,
}

fn config() -> Config {
    let mut config = client::base_config();
    config.rate.max_keys = 4;
    config.rate.cleanup_interval = Duration::from_secs(120);
    config.sessions.reconnect_timeout = Duration::from_secs(60);
    config.sessions.ttl = Duration::from_secs(90);
    config.sessions.idle_timeout = Duration::from_secs(180);
    config.sessions.cleanup_interval = Duration::from_secs(30);
    config.websocket.max_connections_per_user = 2;
    config.websocket.max_message_size = Some(4096);
    config.server.shutdown_timeout = Duration::from_secs(10);
    config
}

/// Runs one world under the current madsim runtime.
pub async fn run(seed: u64, scenario: Scenario) -> Report {
    crate::log_from_env();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let config = Arc::new(config());
    let deadlines = StreamDeadlines {
        first_chunk: config.llm.first_chunk_timeout,
        idle: config.llm.idle_timeout,
        total: config.llm.stream_timeout,
    };
    let outage_at = Duration::from_secs(rng.next_u64() % scenario.duration.as_secs().max(1));
    let faults = StoreFaults {
        transient_per_mille: rng.next_u64() % 60,
        ambiguous_per_mille: rng.next_u64() % 30,
        max_delay: Duration::from_millis(rng.next_u64() % 300),
        outages: vec![(outage_at, outage_at + Duration::from_secs(5 + rng.next_u64() % 60))],
        lose_acknowledged_every: scenario.lose_acknowledged_every,
    };
    // One server writes this store, as with the embedded store: its history cache is trusted.
    let store = Arc::new(FaultyStore::new(rng.next_u64(), faults).only_writer());
    let outbox = Arc::new(MemoryOutbox::new(10_000));
    let provider = Arc::new(SimProvider::new(rng.next_u64(), deadlines));
    let recorder = Arc::new(Recorder::default());
    let shutdown_at = scenario.shutdown.then(|| {
        scenario.duration / 2
            + Duration::from_secs(rng.next_u64() % (scenario.duration.as_secs() / 2).max(1))
    });

    let handle = madsim::runtime::Handle::current();
    let (engine_tx, engine_rx) = tokio::sync::oneshot::channel::<Arc<Engine>>();
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<(Instant, Instant, Duration)>();
    let server = handle.create_node().name("server").ip(IpAddr::V4(SERVER_IP)).build();
    let server_id = server.id();
    {
        let (config, store, provider, recorder, outbox) =
            (config.clone(), store.clone(), provider.clone(), recorder.clone(), outbox.clone());
        server.spawn(async move {
            let providers: Vec<Arc<dyn LlmProvider>> = vec![provider];
            let running = chatbox::server::start(
                config.clone(),
                chatbox::server::Ports {
                    store,
                    outbox,
                    providers,
                    notifier: Arc::new(chatbox::engine::notify::LogNotifier),
                    resolver: Arc::new(crate::resolver::world()),
                },
            )
            .await
            .expect("server starts");
            let _ = running.engine.probe.set(recorder);
            let _ = engine_tx.send(running.engine.clone());
            match shutdown_at {
                Some(at) => {
                    tokio::time::sleep(at).await;
                    let clock = running.engine.clock;
                    let begin = clock.now();
                    let _report = running.shutdown().await;
                    let _ = stopped_tx.send((begin, clock.now(), config.server.shutdown_timeout));
                }
                None => std::future::pending::<()>().await,
            }
        });
    }
    let engine = engine_rx.await.expect("server reports its engine");

    let logs: Vec<Arc<Mutex<ClientLog>>> = (0..scenario.users).map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, (i + 1) as u8));
        let node = handle.create_node().name(format!("user-{i}")).ip(ip).build();
        let (log, user_seed, until) = (log.clone(), rng.next_u64(), scenario.duration);
        clients.push((node.id(), node.spawn(user(i, user_seed, until, log, deadlines))));
    }

    // An administrator who takes sessions over, talks in them and leaves.
    {
        let node =
            handle.create_node().name("admin").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
        let (store, admin_seed, until) = (store.clone(), rng.next_u64(), scenario.duration);
        node.spawn(admin(admin_seed, until, store));
    }

    // Network trouble, clock jumps and periodic memory checks while the users run.
    let net = madsim::net::NetSim::current();
    let mut jumps: Vec<(Instant, Instant)> = Vec::new();
    let mut violations = Vec::new();
    let mut elapsed = Duration::ZERO;
    let step = Duration::from_secs(60);
    while elapsed < scenario.duration {
        tokio::time::sleep(step).await;
        elapsed += step;
        check_memory(&engine, &mut violations);
        if rng.next_u64() % 6 == 0 {
            // The whole world jumps forward (a paused VM): every timer fires late at once.
            let before = engine.clock.now();
            madsim::time::advance(Duration::from_secs(1 + rng.next_u64() % MAX_JUMP.as_secs()));
            jumps.push((before, engine.clock.now()));
        }
        // At most one network fault per minute, each at most 30 s, so a client is never cut off
        // for longer than a reply's 60 s budget on its side (20 s deadline + 30 s fault + slack).
        if rng.next_u64() % 4 == 0 && !clients.is_empty() {
            let (id, _) = &clients[(rng.next_u64() as usize) % clients.len()];
            net.clog_node(*id);
            tokio::time::sleep(Duration::from_secs(1 + rng.next_u64() % MAX_NET_FAULT.as_secs()))
                .await;
            net.unclog_node(*id);
        } else if rng.next_u64() % 4 == 0 && !clients.is_empty() {
            // A one-way partition: the server's packets to one client are lost while the
            // client's still arrive (the server must not wait on that socket forever).
            let (id, _) = &clients[(rng.next_u64() as usize) % clients.len()];
            net.clog_link(server_id, *id);
            tokio::time::sleep(Duration::from_secs(1 + rng.next_u64() % MAX_NET_FAULT.as_secs()))
                .await;
            net.unclog_link(server_id, *id);
        }
    }
    for (_, task) in clients {
        let _ = task.await;
    }
    if scenario.shutdown {
        match tokio::time::timeout(scenario.duration, stopped_rx).await {
            Ok(Ok((begin, end, limit))) => {
                // A clock jump inside the drain makes every timer fire late by the jump: the
                // deadline is noticed when the jump ends, never later.
                let jumped: Duration = jumps
                    .iter()
                    .filter(|(from, to)| *from < end && *to > begin)
                    .map(|(from, to)| (*to).min(end) - (*from).max(begin))
                    .sum();
                let took = end - begin;
                if took > limit + jumped + Duration::from_millis(1) {
                    violations.push(format!(
                        "shutdown took {took:?}, more than its deadline {limit:?} (+{jumped:?} of clock jumps)"
                    ));
                }
            }
            _ => violations.push("shutdown never finished".to_string()),
        }
    }
    // Let replies still running finish or time out before the final checks.
    tokio::time::sleep(deadlines.total + Duration::from_secs(5)).await;

    // Every write the outbox kept must reach the store once it is back (the outages are over).
    // The store still fails now and then (transient faults), so drain as the drain task would:
    // retry after a pause, a bounded number of times.
    let mut last_error = None;
    for _ in 0..50 {
        match engine.persistence.drain_outbox_once().await {
            Ok(_) if engine.persistence.outbox_len() == 0 => {
                last_error = None;
                break;
            }
            Ok(_) => {}
            Err(error) => last_error = Some(error),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if let Some(error) = last_error {
        violations.push(format!("the outbox does not drain after the outages: {error}"));
    }
    if engine.persistence.outbox_len() > 0 {
        violations.push(format!("{} writes left in the outbox", engine.persistence.outbox_len()));
    }
    let mut report = Report { simulated_secs: scenario.duration.as_secs(), ..Report::default() };
    check_memory(&engine, &mut violations);
    for log in &logs {
        let log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        violations.extend(log.violations.iter().cloned());
        report.acknowledged += log.acked.len();
        check_acknowledged(&store, &log.acked, &mut violations);
    }
    let observed = recorder.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    check_rate(&observed, config.rate.messages.limit, config.rate.messages.window, &mut violations);
    check_deadlines(&observed, deadlines.total, &jumps, &mut report, &mut violations);
    report.rate_decisions = observed.decisions.values().map(Vec::len).sum();
    report.store_faults = store.injected.load(std::sync::atomic::Ordering::Relaxed);
    report.violations = violations;
    report
}

fn check_memory(engine: &Arc<Engine>, violations: &mut Vec<String>) {
    let ttl = engine.config.sessions.ttl;
    let now = engine.clock.now();
    let (invariants, overdue) = engine.sessions.with(|t| {
        let overdue = t
            .iter()
            .filter(|s| s.ended_at().is_some_and(|at| now - at > ttl + Duration::from_secs(1)))
            .count();
        (t.check_invariants(), overdue)
    });
    if let Err(violation) = invariants {
        violations.push(format!("session table invariant: {violation:?}"));
    }
    // The sweeper stops with the server: after shutdown begins, nothing runs that could leak,
    // and the process is about to exit.
    if overdue > 0 && !engine.is_stopping() {
        violations.push(format!("{overdue} ended sessions held past SESSION_TTL"));
    }
    let cap = engine.config.websocket.max_connections_per_user;
    for i in 0..64 {
        let held = engine.limits.slots.held(&format!("user-{i}"));
        if held > cap {
            violations.push(format!("user-{i} holds {held} connections, more than {cap}"));
        }
    }
    let keys = engine.limits.messages.len();
    if keys > engine.config.rate.max_keys {
        violations.push(format!(
            "rate limiter holds {keys} keys, more than {}",
            engine.config.rate.max_keys
        ));
    }
}

fn check_acknowledged(
    store: &FaultyStore,
    acked: &[(String, String)],
    violations: &mut Vec<String>,
) {
    let docs = store.inner.snapshot();
    for (content, session) in acked {
        let copies: usize = docs
            .iter()
            .filter(|d| &d.id == session)
            .flat_map(|d| d.messages.iter())
            .filter(|m| m.sender == "user" && &m.content == content)
            .count();
        if copies != 1 {
            let elsewhere: Vec<&str> = docs
                .iter()
                .filter(|d| d.messages.iter().any(|m| &m.content == content))
                .map(|d| d.id.as_str())
                .collect();
            violations.push(format!(
                "acknowledged message {content:?} stored {copies} times in session {session} \
                 (found in sessions {elsewhere:?})"
            ));
        }
    }
}

fn check_rate(observed: &Observed, limit: u32, window: Duration, violations: &mut Vec<String>) {
    for (key, decisions) in &observed.decisions {
        let allowed: Vec<Instant> =
            decisions.iter().filter(|(_, ok)| *ok).map(|(t, _)| *t).collect();
        let n = limit as usize;
        // The guarantee holds between fresh budgets: with more live keys than `max_keys`, an
        // evicted key starts over (PROTOCOL.md §10 item 28), so a window spanning a fresh start
        // of the key after its first event is not held to the limit.
        let fresh = observed.fresh.get(key).map(Vec::as_slice).unwrap_or_default();
        for i in 0..allowed.len().saturating_sub(n) {
            let restarted = fresh.iter().any(|&t| t > allowed[i] && t <= allowed[i + n]);
            if !restarted && allowed[i + n] - allowed[i] <= window {
                violations.push(format!(
                    "rate: key {key} was allowed {} events within {:?}",
                    n + 1,
                    allowed[i + n] - allowed[i]
                ));
                break;
            }
        }
    }
}

fn check_deadlines(
    observed: &Observed,
    total: Duration,
    jumps: &[(Instant, Instant)],
    report: &mut Report,
    violations: &mut Vec<String>,
) {
    // One scheduler tick: madsim advances time in whole milliseconds at most.
    let tick = Duration::from_millis(1);
    for (session, started, decided, end) in &observed.replies {
        *report.replies.entry(format!("{end:?}")).or_default() += 1;
        // A deadline that fell inside a clock jump can only be noticed when the jump ends.
        let deadline = *started + total;
        let noticeable = jumps
            .iter()
            .find(|(from, to)| *from < deadline && deadline <= *to)
            .map_or(deadline, |(_, to)| *to);
        if *decided > noticeable + tick {
            violations.push(format!(
                "reply of session {session} decided after {:?}, deadline {total:?}",
                *decided - *started
            ));
        }
    }
}

/// What a read produced.
enum Read {
    Frame(serde_json::Value),
    Closed(Option<u16>),
    Timeout,
}

async fn read(ws: &mut Ws, limit: Duration) -> Read {
    match tokio::time::timeout(limit, ws.next()).await {
        Err(_) => Read::Timeout,
        Ok(None) | Ok(Some(Err(_))) => Read::Closed(None),
        Ok(Some(Ok(Message::Close(frame)))) => Read::Closed(frame.map(|f| u16::from(f.code))),
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str(text.as_str()) {
            Ok(value) => Read::Frame(value),
            Err(_) => Read::Frame(serde_json::Value::Null),
        },
        Ok(Some(Ok(_))) => Read::Frame(serde_json::Value::Null),
    }
}

async fn connect(user: &str) -> Option<Ws> {
    let token = mint(SECRET.as_bytes(), user, None, &["user".into()], None).ok()?;
    connect_as(&token).await
}

async fn connect_as(token: &str) -> Option<Ws> {
    client::connect(SocketAddr::new(IpAddr::V4(SERVER_IP), PORT), token).await
}

/// Reads until no frame of a reply has come for longer than any gap inside a reply (first-chunk
/// and idle deadlines are 5 s and 4 s); `false` if it closed. Pings and other non-JSON frames
/// do not count as traffic: the server pings every 20 s, which must not keep a drain going.
async fn drain(ws: &mut Ws) -> bool {
    const QUIET: Duration = Duration::from_secs(25);
    let mut quiet_until = sim_now() + QUIET;
    loop {
        let left = quiet_until.saturating_duration_since(sim_now());
        match read(ws, left).await {
            Read::Frame(serde_json::Value::Null) => {}
            Read::Frame(_) => quiet_until = sim_now() + QUIET,
            Read::Closed(_) => return false,
            Read::Timeout => return true,
        }
    }
}

/// Reads until `n` terminal frames (errors, or replies' `done`) have arrived; `false` if the
/// connection closed or `limit` passed first.
async fn await_outcomes(ws: &mut Ws, n: usize, limit: Duration) -> bool {
    let give_up = sim_now() + limit;
    let mut seen = 0;
    while seen < n {
        let left = give_up.saturating_duration_since(sim_now());
        match read(ws, left).await {
            Read::Frame(f) => {
                let done = f["type"] == "ai_response" && f["metadata"]["done"] == "true";
                if done || f["type"] == "error" {
                    seen += 1;
                }
            }
            Read::Closed(_) | Read::Timeout => return false,
        }
    }
    true
}

/// One simulated user for `until` of simulated time.
async fn user(
    index: usize,
    seed: u64,
    until: Duration,
    log: Arc<Mutex<ClientLog>>,
    deadlines: StreamDeadlines,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let user = format!("user-{index}");
    let end = sim_now() + until;
    let mut session = format!("proposed-{index}");
    let mut sent = 0u64;
    let violation = |text: String| {
        log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).violations.push(text)
    };
    while sim_now() < end {
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 20_000)).await;
        let Some(mut ws) = connect(&user).await else { continue };
        // A reply started before this user vanished keeps streaming to the session's new
        // connection; let it finish so its frames are not taken for the next message's.
        if !drain(&mut ws).await {
            continue;
        }
        'conn: for _ in 0..1 + rng.next_u64() % 6 {
            let roll = rng.next_u64() % 100;
            if roll < 5 {
                // Malformed frame: answered with INVALID_FORMAT, the connection stays open.
                if ws.send(Message::text("{not json")).await.is_err() {
                    break 'conn;
                }
                // Its error arrives asynchronously: wait for it, so it is not taken for the
                // outcome of the next message (which would then be counted as refused, or its
                // next frames as someone else's).
                if !await_outcomes(&mut ws, 1, deadlines.total).await {
                    break 'conn;
                }
                continue;
            }
            if roll < 8 {
                // Oversized frame: the server closes with 1009.
                let _ = ws.send(Message::text("x".repeat(5000))).await;
                break 'conn;
            }
            if roll < 10 {
                // Try to exceed the connection cap: extra handshakes beyond it must be refused.
                let mut extra = Vec::new();
                for _ in 0..3 {
                    if let Some(ws) = connect(&user).await {
                        extra.push(ws);
                    }
                }
                drop(extra);
                continue;
            }
            if roll < 15 {
                // Flood past the rate limit without waiting for replies.
                for _ in 0..15 {
                    let frame = serde_json::json!({"type":"user_message","session_id":session,"content":"flood"});
                    if ws.send(Message::text(frame.to_string())).await.is_err() {
                        break 'conn;
                    }
                }
                // Every flooded message ends in exactly one terminal frame (an error, or a
                // reply's `done`); wait for all fifteen, so none is taken for the next message's.
                if !await_outcomes(&mut ws, 15, deadlines.total * 3 * 15).await {
                    break 'conn;
                }
                continue;
            }
            sent += 1;
            let content = format!("u{index}-m{sent}-{}", rng.next_u64() % 1_000_000);
            let frame =
                serde_json::json!({"type":"user_message","session_id":session,"content":content});
            if ws.send(Message::text(frame.to_string())).await.is_err() {
                break 'conn;
            }
            let vanish = roll < 25;
            let mut loading_at = None;
            let mut outcome = false;
            // The reply's own deadline, plus the longest adversity this world injects on top of
            // it: a clock jump (≤ 40 s) and one network fault on this client (≤ 30 s).
            let limit = deadlines.total + MAX_JUMP + MAX_NET_FAULT + Duration::from_secs(10);
            let give_up = sim_now() + limit;
            loop {
                let left = give_up.saturating_duration_since(sim_now());
                match read(&mut ws, left).await {
                    Read::Frame(f) => {
                        if let Some(id) = f["session_id"].as_str() {
                            if f["type"] == "connection_status" {
                                session = id.to_string();
                            }
                        }
                        match f["type"].as_str() {
                            Some("loading") if loading_at.is_none() => {
                                loading_at = Some(sim_now());
                                let sid = f["session_id"].as_str().unwrap_or_default().to_string();
                                log.lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .acked
                                    .push((content.clone(), sid));
                                if vanish {
                                    // Vanish mid-stream: drop the socket without a close frame.
                                    drop(ws);
                                    break 'conn;
                                }
                            }
                            Some("ai_response") if outcome => {
                                violation(format!("{user}: chunk after the reply's outcome"));
                            }
                            Some("ai_response") if f["metadata"]["done"] == "true" => {
                                outcome = true
                            }
                            Some("error") => {
                                if outcome && loading_at.is_some() {
                                    violation(format!(
                                        "{user}: second outcome {}",
                                        f["error"]["code"]
                                    ));
                                }
                                if loading_at.is_some() {
                                    outcome = true;
                                }
                                // Before `loading`: refused (rate, busy, database) — not acknowledged.
                                if loading_at.is_none() {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        if outcome {
                            break;
                        }
                    }
                    Read::Closed(code) => {
                        if code == Some(1001) && loading_at.is_some() && !outcome {
                            violation(format!(
                                "{user}: closed by shutdown before the reply's outcome"
                            ));
                        }
                        break 'conn;
                    }
                    Read::Timeout => {
                        if loading_at.is_some() {
                            violation(format!(
                                "{user}: no outcome within {limit:?} of loading (message {content}, session {session}, loading at {:?}, now {:?})",
                                loading_at,
                                wall_now()
                            ));
                        }
                        break 'conn;
                    }
                }
            }
        }
        // Come back inside or outside the reconnect window.
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 150_000)).await;
    }
}

/// A raw HTTP/1.1 POST over simulated TCP; returns the status code.
async fn post(path: &str, token: &str) -> Option<u16> {
    client::post(SocketAddr::new(IpAddr::V4(SERVER_IP), PORT), path, token).await
}

/// An administrator: now and then takes over a live session, talks in it over a WebSocket and
/// leaves (over WebSocket or HTTP).
async fn admin(seed: u64, until: Duration, store: Arc<FaultyStore>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let end = sim_now() + until;
    let Ok(token) = mint(SECRET.as_bytes(), "admin-1", Some("Ada"), &["admin".into()], None) else {
        return;
    };
    while sim_now() < end {
        tokio::time::sleep(Duration::from_secs(60 + rng.next_u64() % 600)).await;
        let live = store.live_sessions();
        if live.is_empty() {
            continue;
        }
        let session = &live[(rng.next_u64() as usize) % live.len()];
        if post(&format!("/chatbox/admin/takeover/{session}"), &token).await != Some(200) {
            continue;
        }
        if let Some(mut ws) = connect_as(&token).await {
            let hello = serde_json::json!({"type":"user_message","session_id":session,"content":"Hello, this is Ada."});
            let _ = ws.send(Message::text(hello.to_string())).await;
            tokio::time::sleep(Duration::from_secs(rng.next_u64() % 120)).await;
            if rng.next_u64() % 2 == 0 {
                let leave =
                    serde_json::json!({"type":"admin_leave","session_id":session,"sender":"admin"});
                let _ = ws.send(Message::text(leave.to_string())).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let _ = post(&format!("/chatbox/admin/leave/{session}"), &token).await;
    }
}

/// The simulation's own clock, for the simulated users' pacing (madsim's; not server code).
#[allow(clippy::disallowed_methods, reason = "the simulated users' clock is madsim's")]
fn sim_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The simulated wall clock (for reading a failing seed next to the server's log).
#[allow(clippy::disallowed_methods, reason = "the simulated wall clock is madsim's")]
fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}
