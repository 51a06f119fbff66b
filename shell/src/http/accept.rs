//! The accept loop: the runtime's `TcpListener`, one hyper HTTP/1 connection per socket with
//! upgrades enabled, the axum `Router` as the service. Not `axum::serve` (ARCHITECTURE.md: it
//! calls real tokio internals and panics under madsim), so this same loop runs in the simulator.
//! It stops accepting when shutdown begins; HTTP connections already open finish their current
//! request (hyper graceful shutdown); upgraded WebSockets are closed by the engine.

use std::net::SocketAddr;

use axum::Router;
use chatbox_core::budgets::{ACCEPT_RETRY_PAUSE, HEADER_READ_TIMEOUT};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::timer::RuntimeTimer;
use crate::engine::supervisor::Supervisor;

/// The peer address of the TCP connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Accepts connections until `stop` turns true, serving each with `router`.
pub async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
    supervisor: Supervisor,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = crate::engine::supervisor::signalled(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stop = stop.clone();
        supervisor.spawn("http-connection", serve_one(stream, peer, router, stop));
    }
    tracing::info!("stopped accepting connections");
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let service = router.map_request(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        req
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(RuntimeTimer).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "http connection ended with an error");
            }
        }
        _ = crate::engine::supervisor::signalled(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
