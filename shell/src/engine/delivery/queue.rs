//! One connection's outbound queue: bounded, one sender (the registry, under its lock) and one
//! receiver (the connection task), and the "drop this connection now" signal ([`Kick`]) that
//! overtakes whatever is queued.
//!
//! Hand-rolled rather than `tokio::sync::mpsc` (issue 18, idle connection ≤ 4 KiB): tokio's
//! channel allocates its first 32-slot block and cache-padded state up front, ~800 bytes per
//! connection whether or not a frame ever comes, the largest item of an idle connection after
//! its task. Here the state is a `VecDeque` (no allocation until the first frame) behind a
//! mutex that is never held across an await, and the receiver's waker is a library
//! [`AtomicWaker`]; ~100 bytes while idle. The kick rides in the same state, so a connection
//! waits on one thing instead of a queue and a separate notifier.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use super::{Kick, Outbound};

/// A queue that grew past this many slots gives its memory back once drained (after a resume's
/// replay, say), so a burst does not stay in every idle connection.
const SHRINK_ABOVE: usize = 64;

/// Why [`OutboundTx::try_send`] refused an item (the item comes back).
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError {
    /// The queue holds its capacity.
    Full(Outbound),
    /// The receiver is gone.
    Closed(Outbound),
}

/// Why [`OutboundRx::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing queued yet.
    Empty,
    /// Nothing queued and the sender is gone.
    Disconnected,
}

/// What the connection task does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Write this.
    Send(Outbound),
    /// Drop the connection now, whatever is still queued.
    Kicked(Kick),
    /// The sender is gone and everything it queued was taken.
    Ended,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Outbound>,
    capacity: usize,
    kicked: Option<Kick>,
    sender_gone: bool,
    receiver_gone: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    receiver: AtomicWaker,
}

impl State {
    fn take(&mut self) -> Result<Outbound, TryRecvError> {
        match self.items.pop_front() {
            Some(item) => {
                if self.items.is_empty() && self.items.capacity() > SHRINK_ABOVE {
                    self.items = VecDeque::new();
                }
                Ok(item)
            }
            None if self.sender_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A queue holding at most `capacity` items (at least one).
pub fn channel(capacity: usize) -> (OutboundTx, OutboundRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            kicked: None,
            sender_gone: false,
            receiver_gone: false,
        }),
        receiver: AtomicWaker::new(),
    });
    (OutboundTx { shared: Arc::clone(&shared) }, OutboundRx { shared })
}

/// The sending half.
#[derive(Debug)]
pub struct OutboundTx {
    shared: Arc<Shared>,
}

impl OutboundTx {
    /// Queues `item` unless the queue is full or the receiver gone; never waits.
    pub fn try_send(&self, item: Outbound) -> Result<(), TrySendError> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Err(TrySendError::Closed(item));
        }
        if state.items.len() >= state.capacity {
            return Err(TrySendError::Full(item));
        }
        state.items.push_back(item);
        drop(state);
        self.shared.receiver.wake();
        Ok(())
    }

    /// Tells the connection to drop at once; the first reason wins.
    pub fn kick(&self, reason: Kick) {
        let mut state = self.shared.lock();
        if state.kicked.is_none() {
            state.kicked = Some(reason);
        }
        drop(state);
        self.shared.receiver.wake();
    }
}

impl Drop for OutboundTx {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.receiver.wake();
    }
}

/// The receiving half.
#[derive(Debug)]
pub struct OutboundRx {
    shared: Arc<Shared>,
}

impl OutboundRx {
    /// What to do next: a kick first, else the next item, else (once the sender is gone and
    /// the queue drained) the end. Cancel-safe: an item is taken only when it is returned.
    pub async fn next(&mut self) -> Next {
        poll_fn(|cx| {
            if let Some(next) = self.poll_next() {
                return Poll::Ready(next);
            }
            self.shared.receiver.register(cx.waker());
            // Again after registering: what came in between woke no one.
            self.poll_next().map_or(Poll::Pending, Poll::Ready)
        })
        .await
    }

    /// The next item, or `None` at the end (a kick ends it too); for tests that read a queue.
    #[cfg(test)]
    pub async fn recv(&mut self) -> Option<Outbound> {
        match self.next().await {
            Next::Send(item) => Some(item),
            Next::Kicked(_) | Next::Ended => None,
        }
    }

    fn poll_next(&mut self) -> Option<Next> {
        let mut state = self.shared.lock();
        if let Some(reason) = state.kicked {
            return Some(Next::Kicked(reason));
        }
        match state.take() {
            Ok(item) => Some(Next::Send(item)),
            Err(TryRecvError::Disconnected) => Some(Next::Ended),
            Err(TryRecvError::Empty) => None,
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        self.shared.lock().take()
    }
}

impl Drop for OutboundRx {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Waker};

    use futures_util::task::ArcWake;

    use super::*;

    fn frame(text: &str) -> Outbound {
        Outbound::Frame(Arc::from(text))
    }

    #[test]
    fn items_come_out_in_order_and_a_full_queue_refuses() {
        let (tx, mut rx) = channel(2);
        assert_eq!(tx.try_send(frame("a")), Ok(()));
        assert_eq!(tx.try_send(frame("b")), Ok(()));
        assert_eq!(tx.try_send(frame("c")), Err(TrySendError::Full(frame("c"))));
        assert_eq!(rx.try_recv(), Ok(frame("a")));
        assert_eq!(tx.try_send(frame("c")), Ok(()), "room again");
        assert_eq!(rx.try_recv(), Ok(frame("b")));
        assert_eq!(rx.try_recv(), Ok(frame("c")));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_zero_capacity_holds_one() {
        let (tx, mut rx) = channel(0);
        assert_eq!(tx.try_send(frame("a")), Ok(()));
        assert!(matches!(tx.try_send(frame("b")), Err(TrySendError::Full(_))));
        assert_eq!(rx.try_recv(), Ok(frame("a")));
    }

    #[test]
    fn the_sender_gone_ends_the_queue_after_what_it_queued() {
        let (tx, mut rx) = channel(4);
        tx.try_send(Outbound::Close(1001, "bye")).expect("queued");
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(Outbound::Close(1001, "bye")));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn the_receiver_gone_closes_the_queue() {
        let (tx, rx) = channel(4);
        drop(rx);
        assert_eq!(tx.try_send(frame("a")), Err(TrySendError::Closed(frame("a"))));
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (tx, mut rx) = channel(1000);
        for i in 0..500 {
            tx.try_send(frame(&i.to_string())).expect("room");
        }
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }

    /// Counts its wake-ups.
    struct Wakes(AtomicUsize);

    impl ArcWake for Wakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker that counts its wake-ups, and the count.
    fn counting_waker() -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        (Arc::clone(&wakes), futures_util::task::waker(wakes))
    }

    #[test]
    fn recv_waits_for_an_item_and_is_woken_by_a_send_and_by_the_sender_gone() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = channel(4);
        {
            let mut next = pin!(rx.next());
            assert!(next.as_mut().poll(&mut cx).is_pending(), "nothing queued: it waits");
            tx.try_send(frame("a")).expect("queued");
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the send woke the receiver");
            assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Next::Send(frame("a"))));
        }
        let mut next = pin!(rx.next());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2, "the sender gone woke the receiver");
        assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Next::Ended));
    }

    #[test]
    fn a_kick_wakes_the_receiver_and_overtakes_what_is_queued() {
        let (wakes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = channel(4);
        {
            let mut next = pin!(rx.next());
            assert!(next.as_mut().poll(&mut cx).is_pending());
            tx.kick(Kick::Forced);
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the kick woke the receiver");
            assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Next::Kicked(Kick::Forced)));
        }
        tx.try_send(frame("late")).expect("queued");
        tx.kick(Kick::SlowConsumer);
        let mut next = pin!(rx.next());
        assert_eq!(
            next.as_mut().poll(&mut cx),
            Poll::Ready(Next::Kicked(Kick::Forced)),
            "the first reason wins, before anything queued"
        );
    }
}
