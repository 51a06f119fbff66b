//! The resolver port for the `file_url` rule (PROTOCOL.md §3.8): a host name's addresses, so the
//! rule can refuse names that resolve to private or loopback addresses. The real lookup is an
//! adapter (`adapters::dns`); the simulator supplies a simulated resolver, so the rule runs under
//! madsim too. A failed lookup is no addresses, which the rule treats as "not an error".

use std::fmt;
use std::net::IpAddr;

use async_trait::async_trait;
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
            resolver.resolve(&host).await.iter().all(|ip| !is_forbidden_ip(*ip))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Table;

    #[async_trait]
    impl Resolver for Table {
        async fn resolve(&self, host: &str) -> Vec<IpAddr> {
            match host {
                "private.example.com" => vec![IpAddr::from([192, 168, 1, 2])],
                "public.example.com" => vec![IpAddr::from([93, 184, 216, 34])],
                _ => Vec::new(),
            }
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        assert!(!file_url_allowed(&Table, "https://private.example.com/a.png").await);
        assert!(file_url_allowed(&Table, "https://public.example.com/a.png").await);
        assert!(file_url_allowed(&Table, "https://unknown.example.com/a.png").await, "no answer");
        assert!(!file_url_allowed(&Table, "http://public.example.com/a.png").await, "https only");
        assert!(!file_url_allowed(&Table, "https://127.0.0.1/a.png").await);
    }
}
