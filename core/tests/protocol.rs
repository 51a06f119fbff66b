//! Properties of `chatbox_core::protocol`: the inbound parser never panics, server frames
//! round-trip through it, sanitizing always leaves clean fields, byte limits hold exactly at the
//! boundary, and the retry-after roundings never undercut the real wait.

use std::collections::BTreeMap;
use std::time::Duration;

use chatbox_core::protocol::{
    parse_client_frame, retry_after_header_secs, ClientErrorInfo, ErrorCode, ErrorInfo, Frame,
    FrameType, InboundError, InboundLimits, ModelInfo, Sender, ValidationError,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 21, 10, 0, 0).single().unwrap_or_default()
}

fn limits() -> InboundLimits {
    InboundLimits::DEFAULT
}

/// Text without NUL and without leading/trailing whitespace, at most `max_chars` characters.
fn clean(max_chars: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\\x00]{{0,{max_chars}}}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .prop_map(|s| s.trim().to_string())
}

/// Like [`clean`] but never empty.
fn clean_non_empty(max_chars: usize) -> impl Strategy<Value = String> {
    clean(max_chars).prop_map(|s| if s.is_empty() { "x".to_string() } else { s })
}

fn any_frame_type() -> impl Strategy<Value = FrameType> {
    proptest::sample::select(FrameType::ALL.to_vec())
}

fn any_sender() -> impl Strategy<Value = Sender> {
    proptest::sample::select(Sender::ALL.to_vec())
}

/// A frame that satisfies every §3.6 rule, as a server (or a well-behaved client) would write it.
fn valid_frame() -> impl Strategy<Value = Frame> {
    (
        any_frame_type(),
        any_sender(),
        clean(30),
        clean_non_empty(200),
        clean_non_empty(20),
        clean_non_empty(20),
        clean_non_empty(20),
        -86_400i64 * 3650..=60,
        proptest::collection::btree_map(clean(10), clean(50), 0..4),
        (
            proptest::sample::select(ErrorCode::ALL.to_vec()),
            clean_non_empty(40),
            any::<bool>(),
            proptest::option::of(0u64..1_000_000),
        ),
        proptest::collection::vec((clean(10), clean(10)), 0..3),
        clean(10),
    )
        .prop_map(
            |(
                t,
                s,
                session,
                content,
                file_id,
                file_url,
                model_id,
                offset,
                metadata,
                e,
                models,
                user,
            )| {
                let sender = match t {
                    FrameType::AdminJoin | FrameType::AdminLeave => Sender::Admin,
                    FrameType::HelpRequest => Sender::User,
                    _ => s,
                };
                let timestamp = now() + chrono::Duration::seconds(offset);
                let mut f = Frame::new(t, sender, timestamp)
                    .with_session(session)
                    .with_content(content)
                    .with_model(model_id);
                f.file_id = file_id;
                f.file_url = file_url;
                f.metadata = metadata;
                if t == FrameType::Resume {
                    // A resume names its session, reply and last seq (issue 14).
                    if f.session_id.is_empty() {
                        f.session_id = "s".into();
                    }
                    f.metadata.insert("reply_id".into(), "r".into());
                    f.metadata.insert("after_seq".into(), offset.unsigned_abs().to_string());
                }
                f.models = models.into_iter().map(|(id, name)| ModelInfo::new(id, name)).collect();
                f.user_id = user;
                let (code, message, recoverable, retry_after) = e;
                f.error = Some(ErrorInfo { code, message, recoverable, retry_after });
                f
            },
        )
}

/// Arbitrary JSON whose object keys are often frame keys (in assorted cases), to reach every
/// branch of the decoder.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(vec![
            "type",
            "TYPE",
            "Type",
            "session_id",
            "content",
            "Content",
            "file_id",
            "file_url",
            "model_id",
            "timestamp",
            "sender",
            "metadata",
            "Metadata",
            "error",
            "code",
            "message",
            "recoverable",
            "retry_after",
            "models",
            "user_id",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        proptest::sample::select(vec![
            "user_message",
            "error",
            "file_upload",
            "model_select",
            "help_request",
            "admin_join",
            "user",
            "admin",
            "ai",
            "2026-02-21T10:00:00Z",
            "2026-02-21T10:01:00.999Z",
            "9999-12-31T23:59:59Z",
            "ping",
            "",
        ])
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A string wrapped in whitespace and NUL bytes, with NULs inside too.
fn dirty() -> impl Strategy<Value = String> {
    let junk = proptest::sample::select(vec![
        "", " ", "\t", "\n", "\r\n", "\0", " \0 ", "\u{a0}", "\u{3000}", "\u{85}", "\u{2028}",
    ]);
    (junk.clone(), any::<String>(), junk.clone(), junk)
        .prop_map(|(a, s, b, c)| format!("{a}{}{b}{s}{c}", s.replace('x', "\0")))
}

fn is_clean(s: &str) -> bool {
    !s.contains('\0') && s.trim() == s
}

/// `n` bytes of text, multi-byte characters included, no whitespace or NUL at either end.
fn text_of_bytes(seed: &str, n: usize) -> String {
    let mut out = String::with_capacity(n);
    for c in seed.chars().filter(|c| !c.is_whitespace() && *c != '\0') {
        if out.len() + c.len_utf8() > n {
            break;
        }
        out.push(c);
    }
    while out.len() < n {
        out.push('x');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        let _ = parse_client_frame(&text, now(), &limits());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_client_frame(&text, now(), &limits());
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let text = value.to_string();
        let result = parse_client_frame(&text, now(), &limits());
        if let Err(e) = result {
            // Every refusal maps to one of the two INVALID_FORMAT texts.
            let info = e.to_error_info();
            prop_assert_eq!(info.code, ErrorCode::InvalidFormat);
            prop_assert!(info.message == "Invalid message format" || info.message == "Message validation failed");
        }
    }

    #[test]
    fn valid_frames_round_trip(frame in valid_frame()) {
        let text = frame.to_json();
        prop_assert_eq!(&text, &serde_json::to_string(&frame).unwrap_or_default());
        let parsed = parse_client_frame(&text, now(), &limits());
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {text}"))),
        };
        prop_assert_eq!(parsed.frame_type, frame.frame_type);
        prop_assert_eq!(parsed.sender, frame.sender);
        prop_assert_eq!(parsed.timestamp, frame.timestamp);
        prop_assert_eq!(&parsed.session_id, &frame.session_id);
        prop_assert_eq!(&parsed.content, &frame.content);
        prop_assert_eq!(&parsed.file_id, &frame.file_id);
        prop_assert_eq!(&parsed.file_url, &frame.file_url);
        prop_assert_eq!(&parsed.model_id, &frame.model_id);
        prop_assert_eq!(&parsed.metadata, &frame.metadata);
        let want_error = frame.error.as_ref().filter(|_| frame.frame_type == FrameType::Error).map(|e| {
            ClientErrorInfo {
                code: e.code.as_str().to_string(),
                message: e.message.clone(),
                recoverable: e.recoverable,
                retry_after: e.retry_after_ms(),
            }
        });
        prop_assert_eq!(parsed.error, want_error);
        // The typed decoder for clients reads the same text back too.
        let decoded: Frame = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.to_json(), text);
    }

    #[test]
    fn a_chunk_written_directly_is_the_chunk_frame_encoded(
        session in any::<String>(),
        model in any::<String>(),
        text in any::<String>(),
        reply_id in any::<String>(),
        seq in any::<u64>(),
        secs in 0i64..4_102_444_800,
    ) {
        let at = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
        let frame = Frame::ai_chunk(session.as_str(), model.as_str(), text.as_str(), at)
            .in_reply(reply_id.as_str(), seq);
        prop_assert_eq!(
            Frame::ai_chunk_json(&session, &model, &text, (&reply_id, seq), at),
            frame.to_json()
        );
    }

    #[test]
    fn sanitized_fields_are_clean(
        t in any_frame_type(),
        session in dirty(),
        content in dirty(),
        file_id in dirty(),
        file_url in dirty(),
        model_id in dirty(),
        meta in proptest::collection::vec((dirty(), dirty()), 0..4),
        code in dirty(),
        message in dirty(),
    ) {
        let sender = match t {
            FrameType::AdminJoin | FrameType::AdminLeave => "admin",
            _ => "user",
        };
        let metadata: Map<String, Value> = meta.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        let value = json!({
            "type": t.as_str(), "sender": sender, "session_id": session, "content": content,
            "file_id": file_id, "file_url": file_url, "model_id": model_id,
            "metadata": metadata, "error": {"code": code, "message": message},
        });
        let expect = |s: &str| s.replace('\0', "").trim().to_string();
        match parse_client_frame(&value.to_string(), now(), &limits()) {
            Ok(f) => {
                for (field, raw) in [
                    (&f.session_id, &session), (&f.content, &content), (&f.file_id, &file_id),
                    (&f.file_url, &file_url), (&f.model_id, &model_id),
                ] {
                    prop_assert!(is_clean(field), "{:?}", field);
                    prop_assert_eq!(field, &expect(raw));
                }
                for (k, v) in &f.metadata {
                    prop_assert!(is_clean(k) && is_clean(v), "{:?}: {:?}", k, v);
                }
                let e = f.error.unwrap_or_default();
                prop_assert!(is_clean(&e.code) && is_clean(&e.message));
                prop_assert_eq!(e.code, expect(&code));
            }
            Err(InboundError::Validation(_)) => {}
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        }
    }

    #[test]
    fn byte_limits_hold_exactly_at_the_boundary(which in 0usize..6, seed in any::<String>()) {
        let l = limits();
        let (key, max) = [
            ("session_id", l.session_id), ("content", l.content), ("file_id", l.file_id),
            ("file_url", l.file_url), ("model_id", l.model_id), ("metadata", l.metadata_value),
        ][which];
        let frame = |n: usize| {
            let text = text_of_bytes(&seed, n);
            let mut v = json!({"type": "file_upload", "file_id": "f", "file_url": "u", "content": "c"});
            if key == "metadata" {
                v["metadata"] = json!({ "k": text });
            } else {
                v[key] = Value::String(text);
            }
            v.to_string()
        };
        prop_assert!(parse_client_frame(&frame(max), now(), &l).is_ok(), "{} at {} bytes", key, max);
        let over = parse_client_frame(&frame(max + 1), now(), &l);
        let too_long = matches!(
            over,
            Err(InboundError::Validation(
                ValidationError::FieldTooLong { .. } | ValidationError::MetadataValueTooLong { .. }
            ))
        );
        prop_assert!(too_long, "{} at {} bytes: {:?}", key, max + 1, over);
    }

    #[test]
    fn future_timestamps_are_refused_beyond_one_minute(offset_ms in -600_000i64..=600_000) {
        let at = now() + chrono::Duration::milliseconds(offset_ms);
        let text = json!({"type": "user_message", "content": "hi", "timestamp": at.to_rfc3339()}).to_string();
        let result = parse_client_frame(&text, now(), &limits());
        if offset_ms <= 60_000 {
            prop_assert_eq!(result.map(|f| f.timestamp).ok(), Some(at));
        } else {
            let refused = matches!(
                result,
                Err(InboundError::Validation(ValidationError::TimestampInFuture { .. }))
            );
            prop_assert!(refused);
        }
    }

    #[test]
    fn scalar_metadata_is_kept_as_text(n in any::<i64>(), b in any::<bool>()) {
        let text = json!({"type": "user_message", "content": "hi", "metadata": {"n": n, "b": b}}).to_string();
        let f = parse_client_frame(&text, now(), &limits()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = BTreeMap::from([("b".to_string(), b.to_string()), ("n".to_string(), n.to_string())]);
        prop_assert_eq!(f.metadata, want);
    }

    #[test]
    fn retry_after_header_is_at_least_one_and_never_early(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        let header = retry_after_header_secs(d);
        prop_assert!(header >= 1);
        prop_assert!(u128::from(header) * 1_000_000_000 >= d.as_nanos() || header == u64::MAX);
        // And never more than a second late.
        prop_assert!(u128::from(header) * 1_000_000_000 < d.as_nanos() + 1_000_000_000 || header == 1);
    }

    #[test]
    fn retry_after_ms_is_at_least_one_and_never_early(nanos in any::<u64>()) {
        let d = Duration::from_nanos(nanos);
        let ms = ErrorInfo::too_many_requests(d).retry_after.unwrap_or(0);
        prop_assert!(ms >= 1);
        prop_assert!(u128::from(ms) * 1_000_000 >= d.as_nanos());
        prop_assert!(u128::from(ms) * 1_000_000 < d.as_nanos() + 1_000_000 || ms == 1);
    }
}
