//! The Anthropic provider (PROTOCOL.md §7.4): `POST {endpoint}/messages` with the conversation,
//! `max_tokens` 4096 and `"stream": true`, read as server-sent events.
//!
//! Request shape — a deliberate change from the original, which sent `system` lines as `user`:
//! the Messages API has no `system` role, so the leading system messages go to the top-level
//! `system` field (joined by blank lines), which is how Anthropic expects instructions. A
//! system note later in the conversation (e.g. an admin note, §10 item 1) is sent as a `user`
//! line, as the original did. Consecutive lines of one role are merged into one turn (the API
//! wants alternating turns) and empty lines are dropped (the API rejects empty text).
//!
//! Events (by the JSON `type`): `content_block_delta` contributes `delta.text`; `message_stop`
//! ends; `error` is a permanent failure (the original ignored it, §10 item 21); everything else
//! (`message_start`, `ping`, `content_block_start`/`stop`, `message_delta`) sends nothing.
//! Usage (issue 17): `message_start`'s `message.usage` gives `input_tokens` (the prompt) and
//! `message_delta`'s `usage.output_tokens` the reply's tokens so far (cumulative, so the last
//! one wins); the end carries them.

use super::sse::Event;
use async_trait::async_trait;
use base64::Engine as _;
use chatbox_core::budgets::ANTHROPIC_MAX_TOKENS;
use serde::Serialize;

use super::http_client::{ProviderSettings, RequestUrl, Upstream};
use super::sse::{error_text, json_data, post_for_events, tokens, Decoded, SseDecoder};
use crate::engine::llm::{
    ChatMessage, ChatRequest, EventStream, ImagePart, LlmProvider, ProviderError, Role, TokenUsage,
};

const UPSTREAM: Upstream = Upstream { kind: "anthropic", display: "Anthropic" };

/// The API version header value the original sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// An Anthropic Messages API upstream.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    settings: ProviderSettings,
    client: reqwest::Client,
    url: RequestUrl,
}

impl AnthropicProvider {
    /// A provider for `settings`, sending through the server's shared `client`
    /// (see [`super::http_client::build_client`]).
    pub fn new(settings: ProviderSettings, client: reqwest::Client) -> Self {
        let url = RequestUrl::new(&settings.endpoint, "messages");
        Self { settings, client, url }
    }
}

/// The request body.
#[derive(Debug, Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<Turn>,
    max_tokens: u32,
    stream: bool,
}

/// One turn on the wire: its text, and (for a vision model) the images the user attached,
/// sent as base64 `image` blocks before the text block.
#[derive(Debug, PartialEq, Eq)]
struct Turn {
    role: &'static str,
    content: String,
    images: Vec<ImagePart>,
}

impl Serialize for Turn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("role", self.role)?;
        if self.images.is_empty() {
            map.serialize_entry("content", &self.content)?;
        } else {
            let mut blocks: Vec<serde_json::Value> = self
                .images
                .iter()
                .map(|image| {
                    let data = base64::engine::general_purpose::STANDARD.encode(&image.data);
                    serde_json::json!({"type": "image", "source": {
                        "type": "base64", "media_type": image.media_type, "data": data}})
                })
                .collect();
            if !self.content.is_empty() {
                blocks.push(serde_json::json!({"type": "text", "text": self.content}));
            }
            map.serialize_entry("content", &blocks)?;
        }
        map.end()
    }
}

/// Splits the conversation into Anthropic's top-level `system` text and alternating turns
/// (see the module doc).
fn to_wire(messages: &[ChatMessage]) -> (Option<String>, Vec<Turn>) {
    let leading_system = messages.iter().take_while(|m| m.role == Role::System).count();
    let system_parts: Vec<&str> = messages[..leading_system]
        .iter()
        .map(|m| m.content.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let system = (!system_parts.is_empty()).then(|| system_parts.join("\n\n"));

    let mut turns: Vec<Turn> = Vec::new();
    for message in &messages[leading_system..] {
        if message.content.is_empty() && message.images.is_empty() {
            continue;
        }
        let role = match message.role {
            Role::Assistant => "assistant",
            Role::User | Role::System => "user",
        };
        match turns.last_mut() {
            Some(last) if last.role == role => {
                if !message.content.is_empty() {
                    last.content.push_str("\n\n");
                    last.content.push_str(&message.content);
                }
                last.images.extend(message.images.iter().cloned());
            }
            _ => turns.push(Turn {
                role,
                content: message.content.clone(),
                images: message.images.clone(),
            }),
        }
    }
    (system, turns)
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        UPSTREAM.kind
    }

    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
        let (system, messages) = to_wire(&request.messages);
        let body = Body {
            model: &self.settings.model,
            system,
            messages,
            max_tokens: ANTHROPIC_MAX_TOKENS,
            stream: true,
        };
        let http = self
            .url
            .post(&self.client)
            .header("x-api-key", self.settings.api_key.expose())
            .header("anthropic-version", ANTHROPIC_VERSION);
        post_for_events(UPSTREAM, &self.settings, http, &body, Decoder::default()).await
    }
}

/// Reads Messages API stream events.
#[derive(Debug, Default)]
struct Decoder {
    /// `input_tokens` of `message_start` (or a later `message_delta`).
    input: Option<u64>,
    /// The latest `output_tokens`.
    output: Option<u64>,
}

impl Decoder {
    fn note_usage(&mut self, usage: Option<&serde_json::Value>) {
        let Some(usage) = usage else { return };
        if let Some(input) = tokens(usage, "input_tokens") {
            self.input = Some(input);
        }
        if let Some(output) = tokens(usage, "output_tokens") {
            self.output = Some(output);
        }
    }

    fn usage(&self) -> Option<TokenUsage> {
        (self.input.is_some() || self.output.is_some()).then(|| TokenUsage {
            prompt: self.input.unwrap_or(0),
            completion: self.output.unwrap_or(0),
        })
    }
}

impl SseDecoder for Decoder {
    fn decode(&mut self, event: &Event) -> Decoded {
        let Some(json) = json_data(event) else {
            return Decoded::Skip;
        };
        match json.get("type").and_then(serde_json::Value::as_str) {
            Some("content_block_delta") => {
                let text = json
                    .get("delta")
                    .and_then(|d| d.get("text"))
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default();
                Decoded::Delta(text.to_owned())
            }
            Some("message_start") => {
                self.note_usage(json.get("message").and_then(|m| m.get("usage")));
                Decoded::Skip
            }
            Some("message_delta") => {
                self.note_usage(json.get("usage"));
                Decoded::Skip
            }
            Some("message_stop") => Decoded::End { conversation_id: None, usage: self.usage() },
            Some("error") => {
                Decoded::Fail(json.get("error").map(error_text).unwrap_or_else(|| "error".into()))
            }
            _ => Decoded::Skip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.to_owned(), images: Vec::new() }
    }

    #[test]
    fn leading_system_goes_top_level_and_roles_alternate() {
        let (system, turns) = to_wire(&[
            msg(Role::System, "be brief"),
            msg(Role::System, "be kind"),
            msg(Role::User, "a"),
            msg(Role::User, "b"),
            msg(Role::Assistant, "c"),
            msg(Role::System, "note"),
            msg(Role::User, ""),
            msg(Role::User, "d"),
        ]);
        assert_eq!(system.as_deref(), Some("be brief\n\nbe kind"));
        assert_eq!(
            turns,
            vec![
                Turn { role: "user", content: "a\n\nb".into(), images: vec![] },
                Turn { role: "assistant", content: "c".into(), images: vec![] },
                Turn { role: "user", content: "note\n\nd".into(), images: vec![] },
            ]
        );
        let (system, _) = to_wire(&[msg(Role::User, "x")]);
        assert!(system.is_none());
    }

    #[test]
    fn decodes_events() {
        let ev = |data: &str| Event { data: data.to_owned(), ..Event::default() };
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&ev(
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hi"}}"#
            )),
            Decoded::Delta("Hi".into())
        );
        assert_eq!(d.decode(&ev(r#"{"type":"ping"}"#)), Decoded::Skip);
        assert_eq!(
            d.decode(&ev(r#"{"type":"message_stop"}"#)),
            Decoded::End { conversation_id: None, usage: None }
        );
        assert_eq!(
            d.decode(&ev(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            )),
            Decoded::Fail("overloaded_error: Overloaded".into())
        );
    }

    #[test]
    fn usage_comes_from_message_start_and_the_last_message_delta() {
        // As captured from api.anthropic.com (ids shortened).
        let ev = |data: &str| Event { data: data.to_owned(), ..Event::default() };
        let mut d = Decoder::default();
        let start = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#;
        assert_eq!(d.decode(&ev(start)), Decoded::Skip);
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        assert_eq!(d.decode(&ev(delta)), Decoded::Skip);
        assert_eq!(
            d.decode(&ev(r#"{"type":"message_stop"}"#)),
            Decoded::End {
                conversation_id: None,
                usage: Some(TokenUsage { prompt: 25, completion: 15 })
            }
        );
    }
}
