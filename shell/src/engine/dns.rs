//! The resolver port for the `file_url` rule (PROTOCOL.md §3.8): a host name's addresses, so the
//! rule can refuse names that resolve to private or loopback addresses. The real lookup is an
//! adapter (`adapters::dns`); the simulator supplies a simulated resolver, so the rule runs under
//! madsim too. A failed lookup is no addresses, which the rule treats as "not an error"; a
//! lookup that does not answer within `FILE_URL_LOOKUP_TIMEOUT` refuses the URL.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
use chatbox_core::budgets::FILE_URL_LOOKUP_TIMEOUT;
use chatbox_core::protocol::{check_file_url, is_forbidden_ip, FileUrlHost};

/// Resolves host names.
#[async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Addresses of `host` (empty when the lookup fails).
    async fn resolve(&self, host: &str) -> Vec<IpAddr>;
}

/// `file_url` rule (§3.8): https, a host, and no private or loopback address — literal or
/// resolved through `resolver`. A failed lookup is not an error.
pub async fn file_url_allowed(resolver: &dyn Resolver, url: &str) -> bool {
    match check_file_url(url) {
        Err(_) => false,
        Ok(FileUrlHost::Ip(_)) => true,
        Ok(FileUrlHost::Domain(host)) => {
            match tokio::time::timeout(FILE_URL_LOOKUP_TIMEOUT, resolver.resolve(&host)).await {
                Ok(addrs) => addrs.iter().all(|ip| !is_forbidden_ip(*ip)),
                Err(_) => {
                    tracing::info!(host = %host, "file_url host lookup timed out; refused");
                    false
                }
            }
        }
    }
}

/// Resolves names from a fixed table, unknown names to nothing: the test double of the unit
/// tests and the simulator, where there is no real resolver.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    table: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// The table plus `host` resolving to `addrs`.
    pub fn with(mut self, host: &str, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.table.insert(host.to_ascii_lowercase(), addrs.into_iter().collect());
        self
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str) -> Vec<IpAddr> {
        self.table.get(&host.to_ascii_lowercase()).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let table = StaticResolver::default()
            .with("private.example.com", [IpAddr::from([192, 168, 1, 2])])
            .with("public.example.com", [IpAddr::from([93, 184, 216, 34])]);
        assert!(!file_url_allowed(&table, "https://private.example.com/a.png").await);
        assert!(file_url_allowed(&table, "https://public.example.com/a.png").await);
        assert!(file_url_allowed(&table, "https://unknown.example.com/a.png").await, "no answer");
        assert!(!file_url_allowed(&table, "http://public.example.com/a.png").await, "https only");
        assert!(!file_url_allowed(&table, "https://127.0.0.1/a.png").await);
    }

    /// A resolver that never answers.
    #[derive(Debug)]
    struct Hanging;

    #[async_trait]
    impl Resolver for Hanging {
        async fn resolve(&self, _: &str) -> Vec<IpAddr> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_hangs_refuses_the_url_after_its_budget() {
        let clock = crate::engine::clock::Clock::new();
        let started = clock.now();
        assert!(!file_url_allowed(&Hanging, "https://slow.example.com/a.png").await);
        assert_eq!(clock.now() - started, FILE_URL_LOOKUP_TIMEOUT);
        assert!(file_url_allowed(&Hanging, "https://93.184.216.34/a.png").await, "no lookup");
    }
}
