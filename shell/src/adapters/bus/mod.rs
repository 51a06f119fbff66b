//! The fleet bus's link to Redis (issue 14): publishes what [`FleetBus`] queues, keeps this
//! instance subscribed to the channels its connections need and feeds received messages back.
//! On any failure it marks the bus down (logged once), reconnects with core's
//! [`RetryPolicy::BUS_RECONNECT`] backoff, resubscribes and marks it up again: no restart.
//!
//! Built on the `redis` crate (multiplexed connection for PUBLISH/PING and the replay buffer's
//! writes, sent in pipelines of up to `BUS_PIPELINE_MAX` queued commands; a dedicated pub/sub
//! connection split into sink and stream). Each acknowledged
//! SUBSCRIBE is reported to the bus ([`FleetBus::confirm`]): a resume waits for it before reading
//! the replay, so no frame published in between is lost. [`replay`] is the replay buffer in Redis.

pub mod replay;

use std::sync::Arc;

use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, BUS_HEARTBEAT, BUS_PIPELINE_MAX};
use chatbox_core::retry::RetryPolicy;
use futures_util::StreamExt;
use tokio::time::timeout;

use crate::engine::delivery::{FleetBus, LinkCommand, LinkQueues};

/// Why the link dropped.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis refused or the connection broke.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A connect or a command took longer than its budget.
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The subscription stream ended.
    #[error("redis closed the subscription connection")]
    Closed,
}

async fn bounded<T, F>(future: F) -> Result<T, LinkError>
where
    F: std::future::Future<Output = Result<T, redis::RedisError>>,
{
    timeout(BUS_COMMAND_TIMEOUT, future)
        .await
        .map_err(|_| LinkError::Timeout(BUS_COMMAND_TIMEOUT))?
        .map_err(LinkError::from)
}

/// Whether `error` means the connection is gone (rather than one command refused).
fn lost(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
}

/// Sends `batch` (publications and replay-buffer writes, in queue order) as one pipeline, then
/// reports its flush markers reached. Redis runs every command of a pipeline whatever one of
/// them answers; a refused one (say, a replay write of a seq recorded twice) is logged and the
/// link goes on (the resume that needs it sees a gap), a lost connection ends the link.
async fn send(
    conn: &mut redis::aio::MultiplexedConnection,
    bus: &FleetBus,
    batch: Vec<LinkCommand>,
) -> Result<(), LinkError> {
    let mut pipe = redis::pipe();
    let (mut commands, mut flushed) = (0usize, None);
    for command in batch {
        match command {
            LinkCommand::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                commands += 1;
            }
            LinkCommand::Record(write) => {
                replay::add(&mut pipe, &write);
                commands += 1;
            }
            LinkCommand::Flush(n) => flushed = Some(n),
            LinkCommand::Subscribe(_) | LinkCommand::Unsubscribe(_) => {}
        }
    }
    if commands > 0 {
        match bounded(pipe.query_async::<()>(conn)).await {
            Ok(()) => {}
            Err(LinkError::Redis(error)) if !lost(&error) => {
                tracing::warn!(%error, commands, "a bus write was refused");
            }
            Err(error) => return Err(error),
        }
    }
    if let Some(n) = flushed {
        bus.flush_reached(n);
    }
    Ok(())
}

/// The client for `url` (already validated by the configuration).
pub fn client(url: &str) -> Result<redis::Client, redis::RedisError> {
    redis::Client::open(url)
}

/// Starts the link task for `bus` (detached: it holds no state to drain and ends with the
/// runtime).
pub fn start(client: redis::Client, bus: Arc<FleetBus>, queues: LinkQueues, url_for_logs: String) {
    #[allow(clippy::disallowed_methods)] // reason: the link never ends by itself; nothing to drain
    tokio::spawn(run(client, bus, queues, url_for_logs));
}

async fn run(client: redis::Client, bus: Arc<FleetBus>, mut queues: LinkQueues, url: String) {
    let mut failures = 0u32;
    loop {
        let error = connected(&client, &bus, &mut queues, &url, &mut failures).await;
        if bus.link_down(&error.to_string()) {
            tracing::warn!(redis = %url, %error, "fleet bus down: serving local connections only");
        }
        // Publications queued before the outage are stale: local connections had them.
        while queues.publish.try_recv().is_ok() {}
        failures = failures.saturating_add(1);
        tokio::time::sleep(RetryPolicy::BUS_RECONNECT.base_delay(failures)).await;
    }
}

async fn connected(
    client: &redis::Client,
    bus: &FleetBus,
    queues: &mut LinkQueues,
    url: &str,
    failures: &mut u32,
) -> LinkError {
    match serve(client, bus, queues, url, failures).await {
        Ok(never) => match never {},
        Err(error) => error,
    }
}

async fn serve(
    client: &redis::Client,
    bus: &FleetBus,
    queues: &mut LinkQueues,
    url: &str,
    failures: &mut u32,
) -> Result<std::convert::Infallible, LinkError> {
    let mut conn = bounded(client.get_multiplexed_async_connection()).await?;
    let (mut sink, mut stream) = bounded(client.get_async_pubsub()).await?.split();
    while queues.control.try_recv().is_ok() {}
    for channel in bus.channels() {
        bounded(sink.subscribe(&channel)).await?;
        bus.confirm(&channel);
    }
    *failures = 0;
    if bus.link_up() {
        tracing::info!(redis = %url, instance = bus.instance(), "fleet bus up");
    }
    let mut heartbeat = tokio::time::interval(BUS_HEARTBEAT);
    loop {
        tokio::select! {
            Some(command) = queues.publish.recv() => {
                // Whatever else is queued goes in the same round trip, in order.
                let mut batch = vec![command];
                while batch.len() < BUS_PIPELINE_MAX {
                    match queues.publish.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    }
                }
                send(&mut conn, bus, batch).await?;
            }
            Some(command) = queues.control.recv() => match command {
                LinkCommand::Subscribe(channel) => {
                    bounded(sink.subscribe(&channel)).await?;
                    bus.confirm(&channel);
                }
                LinkCommand::Unsubscribe(channel) => bounded(sink.unsubscribe(channel)).await?,
                LinkCommand::Publish { .. } | LinkCommand::Record(_) | LinkCommand::Flush(_) => {}
            },
            message = stream.next() => match message {
                Some(message) => bus.deliver(message.get_payload_bytes()),
                None => return Err(LinkError::Closed),
            },
            _ = heartbeat.tick() => {
                bounded(redis::cmd("PING").query_async::<String>(&mut conn)).await?;
            }
        }
    }
}
