//! The HTTP provider adapters (OpenAI-compatible, Anthropic, Dify) against the scripted
//! upstream: streaming, request shape, status mapping, truncated streams, error events, header
//! timeouts and dropped connections (PROTOCOL.md §7, §10 items 1, 21, 29).

use std::time::Duration;

use chatbox::adapters::llm::anthropic::AnthropicProvider;
use chatbox::adapters::llm::dify::DifyProvider;
use chatbox::adapters::llm::http_client::{build_client, ProviderSettings};
use chatbox::adapters::llm::openai::OpenAiProvider;
use chatbox::engine::llm::{
    ChatMessage, ChatRequest, EventStream, LlmProvider, ProviderError, Role, StreamEvent,
};
use chatbox_core::budgets::PROVIDER_CONNECT_TIMEOUT;
use chatbox_core::config::{Origin, Secret};
use chatbox_core::retry::ErrorClass;
use chatbox_tests::upstream::{Behaviour, Script, Upstream};
use futures_util::StreamExt;
use serde_json::json;

const KEY: &str = "sk-test-key-1234567890";
/// Generous bound on any one test step, so a bug fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    Anthropic,
    Dify,
}

const KINDS: [Kind; 3] = [Kind::OpenAi, Kind::Anthropic, Kind::Dify];

impl Kind {
    fn display(self) -> &'static str {
        match self {
            Kind::OpenAi => "OpenAI",
            Kind::Anthropic => "Anthropic",
            Kind::Dify => "Dify",
        }
    }
}

fn settings(upstream: &Upstream) -> ProviderSettings {
    ProviderSettings::new("model-id", upstream.url(), Secret::new(KEY, Origin::Env), "test-model")
}

fn provider_with(kind: Kind, settings: ProviderSettings) -> Box<dyn LlmProvider> {
    let client = build_client(PROVIDER_CONNECT_TIMEOUT).expect("client");
    match kind {
        Kind::OpenAi => Box::new(OpenAiProvider::new(settings, client)),
        Kind::Anthropic => Box::new(AnthropicProvider::new(settings, client)),
        Kind::Dify => Box::new(DifyProvider::new(settings, client)),
    }
}

fn provider(kind: Kind, upstream: &Upstream) -> Box<dyn LlmProvider> {
    provider_with(kind, settings(upstream))
}

fn msg(role: Role, content: &str) -> ChatMessage {
    ChatMessage { role, content: content.to_owned(), images: Vec::new() }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![msg(Role::User, text)],
        user_key: "user-key-1".to_owned(),
        conversation_id: None,
    }
}

/// Everything a stream yields: the deltas, then the outcome (`Ok(End)` or the error). Fails
/// the test if anything follows the outcome or the stream ends without one.
async fn drain(mut stream: EventStream) -> (Vec<String>, Result<Option<String>, ProviderError>) {
    let mut deltas = Vec::new();
    let outcome = loop {
        let item = tokio::time::timeout(STEP, stream.next()).await.expect("stream stalled");
        match item {
            Some(Ok(StreamEvent::Delta(text))) => {
                assert!(!text.is_empty(), "empty delta emitted");
                deltas.push(text);
            }
            Some(Ok(StreamEvent::End { conversation_id, .. })) => break Ok(conversation_id),
            Some(Err(error)) => break Err(error),
            None => panic!("stream ended without an outcome after {deltas:?}"),
        }
    };
    let after = tokio::time::timeout(STEP, stream.next()).await.expect("stream stalled");
    assert!(after.is_none(), "items after the outcome: {after:?}");
    (deltas, outcome)
}

async fn open(provider: &dyn LlmProvider, req: ChatRequest) -> Result<EventStream, ProviderError> {
    tokio::time::timeout(STEP, provider.open_stream(&req)).await.expect("open_stream hung")
}

async fn reply(
    kind: Kind,
    upstream: &Upstream,
    text: &str,
) -> (Vec<String>, Result<Option<String>, ProviderError>) {
    let provider = provider(kind, upstream);
    let stream = open(provider.as_ref(), request(text)).await.expect("stream opens");
    drain(stream).await
}

fn detail(error: &ProviderError) -> &str {
    match error {
        ProviderError::Transient { detail, .. }
        | ProviderError::Throttled { detail, .. }
        | ProviderError::Permanent { detail, .. } => detail,
    }
}

#[tokio::test]
async fn streams_deltas_in_order_then_end() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(
            Script::reply(["Hel", "lo, ", "wörld"]).with_chunk_interval(Duration::from_millis(5)),
        );
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["Hel", "lo, ", "wörld"], "{kind:?}");
        let conversation_id = outcome.unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let expected = (kind == Kind::Dify).then(|| "conv-1".to_owned());
        assert_eq!(conversation_id, expected, "{kind:?}");

        // The default script echoes the current user message, and the first chunk is timed.
        let (deltas, outcome) = reply(kind, &upstream, "echo this back please").await;
        assert!(outcome.is_ok(), "{kind:?}: {outcome:?}");
        assert_eq!(deltas.concat(), "echo this back please", "{kind:?}");
        assert_eq!(upstream.request_count(), 2);
        let recorded = upstream.requests();
        assert!(recorded.iter().all(|r| r.first_chunk_at().is_some_and(|t| t >= r.received_at)));
    }
}

#[tokio::test]
async fn empty_deltas_are_not_emitted() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::reply(["a", "", "b"]));
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["a", "b"], "{kind:?}");
        assert!(outcome.is_ok(), "{kind:?}");
    }
}

fn history() -> ChatRequest {
    ChatRequest {
        messages: vec![
            msg(Role::System, "be brief"),
            msg(Role::User, "first question"),
            msg(Role::Assistant, "first answer"),
            msg(Role::User, "second question"),
        ],
        user_key: "u-5f3a".to_owned(),
        conversation_id: None,
    }
}

#[tokio::test]
async fn openai_request_carries_history_and_bearer_auth() {
    let upstream = Upstream::start().await;
    let mut settings = settings(&upstream);
    settings.endpoint = format!("{}/v1/", upstream.url());
    let provider = provider_with(Kind::OpenAi, settings);
    let (_, outcome) = drain(open(provider.as_ref(), history()).await.expect("opens")).await;
    assert!(outcome.is_ok());

    let sent = upstream.last_request().expect("recorded");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert_eq!(
        sent.body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ],
            "stream": true,
            // Asks for the final usage chunk (issue 17).
            "stream_options": {"include_usage": true},
        })
    );
}

#[tokio::test]
async fn anthropic_request_uses_system_field_and_api_key_header() {
    let upstream = Upstream::start().await;
    let provider = provider(Kind::Anthropic, &upstream);
    let mut req = history();
    req.messages.push(msg(Role::User, "and a follow-up"));
    let (deltas, outcome) = drain(open(provider.as_ref(), req).await.expect("opens")).await;
    assert!(outcome.is_ok());
    // Consecutive user lines are one turn; the echo is of that turn.
    assert_eq!(deltas.concat(), "second question\n\nand a follow-up");

    let sent = upstream.last_request().expect("recorded");
    assert_eq!(sent.path, "/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("accept"), Some("text/event-stream"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.body,
        json!({
            "model": "test-model",
            "system": "be brief",
            "messages": [
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question\n\nand a follow-up"},
            ],
            "max_tokens": 4096,
            "stream": true,
        })
    );
}

#[tokio::test]
async fn dify_request_carries_query_user_and_conversation_id() {
    let upstream = Upstream::start().await;
    let provider = provider(Kind::Dify, &upstream);

    // First reply: no conversation yet; Dify assigns one and the End event returns it.
    let (_, outcome) = drain(open(provider.as_ref(), history()).await.expect("opens")).await;
    let conversation_id = outcome.expect("completes").expect("dify returns a conversation id");
    let sent = upstream.last_request().expect("recorded");
    assert_eq!(sent.path, "/chat-messages");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.body,
        json!({
            "inputs": {},
            "query": "second question",
            "response_mode": "streaming",
            "user": "u-5f3a",
        })
    );

    // Next reply: the conversation id goes back, and comes back again.
    let mut next = request("third question");
    next.user_key = "u-5f3a".to_owned();
    next.conversation_id = Some(conversation_id.clone());
    let (deltas, outcome) = drain(open(provider.as_ref(), next).await.expect("opens")).await;
    assert_eq!(deltas.concat(), "third question");
    assert_eq!(outcome.expect("completes"), Some(conversation_id.clone()));
    let sent = upstream.last_request().expect("recorded");
    assert_eq!(sent.body["conversation_id"], json!(conversation_id));
    assert_eq!(sent.body["query"], json!("third question"));
}

#[tokio::test]
async fn status_429_and_5xx_are_transient_with_the_error_text() {
    for kind in KINDS {
        for (code, body) in [(429, r#"{"error":"slow down"}"#), (500, "boom"), (503, "")] {
            let upstream = Upstream::start().await;
            upstream.push_script(Script::status(code, body));
            let error = open(provider(kind, &upstream).as_ref(), request("hi"))
                .await
                .err()
                .unwrap_or_else(|| panic!("{kind:?} {code}: no error"));
            assert_eq!(error.class(), ErrorClass::Transient, "{kind:?} {code}: {error}");
            let expected = format!("{} API error (status {code}): {body}", kind.display());
            assert_eq!(detail(&error), expected);
        }
    }
}

#[tokio::test]
async fn a_retry_after_header_is_carried_with_the_transient_error() {
    for kind in KINDS {
        for code in [429, 503] {
            let upstream = Upstream::start().await;
            upstream.push_script(Script::status(code, "busy").with_retry_after(" 3 "));
            let error =
                open(provider(kind, &upstream).as_ref(), request("hi")).await.err().expect("fails");
            assert_eq!(error.class(), ErrorClass::Transient, "{kind:?} {code}: {error}");
            assert_eq!(error.retry_after(), Some("3"), "{kind:?} {code}: {error:?}");
        }
        let upstream = Upstream::start().await;
        upstream.push_script(Script::status(500, "boom"));
        let error =
            open(provider(kind, &upstream).as_ref(), request("hi")).await.err().expect("fails");
        assert_eq!(error.retry_after(), None, "no header, no hint");
    }
}

#[tokio::test]
async fn each_dialect_reports_its_usage_at_the_end() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::reply(["a", "b"]).with_usage(11, 2));
        let stream = open(provider(kind, &upstream).as_ref(), request("hi")).await.expect("opens");
        let events: Vec<_> = stream.collect().await;
        let usage = events.iter().find_map(|e| match e {
            Ok(StreamEvent::End { usage, .. }) => Some(*usage),
            _ => None,
        });
        assert_eq!(
            usage,
            Some(Some(chatbox::engine::llm::TokenUsage { prompt: 11, completion: 2 })),
            "{kind:?}: {events:?}"
        );
    }
}

#[tokio::test]
async fn status_4xx_is_permanent_and_the_body_is_cut_at_1024_bytes() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::status(400, r#"{"error":"bad request"}"#));
        let error =
            open(provider(kind, &upstream).as_ref(), request("hi")).await.err().expect("fails");
        assert_eq!(error.class(), ErrorClass::Permanent, "{kind:?}: {error}");
        assert_eq!(
            detail(&error),
            format!(r#"{} API error (status 400): {{"error":"bad request"}}"#, kind.display())
        );

        upstream.push_script(Script::status(401, "x".repeat(5000)));
        let error =
            open(provider(kind, &upstream).as_ref(), request("hi")).await.err().expect("fails");
        assert_eq!(error.class(), ErrorClass::Permanent);
        let prefix = format!("{} API error (status 401): ", kind.display());
        assert_eq!(detail(&error), format!("{prefix}{}", "x".repeat(1024)));
        assert!(!error.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn a_stream_without_its_end_event_fails_permanently_at_the_end() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::reply(["one", "two"]).with_behaviour(Behaviour::NoEndEvent));
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["one", "two"], "{kind:?}");
        let error = outcome.expect_err("truncated stream must fail");
        assert_eq!(error.class(), ErrorClass::Permanent, "{kind:?}: {error}");
        assert_eq!(detail(&error), "stream ended without completion");
    }
}

#[tokio::test]
async fn an_upstream_error_event_fails_permanently() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::reply(["partial"]).with_behaviour(Behaviour::ErrorEvent));
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["partial"], "{kind:?}");
        let error = outcome.expect_err("error event must fail");
        assert_eq!(error.class(), ErrorClass::Permanent, "{kind:?}: {error}");
        assert!(detail(&error).contains("scripted upstream error"), "{kind:?}: {error}");
    }
}

#[tokio::test]
async fn headers_that_never_come_are_a_transient_timeout() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::echo().with_behaviour(Behaviour::StallBeforeHeaders));
        let header_timeout = Duration::from_millis(150);
        let provider = provider_with(kind, settings(&upstream).with_header_timeout(header_timeout));
        let started = chatbox_tests::harness::now();
        let error = open(provider.as_ref(), request("hi")).await.err().expect("times out");
        let waited = started.elapsed();
        assert!(waited >= header_timeout, "{kind:?}: gave up after {waited:?}");
        assert!(waited < Duration::from_secs(3), "{kind:?}: took {waited:?}");
        assert_eq!(error.class(), ErrorClass::Transient, "{kind:?}: {error}");
        assert!(detail(&error).contains("timeout"), "{kind:?}: {error}");
    }
}

#[tokio::test]
async fn a_stall_after_the_headers_is_left_to_the_engine() {
    // Headers arrived, so open_stream succeeds; the first chunk never comes and the adapter
    // has no deadline of its own (the engine's first-chunk deadline applies).
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::echo().with_behaviour(Behaviour::StallBeforeFirst));
        let provider = provider_with(
            kind,
            settings(&upstream).with_header_timeout(Duration::from_millis(100)),
        );
        let mut stream = open(provider.as_ref(), request("hi")).await.expect("headers arrive");
        let next = tokio::time::timeout(Duration::from_millis(300), stream.next()).await;
        assert!(next.is_err(), "{kind:?}: expected no item yet, got {next:?}");
    }
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_an_error() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(
            Script::reply(["one", "two", "three"]).with_behaviour(Behaviour::DropAfter(2)),
        );
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["one", "two"], "{kind:?}");
        let error = outcome.expect_err("dropped stream must fail");
        assert_eq!(error.class(), ErrorClass::Transient, "{kind:?}: {error}");
        assert!(detail(&error).starts_with("connection lost mid-stream"), "{kind:?}: {error}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let upstream = Upstream::start().await;
    let settings = settings(&upstream);
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for kind in KINDS {
        let error = open(provider_with(kind, settings.clone()).as_ref(), request("hi"))
            .await
            .err()
            .expect("nothing listens");
        assert_eq!(error.class(), ErrorClass::Transient, "{kind:?}: {error}");
        assert!(!error.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn a_line_over_one_mebibyte_fails_permanently() {
    for kind in KINDS {
        let upstream = Upstream::start().await;
        upstream.push_script(Script::reply(["ok".to_owned(), "y".repeat(1024 * 1024 + 1)]));
        let (deltas, outcome) = reply(kind, &upstream, "hi").await;
        assert_eq!(deltas, ["ok"], "{kind:?}");
        let error = outcome.expect_err("oversized line must fail");
        assert_eq!(error.class(), ErrorClass::Permanent, "{kind:?}: {error}");
        assert!(detail(&error).contains("longer than"), "{kind:?}: {error}");
    }
}

#[tokio::test]
async fn debug_output_never_shows_the_api_key() {
    let upstream = Upstream::start().await;
    for kind in KINDS {
        let shown = format!("{:?}", provider(kind, &upstream));
        assert!(!shown.contains(KEY), "{kind:?}: {shown}");
    }
}

#[tokio::test]
async fn a_dify_request_without_a_user_message_is_refused_locally() {
    let upstream = Upstream::start().await;
    let req = ChatRequest {
        messages: vec![msg(Role::Assistant, "hello")],
        user_key: "u".to_owned(),
        conversation_id: None,
    };
    let error = open(provider(Kind::Dify, &upstream).as_ref(), req).await.err().expect("refused");
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(upstream.request_count(), 0);
}
