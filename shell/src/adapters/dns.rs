//! The system resolver: the engine's DNS port (`engine::dns::Resolver`) over the runtime's
//! `lookup_host`, for the `file_url` rule.

use std::net::IpAddr;

use async_trait::async_trait;

use crate::engine::dns::Resolver;

/// Looks names up with the operating system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> Vec<IpAddr> {
        match tokio::net::lookup_host((host, 443)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(error) => {
                tracing::debug!(host, %error, "file_url host lookup failed");
                Vec::new()
            }
        }
    }
}
