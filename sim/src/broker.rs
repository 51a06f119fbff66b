//! The simulated pub/sub broker of the fleet world (stands in for Redis at the adapter seam):
//! channels and subscriptions per instance, the replay buffer's keys with their TTLs, all on
//! madsim time, plus the faults the fleet world injects — one instance cut from the broker
//! (partition), a latency added to every command (delay), and a restart that loses every
//! subscription and key. [`start_link`] is the link task of one instance, the same loop as the
//! Redis adapter's (`shell/src/adapters/bus`): connect, resubscribe, confirm, publish, deliver,
//! heartbeat, and on any failure mark the bus down and reconnect with `BUS_RECONNECT`.
//! [`SimReplay`] is the replay buffer over the broker, as `RedisReplay` is over Redis. The
//! broker also keeps the fleet-wide limits' keys (core's `SlidingLog` per key, the script
//! `RedisLimits` runs; connection leases), read and written by `crate::limits::SimLimits`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatbox::engine::delivery::fleet_replay::{state_value, FleetReplay, ReplayStore, StoredRead};
use chatbox::engine::delivery::{BoxFuture, FleetBus, LinkCommand, LinkQueues, ReplayWrite};
use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, BUS_HEARTBEAT, FLEET_TURN_WAITER_TTL};
use chatbox_core::rate::{Decision, RateLimit, SlidingLog};
use chatbox_core::retry::RetryPolicy;
use chatbox_core::turn::{Take, TurnBook};
use tokio::sync::mpsc;
use tokio::time::Instant as SimInstant;

/// The simulated clock (madsim's; the broker's TTLs run on it).
#[allow(clippy::disallowed_methods, reason = "the simulator's own clock is madsim's")]
pub fn now() -> SimInstant {
    SimInstant::now()
}

/// One instance's subscription connection: its epoch, its channels and its inbox.
type Subscriber = (u64, HashSet<String>, mpsc::UnboundedSender<Vec<u8>>);

/// Why a broker command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost;

#[derive(Debug, Default)]
struct Key {
    state: Option<(String, SimInstant)>,
    stream: BTreeMap<u64, String>,
    stream_expires: Option<SimInstant>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every restart: a connection of an older epoch is gone.
    epoch: u64,
    /// Instances cut from the broker.
    partitioned: HashSet<usize>,
    /// Latency added to every command.
    latency: Duration,
    /// The subscription connection of each instance: its epoch, channels and inbox.
    subscribers: HashMap<usize, Subscriber>,
    keys: HashMap<String, Key>,
    /// The fleet-wide rate limits: one sliding log per `{scope}:{key}` (lost with a restart).
    logs: HashMap<String, SlidingLog>,
    /// Connection leases per user: lease id → expiry (lost with a restart).
    leases: HashMap<String, HashMap<String, SimInstant>>,
    /// The users' turns, one core `TurnBook` per key, the scripts' model (lost with a restart).
    turns: HashMap<String, TurnBook>,
    /// The origin of the broker's clock (Redis `TIME`): its first command.
    origin: Option<SimInstant>,
    /// What the fleet-wide limits decided, for the invariants (kept across restarts).
    limits: LimitRecord,
    /// When the broker restarted.
    restarts: Vec<SimInstant>,
    /// Commands answered (for the report).
    commands: u64,
}

/// The fleet-wide limits' decisions as the broker took them.
#[derive(Debug, Clone, Default)]
pub struct LimitRecord {
    /// Allowed events: `{scope}:{key}` and the broker's time of the decision.
    pub allowed: Vec<(String, SimInstant)>,
    /// Denied events.
    pub denied: u64,
}

/// The simulated broker shared by every instance of the fleet world.
#[derive(Debug, Default)]
pub struct SimBroker {
    state: Mutex<State>,
}

/// One instance's connection to the broker (invalid after a restart or a partition).
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    instance: usize,
    epoch: u64,
}

impl SimBroker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cuts `instance` from the broker (`true`) or lets it back (`false`).
    pub fn partition(&self, instance: usize, cut: bool) {
        let mut state = self.lock();
        if cut {
            state.partitioned.insert(instance);
            state.subscribers.remove(&instance);
        } else {
            state.partitioned.remove(&instance);
        }
    }

    /// Sets the latency added to every command.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// A restart: every connection, subscription and key is lost.
    pub fn restart(&self) {
        let mut state = self.lock();
        state.epoch += 1;
        state.subscribers.clear();
        state.keys.clear();
        state.logs.clear();
        state.leases.clear();
        state.turns.clear();
        state.restarts.push(now());
    }

    /// What the fleet-wide limits decided so far.
    pub fn limit_record(&self) -> LimitRecord {
        self.lock().limits.clone()
    }

    /// When the broker restarted.
    pub fn restarts(&self) -> Vec<SimInstant> {
        self.lock().restarts.clone()
    }

    /// A connection of `instance` of the current epoch (the limits' calls open their own, as
    /// the adapter reconnects lazily after a failure).
    pub fn conn(&self, instance: usize) -> Conn {
        Conn { instance, epoch: self.lock().epoch }
    }

    /// One event of `log_key` under `limit`, atomically on the broker's clock (the Redis
    /// script of `RedisLimits`, whose model is core's `SlidingLog`).
    pub async fn rate_check(
        &self,
        conn: Conn,
        log_key: &str,
        limit: RateLimit,
    ) -> Result<Decision, Lost> {
        self.command(conn, |s| {
            let at = now();
            let origin = *s.origin.get_or_insert(at);
            let micros = u64::try_from(at.duration_since(origin).as_micros()).unwrap_or(u64::MAX);
            let log = s.logs.entry(log_key.to_string()).or_insert_with(|| SlidingLog::new(limit));
            let (decision, _) = log.check(micros);
            if decision.is_allowed() {
                s.limits.allowed.push((log_key.to_string(), at));
            } else {
                s.limits.denied += 1;
            }
            decision
        })
        .await
    }

    /// Takes or renews lease `lease` of `user` unless `limit` other live ones are held (the
    /// adapter's lease script).
    pub async fn lease(
        &self,
        conn: Conn,
        user: &str,
        lease: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, Lost> {
        self.command(conn, |s| {
            let at = now();
            let held = s.leases.entry(user.to_string()).or_default();
            held.retain(|_, expires| *expires > at);
            if !held.contains_key(lease) && held.len() >= limit as usize {
                return false;
            }
            held.insert(lease.to_string(), at + ttl);
            true
        })
        .await
    }

    /// Gives lease `lease` of `user` back.
    pub async fn release(&self, conn: Conn, user: &str, lease: &str) -> Result<(), Lost> {
        self.command(conn, |s| {
            if let Some(held) = s.leases.get_mut(user) {
                held.remove(lease);
            }
        })
        .await
    }

    /// Asks for `key`'s turn as `holder` (the adapter's take script, core's `TurnBook::take`).
    pub async fn take_turn(
        &self,
        conn: Conn,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Take, Lost> {
        self.turn(conn, key, |book, now| book.take(holder, ttl, FLEET_TURN_WAITER_TTL, now)).await
    }

    /// Extends `key`'s turn when `holder` has it (the adapter's renew script).
    pub async fn renew_turn(
        &self,
        conn: Conn,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, Lost> {
        self.turn(conn, key, |book, now| book.renew(holder, ttl, now)).await
    }

    /// Takes `holder` out of `key`'s queue and gives the turn back when it is `holder`'s (the
    /// adapter's give-back script).
    pub async fn give_back(&self, conn: Conn, key: &str, holder: &str) -> Result<(), Lost> {
        self.turn(conn, key, |book, _| book.give_back(holder)).await
    }

    /// Runs `op` on `key`'s turn book at the broker's time (Redis `TIME`), as one command.
    async fn turn<T>(
        &self,
        conn: Conn,
        key: &str,
        op: impl FnOnce(&mut TurnBook, chatbox_core::Instant) -> T,
    ) -> Result<T, Lost> {
        self.command(conn, |s| {
            let at = now();
            let origin = *s.origin.get_or_insert(at);
            let since = at.duration_since(origin);
            let now = chatbox_core::Instant::ZERO.saturating_add(since);
            let book = s.turns.entry(key.to_string()).or_default();
            let answer = op(book, now);
            if book.is_idle(now) {
                s.turns.remove(key);
            }
            answer
        })
        .await
    }

    /// Commands answered so far.
    pub fn commands(&self) -> u64 {
        self.lock().commands
    }

    /// Runs `op` on the broker after the current latency, if `conn` is still valid.
    async fn command<T>(&self, conn: Conn, op: impl FnOnce(&mut State) -> T) -> Result<T, Lost> {
        let latency = self.lock().latency;
        if latency > BUS_COMMAND_TIMEOUT {
            // The adapter bounds every command by BUS_COMMAND_TIMEOUT.
            tokio::time::sleep(BUS_COMMAND_TIMEOUT).await;
            return Err(Lost);
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut state = self.lock();
        if state.epoch != conn.epoch || state.partitioned.contains(&conn.instance) {
            return Err(Lost);
        }
        state.commands += 1;
        Ok(op(&mut state))
    }

    /// Connects `instance` (fails while it is cut off); the receiver gets its subscribed
    /// channels' messages and ends when the connection is lost.
    pub async fn connect(
        &self,
        instance: usize,
    ) -> Result<(Conn, mpsc::UnboundedReceiver<Vec<u8>>), Lost> {
        let epoch = self.lock().epoch;
        let conn = Conn { instance, epoch };
        let (tx, rx) = mpsc::unbounded_channel();
        self.command(conn, |s| {
            s.subscribers.insert(instance, (epoch, HashSet::new(), tx));
        })
        .await?;
        Ok((conn, rx))
    }

    async fn subscription(&self, conn: Conn, channel: &str, on: bool) -> Result<(), Lost> {
        self.command(conn, |s| match s.subscribers.get_mut(&conn.instance) {
            Some((epoch, channels, _)) if *epoch == conn.epoch => {
                if on {
                    channels.insert(channel.to_string());
                } else {
                    channels.remove(channel);
                }
                Ok(())
            }
            _ => Err(Lost),
        })
        .await?
    }

    async fn publish(&self, conn: Conn, channel: &str, payload: &str) -> Result<(), Lost> {
        self.command(conn, |s| {
            for (_, channels, inbox) in s.subscribers.values() {
                if channels.contains(channel) {
                    let _ = inbox.send(payload.as_bytes().to_vec());
                }
            }
        })
        .await
    }

    async fn ping(&self, conn: Conn) -> Result<(), Lost> {
        self.command(conn, |s| match s.subscribers.get(&conn.instance) {
            Some((epoch, _, _)) if *epoch == conn.epoch => Ok(()),
            _ => Err(Lost),
        })
        .await?
    }

    async fn write(&self, conn: Conn, write: &ReplayWrite) -> Result<(), Lost> {
        self.command(conn, |s| {
            let now = now();
            let key = s.keys.entry(write.reply_id.clone()).or_default();
            if let Some((seq, entry)) = &write.entry {
                key.stream.insert(*seq, entry.clone());
            }
            key.stream_expires = Some(now + write.stream_ttl);
            let value = state_value(write.ended, &write.session);
            key.state = Some((value, now + write.state_ttl));
        })
        .await
    }

    async fn read(
        &self,
        conn: Conn,
        reply_id: &str,
        after_seq: u64,
    ) -> Result<(Option<String>, Vec<(u64, String)>), Lost> {
        self.command(conn, |s| {
            let now = now();
            let Some(key) = s.keys.get_mut(reply_id) else { return (None, Vec::new()) };
            if key.state.as_ref().is_some_and(|(_, at)| *at <= now) {
                key.state = None;
            }
            if key.stream_expires.is_some_and(|at| at <= now) {
                key.stream.clear();
            }
            let state = key.state.as_ref().map(|(v, _)| v.clone());
            let entries = key
                .stream
                .range(after_seq.saturating_add(1)..)
                .map(|(seq, e)| (*seq, e.clone()))
                .collect();
            (state, entries)
        })
        .await
    }
}

/// Starts the link task of instance `index` of `bus` over `broker`.
pub fn start_link(broker: Arc<SimBroker>, index: usize, bus: Arc<FleetBus>, queues: LinkQueues) {
    tokio::spawn(run(broker, index, bus, queues));
}

async fn run(broker: Arc<SimBroker>, index: usize, bus: Arc<FleetBus>, mut queues: LinkQueues) {
    let mut failures = 0u32;
    loop {
        let Err(Lost) = serve(&broker, index, &bus, &mut queues, &mut failures).await;
        bus.link_down("simulated broker lost");
        while queues.publish.try_recv().is_ok() {}
        failures = failures.saturating_add(1);
        tokio::time::sleep(RetryPolicy::BUS_RECONNECT.base_delay(failures)).await;
    }
}

async fn serve(
    broker: &SimBroker,
    index: usize,
    bus: &FleetBus,
    queues: &mut LinkQueues,
    failures: &mut u32,
) -> Result<std::convert::Infallible, Lost> {
    let (conn, mut inbox) = broker.connect(index).await?;
    while queues.control.try_recv().is_ok() {}
    for channel in bus.channels() {
        broker.subscription(conn, &channel, true).await?;
        bus.confirm(&channel);
    }
    *failures = 0;
    bus.link_up();
    let mut heartbeat = tokio::time::interval(BUS_HEARTBEAT);
    loop {
        tokio::select! {
            Some(command) = queues.publish.recv() => match command {
                LinkCommand::Publish { channel, payload } => {
                    broker.publish(conn, &channel, &payload).await?;
                }
                LinkCommand::Record(write) => broker.write(conn, &write).await?,
                LinkCommand::Flush(n) => bus.flush_reached(n),
                LinkCommand::Subscribe(_) | LinkCommand::Unsubscribe(_) => {}
            },
            Some(command) = queues.control.recv() => match command {
                LinkCommand::Subscribe(channel) => {
                    broker.subscription(conn, &channel, true).await?;
                    bus.confirm(&channel);
                }
                LinkCommand::Unsubscribe(channel) => {
                    broker.subscription(conn, &channel, false).await?;
                }
                LinkCommand::Publish { .. } | LinkCommand::Record(_) | LinkCommand::Flush(_) => {}
            },
            message = inbox.recv() => match message {
                Some(payload) => bus.deliver(&payload),
                None => return Err(Lost),
            },
            _ = heartbeat.tick() => broker.ping(conn).await?,
        }
    }
}

/// The fleet's replay buffer over the simulated broker: the engine's `FleetReplay`, the same
/// logic as the Redis adapter's `RedisReplay`, with [`SimStore`] reads.
pub type SimReplay = FleetReplay<SimStore>;

/// The reads of the replay buffer from the simulated broker, for instance `index`.
#[derive(Debug)]
pub struct SimStore {
    broker: Arc<SimBroker>,
    index: usize,
}

impl SimStore {
    /// Reads of instance `index` from `broker`.
    pub fn new(broker: Arc<SimBroker>, index: usize) -> Self {
        SimStore { broker, index }
    }

    async fn get(&self, reply_id: &str, after_seq: u64) -> Result<StoredRead, String> {
        // A read opens its own connection, as the adapter's reader does after a failure.
        let epoch = self.broker.lock().epoch;
        let conn = Conn { instance: self.index, epoch };
        let (state, entries) =
            self.broker.read(conn, reply_id, after_seq).await.map_err(|_| "broker lost")?;
        let entries = entries.into_iter().map(|(seq, e)| (seq, Some(e.into_bytes()))).collect();
        Ok(StoredRead { state, entries })
    }
}

impl ReplayStore for SimStore {
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<StoredRead, String>> {
        Box::pin(self.get(reply_id, after_seq))
    }

    fn state<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move { Ok(self.get(reply_id, u64::MAX).await?.state) })
    }
}
