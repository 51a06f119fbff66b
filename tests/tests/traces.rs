#![cfg(not(madsim))]
//! OpenTelemetry trace export through the real binary (issue 17 item 3): a chatbox process with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a real OTLP/HTTP receiver started by the test
//! (`chatbox_tests::otlp`, protobuf decoded with `opentelemetry-proto`) and a scripted
//! OpenAI-compatible upstream. One user message exports the span tree the engine documents
//! (`shell/src/engine/telemetry.rs`): the connection span is the message span's parent, the reply
//! span (GenAI attributes) and the store spans are the message's children, the provider attempt
//! is the reply's child, and the JSON log line of that message carries the same trace id. A
//! fallback hop is two provider-attempt spans; `TRACE_USER_ID` hashes or omits `user.id`; a
//! collector nobody listens on delays no reply; bad settings stop the start-up, all listed.

use std::time::Duration;

use chatbox_tests::harness::{check_config, is_done, now, reply_text, Server, ServerOpts};
use chatbox_tests::otlp::{Attr, OtlpReceiver, SpanRecord};
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::Value;

/// Generous bound on one reply or one export.
const STEP: Duration = Duration::from_secs(20);

/// Server options exporting to `endpoint` quickly (100 ms batches), with JSON logs.
fn traced(opts: ServerOpts, endpoint: &str) -> ServerOpts {
    opts.embedded_store()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "chatbox-it")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
}

/// Sends one message on a fresh connection of `user`, waits for its reply, closes the
/// connection; the reply's frames.
async fn ask_and_close(server: &Server, user: &str, text: &str) -> Vec<Value> {
    let token = server.token(user, &["user"], None);
    let mut client = server.connect(&token).await;
    client.send_user_message(&format!("new-{user}"), text).await;
    let frames = client.recv_reply(STEP).await;
    assert!(is_done(frames.last().expect("an outcome")), "{frames:#?}");
    client.close().await;
    frames
}

/// The JSON log line `reply ended` of `session`'s reply.
async fn reply_log_line(server: &Server, session: &str) -> Value {
    assert!(server.wait_for_log("reply ended", STEP).await);
    let logs = server.log_text();
    logs.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "reply ended" && l["fields"]["session_id"] == session)
        .unwrap_or_else(|| panic!("no \"reply ended\" line for {session} in:\n{logs}"))
}

fn session_of(frames: &[Value]) -> String {
    frames.last().and_then(|f| f["session_id"].as_str()).expect("session id").to_string()
}

fn named<'a>(spans: &'a [SpanRecord], name: &str) -> Vec<&'a SpanRecord> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one {name:?} span expected in {spans:#?}");
    found[0]
}

/// The spans of the trace of the (only) connection, once its span has arrived.
async fn connection_trace(receiver: &OtlpReceiver) -> Vec<SpanRecord> {
    let spans = receiver
        .wait_for(STEP, |spans| spans.iter().any(|s| s.name == "websocket.connection"))
        .await;
    let trace = one(&spans, "websocket.connection").trace_id.clone();
    spans.into_iter().filter(|s| s.trace_id == trace).collect()
}

#[tokio::test]
async fn one_message_exports_its_span_tree_and_logs_its_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["Hello", " there"]).with_usage(12, 5));
    let server =
        Server::start(traced(ServerOpts::with_upstream(&upstream), receiver.endpoint())).await;
    let frames = ask_and_close(&server, "trace-user", "Hi").await;
    assert_eq!(reply_text(&frames), "Hello there");
    let session = session_of(&frames);

    let spans = connection_trace(&receiver).await;
    let hashed = chatbox::engine::telemetry::hashed_user_id(server.secret(), "trace-user");
    let conn = one(&spans, "websocket.connection");
    assert_eq!(conn.parent_span_id, "", "the connection is the trace's root");
    assert_eq!(conn.kind, 2, "server kind");
    assert_eq!(conn.str("user.id"), Some(hashed.as_str()), "{conn:#?}");
    assert_eq!(conn.resource.get("service.name").and_then(Attr::as_str), Some("chatbox-it"));

    let message = one(&spans, "user_message");
    assert_eq!(message.parent_span_id, conn.span_id, "the message is the connection's child");
    assert_eq!(message.str("session.id"), Some(session.as_str()), "the resolved session");
    assert_eq!(message.str("user.id"), Some(hashed.as_str()));

    let reply = one(&spans, "chat scripted-openai");
    assert_eq!(reply.parent_span_id, message.span_id, "the reply is the message's child");
    assert_eq!(reply.kind, 3, "client kind");
    assert_eq!(reply.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(reply.str("gen_ai.system"), Some("openai"));
    assert_eq!(reply.str("gen_ai.request.model"), Some("scripted-openai"));
    assert_eq!(reply.str("gen_ai.response.model"), Some("scripted-openai"));
    assert_eq!(reply.attr("gen_ai.usage.input_tokens"), Some(&Attr::Int(12)));
    assert_eq!(reply.attr("gen_ai.usage.output_tokens"), Some(&Attr::Int(5)));
    assert_eq!(reply.str("session.id"), Some(session.as_str()));

    let attempt = one(&spans, "provider.attempt");
    assert_eq!(attempt.parent_span_id, reply.span_id, "the attempt is the reply's child");
    assert_eq!(attempt.str("chatbox.provider.id"), Some("openai-gpt4"));
    assert_eq!(attempt.attr("chatbox.attempt"), Some(&Attr::Int(1)));
    assert_eq!(attempt.attr("chatbox.fallback"), Some(&Attr::Bool(false)));
    assert_ne!(attempt.status, 2, "not an error");

    let stores: Vec<&SpanRecord> = spans.iter().filter(|s| s.name.starts_with("store ")).collect();
    let operations: Vec<&str> = stores.iter().filter_map(|s| s.str("db.operation.name")).collect();
    for wanted in ["create_session", "append_message", "load_history"] {
        assert!(operations.contains(&wanted), "{wanted} missing from {operations:?}");
    }
    for store in &stores {
        assert_eq!(store.str("db.system.name"), Some("redb"), "{store:#?}");
        // Binding the connection (a load) happens in the frame dispatch, under the connection.
        assert!(
            [conn.span_id.as_str(), message.span_id.as_str(), reply.span_id.as_str()]
                .contains(&store.parent_span_id.as_str()),
            "a store span under the connection, the message or its reply: {store:#?}"
        );
    }
    // The user's message and the reply (with the session's statistics, one write) are both
    // stored under the message's trace.
    let count =
        |name: &str| stores.iter().filter(|s| s.str("db.operation.name") == Some(name)).count();
    assert_eq!((count("append_message"), count("append_message_with")), (1, 1), "{operations:?}");
    assert!(receiver.content_types().iter().all(|t| t == "application/x-protobuf"));

    // The JSON log line of this message's reply carries the same trace id.
    let line = reply_log_line(&server, &session).await;
    assert_eq!(line["trace_id"], conn.trace_id.as_str(), "{line}");
    assert_eq!(line["span_id"], message.span_id.as_str(), "{line}");
}

#[tokio::test]
async fn a_fallback_hop_is_two_provider_attempts_and_user_ids_can_be_omitted() {
    let receiver = OtlpReceiver::start().await;
    let primary = Upstream::start().await;
    // A refusal (4xx) moves straight to the next provider: one attempt on each.
    primary.set_default(Script::status(400, r#"{"error":{"message":"no"}}"#));
    let backup = Upstream::start().await;
    backup.set_default(Script::reply(["From the backup"]));
    let opts = ServerOpts::new()
        .provider("primary", "Primary", "openai", &primary.url())
        .provider("backup", "Backup", "anthropic", &backup.url())
        .env("LLM_PROVIDER_1_FALLBACK", "backup")
        .env("TRACE_USER_ID", "omitted");
    let server = Server::start(traced(opts, receiver.endpoint())).await;
    let frames = ask_and_close(&server, "fallback-user", "Hi").await;
    assert_eq!(reply_text(&frames), "From the backup");

    let spans = connection_trace(&receiver).await;
    let reply = one(&spans, "chat scripted-openai");
    assert_eq!(reply.str("chatbox.model.id"), Some("primary"));
    assert_eq!(reply.str("chatbox.answered_by"), Some("backup"));
    assert_eq!(reply.str("gen_ai.response.model"), Some("scripted-anthropic"));
    let attempts = named(&spans, "provider.attempt");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let (first, second) = (
        attempts.iter().find(|a| a.str("chatbox.provider.id") == Some("primary")),
        attempts.iter().find(|a| a.str("chatbox.provider.id") == Some("backup")),
    );
    let (first, second) = (first.expect("the primary's attempt"), second.expect("the backup's"));
    for attempt in [first, second] {
        assert_eq!(attempt.parent_span_id, reply.span_id);
    }
    assert_eq!(first.attr("chatbox.fallback"), Some(&Attr::Bool(false)));
    assert_eq!(first.str("error.type"), Some("permanent"));
    assert_eq!(first.status, 2, "the failed attempt is an error");
    assert_eq!(second.attr("chatbox.fallback"), Some(&Attr::Bool(true)));
    assert_eq!(second.str("gen_ai.system"), Some("anthropic"));
    assert_ne!(second.status, 2);
    assert!(
        reply.events.iter().any(|e| e == "falling back to the next provider"),
        "the hop is an event of the reply span: {:?}",
        reply.events
    );
    for span in &spans {
        assert!(span.attr("user.id").is_none(), "TRACE_USER_ID=omitted: {span:#?}");
    }
}

#[tokio::test]
async fn a_collector_nobody_listens_on_delays_no_reply() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["pong"]));
    let opts =
        traced(ServerOpts::with_upstream(&upstream), &closed).env("OTEL_BSP_SCHEDULE_DELAY", "10");
    let mut server = Server::start(opts).await;
    let token = server.token("dark-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let began = now();
    let mut session = "new-dark".to_string();
    for n in 0..5 {
        client.send_user_message(&session, &format!("ping {n}")).await;
        let frames = client.recv_reply(STEP).await;
        assert_eq!(reply_text(&frames), "pong", "{frames:#?}");
        session = session_of(&frames);
    }
    // Each export fails (connection refused, retried by the exporter in the background); the
    // five replies still come at the upstream's pace. The bound is far below one export
    // timeout (10 s), which a blocking exporter would add to every reply.
    assert!(began.elapsed() < Duration::from_secs(8), "{:?}", began.elapsed());
    client.close().await;
    server.sigterm();
    let (status, took) = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    // The drain plus the flush budget (3 s) bound the exit although the collector is gone.
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_logs_carry_no_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["plain"]));
    // The receiver's address is only in a variable chatbox does not read for traces.
    let opts = ServerOpts::with_upstream(&upstream)
        .env("OTEL_SERVICE_NAME", receiver.endpoint())
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info");
    let server = Server::start(opts).await;
    let frames = ask_and_close(&server, "quiet-user", "Hi").await;
    let session = session_of(&frames);
    let line = reply_log_line(&server, &session).await;
    assert!(line.get("trace_id").is_none(), "{line}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), 0);
}

#[tokio::test]
async fn bad_trace_settings_stop_the_start_up_all_listed() {
    let secret = chatbox::app::cli::generate_secret();
    let (status, _, stderr) = check_config(&[
        ("JWT_SECRET", &secret),
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("TRACE_USER_ID", "plain"),
    ])
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    for setting in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_TRACES_SAMPLER /",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "TRACE_USER_ID",
    ] {
        assert!(stderr.contains(setting), "{setting} not listed in:\n{stderr}");
    }
}

/// Spans of `root` and everything under it.
fn subtree<'a>(spans: &'a [SpanRecord], root: &'a SpanRecord) -> Vec<&'a SpanRecord> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let id = found[i].span_id.clone();
        found.extend(spans.iter().filter(|s| s.parent_span_id == id));
        i += 1;
    }
    found
}

/// The figure of BENCHMARKS.md ("Traces"): spans exported per message, counted by the receiver,
/// for a session's first message (which creates the session) and for the ones after it.
#[tokio::test]
async fn spans_per_message_are_counted_by_the_receiver() {
    let receiver = OtlpReceiver::start().await;
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["a", "b", "c"]).with_usage(3, 3));
    let server =
        Server::start(traced(ServerOpts::with_upstream(&upstream), receiver.endpoint())).await;
    let token = server.token("count-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let mut session = "new-count".to_string();
    const MESSAGES: usize = 5;
    for n in 0..MESSAGES {
        client.send_user_message(&session, &format!("message {n}")).await;
        let frames = client.recv_reply(STEP).await;
        assert!(is_done(frames.last().expect("an outcome")), "{frames:#?}");
        session = session_of(&frames);
    }
    client.close().await;
    let spans = connection_trace(&receiver).await;
    let messages = named(&spans, "user_message");
    assert_eq!(messages.len(), MESSAGES);
    for m in &messages {
        let names: Vec<&str> = subtree(&spans, m).iter().map(|s| s.name.as_str()).collect();
        println!("{names:?}");
    }
    let counts: Vec<usize> = {
        // In sending order: the first message is the one with the session's creation under it.
        let mut counts: Vec<(bool, usize)> = messages
            .iter()
            .map(|m| {
                let tree = subtree(&spans, m);
                let creates =
                    tree.iter().any(|s| s.str("db.operation.name") == Some("create_session"));
                (!creates, tree.len())
            })
            .collect();
        counts.sort();
        counts.into_iter().map(|(_, n)| n).collect()
    };
    assert_eq!(counts.iter().filter(|&&n| n == counts[1]).count(), MESSAGES - 1, "{counts:?}");
    println!(
        "spans per message: first {} (creates the session), then {} each; the connection adds {} ({} in all for {MESSAGES} messages)",
        counts[0],
        counts[1],
        spans.len() - counts.iter().sum::<usize>(),
        spans.len()
    );
}
