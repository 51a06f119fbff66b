//! A simulated DNS resolver for the `file_url` rule: a fixed table of names, so simulations can
//! check that a host resolving to a private address is refused and a public one accepted,
//! without a real lookup (madsim has no resolver).

use std::collections::HashMap;
use std::net::IpAddr;

use async_trait::async_trait;
use chatbox::engine::dns::Resolver;

/// Resolves names from a fixed table; unknown names resolve to nothing.
#[derive(Debug, Clone, Default)]
pub struct SimResolver {
    table: HashMap<String, Vec<IpAddr>>,
}

impl SimResolver {
    /// The simulation's world: `files.example.com` is public, `intranet.example.com` private.
    pub fn world() -> Self {
        Self::default()
            .with("files.example.com", [IpAddr::from([93, 184, 216, 34])])
            .with("intranet.example.com", [IpAddr::from([10, 0, 0, 7])])
    }

    /// The table plus `host` resolving to `addrs`.
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.table.insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

#[async_trait]
impl Resolver for SimResolver {
    async fn resolve(&self, host: &str) -> Vec<IpAddr> {
        self.table.get(&host.to_ascii_lowercase()).cloned().unwrap_or_default()
    }
}
