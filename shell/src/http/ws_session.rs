//! The WebSocket session loop (STYLE.md §10): one connection after the upgrade, generic over any
//! `Sink<Message>` + `Stream<Item = Result<Message, _>>`, so the server runs it on a real socket
//! and the unit tests below on in-memory channels — the same code both ways.
//!
//! It reads frames into a [`SessionHandler`] — on the server [`EngineSide`], which hands each
//! data frame straight to the engine's one dispatch (`engine::frames::on_text`) — writes the connection's outbound
//! queue, and lets core's [`Keepalive`] decide pings, the pong wait and the write wait; time is
//! read only through the engine's [`Clock`]. It closes with 1009 on an oversized message, 1002 on
//! a protocol violation (RFC 6455 §7.1.7) and with the code the engine queues (1001 at shutdown).

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chatbox_core::budgets::KICK_CLOSE_BUDGET;
use chatbox_core::keepalive::{DropReason, Keepalive, KeepaliveAction, KeepaliveTimings};
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::engine::clock::Clock;
use crate::engine::delivery::queue::Next;
use crate::engine::delivery::queue::OutboundRx;
use crate::engine::delivery::{ConnId, Kick, Outbound};
use crate::engine::frames::{self, ConnCtx};
use crate::engine::hub::Engine;

/// Close code for a peer that broke the WebSocket protocol (RFC 6455 §7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a message over `MAX_MESSAGE_SIZE` (PROTOCOL.md §3.1).
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;

/// What the loop hands the data frames to.
pub trait SessionHandler {
    /// A data frame arrived (binary frames are decoded as lossy UTF-8, as the original did).
    fn on_text<'a>(&'a self, text: &'a str) -> BoxFuture<'a, ()>;
    /// A frame of the outbound queue was written to the peer.
    fn frame_sent(&self) {}
}

/// The engine's side of one connection's loop on the server.
#[derive(Debug)]
pub struct EngineSide<'a> {
    /// The engine.
    pub engine: &'a Arc<Engine>,
    /// The connection.
    pub conn: &'a ConnCtx,
}

impl SessionHandler for EngineSide<'_> {
    fn on_text<'a>(&'a self, text: &'a str) -> BoxFuture<'a, ()> {
        // Boxed: inline, the handler's state (binding, store calls) would sit in every idle
        // connection's future, ~1.5 KiB each.
        Box::pin(frames::on_text(self.engine, self.conn, text))
    }

    fn frame_sent(&self) {
        self.engine.metrics.messages_sent.inc();
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The peer closed, or its stream ended.
    PeerClosed,
    /// No pong within the pong wait.
    PongTimeout,
    /// A write did not finish within the write wait.
    WriteTimeout,
    /// A write failed (the connection is gone).
    WriteFailed,
    /// The peer sent a message over the size limit (closed with 1009).
    TooBig,
    /// The peer broke the WebSocket protocol (closed with 1002).
    ProtocolViolation,
    /// Reading failed for another reason (reset, IO error).
    ReadFailed,
    /// The engine closed the connection (a queued close, or its queue ended).
    ServerClosed,
    /// The engine dropped the connection without a queued close.
    Kicked(Kick),
}

impl From<DropReason> for SessionEnd {
    fn from(reason: DropReason) -> Self {
        match reason {
            DropReason::PongTimeout => SessionEnd::PongTimeout,
            DropReason::WriteTimeout => SessionEnd::WriteTimeout,
        }
    }
}

/// One connection's loop and what it listens to besides the socket.
#[derive(Debug)]
pub struct SessionLoop<H> {
    /// Registry id (for logs).
    pub conn: ConnId,
    /// Receives the data frames.
    pub handler: H,
    /// The connection's outbound queue, and its kick ("drop this connection now": a slow
    /// consumer, or the shutdown deadline).
    pub outbound: OutboundRx,
    /// The engine's clock: the only source of time.
    pub clock: Clock,
    /// Ping period, pong wait, write wait.
    pub timings: KeepaliveTimings,
}

/// What the loop saw next.
enum Event {
    Inbound(Option<Result<Message, WsError>>),
    Outbound(Option<Outbound>),
    Timer,
    Kicked(Kick),
}

impl<H: SessionHandler> SessionLoop<H> {
    /// Runs the connection until it ends, and says how it ended.
    ///
    /// A plain function returning an `async move` block rather than an `async fn`: an async
    /// fn keeps its arguments twice in its state (as captured and as moved into the body), and
    /// this state sits in every open connection — 448 bytes of the 1 480 (issue 18, item 4).
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub fn run<S>(mut self, mut socket: S) -> impl Future<Output = SessionEnd>
    where
        S: Sink<Message> + Stream<Item = Result<Message, WsError>> + Unpin,
        S::Error: Display,
    {
        async move {
            let conn = self.conn;
            let mut keepalive = Keepalive::new(self.timings, self.clock.now());
            loop {
                let due = keepalive.poll_timeout().unwrap_or(chatbox_core::Instant::MAX);
                let due = self.clock.to_runtime(due);
                let event = tokio::select! {
                    msg = socket.next() => Event::Inbound(msg),
                    next = self.outbound.next() => match next {
                        Next::Send(out) => Event::Outbound(Some(out)),
                        Next::Ended => Event::Outbound(None),
                        Next::Kicked(reason) => Event::Kicked(reason),
                    },
                    _ = tokio::time::sleep_until(due) => Event::Timer,
                };
                let step = match event {
                    Event::Inbound(Some(Ok(Message::Text(text)))) => {
                        keepalive.on_inbound(self.clock.now());
                        self.handler.on_text(text.as_str()).await;
                        Ok(())
                    }
                    Event::Inbound(Some(Ok(Message::Binary(bytes)))) => {
                        keepalive.on_inbound(self.clock.now());
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        self.handler.on_text(&text).await;
                        Ok(())
                    }
                    Event::Inbound(Some(Ok(Message::Pong(_)))) => {
                        keepalive.on_pong(self.clock.now());
                        Ok(())
                    }
                    Event::Inbound(Some(Ok(Message::Ping(_)))) => {
                        keepalive.on_inbound(self.clock.now());
                        // tungstenite queued the pong; push it out now.
                        bounded(&self.clock, &mut keepalive, socket.flush()).await
                    }
                    Event::Inbound(Some(Ok(Message::Close(_)))) => {
                        // tungstenite queued the answer to the peer's close; push it out, so
                        // the peer sees its close handshake complete (not 1006).
                        let write_wait = self.timings.write_wait;
                        let _ = tokio::time::timeout(write_wait, socket.flush()).await;
                        Err(SessionEnd::PeerClosed)
                    }
                    Event::Inbound(Some(Ok(Message::Frame(_)))) | Event::Inbound(None) => {
                        Err(SessionEnd::PeerClosed)
                    }
                    Event::Inbound(Some(Err(WsError::Capacity(
                        CapacityError::MessageTooLong { size, max_size },
                    )))) => {
                        tracing::info!(conn, size, max_size, "message too big");
                        let close = close_message(CLOSE_TOO_BIG, "Message too big");
                        close_within(&mut socket, close, self.timings.write_wait).await;
                        Err(SessionEnd::TooBig)
                    }
                    Event::Inbound(Some(Err(WsError::Protocol(violation))))
                        if violation != ProtocolError::ResetWithoutClosingHandshake =>
                    {
                        tracing::info!(conn, %violation, "websocket protocol violation");
                        let close = close_message(CLOSE_PROTOCOL_ERROR, "Protocol error");
                        close_within(&mut socket, close, self.timings.write_wait).await;
                        Err(SessionEnd::ProtocolViolation)
                    }
                    Event::Inbound(Some(Err(WsError::Utf8(_)))) => {
                        tracing::info!(conn, "text message that is not UTF-8");
                        let close = close_message(CLOSE_INVALID_PAYLOAD, "Invalid UTF-8");
                        close_within(&mut socket, close, self.timings.write_wait).await;
                        Err(SessionEnd::ProtocolViolation)
                    }
                    Event::Inbound(Some(Err(error))) => {
                        tracing::debug!(conn, %error, "websocket read failed");
                        Err(SessionEnd::ReadFailed)
                    }
                    Event::Outbound(Some(Outbound::Frame(json))) => {
                        let sent = bounded(
                            &self.clock,
                            &mut keepalive,
                            socket.send(Message::text(json.as_ref())),
                        )
                        .await;
                        if sent.is_ok() {
                            self.handler.frame_sent();
                        }
                        sent
                    }
                    Event::Outbound(Some(Outbound::Close(code, reason))) => {
                        let close = close_message(code, reason);
                        close_within(&mut socket, close, self.timings.write_wait).await;
                        Err(SessionEnd::ServerClosed)
                    }
                    Event::Outbound(None) => Err(SessionEnd::ServerClosed),
                    Event::Timer => match keepalive.handle_timeout(self.clock.now()) {
                        Some(KeepaliveAction::SendPing) => {
                            let ping = socket.send(Message::Ping(Default::default()));
                            bounded(&self.clock, &mut keepalive, ping).await
                        }
                        Some(KeepaliveAction::Drop(reason)) => Err(reason.into()),
                        None => Ok(()),
                    },
                    Event::Kicked(reason) => {
                        tracing::debug!(conn, ?reason, "connection dropped");
                        close_within(&mut socket, Message::Close(None), KICK_CLOSE_BUDGET).await;
                        Err(SessionEnd::Kicked(reason))
                    }
                };
                if let Err(end) = step {
                    if end == SessionEnd::PongTimeout {
                        tracing::debug!(conn, "no pong within the deadline");
                        close_within(&mut socket, Message::Close(None), self.timings.write_wait)
                            .await;
                    }
                    return end;
                }
            }
        }
    }
}

/// A write reported to `keepalive` and bounded by its write wait (or the pong wait, if that
/// comes first); an error means the connection is gone.
async fn bounded<F, E>(clock: &Clock, keepalive: &mut Keepalive, write: F) -> Result<(), SessionEnd>
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    keepalive.on_write_started(clock.now());
    tokio::pin!(write);
    loop {
        let due = clock.to_runtime(keepalive.poll_timeout().unwrap_or(chatbox_core::Instant::MAX));
        tokio::select! {
            written = &mut write => {
                keepalive.on_write_finished(clock.now());
                return written.map_err(|error| {
                    tracing::debug!(%error, "websocket write failed");
                    SessionEnd::WriteFailed
                });
            }
            _ = tokio::time::sleep_until(due) => {
                if let Some(KeepaliveAction::Drop(reason)) = keepalive.handle_timeout(clock.now()) {
                    return Err(reason.into());
                }
            }
        }
    }
}

/// Sends a close frame, giving up after `limit` (the connection ends either way).
async fn close_within<S>(socket: &mut S, close: Message, limit: Duration)
where
    S: Sink<Message> + Unpin,
{
    let _ = tokio::time::timeout(limit, socket.send(close)).await;
}

/// A close frame with `code` and `reason`.
pub fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use crate::engine::delivery::queue::{self, OutboundTx};
    use chatbox_core::Instant;
    use futures_channel::mpsc as chan;

    use super::*;

    const TIMINGS: KeepaliveTimings = KeepaliveTimings::DEFAULT;

    /// The engine's side in these tests: records the data frames.
    #[derive(Debug, Default)]
    struct Recorder {
        texts: Mutex<Vec<String>>,
    }

    impl SessionHandler for &Recorder {
        fn on_text<'a>(&'a self, text: &'a str) -> BoxFuture<'a, ()> {
            self.texts.lock().unwrap().push(text.to_owned());
            Box::pin(async {})
        }
    }

    /// An in-memory socket: frames from the peer come in on `inbound`, the loop's writes go
    /// out on `outbound`.
    struct Duplex<Si> {
        inbound: chan::UnboundedReceiver<Result<Message, WsError>>,
        outbound: Si,
    }

    impl<Si: Unpin> Stream for Duplex<Si> {
        type Item = Result<Message, WsError>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.inbound.poll_next_unpin(cx)
        }
    }

    impl<Si: Sink<Message> + Unpin> Sink<Message> for Duplex<Si> {
        type Error = Si::Error;
        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_ready_unpin(cx)
        }
        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outbound.start_send_unpin(item)
        }
        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_flush_unpin(cx)
        }
        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outbound.poll_close_unpin(cx)
        }
    }

    /// The test's end of the connection.
    struct Peer {
        to_server: chan::UnboundedSender<Result<Message, WsError>>,
        from_server: chan::Receiver<Message>,
        queue: OutboundTx,
    }

    /// A loop over an in-memory socket whose writes hold `room` frames until the peer reads.
    fn pair(
        recorder: &Recorder,
        room: usize,
    ) -> (Peer, SessionLoop<&Recorder>, Duplex<chan::Sender<Message>>) {
        let (to_server, inbound) = chan::unbounded();
        let (outbound, from_server) = chan::channel(room);
        let (queue, rx) = queue::channel(8);
        let session = SessionLoop {
            conn: 1,
            handler: recorder,
            outbound: rx,
            clock: Clock::new(),
            timings: TIMINGS,
        };
        let peer = Peer { to_server, from_server, queue };
        (peer, session, Duplex { inbound, outbound })
    }

    fn since_start(clock: &Clock) -> Duration {
        clock.now() - Instant::ZERO
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_goes_out_after_the_period_and_a_silent_peer_is_dropped_after_the_pong_wait() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        let clock = session.clock;
        let run = session.run(socket);
        tokio::pin!(run);

        let first = tokio::select! {
            end = &mut run => panic!("ended before the first ping: {end:?}"),
            first = peer.from_server.next() => first,
        };
        assert!(matches!(first, Some(Message::Ping(_))), "{first:?}");
        assert!(since_start(&clock) >= TIMINGS.ping_interval);
        assert!(since_start(&clock) < TIMINGS.pong_wait);

        assert_eq!(run.await, SessionEnd::PongTimeout);
        assert!(since_start(&clock) >= TIMINGS.pong_wait);
        assert!(matches!(peer.from_server.next().await, Some(Message::Close(None))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_pings_stays_connected() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        let run = session.run(socket);
        tokio::pin!(run);
        let mut pings = 0;
        let answering = async {
            while let Some(message) = peer.from_server.next().await {
                if matches!(message, Message::Ping(_)) {
                    pings += 1;
                    peer.to_server.unbounded_send(Ok(Message::Pong(Default::default()))).unwrap();
                }
            }
        };
        let ten_minutes = 10 * 60 * 1000;
        tokio::select! {
            end = &mut run => panic!("a live peer was dropped: {end:?}"),
            _ = answering => panic!("the server closed the socket"),
            _ = tokio::time::sleep(Duration::from_millis(ten_minutes)) => {}
        }
        assert!(pings >= 10, "one ping per period: {pings}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_is_dropped_after_the_write_wait() {
        let recorder = Recorder::default();
        // No room: the first frame waits for a peer that never reads.
        let (peer, session, socket) = pair(&recorder, 0);
        let clock = session.clock;
        let run = session.run(socket);
        tokio::pin!(run);
        for n in 0..3 {
            peer.queue.try_send(Outbound::Frame(format!("{{\"n\":{n}}}").into())).unwrap();
        }
        let early = tokio::time::timeout(TIMINGS.write_wait / 2, &mut run).await;
        assert!(early.is_err(), "dropped before the write wait: {early:?}");
        assert_eq!(run.await, SessionEnd::WriteTimeout);
        assert!(since_start(&clock) >= TIMINGS.write_wait);
        assert!(since_start(&clock) < TIMINGS.ping_interval, "no ping was waited for");
    }

    #[tokio::test(start_paused = true)]
    async fn a_kick_ends_the_loop_before_what_is_queued() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        peer.queue.try_send(Outbound::Frame("{\"n\":1}".into())).unwrap();
        peer.queue.kick(Kick::SlowConsumer);
        assert_eq!(session.run(socket).await, SessionEnd::Kicked(Kick::SlowConsumer));
        let written = peer.from_server.try_recv().ok();
        assert_eq!(written, Some(Message::Close(None)), "the queued frame was never written");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_flow_both_ways_until_the_peer_closes() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        let run = session.run(socket);
        tokio::pin!(run);
        peer.to_server.unbounded_send(Ok(Message::text("{\"type\":\"hello\"}"))).unwrap();
        peer.to_server.unbounded_send(Ok(Message::binary(&b"{\"type\":\"bin\"}"[..]))).unwrap();
        peer.queue.try_send(Outbound::Frame("{\"type\":\"reply\"}".into())).unwrap();
        let written = tokio::select! {
            end = &mut run => panic!("ended early: {end:?}"),
            written = peer.from_server.next() => written,
        };
        assert_eq!(written, Some(Message::text("{\"type\":\"reply\"}")));
        peer.to_server.unbounded_send(Ok(Message::Close(None))).unwrap();
        assert_eq!(run.await, SessionEnd::PeerClosed);
        assert_eq!(*recorder.texts.lock().unwrap(), ["{\"type\":\"hello\"}", "{\"type\":\"bin\"}"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_protocol_violation_is_answered_with_close_1002() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        let violation = WsError::Protocol(ProtocolError::NonZeroReservedBits);
        peer.to_server.unbounded_send(Err(violation)).unwrap();
        assert_eq!(session.run(socket).await, SessionEnd::ProtocolViolation);
        let Some(Message::Close(Some(close))) = peer.from_server.next().await else {
            panic!("no close frame");
        };
        assert_eq!(u16::from(close.code), CLOSE_PROTOCOL_ERROR);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_close_is_sent_and_ends_the_session() {
        let recorder = Recorder::default();
        let (mut peer, session, socket) = pair(&recorder, 8);
        peer.queue.try_send(Outbound::Close(1001, "Server shutting down")).unwrap();
        assert_eq!(session.run(socket).await, SessionEnd::ServerClosed);
        let Some(Message::Close(Some(close))) = peer.from_server.next().await else {
            panic!("no close frame");
        };
        assert_eq!(u16::from(close.code), 1001);
        assert_eq!(close.reason.as_str(), "Server shutting down");
    }
}
