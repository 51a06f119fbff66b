//! Fleet-wide turns (PROTOCOL.md §10 item 27 across a fleet): one user's messages are answered
//! one at a time even when that user's devices are connected to different instances. Inside one
//! instance the ordered worker (`frames::Ordered`) already queues them; in a fleet (`REDIS_URL`)
//! the worker also takes the user's turn in Redis ([`SharedTurns`]) before it handles a message
//! and gives it back once the reply has ended. A second device's message on another instance so
//! waits for the first reply, and is answered with that exchange in its history, instead of
//! running beside it.
//!
//! A turn is a lease under a holder id of its own, renewed every [`FLEET_TURN_RENEW`] while the
//! message is handled and expiring [`FLEET_TURN_TTL`] after its holder stops (a killed
//! instance). Waiting messages queue in arrival order (their first ask): when the turn is given
//! back it goes to the queue's head, not to whoever asks first, so an instance with a backlog of
//! the user's messages cannot starve another's. A waiting message asks again on core's
//! [`RetryPolicy::FLEET_TURN_POLL`] schedule; one that stops asking for
//! [`FLEET_TURN_WAITER_TTL`](chatbox_core::budgets::FLEET_TURN_WAITER_TTL) leaves the queue.
//!
//! A message is handled without the turn when one holder (or queue head) keeps it past
//! [`fleet_turn_wait`] (a live holder ends its reply within `LLM_STREAM_TIMEOUT`), and while
//! Redis does not answer: each instance then orders only its own messages, and [`FleetHealth`]
//! logs the outage once. One still waiting when its server begins shutting down is not handled
//! at all ([`NotHandled`]): stored then, it would land beside the reply it waited for, and the
//! draining server could not answer it anyway.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::budgets::{fleet_turn_wait, FLEET_TURN_RENEW, FLEET_TURN_TTL};
use chatbox_core::retry::RetryPolicy;
use tokio::sync::watch;

use super::clock::Clock;
use super::fleet_limits::{FleetHealth, Unavailable};
use super::metrics::Metrics;

pub use chatbox_core::turn::Take;

/// Turns every instance of the fleet shares: at most one holder per key at a time, the others
/// queued in the order they first asked (core's [`chatbox_core::turn::TurnBook`] is the rule).
#[async_trait]
pub trait SharedTurns: Send + Sync + fmt::Debug {
    /// Takes `key`'s turn for `holder` for `ttl` when it is free and `holder` heads the queue
    /// (or nobody queues); otherwise queues `holder` (first ask) or keeps it queued (later ones).
    async fn take(&self, key: &str, holder: &str, ttl: Duration) -> Result<Take, Unavailable>;

    /// Extends `holder`'s turn of `key` to `ttl` from now; `Ok(false)` when it no longer holds
    /// it (it expired, or Redis lost it).
    async fn renew(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, Unavailable>;

    /// Gives `key`'s turn back when `holder` holds it, and takes `holder` out of the queue
    /// (idempotent).
    async fn give_back(&self, key: &str, holder: &str) -> Result<(), Unavailable>;
}

/// The shared turns and this instance's name in their holder ids.
#[derive(Debug)]
struct Attached {
    shared: Arc<dyn SharedTurns>,
    instance: String,
}

/// The turns service: without a fleet it only runs the work; with one attached it runs the work
/// in its key's fleet-wide turn.
#[derive(Debug)]
pub struct Turns {
    fleet: OnceLock<Attached>,
    health: FleetHealth,
    holders: AtomicU64,
    longest_wait: Duration,
    clock: Clock,
    metrics: Arc<Metrics>,
}

/// How the wait for a turn ended.
enum Waited {
    /// The turn is this holder's.
    Held,
    /// Handle the message without it (Redis away, or the wait too long).
    Without,
    /// Handle the message without it: the take went unanswered (a timeout), so Redis may have
    /// made this holder the turn's after all; it is given back once the message is handled,
    /// rather than left to keep the user's other instances waiting for its TTL.
    Unanswered,
    /// The server began shutting down: do not handle the message.
    Stopping,
}

/// A message still waiting for its turn when its server began shutting down: it was not
/// handled (nothing stored), and the caller answers `SERVICE_ERROR` "Service temporarily
/// unavailable", as a draining server answers a message, so the client sends
/// it again to an instance that stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHandled;

impl Turns {
    /// No fleet yet; a turn is waited for at most [`fleet_turn_wait`] of `stream_timeout`.
    pub fn new(stream_timeout: Duration, clock: Clock, metrics: Arc<Metrics>) -> Self {
        Self {
            fleet: OnceLock::new(),
            health: FleetHealth::named(
                "fleet-wide turns",
                "each instance orders only its own connections' messages",
            ),
            holders: AtomicU64::new(0),
            longest_wait: fleet_turn_wait(stream_timeout),
            clock,
            metrics,
        }
    }

    /// Makes turns fleet-wide through `shared`; `instance` names this process in holder ids
    /// (once, at start).
    pub fn attach(&self, shared: Arc<dyn SharedTurns>, instance: String) {
        if self.fleet.set(Attached { shared, instance }).is_err() {
            tracing::warn!("fleet-wide turns were already attached; keeping the first");
        }
    }

    /// Whether turns are fleet-wide (attached): only then does a caller need a key.
    pub fn is_fleet(&self) -> bool {
        self.fleet.get().is_some()
    }

    /// Runs `work` in `key`'s fleet-wide turn; at once without a fleet or a key. The server's
    /// stop signal (`stop`, subscribed to only in a fleet) turning true while the turn is waited
    /// for drops `work` unrun ([`NotHandled`]).
    pub async fn in_turn<F: Future>(
        &self,
        key: Option<&str>,
        stop: impl FnOnce() -> watch::Receiver<bool>,
        work: F,
    ) -> Result<F::Output, NotHandled> {
        let (Some(key), Some(fleet)) = (key, self.fleet.get()) else { return Ok(work.await) };
        let holder = format!("{}-{}", fleet.instance, self.holders.fetch_add(1, Ordering::Relaxed));
        let waited = self.wait(fleet.shared.as_ref(), key, &holder, stop()).await;
        if !matches!(waited, Waited::Held) && self.health.usable(self.clock.now()) {
            // Out of the queue at once, so those behind are not held up by a stale entry.
            let _ = fleet.shared.give_back(key, &holder).await;
        }
        match waited {
            Waited::Held => {}
            Waited::Without => {
                self.metrics.fleet_turn_fallbacks.inc();
                return Ok(work.await);
            }
            Waited::Unanswered => {
                self.metrics.fleet_turn_fallbacks.inc();
                let output = work.await;
                // After the work, not before: a Redis that hangs must not delay the reply.
                let _ = fleet.shared.give_back(key, &holder).await;
                return Ok(output);
            }
            Waited::Stopping => return Err(NotHandled),
        }
        let output = {
            let mut work = pin!(work);
            let renewing = pin!(self.renew_while_held(fleet.shared.as_ref(), key, &holder));
            tokio::select! {
                output = &mut work => output,
                () = renewing => work.await,
            }
        };
        if let Err(error) = fleet.shared.give_back(key, &holder).await {
            // The turn expires by itself within its TTL.
            self.health.failed(self.clock.now(), &error);
        }
        Ok(output)
    }

    /// Takes the turn, asking again while another holder has it.
    async fn wait(
        &self,
        shared: &dyn SharedTurns,
        key: &str,
        holder: &str,
        mut stop: watch::Receiver<bool>,
    ) -> Waited {
        // Who is in the way, and since when: the queue moving resets the clock.
        let mut in_the_way: Option<(String, chatbox_core::Instant)> = None;
        let mut attempts = 0u32;
        loop {
            if !self.health.usable(self.clock.now()) {
                return Waited::Without;
            }
            let ahead = match shared.take(key, holder, FLEET_TURN_TTL).await {
                Ok(Take::Held) => {
                    self.health.succeeded();
                    return Waited::Held;
                }
                Ok(Take::Queued { ahead }) => {
                    self.health.succeeded();
                    ahead
                }
                Err(error) => {
                    self.health.failed(self.clock.now(), &error);
                    return Waited::Unanswered;
                }
            };
            if attempts == 0 {
                self.metrics.fleet_turn_waits.inc();
            }
            attempts = attempts.saturating_add(1);
            let now = self.clock.now();
            let since = match &in_the_way {
                Some((known, since)) if *known == ahead => *since,
                _ => {
                    in_the_way = Some((ahead, now));
                    now
                }
            };
            if now.saturating_duration_since(since) >= self.longest_wait {
                tracing::warn!(
                    held_ms = u64::try_from(self.longest_wait.as_millis()).unwrap_or(u64::MAX),
                    "one holder kept the user's fleet-wide turn past the longest wait; answering anyway"
                );
                return Waited::Without;
            }
            let pause = RetryPolicy::FLEET_TURN_POLL.base_delay(attempts);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A closed signal (no server to stop) never ends the wait.
                Ok(_) = stop.wait_for(|stopping| *stopping) => return Waited::Stopping,
            }
        }
    }

    /// Renews the turn every [`FLEET_TURN_RENEW`]; returns when it can no longer be held (taken
    /// by another holder after it expired), so the work goes on without it.
    async fn renew_while_held(&self, shared: &dyn SharedTurns, key: &str, holder: &str) {
        loop {
            tokio::time::sleep(FLEET_TURN_RENEW).await;
            match shared.renew(key, holder, FLEET_TURN_TTL).await {
                Ok(true) => self.health.succeeded(),
                Ok(false) => {
                    tracing::warn!(
                        "the user's fleet-wide turn expired while a message was handled"
                    );
                    return;
                }
                // Redis away: the turn lasts its TTL; the next renewal may reach it.
                Err(error) => self.health.failed(self.clock.now(), &error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use chatbox_core::budgets::FLEET_TURN_WAITER_TTL;
    use chatbox_core::turn::TurnBook;

    /// One Redis's turns: a book per key (core's model of the scripts), on the runtime's
    /// (paused) clock; fails every call while `down`, and applies a take but loses its answer
    /// while `mute` (a timeout after Redis ran the script).
    #[derive(Debug)]
    struct Shared {
        clock: Clock,
        books: Mutex<HashMap<String, TurnBook>>,
        down: AtomicBool,
        mute: AtomicBool,
        calls: AtomicU64,
    }

    impl Shared {
        fn new(clock: Clock) -> Arc<Self> {
            Arc::new(Self {
                clock,
                books: Mutex::new(HashMap::new()),
                down: AtomicBool::new(false),
                mute: AtomicBool::new(false),
                calls: AtomicU64::new(0),
            })
        }

        /// Runs `op` on `key`'s book, as one Redis call.
        fn call<T>(
            &self,
            key: &str,
            op: impl FnOnce(&mut TurnBook) -> T,
        ) -> Result<T, Unavailable> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(Unavailable("down".into()));
            }
            Ok(op(self.books.lock().unwrap().entry(key.to_string()).or_default()))
        }

        fn holder(&self, key: &str) -> Option<String> {
            let books = self.books.lock().unwrap();
            books.get(key).and_then(|b| b.holder(self.clock.now())).map(str::to_owned)
        }

        /// A holder of `key` that never gives it back (its turn lasts an hour).
        fn stuck(&self, key: &str) {
            let (hour, now) = (Duration::from_secs(3600), self.clock.now());
            let _ = self.call(key, |b| b.take("stuck", hour, FLEET_TURN_WAITER_TTL, now));
        }

        fn waiters(&self, key: &str) -> Vec<String> {
            let books = self.books.lock().unwrap();
            books.get(key).map(|b| b.waiters().map(str::to_owned).collect()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl SharedTurns for Shared {
        async fn take(&self, key: &str, holder: &str, ttl: Duration) -> Result<Take, Unavailable> {
            let now = self.clock.now();
            let taken = self.call(key, |b| b.take(holder, ttl, FLEET_TURN_WAITER_TTL, now));
            if self.mute.swap(false, Ordering::Relaxed) {
                return Err(Unavailable("timed out".into()));
            }
            taken
        }

        async fn renew(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, Unavailable> {
            let now = self.clock.now();
            self.call(key, |b| b.renew(holder, ttl, now))
        }

        async fn give_back(&self, key: &str, holder: &str) -> Result<(), Unavailable> {
            self.call(key, |b| b.give_back(holder))
        }
    }

    const STREAM: Duration = Duration::from_secs(120);

    /// An instance's turns attached to `shared`.
    fn instance(shared: &Arc<Shared>, name: &str) -> (Arc<Turns>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let turns = Arc::new(Turns::new(STREAM, shared.clock, Arc::clone(&metrics)));
        turns.attach(Arc::clone(shared) as Arc<dyn SharedTurns>, name.to_string());
        (turns, metrics)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "a test runs two instances' messages side by side"
    )]
    fn spawn<F>(work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        tokio::spawn(work)
    }

    fn running() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_fleet_the_work_runs_at_once() {
        let metrics = Arc::new(Metrics::new());
        let turns = Turns::new(STREAM, Clock::new(), Arc::clone(&metrics));
        assert_eq!(turns.in_turn(Some("u1"), running, async { 7 }).await, Ok(7));
        assert_eq!(metrics.fleet_turn_waits.get() + metrics.fleet_turn_fallbacks.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_instance_s_message_waits_for_the_first_and_then_holds_the_turn() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        let ((a, a_metrics), (b, b_metrics)) = (instance(&shared, "a"), instance(&shared, "b"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (a, order) = (Arc::clone(&a), Arc::clone(&order));
            spawn(async move {
                a.in_turn(Some("u1"), running, async {
                    order.lock().unwrap().push("first starts");
                    released.await.unwrap();
                    order.lock().unwrap().push("first ends");
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(shared.holder("u1").is_some_and(|h| h.starts_with("a-")));
        let second = {
            let (b, order) = (Arc::clone(&b), Arc::clone(&order));
            spawn(async move {
                b.in_turn(Some("u1"), running, async {
                    order.lock().unwrap().push("second starts");
                    Arc::clone(&order)
                })
                .await
            })
        };
        // Another user is not held up by u1's turn.
        assert_eq!(b.in_turn(Some("u2"), running, async { 2 }).await, Ok(2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(*order.lock().unwrap(), ["first starts"], "the second waits");
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["first starts", "first ends", "second starts"]);
        assert_eq!(shared.holder("u1"), None, "given back after the work");
        assert_eq!((a_metrics.fleet_turn_waits.get(), b_metrics.fleet_turn_waits.get()), (0, 1));
        assert_eq!(b_metrics.fleet_turn_fallbacks.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_reply_keeps_its_turn_past_the_ttl() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        let (a, _) = instance(&shared, "a");
        let probe = Arc::clone(&shared);
        let held_late = a
            .in_turn(Some("u1"), running, async move {
                tokio::time::sleep(FLEET_TURN_TTL * 3).await;
                probe.holder("u1")
            })
            .await;
        assert!(
            held_late.unwrap().is_some_and(|h| h.starts_with("a-")),
            "renewed while the work ran"
        );
        assert_eq!(shared.holder("u1"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_never_lets_go_is_overtaken_after_the_longest_wait() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        shared.stuck("u1");
        let (b, metrics) = instance(&shared, "b");
        let started = clock.now();
        let ran_at = b.in_turn(Some("u1"), running, async { clock.now() }).await;
        let waited = ran_at.unwrap().saturating_duration_since(started);
        assert!(waited >= fleet_turn_wait(STREAM), "waited {waited:?}");
        assert!(waited < fleet_turn_wait(STREAM) + Duration::from_secs(1), "waited {waited:?}");
        assert_eq!((metrics.fleet_turn_waits.get(), metrics.fleet_turn_fallbacks.get()), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn shutting_down_ends_the_wait_without_handling_the_message() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        shared.stuck("u1");
        let (b, metrics) = instance(&shared, "b");
        let (stop_tx, stop) = watch::channel(false);
        let ran = Arc::new(AtomicBool::new(false));
        let work = {
            let ran = Arc::clone(&ran);
            async move { ran.store(true, Ordering::Relaxed) }
        };
        let waiting = spawn(async move { b.in_turn(Some("u1"), move || stop, work).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiting.is_finished(), "still waiting for the stuck holder");
        assert_eq!(shared.waiters("u1").len(), 1);
        stop_tx.send_replace(true);
        assert_eq!(waiting.await.unwrap(), Err(NotHandled));
        assert!(!ran.load(Ordering::Relaxed), "not handled: nothing stored beside the holder's");
        assert!(shared.waiters("u1").is_empty(), "out of the queue");
        assert_eq!(metrics.fleet_turn_fallbacks.get(), 0, "not answered without the turn");
    }

    #[tokio::test(start_paused = true)]
    async fn a_take_whose_answer_was_lost_is_given_back_after_the_message() {
        let shared = Shared::new(Clock::new());
        let (a, metrics) = instance(&shared, "a");
        shared.mute.store(true, Ordering::Relaxed);
        let during = a.in_turn(Some("u1"), running, async { shared.holder("u1") }).await;
        assert_eq!(during, Ok(Some("a-0".to_string())), "Redis made it the holder after all");
        assert_eq!(metrics.fleet_turn_fallbacks.get(), 1);
        assert_eq!(shared.holder("u1"), None, "not left to block the user for its TTL");
    }

    #[tokio::test(start_paused = true)]
    async fn while_redis_is_away_messages_run_without_the_turn_and_redis_is_asked_after_a_pause() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        shared.down.store(true, Ordering::Relaxed);
        let (a, metrics) = instance(&shared, "a");
        assert_eq!(a.in_turn(Some("u1"), running, async { 1 }).await, Ok(1));
        assert_eq!(a.in_turn(Some("u1"), running, async { 2 }).await, Ok(2));
        // The first message's take, and its give-back in case Redis applied it; the second
        // message is not asked about before the pause.
        assert_eq!(shared.calls.load(Ordering::Relaxed), 2, "not asked again before the pause");
        assert_eq!(metrics.fleet_turn_fallbacks.get(), 2);
        shared.down.store(false, Ordering::Relaxed);
        tokio::time::sleep(chatbox_core::budgets::FLEET_LIMIT_RETRY_PAUSE).await;
        let holder = Arc::clone(&shared);
        let during = a.in_turn(Some("u1"), running, async move { holder.holder("u1") }).await;
        assert!(during.unwrap().is_some(), "held again once Redis answers");
        assert_eq!(metrics.fleet_turn_fallbacks.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_turn_goes_to_the_longest_waiting_message_not_to_the_holder_s_next_one() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        let ((a, _), (b, _)) = (instance(&shared, "a"), instance(&shared, "b"));
        let order = Arc::new(Mutex::new(Vec::new()));
        let work = |name: &'static str| {
            let order = Arc::clone(&order);
            async move {
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        // A's ordered worker: a2 asks for the turn the moment a1 gives it back.
        let on_a = {
            let (a, a1, a2) = (Arc::clone(&a), work("a1"), work("a2"));
            spawn(async move {
                a.in_turn(Some("u1"), running, a1).await.unwrap();
                a.in_turn(Some("u1"), running, a2).await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let on_b = {
            let (b, b1) = (Arc::clone(&b), work("b1"));
            spawn(async move { b.in_turn(Some("u1"), running, b1).await })
        };
        on_a.await.unwrap();
        on_b.await.unwrap().unwrap();
        assert_eq!(*order.lock().unwrap(), ["a1", "b1", "a2"], "b1 asked before a2");
        assert!(shared.waiters("u1").is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_stops_waiting_leaves_the_queue() {
        let clock = Clock::new();
        let shared = Shared::new(clock);
        let (b, _) = instance(&shared, "b");
        shared.stuck("u1");
        let (stop_tx, stop) = watch::channel(false);
        let waiting = spawn(async move { b.in_turn(Some("u1"), move || stop, async {}).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(shared.waiters("u1").len(), 1);
        stop_tx.send_replace(true);
        assert_eq!(waiting.await.unwrap(), Err(NotHandled));
        assert!(shared.waiters("u1").is_empty(), "taken out at once, not after its TTL");
    }
}
