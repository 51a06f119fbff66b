//! `GET {P}/admin/events` (issue 15): the admin consoles' live events as server-sent events
//! (axum's `Sse`). Behind the admin gate and limit like every admin route (one request per open
//! stream), so it takes the same bearer token; the console reads it with `fetch` streaming,
//! since a browser's `EventSource` cannot send an `Authorization` header (and a token in a URL
//! ends up in logs). The stream opens with a `ready` event (subscribed: nothing later is
//! missed), then one event per `engine::delivery::AdminEvent`, named by its `type`, with its JSON as
//! `data`; a comment every [`ADMIN_EVENTS_KEEPALIVE`] keeps proxies from closing it; a console
//! that fell behind gets `resync` (re-read the list). It ends when the server stops accepting.
//!
//! The keep-alive is written here rather than with axum's `KeepAlive`, which needs axum's
//! `tokio` feature (hyper-util's server and the real tokio timer, not the simulator's).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use chatbox_core::budgets::ADMIN_EVENTS_KEEPALIVE;
use futures_util::Stream;
use tokio::sync::{broadcast, watch};

use super::rest::ApiState;
use crate::engine::hub::Engine;
use crate::engine::supervisor::signalled;

/// The name of the first event of every stream.
pub const READY: &str = "ready";
/// The event telling a console it missed events and should re-read its list.
pub const RESYNC: &str = "resync";

/// `GET {P}/admin/events`.
pub async fn stream(State(state): State<ApiState>) -> Response {
    let events = state.engine.delivery.admin_events();
    let stop = state.engine.stop_signal();
    let mut response = Sse::new(events_of(Arc::clone(&state.engine), events, stop)).into_response();
    // Proxies that buffer (nginx) must pass the events on at once.
    response.headers_mut().insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}

struct Feed {
    engine: Arc<Engine>,
    events: broadcast::Receiver<Arc<str>>,
    stop: watch::Receiver<bool>,
    started: bool,
}

fn events_of(
    engine: Arc<Engine>,
    events: broadcast::Receiver<Arc<str>>,
    stop: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let feed = Feed { engine, events, stop, started: false };
    futures_util::stream::unfold(feed, |mut feed| async move {
        if !feed.started {
            feed.started = true;
            return Some((Ok(Event::default().event(READY).data("{}")), feed));
        }
        let wake = feed.engine.clock.now() + ADMIN_EVENTS_KEEPALIVE;
        let event = tokio::select! {
            received = feed.events.recv() => match received {
                Ok(json) => Event::default().event(kind_of(&json)).data(&*json),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::info!(skipped, "admin event stream fell behind");
                    Event::default().event(RESYNC).data("{}")
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(feed.engine.clock.to_runtime(wake)) => {
                Event::default().comment("keep-alive")
            }
            _ = signalled(&mut feed.stop) => return None,
        };
        Some((Ok(event), feed))
    })
}

/// The event name of an event's JSON: its `type` (a `message` when unreadable, never a panic).
fn kind_of(json: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Kind>(json)
        .ok()
        .map(|k| k.kind)
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or_else(|| "message".to_string())
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn the_event_name_is_the_type_or_message() {
        assert_eq!(kind_of(r#"{"type":"help_requested","session_id":"s"}"#), "help_requested");
        assert_eq!(kind_of("not json"), "message");
        assert_eq!(kind_of(r#"{"type":"a\nb"}"#), "message", "no line breaks in a name");
    }
}
