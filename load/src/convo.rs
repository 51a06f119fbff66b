//! Conversations for the reliability scenarios (`outage`, `soak`; issue 16): one WebSocket per
//! user that sends one message at a time and follows it to its outcome, recording what the
//! user saw of it — the acknowledgement (`loading`, sent only once the message is in the store
//! or the durable outbox), the first chunk, `done` or an error — so that every acknowledged
//! message can afterwards be looked for in the store. One message in flight per connection is
//! what makes the `loading` frame attributable without a message id.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ws_connect, Ws};
use crate::frame::ServerFrame;
use crate::util::{now_us, HttpConn};

/// What became of one message.
#[derive(Debug, Clone)]
pub struct Record {
    /// The connection (user) that sent it.
    pub user: usize,
    /// Its id: the content is `load-<id>`.
    pub id: u64,
    /// When it was due.
    pub scheduled_us: u64,
    /// When it was written to the socket.
    pub sent_us: u64,
    /// The session the server answered in (from its frames).
    pub session: Option<String>,
    /// When `loading` arrived: the message was acknowledged.
    pub ack_us: Option<u64>,
    /// When the reply's first chunk arrived.
    pub first_us: Option<u64>,
    /// When the reply's `done` arrived.
    pub done_us: Option<u64>,
    /// An error frame's code, or what went wrong on the client's side.
    pub error: Option<String>,
}

impl Record {
    /// The content sent.
    pub fn content(&self) -> String {
        content(self.id)
    }

    /// First chunk − send, in µs (what the user waits for a reply to start).
    pub fn reply_us(&self) -> Option<u64> {
        Some(self.first_us?.saturating_sub(self.sent_us))
    }
}

/// The content of message `id`.
pub fn content(id: u64) -> String {
    format!("load-{id}")
}

/// One user's connection and the session it talks in.
pub struct Convo {
    ws: Option<Ws>,
    /// The session the next message names (the server's latest announcement).
    pub session: String,
    url: String,
    addr: SocketAddr,
    from: IpAddr,
    token: String,
}

impl Convo {
    /// Connects `token`'s user to `url` from `from`.
    pub async fn connect(
        url: &str,
        addr: SocketAddr,
        from: IpAddr,
        token: &str,
    ) -> Result<Convo, String> {
        let mut convo = Convo {
            ws: None,
            session: crate::util::random_id(),
            url: url.to_string(),
            addr,
            from,
            token: token.to_string(),
        };
        convo.reconnect().await?;
        Ok(convo)
    }

    /// Opens a new socket (closing the old one), keeping the session: the server binds the
    /// next message to it again.
    pub async fn reconnect(&mut self) -> Result<(), String> {
        self.close().await;
        let (ws, _) =
            ws_connect(&self.url, self.addr, self.from, &self.token, Duration::from_secs(20))
                .await?;
        self.ws = Some(ws);
        Ok(())
    }

    /// Closes the socket, if open.
    pub async fn close(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    /// Sends message `id` (due at `scheduled_us`) and follows it to its outcome, for at most
    /// `limit`. A socket that failed or timed out is dropped (the next call reconnects).
    pub async fn exchange(
        &mut self,
        user: usize,
        id: u64,
        scheduled_us: u64,
        limit: Duration,
    ) -> Record {
        let mut record = Record {
            user,
            id,
            scheduled_us,
            sent_us: now_us(),
            session: None,
            ack_us: None,
            first_us: None,
            done_us: None,
            error: None,
        };
        if self.ws.is_none() {
            if let Err(error) = self.reconnect().await {
                record.error = Some(kind(&error));
                return record;
            }
        }
        let Some(ws) = self.ws.as_mut() else { return record };
        record.sent_us = now_us();
        let message = crate::util::user_message(&self.session, &record.content());
        if ws.send(message).await.is_err() {
            record.error = Some("send_failed".into());
            self.ws = None;
            return record;
        }
        let outcome = tokio::time::timeout(limit, follow(ws, &mut record)).await;
        if let Some(session) = &record.session {
            self.session.clone_from(session);
        }
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                record.error = Some(error);
                self.ws = None;
            }
            Err(_) => {
                record.error = Some("no_outcome_in_time".into());
                self.ws = None;
            }
        }
        record
    }
}

/// Reads frames until the message's outcome (`done` or an error frame).
async fn follow(ws: &mut Ws, record: &mut Record) -> Result<(), String> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
            Some(Err(_)) => return Err("socket_error".into()),
            Some(Ok(_)) => continue,
        };
        let now = now_us();
        let Some(frame) = ServerFrame::parse(text.as_str()) else { continue };
        if let Some(id) = frame.session_id.as_deref() {
            record.session = Some(id.to_string());
        }
        match &*frame.kind {
            "loading" => {
                record.ack_us.get_or_insert(now);
            }
            "ai_response" => {
                record.first_us.get_or_insert(now);
                if frame.is_done() {
                    record.done_us = Some(now);
                    return Ok(());
                }
            }
            "error" => {
                record.error = Some(frame.error_code().unwrap_or("error_frame").to_string());
                return Ok(());
            }
            _ => {}
        }
    }
}

/// The kind of a client-side failure (`connect: …` → `connect`).
fn kind(error: &str) -> String {
    error.split(':').next().unwrap_or("connect").to_string()
}

/// The `user` messages' contents of `session`, read through `GET {P}/sessions/:id` with the
/// owner's `token`; `Err` when the route does not answer `200` with messages.
pub async fn stored_user_messages(
    conn: &mut HttpConn,
    path: &str,
    token: &str,
) -> Result<Vec<String>, String> {
    let auth = format!("Bearer {token}");
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(30),
        conn.request("GET", path, &[("authorization", &auth)], None),
    )
    .await
    .map_err(|_| "timed out".to_string())??;
    if status != 200 {
        return Err(format!("{path}: {status} {body}"));
    }
    let body: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"))?;
    let messages = body["messages"].as_array().ok_or_else(|| format!("{path}: no messages"))?;
    Ok(messages
        .iter()
        .filter(|m| m["sender"] == "user")
        .filter_map(|m| m["content"].as_str().map(str::to_string))
        .collect())
}

/// Percentiles of a set of µs figures, in ms: (count, p50, p99, max).
pub fn summary(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    let at = |q: f64| {
        if values.is_empty() {
            return 0.0;
        }
        let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
        values[index] as f64 / 1000.0
    };
    serde_json::json!({
        "count": values.len(),
        "p50_ms": at(0.5),
        "p99_ms": at(0.99),
        "max_ms": values.last().map_or(0.0, |v| *v as f64 / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_nearest_rank_percentiles() {
        let s = summary((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!(s["count"], 100);
        assert_eq!(s["p50_ms"], 50.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
        assert_eq!(summary(Vec::new())["p99_ms"], 0.0);
    }
}
