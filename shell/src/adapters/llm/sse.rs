//! Turning an upstream's server-sent-event body into the port's [`EventStream`], shared by the
//! three HTTP providers. `sse-stream` does the SSE parsing (it finds lines with `memchr`: the
//! nom-based `eventsource-stream` it replaced cost ~7 000 instructions per chunk, on the path of
//! every chunk to the client, BENCHMARKS.md "1g"); each provider supplies a `SseDecoder` that
//! says what one event means (a delta, the end, an upstream error, nothing).
//!
//! The rules here are the rebuild's answer to PROTOCOL.md §7.2 and §10 item 21: every stream
//! ends with exactly one outcome — `End`, or one error. A body that ends without the provider's
//! end event is a permanent "stream ended without completion" error, never a silent success; a
//! line longer than [`SSE_MAX_LINE_BYTES`] is a permanent error; a connection lost mid-body is a
//! transient error (nothing is retried once streaming started, but the class is honest); a
//! data line whose JSON does not parse is skipped, as in the original; empty deltas are dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use chatbox_core::budgets::{PROVIDER_ERROR_BODY_BYTES, SSE_MAX_EVENT_BYTES, SSE_MAX_LINE_BYTES};
use futures_util::{stream, FutureExt, Stream, StreamExt};
use serde::Serialize;
use sse_stream::{Sse, SseByteStream};

use super::http_client::{describe, send_for_stream, truncate, ProviderSettings, Upstream};
use crate::engine::llm::{EventStream, ProviderError, StreamEvent, TokenUsage};

/// One dispatched SSE event, as the providers read it: its type ([`Event::name`]) and its data
/// lines joined with LF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Event {
    /// The type the event named, `None` when it named none (or an empty one).
    pub(crate) event: Option<String>,
    /// The data, lines joined with LF (no trailing LF).
    pub(crate) data: String,
}

impl Event {
    /// The event of a parsed block, or `None` for a block without data, which the HTML
    /// standard's dispatch skips (comments, `event:`/`id:`/`retry:`-only blocks).
    fn of(block: Sse) -> Option<Self> {
        let data = block.data?;
        Some(Self { event: block.event.filter(|name| !name.is_empty()), data })
    }

    /// The event type: `"message"` when the event named none, as in the HTML standard. A view,
    /// not a field: most upstream events name none, and a default kept as a `String` would be
    /// allocated for every chunk.
    pub(crate) fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// What one SSE event means to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Nothing for the client (pings, bookkeeping events, unparsable JSON).
    Skip,
    /// A piece of reply text (may be empty; empty pieces are dropped).
    Delta(String),
    /// The upstream's end event.
    End {
        /// Upstream conversation id to send next time (Dify).
        conversation_id: Option<String>,
        /// The reply's token usage as the upstream reported it, if it did.
        usage: Option<TokenUsage>,
    },
    /// An upstream error event; the text is the upstream's own description.
    Fail(String),
}

/// `json[key]` as a token count (a non-negative integer), if present.
pub(crate) fn tokens(json: &serde_json::Value, key: &str) -> Option<u64> {
    json.get(key).and_then(serde_json::Value::as_u64)
}

/// A provider's reading of its event stream. One decoder lives for one reply, so it may keep
/// state (e.g. Dify's last seen conversation id).
pub(crate) trait SseDecoder: Send + 'static {
    /// What `event` means.
    fn decode(&mut self, event: &Event) -> Decoded;

    /// Called once if the body ends cleanly without an end event: `Some` accepts that as the
    /// end (only when the upstream already said the reply is finished), `None` makes it a
    /// "stream ended without completion" error.
    fn end_of_body(&mut self) -> Option<StreamEvent> {
        None
    }
}

/// Reads `response`'s body as SSE, decoded by `decoder`. See the module doc for the outcome
/// rules.
pub(crate) fn event_stream<D: SseDecoder>(
    upstream: Upstream,
    provider_id: &str,
    response: reqwest::Response,
    decoder: D,
) -> EventStream {
    // The original read line by line, so a last line without its newline still counted;
    // sse-stream only dispatches an event at a blank line, hence the closing "\n\n" after a
    // clean end of body (after a transport error the stream stops before it).
    let body = Box::pin(response.bytes_stream())
        .map(|chunk| chunk.map_err(BodyError::Transport))
        .chain(stream::iter([Ok(Bytes::from_static(b"\n\n"))]));
    let events = SseByteStream::new(LineLimit::new(body));
    let state = Reader {
        upstream,
        provider_id: provider_id.to_owned(),
        events: Box::pin(events),
        decoder,
        finished: false,
    };
    Box::pin(stream::unfold(state, Reader::next))
}

/// The request tail the HTTP providers share: `request` (a POST carrying the provider's
/// credentials) gets the JSON `body` and `Accept: text/event-stream`, is sent within the
/// provider's header timeout, and its body is read as events that `decoder` interprets.
pub(crate) async fn post_for_events<D: SseDecoder>(
    upstream: Upstream,
    settings: &ProviderSettings,
    request: reqwest::RequestBuilder,
    body: &(impl Serialize + Sync),
    decoder: D,
) -> Result<EventStream, ProviderError> {
    let request = request.header(reqwest::header::ACCEPT, "text/event-stream").json(body);
    let response =
        send_for_stream(upstream, &settings.id, request, settings.header_timeout).await?;
    Ok(event_stream(upstream, &settings.id, response, decoder))
}

/// Why the body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// The connection failed mid-body (reset, closed before the end of the chunked body).
    #[error("connection lost mid-stream")]
    Transport(reqwest::Error),
    /// A line exceeded [`SSE_MAX_LINE_BYTES`].
    #[error("SSE line longer than {SSE_MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// An event exceeded [`SSE_MAX_EVENT_BYTES`].
    #[error("SSE event longer than {SSE_MAX_EVENT_BYTES} bytes")]
    EventTooLong,
}

/// The reply being read: the parsed events, the provider's decoder, and whether the one
/// outcome has been produced.
struct Reader<D> {
    upstream: Upstream,
    /// The client-visible model id, for logs.
    provider_id: String,
    events: Pin<Box<dyn Stream<Item = Result<Sse, sse_stream::Error>> + Send>>,
    decoder: D,
    finished: bool,
}

impl<D: SseDecoder> Reader<D> {
    /// The next item of the port's stream; `None` after the outcome.
    async fn next(mut self) -> Option<(Result<StreamEvent, ProviderError>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            let item = match self.events.next().await {
                // A block without data is no event (the HTML standard): skipped like one the
                // decoder skips.
                Some(Ok(block)) => match Event::of(block)
                    .map_or(Decoded::Skip, |event| self.decoder.decode(&event))
                {
                    Decoded::Skip => continue,
                    Decoded::Delta(text) if text.is_empty() => continue,
                    Decoded::Delta(text) => Ok(StreamEvent::Delta(text)),
                    Decoded::End { conversation_id, usage } => {
                        self.finished = true;
                        self.drain_ready();
                        Ok(StreamEvent::End { conversation_id, usage })
                    }
                    Decoded::Fail(detail) => {
                        self.finished = true;
                        tracing::warn!(
                            provider = self.upstream.kind,
                            model_id = %self.provider_id,
                            "upstream error event"
                        );
                        Err(self.upstream.permanent(format!("upstream error event: {detail}")))
                    }
                },
                Some(Err(err)) => {
                    self.finished = true;
                    let error = self.body_error(err);
                    tracing::warn!(
                        provider = self.upstream.kind,
                        model_id = %self.provider_id,
                        error = %error,
                        "upstream stream failed"
                    );
                    Err(error)
                }
                None => {
                    self.finished = true;
                    match self.decoder.end_of_body() {
                        Some(end) => Ok(end),
                        None => {
                            tracing::warn!(
                                provider = self.upstream.kind,
                                model_id = %self.provider_id,
                                "upstream stream ended without completion"
                            );
                            Err(self.upstream.permanent("stream ended without completion"))
                        }
                    }
                }
            };
            return Some((item, self));
        }
    }

    /// Maps a body or parse failure onto the port's classes.
    fn body_error(&self, err: sse_stream::Error) -> ProviderError {
        match err {
            sse_stream::Error::Body(err) => match err.downcast::<BodyError>() {
                Ok(err) => match *err {
                    BodyError::Transport(err) => {
                        let detail = describe(&err.without_url());
                        self.upstream.transient(format!("connection lost mid-stream: {detail}"))
                    }
                    err => self.upstream.permanent(err.to_string()),
                },
                Err(err) => self.upstream.permanent(err.to_string()),
            },
            sse_stream::Error::Utf8Parse(_) => self.upstream.permanent("stream is not valid UTF-8"),
            _ => self.upstream.permanent("stream is not valid SSE"),
        }
    }

    /// After the end event, reads whatever of the body has already arrived (without waiting),
    /// so that a body that is complete lets its connection go back to the pool.
    fn drain_ready(&mut self) {
        for _ in 0..8 {
            match self.events.next().now_or_never() {
                Some(Some(_)) => continue,
                Some(None) | None => break,
            }
        }
    }
}

/// Passes body chunks through unchanged, failing once a line exceeds [`SSE_MAX_LINE_BYTES`] or an
/// event exceeds [`SSE_MAX_EVENT_BYTES`]. Only counts bytes between line terminators (CR, LF,
/// CRLF); the parsing itself is sse-stream's. The runs between terminators are found with
/// `memchr` (a byte-at-a-time loop cost ~18 instructions a byte: BENCHMARKS.md "1d").
struct LineLimit<S> {
    inner: S,
    line_bytes: usize,
    event_bytes: usize,
    after_cr: bool,
    failed: bool,
    /// [`SSE_MAX_LINE_BYTES`] and [`SSE_MAX_EVENT_BYTES`] (smaller in tests).
    max: (usize, usize),
}

impl<S> LineLimit<S> {
    fn new(inner: S) -> Self {
        Self::with_limits(inner, (SSE_MAX_LINE_BYTES, SSE_MAX_EVENT_BYTES))
    }

    fn with_limits(inner: S, max: (usize, usize)) -> Self {
        Self { inner, line_bytes: 0, event_bytes: 0, after_cr: false, failed: false, max }
    }

    /// Accounts for `chunk`; the error if it breaks a limit (the one its first offending byte
    /// breaks, the line's before the event's).
    fn check(&mut self, mut chunk: &[u8]) -> Result<(), BodyError> {
        let (max_line, max_event) = self.max;
        while !chunk.is_empty() {
            let run = memchr::memchr2(b'\r', b'\n', chunk).unwrap_or(chunk.len());
            if run > 0 {
                self.after_cr = false;
                // Bytes of this run until each limit is passed (both counts are within them).
                let to_line = max_line - self.line_bytes + 1;
                let to_event = max_event - self.event_bytes + 1;
                if run >= to_line.min(to_event) {
                    return Err(if to_line <= to_event {
                        BodyError::LineTooLong
                    } else {
                        BodyError::EventTooLong
                    });
                }
                self.line_bytes += run;
                self.event_bytes += run;
            }
            let Some(&terminator) = chunk.get(run) else { break };
            if terminator == b'\n' && self.after_cr {
                self.after_cr = false;
            } else {
                if self.line_bytes == 0 {
                    self.event_bytes = 0;
                }
                self.line_bytes = 0;
                self.after_cr = terminator == b'\r';
            }
            chunk = &chunk[run + 1..];
        }
        Ok(())
    }
}

impl<S> Stream for LineLimit<S>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => match self.check(&chunk) {
                Ok(()) => Poll::Ready(Some(Ok(chunk))),
                Err(err) => {
                    self.failed = true;
                    Poll::Ready(Some(Err(err)))
                }
            },
            other => other,
        }
    }
}

/// The JSON of an event's data, or `None` (skipped, as the original did) if it does not parse.
pub(crate) fn json_data(event: &Event) -> Option<serde_json::Value> {
    serde_json::from_str(&event.data).ok()
}

/// A readable text for an upstream error object such as `{"type":"…","message":"…"}`, or
/// `{"code":"…","message":"…"}`; at most 1024 bytes.
pub(crate) fn error_text(error: &serde_json::Value) -> String {
    let field = |name: &str| error.get(name).and_then(serde_json::Value::as_str);
    let kind = field("type").or_else(|| field("code"));
    let text = match (kind, field("message")) {
        (Some(kind), Some(message)) => format!("{kind}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(kind), None) => kind.to_owned(),
        (None, None) => error.to_string(),
    };
    truncate(text, PROVIDER_ERROR_BODY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(chunks: &[&[u8]]) -> Result<(), BodyError> {
        let mut guard = LineLimit::new(stream::empty::<Result<Bytes, BodyError>>());
        chunks.iter().try_for_each(|chunk| guard.check(chunk))
    }

    /// The byte-at-a-time reading `LineLimit::check` replaced: the limits' definition.
    fn reference(
        chunks: &[Vec<u8>],
        (max_line, max_event): (usize, usize),
    ) -> Result<(), BodyError> {
        let (mut line, mut event, mut after_cr) = (0usize, 0usize, false);
        for &byte in chunks.iter().flatten() {
            match byte {
                b'\n' if after_cr => after_cr = false,
                b'\n' | b'\r' => {
                    if line == 0 {
                        event = 0;
                    }
                    line = 0;
                    after_cr = byte == b'\r';
                }
                _ => {
                    after_cr = false;
                    line += 1;
                    event += 1;
                    if line > max_line {
                        return Err(BodyError::LineTooLong);
                    }
                    if event > max_event {
                        return Err(BodyError::EventTooLong);
                    }
                }
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn line_limit_agrees_with_the_byte_at_a_time_reading(
            chunks in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(vec![b'a', b'\r', b'\n']),
                    0..24,
                ),
                0..12,
            ),
            max_line in 1usize..8,
            extra in 0usize..12,
        ) {
            let max = (max_line, max_line + extra);
            let mut guard =
                LineLimit::with_limits(stream::empty::<Result<Bytes, BodyError>>(), max);
            let checked = chunks.iter().try_for_each(|chunk| guard.check(chunk));
            proptest::prop_assert_eq!(
                format!("{checked:?}"),
                format!("{:?}", reference(&chunks, max))
            );
        }
    }

    #[test]
    fn line_limit_counts_bytes_between_terminators() {
        let line = vec![b'a'; SSE_MAX_LINE_BYTES];
        assert!(limit(&[&line, b"\n", &line, b"\r\n\r\n", &line]).is_ok());
        assert!(matches!(limit(&[&line, b"a"]), Err(BodyError::LineTooLong)));
        let half = vec![b'a'; SSE_MAX_LINE_BYTES / 2];
        assert!(matches!(limit(&[&half, &half, b"a"]), Err(BodyError::LineTooLong)));
    }

    #[test]
    fn event_limit_resets_at_blank_lines() {
        let line = vec![b'a'; SSE_MAX_LINE_BYTES];
        assert!(limit(&[&line, b"\n\n", &line, b"\r\n\r\n", &line, b"\r\r", &line]).is_ok());
        assert!(matches!(
            limit(&[&line, b"\n", &line, b"\r\n", b"a"]),
            Err(BodyError::EventTooLong)
        ));
    }

    /// Reports every event as a delta `type|data`, and the event with data `END` as the end.
    struct Echo;

    impl SseDecoder for Echo {
        fn decode(&mut self, event: &Event) -> Decoded {
            if event.data == "END" {
                return Decoded::End { conversation_id: None, usage: None };
            }
            Decoded::Delta(format!("{}|{}", event.name(), event.data))
        }
    }

    /// What `event_stream` makes of a body sent in `chunks`: the deltas, then the outcome.
    async fn read(chunks: &[&'static [u8]]) -> (Vec<String>, Result<(), ProviderError>) {
        let parts: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let body = reqwest::Body::wrap_stream(stream::iter(parts));
        let response = reqwest::Response::from(http::Response::new(body));
        let upstream = Upstream { kind: "openai", display: "OpenAI" };
        let mut events = event_stream(upstream, "m", response, Echo);
        let mut deltas = Vec::new();
        while let Some(item) = events.next().await {
            match item {
                Ok(StreamEvent::Delta(text)) => deltas.push(text),
                Ok(StreamEvent::End { .. }) => return (deltas, Ok(())),
                Err(error) => return (deltas, Err(error)),
            }
        }
        (deltas, Err(upstream.permanent("no outcome")))
    }

    fn detail(outcome: &Result<(), ProviderError>) -> String {
        match outcome {
            Ok(()) => "ok".into(),
            Err(ProviderError::Permanent { detail, .. }) => format!("permanent: {detail}"),
            Err(other) => format!("other: {other}"),
        }
    }

    #[tokio::test]
    async fn events_follow_the_html_standard_across_chunk_boundaries() {
        let (deltas, outcome) = read(&[
            b"\xEF\xBB\xBFdata: one\n\n",
            b": a comment\n\nevent: ping\n\nid: 7\nretry: 10\n\n",
            b"event: delta\r\ndata: two\r\ndata:  lines\r\n\r\nda",
            b"ta: split\rdata\r\revent:\ndata:\n\ndata: END\n\n",
        ])
        .await;
        assert_eq!(
            deltas,
            ["message|one", "delta|two\n lines", "message|split\n", "message|"],
            "BOM dropped, comments and data-less blocks skipped, CR/LF/CRLF lines, one leading \
             space removed, data lines joined with LF, an empty type is \"message\""
        );
        assert_eq!(detail(&outcome), "ok");
    }

    #[tokio::test]
    async fn a_last_event_without_its_blank_line_still_counts() {
        let (deltas, outcome) = read(&[b"data: a\n\ndata: END"]).await;
        assert_eq!((deltas, detail(&outcome)), (vec!["message|a".to_owned()], "ok".to_owned()));
    }

    #[tokio::test]
    async fn a_body_ending_without_the_end_event_is_an_error() {
        let (deltas, outcome) = read(&[b"data: a\n\n"]).await;
        assert_eq!(deltas, ["message|a"]);
        assert_eq!(detail(&outcome), "permanent: stream ended without completion");
    }

    #[tokio::test]
    async fn invalid_utf8_and_long_lines_end_the_stream_with_a_permanent_error() {
        let (deltas, outcome) = read(&[b"data: a\n\ndata: \xFF\xFE\n\ndata: END\n\n"]).await;
        assert_eq!(deltas, ["message|a"]);
        assert_eq!(detail(&outcome), "permanent: stream is not valid UTF-8");
        let long: &'static [u8] = vec![b'x'; SSE_MAX_LINE_BYTES + 1].leak();
        let (deltas, outcome) = read(&[b"data: a\n\ndata: ", long, b"\n\n"]).await;
        assert_eq!(deltas, ["message|a"]);
        let expected = format!("permanent: SSE line longer than {SSE_MAX_LINE_BYTES} bytes");
        assert_eq!(detail(&outcome), expected);
    }

    #[test]
    fn error_texts() {
        let v = serde_json::json!({"type": "overloaded_error", "message": "Overloaded"});
        assert_eq!(error_text(&v), "overloaded_error: Overloaded");
        let v = serde_json::json!({"message": "bad"});
        assert_eq!(error_text(&v), "bad");
        assert_eq!(truncate("héllo".to_owned(), 2), "h");
    }
}
