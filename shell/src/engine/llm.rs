//! The `LlmProvider` port: how the engine asks a model for a streamed reply. Adapters implement
//! it for OpenAI-compatible, Anthropic and Dify upstreams (`adapters::llm`); the built-in `echo`
//! provider and the simulator's providers implement it without IO. Deadlines and retries are not
//! the provider's business: the engine applies core's `stream` and `retry` rules around it.

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use chatbox_core::retry::ErrorClass;
pub use chatbox_core::usage::TokenUsage;
use futures_util::Stream;

/// Who said a line of the conversation sent upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end user (and, per PROTOCOL.md §10 item 1, admin lines).
    User,
    /// Earlier model replies.
    Assistant,
    /// Instructions or notes from the gateway.
    System,
}

impl Role {
    /// The OpenAI/Anthropic role string.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }
}

/// One line of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// Images the user attached, for a vision-capable model (issue 17 item 5); usually empty.
    pub images: Vec<ImagePart>,
}

impl ChatMessage {
    /// A text line without images.
    pub fn text(role: Role, content: impl Into<String>) -> Self {
        ChatMessage { role, content: content.into(), images: Vec::new() }
    }
}

/// One image sent to a model: its type and bytes (the adapters encode them as base64).
#[derive(Clone, PartialEq, Eq)]
pub struct ImagePart {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// The image's bytes.
    pub data: bytes::Bytes,
}

impl fmt::Debug for ImagePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImagePart({}, {} bytes)", self.media_type, self.data.len())
    }
}

/// A request for one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// The conversation, oldest first, ending with the current user message.
    pub messages: Vec<ChatMessage>,
    /// A stable, non-identifying per-user key (Dify's `user`, PROTOCOL.md §10 item 29).
    pub user_key: String,
    /// The upstream conversation id from an earlier reply in this session (Dify), if any.
    pub conversation_id: Option<String>,
}

/// One event of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of the reply text (never empty).
    Delta(String),
    /// The upstream said the reply is complete.
    End {
        /// The upstream conversation id to send with the next request (Dify).
        conversation_id: Option<String>,
        /// The tokens the upstream reported for the reply, `None` when it reported none
        /// (issue 17).
        usage: Option<TokenUsage>,
    },
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Could not connect, connection reset, timeout, HTTP 5xx or 429: may succeed if retried
    /// (only before the first chunk).
    #[error("{provider} transient failure: {detail}")]
    Transient {
        /// Provider type (`openai`, `anthropic`, `dify`).
        provider: &'static str,
        /// What happened (no secrets).
        detail: String,
    },
    /// HTTP 429 or 503 with a `Retry-After` header: transient, and the upstream said how long
    /// to wait (honoured by the engine within the first-chunk deadline, issue 17).
    #[error("{provider} transient failure: {detail}")]
    Throttled {
        /// Provider type.
        provider: &'static str,
        /// What happened (no secrets).
        detail: String,
        /// The `Retry-After` header as sent (delta-seconds; other forms fall back to the
        /// schedule).
        retry_after: String,
    },
    /// HTTP 4xx, a malformed reply, an upstream error event, a truncated stream: retrying
    /// cannot help.
    #[error("{provider} failure: {detail}")]
    Permanent {
        /// Provider type.
        provider: &'static str,
        /// What happened (no secrets).
        detail: String,
    },
}

impl ProviderError {
    /// Transient or permanent, for core's retry schedule.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::Transient { .. } | ProviderError::Throttled { .. } => {
                ErrorClass::Transient
            }
            ProviderError::Permanent { .. } => ErrorClass::Permanent,
        }
    }

    /// The upstream's `Retry-After` header, when it sent one.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            ProviderError::Throttled { retry_after, .. } => Some(retry_after),
            _ => None,
        }
    }

    /// `transient`, `throttled` or `permanent` (the traces' `error.type`).
    pub fn kind_label(&self) -> &'static str {
        match self {
            ProviderError::Transient { .. } => "transient",
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::Permanent { .. } => "permanent",
        }
    }

    /// What happened (no secrets).
    pub fn detail(&self) -> &str {
        match self {
            ProviderError::Transient { detail, .. }
            | ProviderError::Throttled { detail, .. }
            | ProviderError::Permanent { detail, .. } => detail,
        }
    }
}

/// The events of one reply. It ends after `StreamEvent::End` or an error; a stream that ends
/// without either was truncated, which the engine reports as a failure (PROTOCOL.md §10 item 21).
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A configured model.
#[async_trait]
pub trait LlmProvider: Send + Sync + fmt::Debug {
    /// Provider type label for metrics and logs (`openai`, `anthropic`, `dify`, `echo`).
    fn kind(&self) -> &'static str;

    /// Opens a streamed reply. Returns once the upstream accepted the request (headers
    /// received); the events follow on the stream.
    async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError>;
}
