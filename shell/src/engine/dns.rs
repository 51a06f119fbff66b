//! Host name resolution for the `file_url` rule. Real lookups in normal builds; under madsim
//! there is no resolver, so nothing resolves (which the rule treats as "not an error").

use std::net::IpAddr;

/// Addresses of `host` (empty when the lookup fails).
#[cfg(not(madsim))]
pub async fn resolve(host: &str) -> Vec<IpAddr> {
    match tokio::net::lookup_host((host, 443)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(error) => {
            tracing::debug!(host, %error, "file_url host lookup failed");
            Vec::new()
        }
    }
}

/// Addresses of `host`: none under simulation.
#[cfg(madsim)]
pub async fn resolve(_host: &str) -> Vec<IpAddr> {
    Vec::new()
}
