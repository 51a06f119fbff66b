//! A fleet for the integration tests (issue 14): two real chatbox processes on one
//! MongoDB-compatible database (SecantusDB) and one real Redis, both with the bus up.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{now, Server, ServerOpts};
use crate::http::{get, json};
use crate::mongo::{fresh_database, MongoServer};
use crate::redis::RedisServer;
use crate::upstream::{Script, Upstream};

/// Two instances on one database and one Redis (each process lives as long as this does).
pub struct Fleet {
    /// The shared database server.
    pub mongo: MongoServer,
    /// The shared Redis (tests stop and restart it).
    pub redis: RedisServer,
    /// The scripted upstream both instances call.
    pub upstream: Upstream,
    /// The first instance.
    pub a: Server,
    /// The second instance.
    pub b: Server,
}

impl Fleet {
    /// Starts the fleet with `env` added to both instances' settings.
    pub async fn start(env: &[(&str, &str)]) -> Fleet {
        Fleet::scripted(None, env).await
    }

    /// [`Fleet::start`] with the upstream's default `script` set before the instances start.
    pub async fn scripted(script: Option<Script>, env: &[(&str, &str)]) -> Fleet {
        let mongo = MongoServer::start().await;
        let redis = RedisServer::start().await;
        let upstream = Upstream::start().await;
        if let Some(script) = script {
            upstream.set_default(script);
        }
        let db = fresh_database();
        let secret = chatbox::app::cli::generate_secret();
        let opts = || {
            let mut opts = ServerOpts::with_upstream(&upstream)
                .env("MONGO_URI", &mongo.uri())
                .env("MONGO_DATABASE", &db)
                .env("REDIS_URL", &redis.url())
                .env("JWT_SECRET", &secret);
            for (key, value) in env {
                opts = opts.env(key, value);
            }
            opts
        };
        let a = Server::start(opts()).await;
        let b = Server::start(opts()).await;
        wait_bus(&a, "ready").await;
        wait_bus(&b, "ready").await;
        Fleet { mongo, redis, upstream, a, b }
    }
}

/// Polls `/readyz` until `checks.bus.status` is `want` (30 s at most); the body.
pub async fn wait_bus(server: &Server, want: &str) -> Value {
    let deadline = now() + Duration::from_secs(30);
    loop {
        let body = json(&get(server, "/readyz", None).await);
        if body["checks"]["bus"]["status"] == want {
            return body;
        }
        assert!(now() < deadline, "checks.bus never became {want}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
