//! Seed properties 4 and 5 (and PROTOCOL.md §10 item 21): every reply has a deadline while it is
//! open, an expired reply ends with a timeout, and every reply ends with exactly one outcome.

use std::time::Duration;

use chatbox_core::stream::{ChunkVerdict, Outcome, ReplyTimer, StreamDeadlines};
use chatbox_core::Instant;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Event {
    Chunk(u64),
    End(u64),
    Error(u64),
    Tick(u64),
}

fn event() -> impl Strategy<Value = Event> {
    let gap = 0u64..40_000;
    prop_oneof![
        6 => gap.clone().prop_map(Event::Chunk),
        1 => gap.clone().prop_map(Event::End),
        1 => gap.clone().prop_map(Event::Error),
        2 => gap.prop_map(Event::Tick),
    ]
}

fn limits() -> impl Strategy<Value = StreamDeadlines> {
    (1u64..20_000, 1u64..20_000, 1u64..60_000).prop_map(|(f, i, t)| StreamDeadlines {
        first_chunk: Duration::from_millis(f),
        idle: Duration::from_millis(i),
        total: Duration::from_millis(t),
    })
}

proptest! {
    #[test]
    fn prop_04_streaming_requests_have_deadline(l in limits(), events in prop::collection::vec(event(), 0..60)) {
        let start = Instant::from_secs(1_000);
        let mut r = ReplyTimer::start(l, start);
        let mut now = start;
        for e in events {
            if !r.is_finished() {
                let at = r.poll_timeout();
                prop_assert!(at.is_some(), "an open reply always has a deadline");
                prop_assert!(at.unwrap() <= start + l.total, "never later than the whole-reply cap");
            }
            let gap = match e { Event::Chunk(g) | Event::End(g) | Event::Error(g) | Event::Tick(g) => g };
            now += Duration::from_millis(gap);
            match e {
                Event::Chunk(_) => { let _ = r.on_chunk(now); }
                Event::End(_) => { let _ = r.on_end(now); }
                Event::Error(_) => { let _ = r.on_error(now); }
                Event::Tick(_) => { let _ = r.handle_timeout(now); }
            }
        }
        if r.is_finished() {
            prop_assert_eq!(r.poll_timeout(), None);
        }
    }

    #[test]
    fn prop_05_timeout_cancels_streaming(l in limits(), events in prop::collection::vec(event(), 0..60)) {
        let start = Instant::ZERO;
        let mut r = ReplyTimer::start(l, start);
        let mut now = start;
        let mut outcomes = Vec::new();
        let mut last_delivered: Option<Instant> = None;
        for e in events {
            let gap = match e { Event::Chunk(g) | Event::End(g) | Event::Error(g) | Event::Tick(g) => g };
            let deadline_before = r.poll_timeout();
            now += Duration::from_millis(gap);
            let result = match e {
                Event::Chunk(_) => match r.on_chunk(now) {
                    ChunkVerdict::Deliver => {
                        prop_assert!(outcomes.is_empty(), "no chunk after the outcome");
                        prop_assert!(deadline_before.is_some_and(|d| now < d), "delivered chunks are in time");
                        last_delivered = Some(now);
                        None
                    }
                    ChunkVerdict::Finish(o) => Some(o),
                    ChunkVerdict::Discard => { prop_assert!(!outcomes.is_empty()); None }
                },
                Event::End(_) => r.on_end(now),
                Event::Error(_) => r.on_error(now),
                Event::Tick(_) => r.handle_timeout(now),
            };
            if let Some(o) = result {
                // A reply that reached a deadline ends with a timeout, whatever the event was.
                if deadline_before.is_some_and(|d| now >= d) {
                    prop_assert!(matches!(o, Outcome::Timeout { .. }), "expired reply ended with {:?}", o);
                }
                outcomes.push(o);
            }
        }
        // Drive to the end: with no more input, the deadline ends it.
        if let Some(at) = r.poll_timeout() {
            if let Some(o) = r.handle_timeout(at) { outcomes.push(o); }
        }
        prop_assert_eq!(outcomes.len(), 1, "exactly one outcome, got {:?}", outcomes);
        if let Some(t) = last_delivered { prop_assert!(t < start + l.total); }
    }
}
