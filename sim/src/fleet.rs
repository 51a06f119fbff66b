//! The fleet world (issue 14), all drawn from one seed: three real chatbox servers on nodes
//! `10.0.0.1`–`10.0.0.3`, each with its `FleetBus` linked to one [`SimBroker`] (the simulated
//! Redis) and a [`SimReplay`] over it, all sharing one store. Each user has two devices on two
//! different instances bound to the same session; the second device binds with a `resume` of the
//! reply the first one is receiving (so every resume is served by an instance that did not
//! produce the reply), and now and then speaks itself; users flood past the rate limit from both
//! devices at once, their messages limited fleet-wide through [`SimLimits`] (the engine's limits
//! port over the broker, as `RedisLimits` is over Redis). An administrator takes sessions over on
//! a random instance. The broker is partitioned from one instance, slowed down, and restarted at
//! seeded moments.
//! [`run`] returns a [`FleetReport`] listing every invariant violation (SIMULATION.md, "The
//! fleet world"); an empty list is a pass.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatbox::engine::delivery::{replay_limits, FleetBus, LocalReplay};
use chatbox::engine::fleet_limits::Scope;
use chatbox::engine::llm::LlmProvider;
use chatbox::engine::metrics::Metrics;
use chatbox::engine::persistence::MemoryOutbox;
use chatbox::engine::probe::Probe;
use chatbox::http::auth::mint;
use chatbox::http::pages::PageOptions;
use chatbox_core::config::Config;
use chatbox_core::stream::StreamDeadlines;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant as SimInstant;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::{now, start_link, SimBroker, SimReplay, SimStore};
use crate::client::{self, Ws, PORT, SECRET};
use crate::faults::{FaultyStore, StoreFaults};
use crate::limits::{log_key, SimLimits};
use crate::provider::SimProvider;

/// Instances of the fleet.
pub const INSTANCES: usize = 3;
/// How long after a bus fault ends the links are surely back: the longest reconnect backoff
/// (`BUS_RECONNECT`, capped at 5 s), a heartbeat (1 s) and a command timeout (2 s).
const SETTLE: Duration = Duration::from_secs(9);
/// How long a client waits for frames that should come (a reply's 20 s deadline, with slack).
const PATIENCE: Duration = Duration::from_secs(40);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetScenario {
    /// Simulated users (each with two devices).
    pub users: usize,
    /// Simulated time of traffic.
    pub duration: Duration,
    /// Inject bus faults (partitions, delays, restarts).
    pub faults: bool,
}

impl Default for FleetScenario {
    fn default() -> Self {
        Self { users: 4, duration: Duration::from_secs(900), faults: true }
    }
}

/// The outcome of one fleet world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetReport {
    /// Every invariant violation, in the order found.
    pub violations: Vec<String>,
    /// Replies seen by a device on one instance while a device on another was bound.
    pub relayed_replies: usize,
    /// Resumes answered with frames (exact) / with `RESUME_UNAVAILABLE`.
    pub resumes_exact: usize,
    /// Resumes answered `RESUME_UNAVAILABLE`.
    pub resumes_unavailable: usize,
    /// Frames a resumed connection got at or below a seq it already had (each one is also a
    /// violation; SIMULATION.md, "What the fleet world found").
    pub stale_frames: usize,
    /// Rate decisions made across the fleet (by the fleet limiter or, while the broker could not
    /// answer, by an instance's own).
    pub rate_decisions: usize,
    /// Messages the fleet limiter (the broker) refused.
    pub fleet_denials: u64,
    /// Bus faults injected: partitions, delay windows, restarts.
    pub bus_faults: (usize, usize, usize),
    /// Broker commands answered.
    pub broker_commands: u64,
    /// Replies that ended, on every instance.
    pub replies: usize,
    /// Messages that waited for their user's turn held by another instance.
    pub turn_waits: u64,
}

/// Rate decisions of every instance, on the simulation's clock (one clock for the whole fleet,
/// so the fleet-wide check needs no translation).
/// One rate decision: instance, key, when, allowed.
type Decision = (usize, String, SimInstant, bool);

/// One reply of a session: instance, session, started, outcome decided (simulation's clock).
type Answered = (usize, String, SimInstant, SimInstant);

#[derive(Debug)]
struct Recorder {
    instance: usize,
    decisions: Arc<Mutex<Vec<Decision>>>,
    replies: Arc<Mutex<Vec<Answered>>>,
    /// The instance's engine clock, to put its instants on the simulation's clock.
    clock: chatbox::engine::clock::Clock,
}

impl Probe for Recorder {
    fn on_rate_decision(&self, key: &str, _now: chatbox_core::Instant, allowed: bool) {
        let mut d = self.decisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        d.push((self.instance, key.to_string(), now(), allowed));
    }

    fn on_reply(
        &self,
        session: &str,
        started: chatbox_core::Instant,
        decided: chatbox_core::Instant,
        _end: &chatbox::engine::replies::ReplyEnd,
    ) {
        let (started, decided) = (self.clock.to_runtime(started), self.clock.to_runtime(decided));
        let mut r = self.replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        r.push((self.instance, session.to_string(), started, decided));
    }
}

/// Bus fault windows (start, end + [`SETTLE`]); an open one ends far in the future.
#[derive(Debug, Default)]
struct Faults(Mutex<Vec<(SimInstant, SimInstant)>>);

impl Faults {
    fn open(&self) -> usize {
        let mut w = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.push((now(), now() + Duration::from_secs(1 << 30)));
        w.len() - 1
    }

    fn close(&self, i: usize) {
        let mut w = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w[i].1 = now() + SETTLE;
    }

    /// Whether any fault window overlaps `[from, to]`.
    fn overlaps(&self, from: SimInstant, to: SimInstant) -> bool {
        let w = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        w.iter().any(|(a, b)| *a <= to && *b >= from)
    }
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Seen {
    violations: Vec<String>,
    relayed: usize,
    exact: usize,
    unavailable: usize,
    stale: usize,
}

fn config(index: usize) -> Config {
    let mut config = client::base_config();
    config.websocket.max_connections_per_user = 4;
    // Every message of a flood reaches the rate limit (none refused as busy before it).
    config.websocket.max_in_flight = 16;
    config.sessions.reconnect_timeout = Duration::from_secs(120);
    let _ = index;
    config
}

fn ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 1 + index as u8)
}

/// Runs one fleet world under the current madsim runtime.
pub async fn run(seed: u64, scenario: FleetScenario) -> FleetReport {
    crate::log_from_env();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let broker = Arc::new(SimBroker::default());
    let store = Arc::new(FaultyStore::new(rng.next_u64(), StoreFaults::default()));
    let decisions = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(Mutex::new(Vec::new()));
    let engines_metrics = Arc::new(Mutex::new(Vec::new()));
    let handle = madsim::runtime::Handle::current();
    let mut started = Vec::new();
    for index in 0..INSTANCES {
        let config = Arc::new(config(index));
        let deadlines = StreamDeadlines {
            first_chunk: config.llm.first_chunk_timeout,
            idle: config.llm.idle_timeout,
            total: config.llm.stream_timeout,
        };
        let provider = Arc::new(SimProvider::new(rng.next_u64(), deadlines));
        let (store, broker, limits_broker) = (store.clone(), broker.clone(), broker.clone());
        let (decisions, replies) = (decisions.clone(), replies.clone());
        let engines_metrics = engines_metrics.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let node =
            handle.create_node().name(format!("server-{index}")).ip(IpAddr::V4(ip(index))).build();
        node.spawn(async move {
            let metrics = Arc::new(Metrics::new());
            engines_metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Arc::clone(&metrics));
            let (bus, queues) = FleetBus::new(format!("instance-{index}"), metrics.clone());
            let replay = SimReplay::new(
                LocalReplay::new(replay_limits(&config)),
                bus.clone(),
                SimStore::new(broker.clone(), index),
                config.llm.idle_timeout,
                config.llm.resume_window,
            );
            start_link(broker, index, bus.clone(), queues);
            let providers: Vec<Arc<dyn LlmProvider>> = vec![provider];
            let running = chatbox::server::start_with_delivery(
                config,
                chatbox::server::Ports {
                    store,
                    outbox: Arc::new(MemoryOutbox::new(10_000)),
                    providers,
                    notifier: Arc::new(chatbox::engine::notify::LogNotifier),
                    resolver: Arc::new(crate::resolver::world()),
                },
                PageOptions::default(),
                Some(chatbox::engine::hub::BusWiring {
                    bus,
                    replay: Some(Arc::new(replay)),
                    metrics,
                }),
            )
            .await
            .expect("server starts");
            let clock = running.engine.clock;
            let recorder = Arc::new(Recorder { instance: index, decisions, replies, clock });
            let _ = running.engine.probe.set(recorder);
            // The fleet-wide limits, as `server::fleet_limits` attaches RedisLimits.
            let limits = Arc::new(SimLimits::new(limits_broker, index));
            running.engine.limits.attach_fleet(Arc::clone(&limits) as _);
            // The users' turns, as `server::fleet_limits` attaches them.
            running.engine.turns.attach(limits, format!("instance-{index}"));
            let engine = running.engine.clone();
            running.engine.supervisor.spawn("fleet-leases", async move {
                engine.limits.run_leases().await;
            });
            let _ = ready_tx.send(());
            std::future::pending::<()>().await;
        });
        started.push(ready_rx);
    }
    for ready in started {
        ready.await.expect("instance starts");
    }

    let faults = Arc::new(Faults::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut clients = Vec::new();
    for u in 0..scenario.users {
        let node = handle
            .create_node()
            .name(format!("user-{u}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + u as u8)))
            .build();
        let task = user(u, rng.next_u64(), scenario.duration, faults.clone(), seen.clone());
        clients.push(node.spawn(task));
    }
    {
        let node =
            handle.create_node().name("admin").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
        node.spawn(admin(rng.next_u64(), scenario.duration, store.clone()));
    }

    // The bus faults, one at a time, each on a seeded moment.
    let mut report = FleetReport::default();
    let end = now() + scenario.duration;
    while scenario.faults && now() < end {
        tokio::time::sleep(Duration::from_secs(20 + rng.next_u64() % 60)).await;
        let window = faults.open();
        match rng.next_u64() % 10 {
            0..=4 => {
                let instance = (rng.next_u64() as usize) % INSTANCES;
                broker.partition(instance, true);
                tokio::time::sleep(Duration::from_secs(2 + rng.next_u64() % 20)).await;
                broker.partition(instance, false);
                report.bus_faults.0 += 1;
            }
            5..=7 => {
                // Latencies up to 2.5 s: past BUS_COMMAND_TIMEOUT (2 s) a command times out.
                broker.set_latency(Duration::from_millis(20 + rng.next_u64() % 2500));
                tokio::time::sleep(Duration::from_secs(3 + rng.next_u64() % 15)).await;
                broker.set_latency(Duration::ZERO);
                report.bus_faults.1 += 1;
            }
            _ => {
                broker.restart();
                report.bus_faults.2 += 1;
            }
        }
        faults.close(window);
    }
    for client in clients {
        let _ = client.await;
    }

    let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    report.violations.extend(seen.violations.iter().cloned());
    report.relayed_replies = seen.relayed;
    report.resumes_exact = seen.exact;
    report.resumes_unavailable = seen.unavailable;
    report.stale_frames = seen.stale;
    let decisions = decisions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    report.rate_decisions = decisions.len();
    let limit = config(0).rate.messages;
    let record = broker.limit_record();
    report.fleet_denials = record.denied;
    let fleet: Vec<(String, SimInstant)> = record
        .allowed
        .into_iter()
        .filter_map(|(key, at)| {
            let user = key.strip_prefix(&log_key(Scope::Messages, ""))?.to_string();
            Some((user, at))
        })
        .collect();
    let restarts = broker.restarts();
    let rate = RateCheck { limit: limit.limit as usize, window: limit.window };
    rate.check_fleet_log(&fleet, &restarts, &mut report.violations);
    rate.check_accepted(&decisions, &faults, &mut report.violations);
    report.broker_commands = broker.commands();
    let replies = replies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    report.replies = replies.len();
    check_turns(&replies, &faults, &mut report.violations);
    let metrics = engines_metrics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    report.turn_waits = metrics.iter().map(|m| m.fleet_turn_waits.get()).sum();
    report
}

/// The turn invariant (d), as README's "One reply at a time for a user, across instances"
/// states it: while the broker answers, two replies of one session never run at the same time,
/// on one instance or on two; a bus fault (during which an instance answers without the turn,
/// or a restart loses it) excuses an overlap it touches.
fn check_turns(replies: &[Answered], faults: &Faults, violations: &mut Vec<String>) {
    // Sessions in order, so a failing seed lists its violations the same way every run.
    let mut by_session: std::collections::BTreeMap<&str, Vec<&Answered>> = Default::default();
    for reply in replies {
        by_session.entry(reply.1.as_str()).or_default().push(reply);
    }
    for (session, mut of_session) in by_session {
        of_session.sort_by_key(|r| r.2);
        for pair in of_session.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            if later.2 < earlier.3 && !faults.overlaps(earlier.2, later.3) {
                violations.push(format!(
                    "session {session}: a reply on instance {} started {:?} before the reply on instance {} ended, with the broker up",
                    later.0,
                    earlier.3 - later.2,
                    earlier.0
                ));
            }
        }
    }
}

/// The rate invariant (b), as README's "Limits for the user, not per instance" states the
/// guarantee: exact fleet-wide while the broker answers; during an outage each instance limits
/// its own traffic, and what was allowed meanwhile (or lost with a restart) is not carried over.
struct RateCheck {
    limit: usize,
    window: Duration,
}

impl RateCheck {
    /// The first `limit + 1` events of `times` (sorted) that fit in `within`, if any: the
    /// span's first and last time.
    fn crowded(
        &self,
        times: &[SimInstant],
        within: impl Fn(SimInstant, SimInstant) -> bool,
    ) -> Option<(SimInstant, SimInstant)> {
        let n = self.limit;
        (0..times.len().saturating_sub(n))
            .map(|i| (times[i], times[i + n]))
            .find(|(first, last)| within(*first, *last))
    }

    /// The broker's own log (what Redis allowed, on its clock): no closed window of
    /// `RATE_LIMIT_WINDOW` holds more than `RATE_LIMIT` events of one user, unless a restart
    /// emptied the log between them.
    fn check_fleet_log(
        &self,
        allowed: &[(String, SimInstant)],
        restarts: &[SimInstant],
        violations: &mut Vec<String>,
    ) {
        for (user, times) in by_key(allowed.iter().map(|(k, at)| (k.as_str(), *at))) {
            let within = |first: SimInstant, last: SimInstant| {
                last - first <= self.window && !restarts.iter().any(|r| *r > first && *r <= last)
            };
            if let Some((first, last)) = self.crowded(&times, within) {
                violations.push(format!(
                    "rate: the fleet limiter allowed {user} {} messages within {:?}",
                    self.limit + 1,
                    last - first
                ));
            }
        }
    }

    /// What the users got, across every instance: no more than `RATE_LIMIT` accepted messages
    /// of one user within `RATE_LIMIT_WINDOW` — for every window no bus fault overlaps (the
    /// broker reachable and answering within `FLEET_LIMIT_TIMEOUT`, so every decision in it was
    /// the fleet's).
    fn check_accepted(
        &self,
        decisions: &[Decision],
        faults: &Faults,
        violations: &mut Vec<String>,
    ) {
        let accepted = decisions.iter().filter(|d| d.3).map(|(_, key, at, _)| (key.as_str(), *at));
        for (user, times) in by_key(accepted) {
            let within = |first: SimInstant, last: SimInstant| {
                last - first < self.window && !faults.overlaps(first, last)
            };
            if let Some((first, last)) = self.crowded(&times, within) {
                violations.push(format!(
                    "rate: {user} got {} messages accepted across instances within {:?} while the broker was up",
                    self.limit + 1,
                    last - first
                ));
            }
        }
    }
}

/// Times by key, each list in order.
fn by_key<'a>(
    events: impl Iterator<Item = (&'a str, SimInstant)>,
) -> HashMap<&'a str, Vec<SimInstant>> {
    let mut by: HashMap<&str, Vec<SimInstant>> = HashMap::new();
    for (key, at) in events {
        by.entry(key).or_default().push(at);
    }
    for times in by.values_mut() {
        times.sort();
    }
    by
}

async fn connect(token: &str, instance: usize) -> Option<Ws> {
    client::connect(SocketAddr::new(IpAddr::V4(ip(instance)), PORT), token).await
}

/// The next JSON frame (pings and other non-JSON frames skipped); `None` on close or timeout.
async fn next(ws: &mut Ws, until: SimInstant) -> Option<serde_json::Value> {
    loop {
        let left = until.saturating_duration_since(now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(value) = serde_json::from_str(text.as_str()) {
                    return Some(value);
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One reply as a device saw it.
#[derive(Debug, Default, Clone)]
struct Reply {
    id: String,
    seqs: Vec<u64>,
    /// A `done` or an error frame ended it.
    ended: bool,
    unavailable: bool,
}

fn is_terminal(f: &serde_json::Value) -> bool {
    (f["type"] == "ai_response" && f["metadata"]["done"] == "true") || f["type"] == "error"
}

/// Reads the frames of one reply (the first one seen, or `reply_id`) until its outcome.
async fn read_reply(ws: &mut Ws, reply_id: Option<String>, until: SimInstant) -> Reply {
    let mut reply = Reply { id: reply_id.unwrap_or_default(), ..Reply::default() };
    while let Some(f) = next(ws, until).await {
        if f["type"] == "error" && f["error"]["code"] == "RESUME_UNAVAILABLE" {
            reply.unavailable = true;
            return reply;
        }
        let named = f["metadata"]["reply_id"].as_str();
        if f["type"] == "error" {
            // A failed reply's error frame names the reply: the session may have another reply
            // streaming on another instance (a message sent from a device that then left), whose
            // outcome is not this one's. An unnamed error ends a reply that has begun.
            let ours = named.map_or(!reply.seqs.is_empty(), |id| id == reply.id);
            if ours && !reply.id.is_empty() {
                reply.ended = true;
                return reply;
            }
            continue;
        }
        if f["type"] != "ai_response" {
            continue;
        }
        let Some(id) = named else { continue };
        let seq = f["metadata"]["seq"].as_str().and_then(|s| s.parse::<u64>().ok());
        if reply.id.is_empty() {
            // The reply to a message just sent starts at seq 1: one first seen mid-stream is an
            // older reply of the session still streaming (from a device that left).
            if seq != Some(1) {
                continue;
            }
            reply.id = id.to_string();
        }
        if id != reply.id {
            continue;
        }
        if let Some(seq) = seq {
            reply.seqs.push(seq);
        }
        if is_terminal(&f) {
            reply.ended = true;
            return reply;
        }
    }
    reply
}

/// Reads until `frame_type` (the session's id from `connection_status`).
async fn wait_for(ws: &mut Ws, frame_type: &str, until: SimInstant) -> Option<serde_json::Value> {
    while let Some(f) = next(ws, until).await {
        if f["type"] == frame_type {
            return Some(f);
        }
    }
    None
}

fn message(session: &str, content: &str) -> Message {
    let frame = serde_json::json!({"type":"user_message","session_id":session,"content":content});
    Message::text(frame.to_string())
}

/// One user with two devices on two different instances of the same session.
async fn user(u: usize, seed: u64, until: Duration, faults: Arc<Faults>, seen: Arc<Mutex<Seen>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let user = format!("user-{u}");
    let Ok(token) = mint(SECRET.as_bytes(), &user, None, &["user".into()], None) else { return };
    let violation = |text: String| {
        seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).violations.push(text)
    };
    let end = now() + until;
    let mut session = format!("proposed-{u}");
    let mut sent = 0u64;
    while now() < end {
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 15_000)).await;
        let a_at = (rng.next_u64() as usize) % INSTANCES;
        let b_at = (a_at + 1 + (rng.next_u64() as usize) % (INSTANCES - 1)) % INSTANCES;
        let Some(mut a) = connect(&token, a_at).await else { continue };
        sent += 1;
        if a.send(message(&session, &format!("u{u}-m{sent}"))).await.is_err() {
            continue;
        }
        let began = now();
        let patience = began + PATIENCE;
        // The session's id comes with `loading`; the reply's first frame names the reply.
        let Some(loading) = wait_for(&mut a, "loading", patience).await else { continue };
        if let Some(id) = loading["session_id"].as_str() {
            session = id.to_string();
        }
        let first = read_reply_first(&mut a, patience).await;
        let Some((reply_id, first_seq)) = first else { continue };
        // Device B, on another instance, binds by resuming the reply A is receiving.
        let after = rng.next_u64() % (first_seq + 1);
        let Some(mut b) = connect(&token, b_at).await else { continue };
        let resume = serde_json::json!({"type":"resume","session_id":session,
            "metadata":{"reply_id":reply_id,"after_seq":after.to_string()}});
        if b.send(Message::text(resume.to_string())).await.is_err() {
            continue;
        }
        let (rest_a, seen_b) = tokio::join!(
            read_reply(&mut a, Some(reply_id.clone()), patience),
            read_reply(&mut b, Some(reply_id.clone()), patience),
        );
        let mut seqs_a = vec![first_seq];
        seqs_a.extend(rest_a.seqs.iter().copied());
        let troubled = faults.overlaps(began, now());
        // (c) a resume replays exactly the missing frames, or is refused.
        if seen_b.unavailable {
            seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).unavailable += 1;
        } else {
            // No gap while the bus was up (a bus fault may lose live frames after the resume
            // was answered: that is invariant (a)'s business, excused during the fault), and
            // never a *stale* frame — a seq at or below `after` or one already delivered —
            // bus faults or not (SIMULATION.md, "What the fleet world found").
            let mut top = after;
            let (mut stale, mut gap) = (0usize, false);
            for seq in &seen_b.seqs {
                if *seq <= top {
                    stale += 1;
                } else {
                    gap |= *seq != top + 1;
                    top = *seq;
                }
            }
            if stale > 0 {
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).stale += stale;
            }
            if (gap && !troubled) || stale > 0 {
                violation(format!(
                    "{user}: resume of {reply_id} after {after} on instance {b_at} (produced on {a_at}) gave seqs {:?} (bus faults meanwhile: {troubled})",
                    seen_b.seqs
                ));
            } else if seen_b.ended || !troubled {
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).exact += 1;
            }
            // (a) while the bus is up, B got every frame A got after its resume point.
            if !troubled && rest_a.ended {
                let missing: Vec<u64> = seqs_a
                    .iter()
                    .copied()
                    .filter(|s| *s > after && !seen_b.seqs.contains(s))
                    .collect();
                if !missing.is_empty() || !seen_b.ended {
                    violation(format!(
                        "{user}: reply {reply_id} from instance {a_at} missed seqs {missing:?} (ended: {}) on instance {b_at}",
                        seen_b.ended
                    ));
                } else {
                    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).relayed += 1;
                }
            }
        }
        if seen_b.unavailable || !rest_a.ended || !seen_b.ended {
            continue;
        }
        let roll = rng.next_u64() % 10;
        if roll < 2 {
            // Both devices flood at once, on two instances.
            for _ in 0..8 {
                let _ = a.send(message(&session, "flood")).await;
                let _ = b.send(message(&session, "flood")).await;
            }
            tokio::time::sleep(PATIENCE).await;
        } else if roll < 6 {
            // B speaks: A, on another instance, gets the reply B's instance produces.
            sent += 1;
            if b.send(message(&session, &format!("u{u}-m{sent}"))).await.is_err() {
                continue;
            }
            let began = now();
            let patience = began + PATIENCE;
            let (on_b, on_a) = tokio::join!(
                read_reply(&mut b, None, patience),
                read_reply(&mut a, None, patience)
            );
            if on_b.ended && !on_b.seqs.is_empty() && !faults.overlaps(began, now()) {
                if on_a.seqs != on_b.seqs || on_a.id != on_b.id {
                    violation(format!(
                        "{user}: reply {} on instance {b_at} was {:?}, instance {a_at} saw {} {:?}",
                        on_b.id, on_b.seqs, on_a.id, on_a.seqs
                    ));
                } else {
                    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).relayed += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 60_000)).await;
    }
}

/// Reads until the first frame of a reply: its id and seq.
async fn read_reply_first(ws: &mut Ws, until: SimInstant) -> Option<(String, u64)> {
    while let Some(f) = next(ws, until).await {
        if f["type"] == "error" {
            return None;
        }
        if f["type"] != "ai_response" || is_terminal(&f) {
            continue;
        }
        let id = f["metadata"]["reply_id"].as_str()?;
        let seq = f["metadata"]["seq"].as_str()?.parse().ok()?;
        return Some((id.to_string(), seq));
    }
    None
}

/// A raw HTTP/1.1 POST to `instance`; returns the status code.
async fn post(instance: usize, path: &str, token: &str) -> Option<u16> {
    client::post(SocketAddr::new(IpAddr::V4(ip(instance)), PORT), path, token).await
}

/// An administrator taking live sessions over on a random instance (most often not the one the
/// user is on), talking there and leaving over WebSocket or HTTP on yet another instance.
async fn admin(seed: u64, until: Duration, store: Arc<FaultyStore>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let end = now() + until;
    let Ok(token) = mint(SECRET.as_bytes(), "admin-1", Some("Ada"), &["admin".into()], None) else {
        return;
    };
    while now() < end {
        tokio::time::sleep(Duration::from_secs(30 + rng.next_u64() % 150)).await;
        let live = store.live_sessions();
        if live.is_empty() {
            continue;
        }
        let session = &live[(rng.next_u64() as usize) % live.len()];
        let at = (rng.next_u64() as usize) % INSTANCES;
        if post(at, &format!("/chatbox/admin/takeover/{session}"), &token).await != Some(200) {
            continue;
        }
        if let Some(mut ws) = connect(&token, at).await {
            let hello = serde_json::json!({"type":"user_message","session_id":session,"content":"Hello, this is Ada."});
            let _ = ws.send(Message::text(hello.to_string())).await;
            tokio::time::sleep(Duration::from_secs(rng.next_u64() % 60)).await;
        }
        let leave_at = (rng.next_u64() as usize) % INSTANCES;
        let _ = post(leave_at, &format!("/chatbox/admin/leave/{session}"), &token).await;
    }
}
