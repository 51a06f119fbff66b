//! WebSocket keepalive (PROTOCOL.md §3.3): the server pings every `ping_interval`, drops a peer
//! whose pong does not come within `pong_wait` of the previous one (or of the connection's
//! start), and drops a peer that does not take a write within `write_wait`. Data frames do not
//! extend the pong deadline — a peer is alive when it answers pings, not when it talks.
//!
//! [`Keepalive`] is the sans-IO machine; `shell/src/http/ws.rs` drives it around a real socket,
//! its unit tests around in-memory channels.

use std::time::Duration;

use crate::time::Instant;

/// The three timings of a connection's keepalive (`WS_PING_INTERVAL`, `WS_PONG_WAIT`,
/// `WS_WRITE_WAIT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveTimings {
    /// Period between two server pings.
    pub ping_interval: Duration,
    /// Longest wait for a pong, counted from the previous pong (or the connection's start).
    pub pong_wait: Duration,
    /// Longest time one write may take.
    pub write_wait: Duration,
}

impl KeepaliveTimings {
    /// The defaults (PROTOCOL.md §3.3, §9): ping every 54 s, pong within 60 s, writes within
    /// 10 s.
    pub const DEFAULT: KeepaliveTimings = KeepaliveTimings {
        ping_interval: Duration::from_secs(54),
        pong_wait: Duration::from_secs(60),
        write_wait: Duration::from_secs(10),
    };
}

impl Default for KeepaliveTimings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why the machine gave up on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No pong within `pong_wait`.
    PongTimeout,
    /// A write did not finish within `write_wait`.
    WriteTimeout,
}

/// What the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a keepalive action must be carried out"]
pub enum KeepaliveAction {
    /// Send a ping frame (a write: report it with `on_write_started` / `on_write_finished`).
    SendPing,
    /// Give up on the peer: close the connection without waiting for it.
    Drop(DropReason),
}

/// The keepalive state of one WebSocket connection.
///
/// How to drive it (quinn-proto style): create it with [`Keepalive::new`] when the connection
/// opens. Feed inputs as they happen — [`on_pong`](Self::on_pong),
/// [`on_inbound`](Self::on_inbound) for any other frame, and
/// [`on_write_started`](Self::on_write_started) / [`on_write_finished`](Self::on_write_finished)
/// around every write. Wait until [`poll_timeout`](Self::poll_timeout) (or for the next input),
/// then call [`handle_timeout`](Self::handle_timeout) and carry out the action it returns.
/// `now` is the driver's monotonic clock; a `now` earlier than one already seen counts as the
/// latest one seen. Calling `handle_timeout` early, or twice, is harmless: it returns `None`
/// until something is due. `poll_timeout` may lie in the past (a ping held back by a write that
/// just finished): handle it at once.
///
/// Invariants (checked by the proptests below):
/// - a [`DropReason::PongTimeout`] comes exactly `pong_wait` after the last pong (or the start),
///   never earlier, and data frames never postpone it;
/// - a [`DropReason::WriteTimeout`] comes exactly `write_wait` after the write in flight began,
///   and only while one is in flight;
/// - no ping is asked for while a write is in flight, and two pings are at least
///   `ping_interval` apart;
/// - after a drop the machine is finished: `poll_timeout` is `None` and `handle_timeout` returns
///   `None`, so a connection is dropped once.
#[derive(Debug, Clone)]
pub struct Keepalive {
    timings: KeepaliveTimings,
    /// The latest `now` seen.
    clock: Instant,
    next_ping: Instant,
    pong_deadline: Instant,
    /// Set while a write is in flight.
    write_deadline: Option<Instant>,
    dropped: Option<DropReason>,
}

impl Keepalive {
    /// The state of a connection opened at `now`: first ping one `ping_interval` later, first
    /// pong due one `pong_wait` later.
    pub fn new(timings: KeepaliveTimings, now: Instant) -> Self {
        Self {
            timings,
            clock: now,
            next_ping: now + Self::period(timings),
            pong_deadline: now + timings.pong_wait,
            write_deadline: None,
            dropped: None,
        }
    }

    /// A pong arrived: the peer has another `pong_wait` from now.
    pub fn on_pong(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.dropped.is_none() {
            self.pong_deadline = self.pong_deadline.max(now + self.timings.pong_wait);
        }
    }

    /// Any frame other than a pong arrived. It moves no deadline — PROTOCOL.md §3.3: only pongs
    /// extend the read deadline — and is an input so that this rule lives here, not in drivers.
    pub fn on_inbound(&mut self, now: Instant) {
        self.advance(now);
    }

    /// A write begins; it must finish within `write_wait`. A second call before
    /// `on_write_finished` keeps the first deadline (the same write is still in flight).
    pub fn on_write_started(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.dropped.is_none() {
            self.write_deadline.get_or_insert(now + self.timings.write_wait);
        }
    }

    /// The write in flight finished (or failed, which the driver handles itself).
    pub fn on_write_finished(&mut self, now: Instant) {
        self.advance(now);
        self.write_deadline = None;
    }

    /// When `handle_timeout` must be called next if no input comes first; `None` once dropped.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dropped.is_some() {
            return None;
        }
        let deadline = match self.write_deadline {
            Some(write) => write.min(self.pong_deadline),
            // While a write is in flight no ping is due: it would queue behind the write.
            None => self.next_ping.min(self.pong_deadline),
        };
        Some(deadline)
    }

    /// Time has passed: what is due at `now`, if anything. A drop wins over a ping.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Option<KeepaliveAction> {
        let now = self.advance(now);
        if self.dropped.is_some() {
            return None;
        }
        let reason = if self.write_deadline.is_some_and(|at| at <= now) {
            Some(DropReason::WriteTimeout)
        } else if self.pong_deadline <= now {
            Some(DropReason::PongTimeout)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped = Some(reason);
            return Some(KeepaliveAction::Drop(reason));
        }
        if self.write_deadline.is_none() && self.next_ping <= now {
            // Pings missed while a write was in flight are not made up: one ping, then the
            // regular period from now.
            self.next_ping = now + Self::period(self.timings);
            return Some(KeepaliveAction::SendPing);
        }
        None
    }

    /// Why the peer was dropped, once it was.
    pub fn dropped(&self) -> Option<DropReason> {
        self.dropped
    }

    /// The timings this machine runs with.
    pub fn timings(&self) -> KeepaliveTimings {
        self.timings
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.clock = self.clock.max(now);
        self.clock
    }

    /// The ping period, at least 1 ns so a zero setting cannot make `poll_timeout` spin.
    fn period(timings: KeepaliveTimings) -> Duration {
        timings.ping_interval.max(Duration::from_nanos(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;
    use proptest::prelude::*;

    const T: KeepaliveTimings = KeepaliveTimings::DEFAULT;

    /// Drives `k` from `now` to `until` by its own `poll_timeout`, answering nothing; returns
    /// the actions with their times.
    fn drive(k: &mut Keepalive, until: Instant) -> Vec<(Instant, KeepaliveAction)> {
        let mut seen = Vec::new();
        while let Some(at) = k.poll_timeout().filter(|at| *at <= until) {
            if let Some(action) = k.handle_timeout(at) {
                seen.push((at, action));
            }
        }
        seen
    }

    #[test]
    fn a_silent_peer_gets_one_ping_then_is_dropped_at_the_pong_wait() {
        let start = Instant::from_secs(100);
        let mut k = Keepalive::new(T, start);
        assert_eq!(k.poll_timeout(), Some(start + T.ping_interval));
        let seen = drive(&mut k, start + 10 * T.pong_wait);
        assert_eq!(
            seen,
            [
                (start + T.ping_interval, KeepaliveAction::SendPing),
                (start + T.pong_wait, KeepaliveAction::Drop(DropReason::PongTimeout)),
            ]
        );
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(k.handle_timeout(start + 100 * T.pong_wait), None);
    }

    #[test]
    fn a_pong_extends_the_deadline_and_data_frames_do_not() {
        let mut k = Keepalive::new(T, Instant::ZERO);
        assert_eq!(k.handle_timeout(Instant::from_secs(54)), Some(KeepaliveAction::SendPing));
        k.on_pong(Instant::from_secs(55));
        k.on_inbound(Instant::from_secs(100));
        assert_eq!(k.poll_timeout(), Some(Instant::from_secs(108)));
        assert_eq!(k.handle_timeout(Instant::from_secs(60)), None);
        assert_eq!(k.handle_timeout(Instant::from_secs(108)), Some(KeepaliveAction::SendPing));
        assert_eq!(k.poll_timeout(), Some(Instant::from_secs(115)));
        assert_eq!(
            k.handle_timeout(Instant::from_secs(115)),
            Some(KeepaliveAction::Drop(DropReason::PongTimeout))
        );
    }

    #[test]
    fn a_stalled_write_is_dropped_at_the_write_wait_and_holds_back_pings() {
        let mut k = Keepalive::new(T, Instant::ZERO);
        k.on_write_started(Instant::from_secs(50));
        assert_eq!(k.poll_timeout(), Some(Instant::from_secs(60)));
        assert_eq!(k.handle_timeout(Instant::from_secs(59)), None, "no ping during a write");
        assert_eq!(
            k.handle_timeout(Instant::from_secs(60)),
            Some(KeepaliveAction::Drop(DropReason::WriteTimeout))
        );
    }

    #[test]
    fn a_finished_write_lets_the_missed_ping_go_once() {
        let mut k = Keepalive::new(T, Instant::ZERO);
        k.on_write_started(Instant::from_secs(50));
        k.on_write_finished(Instant::from_secs(58));
        k.on_pong(Instant::from_secs(58));
        assert_eq!(k.poll_timeout(), Some(Instant::from_secs(54)));
        assert_eq!(k.handle_timeout(Instant::from_secs(58)), Some(KeepaliveAction::SendPing));
        assert_eq!(k.poll_timeout(), Some(Instant::from_secs(58 + 54)));
    }

    /// One input of the property test, `at` seconds-tenths after the previous one.
    #[derive(Debug, Clone, Copy)]
    enum Input {
        Pong,
        Data,
        WriteStart,
        WriteEnd,
        Tick,
    }

    fn input() -> impl Strategy<Value = (Input, u64)> {
        let kind = prop_oneof![
            Just(Input::Pong),
            Just(Input::Data),
            Just(Input::WriteStart),
            Just(Input::WriteEnd),
            Just(Input::Tick),
        ];
        (kind, 0u64..400)
    }

    fn timings() -> impl Strategy<Value = KeepaliveTimings> {
        (1u32..100, 1u32..100, 1u32..30).prop_map(|(ping, pong, write)| KeepaliveTimings {
            ping_interval: ping * SECOND,
            pong_wait: pong * SECOND,
            write_wait: write * SECOND,
        })
    }

    proptest! {
        /// A reference model of the rules, checked against the machine at every step, the
        /// machine driven the way the shell drives it: every due timeout handled before the
        /// next input.
        #[test]
        fn keepalive_follows_its_rules(
            t in timings(),
            inputs in prop::collection::vec(input(), 0..80),
        ) {
            let mut k = Keepalive::new(t, Instant::ZERO);
            let mut now = Instant::ZERO;
            let mut last_pong = Instant::ZERO;
            let mut write_began: Option<Instant> = None;
            let mut last_ping: Option<Instant> = None;
            let mut drops = 0;
            for (what, tenths) in inputs {
                let next = now + Duration::from_millis(100 * tenths);
                // Handle everything due before the next input, at its due time.
                while let Some(due) = k.poll_timeout().filter(|at| *at <= next) {
                    // A ping held back by a write is due at once: its time may have passed.
                    let at = due.max(now);
                    now = at;
                    match k.handle_timeout(at) {
                        Some(KeepaliveAction::SendPing) => {
                            prop_assert!(write_began.is_none(), "ping during a write");
                            if let Some(prev) = last_ping {
                                prop_assert!(at - prev >= t.ping_interval);
                            } else {
                                prop_assert!(at >= Instant::ZERO + t.ping_interval);
                            }
                            last_ping = Some(at);
                        }
                        Some(KeepaliveAction::Drop(DropReason::PongTimeout)) => {
                            prop_assert_eq!(at, last_pong + t.pong_wait);
                            drops += 1;
                        }
                        Some(KeepaliveAction::Drop(DropReason::WriteTimeout)) => {
                            let began = write_began.expect("a write in flight");
                            prop_assert_eq!(at, began + t.write_wait);
                            drops += 1;
                        }
                        None => {}
                    }
                }
                now = next;
                let before = k.poll_timeout();
                match what {
                    Input::Pong => {
                        k.on_pong(now);
                        if k.dropped().is_none() {
                            last_pong = now;
                        }
                    }
                    Input::Data => {
                        k.on_inbound(now);
                        prop_assert_eq!(k.poll_timeout(), before, "a data frame moved a deadline");
                    }
                    Input::WriteStart => {
                        k.on_write_started(now);
                        if k.dropped().is_none() && write_began.is_none() {
                            write_began = Some(now);
                        }
                    }
                    Input::WriteEnd => {
                        k.on_write_finished(now);
                        write_began = None;
                    }
                    Input::Tick => {
                        // An early or repeated call does nothing unless something is due.
                        if before.is_none_or(|at| at > now) {
                            prop_assert_eq!(k.handle_timeout(now), None);
                        }
                    }
                }
                if k.dropped().is_some() {
                    prop_assert_eq!(k.poll_timeout(), None);
                    prop_assert_eq!(k.handle_timeout(now + t.pong_wait), None);
                }
            }
            prop_assert!(drops <= 1, "dropped more than once");
        }
    }
}
