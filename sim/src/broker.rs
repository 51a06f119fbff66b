//! The simulated pub/sub broker of the fleet world (stands in for Redis at the adapter seam):
//! channels and subscriptions per instance, the replay buffer's keys with their TTLs, all on
//! madsim time, plus the faults the fleet world injects — one instance cut from the broker
//! (partition), a latency added to every command (delay), and a restart that loses every
//! subscription and key. [`start_link`] is the link task of one instance, the same loop as the
//! Redis adapter's (`shell/src/adapters/bus`): connect, resubscribe, confirm, publish, deliver,
//! heartbeat, and on any failure mark the bus down and reconnect with `BUS_RECONNECT`.
//! [`SimReplay`] is the replay buffer over the broker, as `RedisReplay` is over Redis.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatbox::engine::delivery::wire::ReplayEntry;
use chatbox::engine::delivery::{
    BoxFuture, FleetBus, LinkCommand, LinkQueues, LocalReplay, ReplayBuffer, ReplayWrite,
    ReplyFrame, SharedRead, SharedReplay,
};
use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, BUS_HEARTBEAT};
use chatbox_core::replay::{alive_ttl, stream_ttl, Liveness, Replay};
use chatbox_core::retry::RetryPolicy;
use chatbox_core::Instant;
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
    /// Commands answered (for the report).
    commands: u64,
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
            let value = format!("{}:{}", if write.ended { "ended" } else { "live" }, write.session);
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
                LinkCommand::Publish { .. } | LinkCommand::Record(_) => {}
            },
            message = inbox.recv() => match message {
                Some(payload) => bus.deliver(&payload),
                None => return Err(Lost),
            },
            _ = heartbeat.tick() => broker.ping(conn).await?,
        }
    }
}

/// The fleet's replay buffer over the simulated broker: the same logic as the Redis adapter's
/// `RedisReplay` (this instance's replies in memory, every reply's frames in the broker).
pub struct SimReplay {
    local: LocalReplay,
    bus: Arc<FleetBus>,
    broker: Arc<SimBroker>,
    index: usize,
    live: Mutex<HashMap<String, String>>,
    alive: Duration,
    window: Duration,
}

impl std::fmt::Debug for SimReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimReplay").field("index", &self.index).finish_non_exhaustive()
    }
}

impl SimReplay {
    /// The buffer of instance `index` (idle deadline `idle`, `RESUME_WINDOW` `window`).
    pub fn new(
        local: LocalReplay,
        bus: Arc<FleetBus>,
        broker: Arc<SimBroker>,
        index: usize,
        idle: Duration,
        window: Duration,
    ) -> Self {
        let live = Mutex::new(HashMap::new());
        SimReplay { local, bus, broker, index, live, alive: alive_ttl(idle), window }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, at: ReplyFrame<'_>, frame: &str) {
        if at.last {
            self.live().remove(at.reply_id);
        } else {
            self.live().insert(at.reply_id.to_string(), at.session.to_string());
        }
        let state_ttl = if at.last { self.window } else { self.alive };
        let entry = ReplayEntry::new(at.session, at.seq, at.last, frame).encode();
        self.bus.record(ReplayWrite {
            reply_id: at.reply_id.to_string(),
            session: at.session.to_string(),
            entry: Some((at.seq, entry)),
            ended: at.last,
            state_ttl,
            stream_ttl: stream_ttl(self.alive, at.last, self.window),
        });
    }

    async fn get(&self, reply_id: &str, after_seq: u64) -> Result<SharedRead, String> {
        // A read opens its own connection, as the adapter's reader does after a failure.
        let epoch = self.broker.lock().epoch;
        let conn = Conn { instance: self.index, epoch };
        let (state, entries) =
            self.broker.read(conn, reply_id, after_seq).await.map_err(|_| "broker lost")?;
        let parse = |v: &str| match v.split_once(':')? {
            ("live", s) => Some((Liveness::Live, s.to_string())),
            ("ended", s) => Some((Liveness::Ended, s.to_string())),
            _ => None,
        };
        let entries = entries
            .into_iter()
            .filter_map(|(seq, e)| {
                let d = ReplayEntry::decode(e.as_bytes()).ok()?;
                (d.seq == seq).then(|| (seq, d.session, Arc::from(d.frame)))
            })
            .collect();
        Ok(SharedRead { state: state.as_deref().and_then(parse), entries })
    }
}

impl ReplayBuffer for SimReplay {
    fn publish(
        &self,
        at: ReplyFrame<'_>,
        frame: &Arc<str>,
        now: Instant,
        fan_out: &mut dyn FnMut(),
    ) {
        self.local.publish(at, frame, now, &mut || {
            self.record(at, frame);
            fan_out();
        });
    }

    fn end(&self, reply_id: &str, now: Instant) {
        self.local.end(reply_id, now);
        let Some(session) = self.live().remove(reply_id) else { return };
        self.bus.record(ReplayWrite {
            reply_id: reply_id.to_string(),
            session,
            entry: None,
            ended: true,
            state_ttl: self.window,
            stream_ttl: self.window,
        });
    }

    fn resume(
        &self,
        session: &str,
        reply_id: &str,
        after_seq: u64,
        now: Instant,
        attach: &mut dyn FnMut(Replay<Arc<str>>),
    ) {
        self.local.resume(session, reply_id, after_seq, now, attach);
    }

    fn frames(&self) -> usize {
        self.local.frames()
    }

    fn shared(&self) -> Option<&dyn SharedReplay> {
        Some(self)
    }
}

impl SharedReplay for SimReplay {
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<SharedRead, String>> {
        Box::pin(self.get(reply_id, after_seq))
    }

    fn liveness<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Option<Liveness>> {
        Box::pin(async move {
            let read = self.get(reply_id, u64::MAX).await.ok()?;
            Some(read.state.map_or(Liveness::Gone, |(l, _)| l))
        })
    }

    fn alive_ttl(&self) -> Duration {
        self.alive
    }
}
