//! A user's fleet-wide turn (PROTOCOL.md §10 item 27 across a fleet), as a value: one holder at
//! a time under a lease, the others queued in the order they first asked. This is the model of
//! the Redis scripts `RedisLimits` runs (`shell/src/adapters/limits.rs`), as `rate::SlidingLog`
//! is of the rate script; the shell's unit-test double and the fleet simulation's broker keep
//! one [`TurnBook`] per user, so the three agree by construction with what is tested here.

use std::time::Duration;

use crate::Instant;

/// What asking for a turn got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// The turn is the asker's for the lease.
    Held,
    /// The asker is queued; `ahead` holds the turn now, or is the queue's head while the turn
    /// is free.
    Queued {
        /// The holder id in the way.
        ahead: String,
    },
}

/// One user's turn: its holder with the lease's end, and the waiters with their first place and
/// last ask.
#[derive(Debug, Clone, Default)]
pub struct TurnBook {
    holder: Option<(String, Instant)>,
    /// Waiters in the order they first asked, with their last ask.
    queue: Vec<(String, Instant)>,
}

impl TurnBook {
    /// Nobody holds it, nobody waits.
    pub fn new() -> Self {
        Self::default()
    }

    /// The holder at `now` (a lease past its end holds nothing).
    pub fn holder(&self, now: Instant) -> Option<&str> {
        self.holder.as_ref().filter(|(_, until)| *until > now).map(|(h, _)| h.as_str())
    }

    /// The waiters, first in line first.
    pub fn waiters(&self) -> impl Iterator<Item = &str> {
        self.queue.iter().map(|(w, _)| w.as_str())
    }

    /// `holder` asks at `now` for a lease of `ttl`: the turn when it is `holder`'s already, or
    /// free with nobody queued, or free with `holder` at the queue's head; otherwise `holder` is
    /// queued (its place kept on later asks) behind the one returned. A waiter silent for
    /// `patience` leaves the queue.
    pub fn take(&mut self, holder: &str, ttl: Duration, patience: Duration, now: Instant) -> Take {
        let current = self.holder(now).map(str::to_owned);
        if current.as_deref() == Some(holder) || (current.is_none() && self.queue.is_empty()) {
            self.holder = Some((holder.to_owned(), now + ttl));
            return Take::Held;
        }
        self.queue.retain(|(_, asked)| now.saturating_duration_since(*asked) < patience);
        match self.queue.iter_mut().find(|(w, _)| w == holder) {
            Some((_, asked)) => *asked = now,
            None => self.queue.push((holder.to_owned(), now)),
        }
        if let Some(ahead) = current {
            return Take::Queued { ahead };
        }
        if self.queue[0].0 != holder {
            return Take::Queued { ahead: self.queue[0].0.clone() };
        }
        self.queue.remove(0);
        self.holder = Some((holder.to_owned(), now + ttl));
        Take::Held
    }

    /// Extends `holder`'s lease to `ttl` from `now`; `false` when it does not hold the turn
    /// (its lease ended, or another holds it).
    pub fn renew(&mut self, holder: &str, ttl: Duration, now: Instant) -> bool {
        let mine = self.holder(now) == Some(holder);
        if mine {
            self.holder = Some((holder.to_owned(), now + ttl));
        }
        mine
    }

    /// Takes `holder` out of the queue, and gives the turn back when it is `holder`'s.
    pub fn give_back(&mut self, holder: &str) {
        self.queue.retain(|(w, _)| w != holder);
        if self.holder.as_ref().is_some_and(|(h, _)| h == holder) {
            self.holder = None;
        }
    }

    /// Whether the book holds nothing at `now` (a caller may drop it).
    pub fn is_idle(&self, now: Instant) -> bool {
        self.holder(now).is_none() && self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);
    const PATIENCE: Duration = Duration::from_secs(2);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn queued(ahead: &str) -> Take {
        Take::Queued { ahead: ahead.into() }
    }

    #[test]
    fn one_holder_and_the_others_served_in_the_order_they_first_asked() {
        let mut book = TurnBook::new();
        assert_eq!(book.take("a1", TTL, PATIENCE, at(0)), Take::Held);
        assert_eq!(book.take("a1", TTL, PATIENCE, at(1)), Take::Held, "its own again");
        assert_eq!(book.take("b1", TTL, PATIENCE, at(2)), queued("a1"));
        book.give_back("a1");
        // The holder's next message asks first once the turn is free, and still queues behind.
        assert_eq!(book.take("a2", TTL, PATIENCE, at(3)), queued("b1"));
        assert_eq!(book.take("b1", TTL, PATIENCE, at(4)), Take::Held);
        assert_eq!(book.waiters().collect::<Vec<_>>(), ["a2"]);
        book.give_back("b1");
        assert_eq!(book.take("a2", TTL, PATIENCE, at(5)), Take::Held);
        book.give_back("a2");
        assert!(book.is_idle(at(5)));
    }

    #[test]
    fn a_lease_not_renewed_ends_and_a_renewed_one_goes_on() {
        let mut book = TurnBook::new();
        assert_eq!(book.take("a", TTL, PATIENCE, at(0)), Take::Held);
        assert!(book.renew("a", TTL, at(10_000)));
        assert!(!book.renew("b", TTL, at(10_000)), "only the holder renews");
        assert_eq!(book.holder(at(24_000)), Some("a"), "renewed past its first lease");
        assert_eq!(book.holder(at(25_000)), None, "ended 15 s after the renewal");
        assert!(!book.renew("a", TTL, at(25_000)), "an ended lease is not renewed");
        assert_eq!(book.take("b", TTL, PATIENCE, at(25_000)), Take::Held);
    }

    #[test]
    fn a_silent_waiter_leaves_the_queue_and_a_waiter_that_gives_up_leaves_at_once() {
        let mut book = TurnBook::new();
        assert_eq!(book.take("h", TTL, PATIENCE, at(0)), Take::Held);
        assert_eq!(book.take("silent", TTL, PATIENCE, at(1)), queued("h"));
        assert_eq!(book.take("asking", TTL, PATIENCE, at(2)), queued("h"));
        assert_eq!(book.take("quitter", TTL, PATIENCE, at(3)), queued("h"));
        book.give_back("quitter");
        assert_eq!(book.waiters().collect::<Vec<_>>(), ["silent", "asking"]);
        book.give_back("h");
        assert_eq!(book.take("asking", TTL, PATIENCE, at(1_000)), queued("silent"), "in time");
        assert_eq!(book.take("asking", TTL, PATIENCE, at(2_500)), Take::Held, "silent for 2.5 s");
        assert_eq!(book.waiters().count(), 0);
    }

    #[test]
    fn giving_back_a_turn_held_by_another_changes_nothing() {
        let mut book = TurnBook::new();
        assert_eq!(book.take("a", TTL, PATIENCE, at(0)), Take::Held);
        book.give_back("b");
        assert_eq!(book.holder(at(1)), Some("a"));
    }
}
