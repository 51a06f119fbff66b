//! The client IP of a request (PROTOCOL.md §1), used by the public rate limits and the metrics
//! allow-list: the TCP peer, or — when the peer is a trusted proxy (`chatbox.trusted_proxies`) —
//! the address the proxies report.
//!
//! The rule is the original framework's: `X-Forwarded-For` is read right to left (every header
//! line, comma-separated), skipping trusted proxies; the first untrusted address is the client,
//! and when every hop is trusted the leftmost one is. An entry that is not an IP address ends
//! the walk: reached before any untrusted address, it makes the header say nothing, and
//! `X-Real-IP` is tried the same way; when neither gives an address, the peer is the client.
//! Entries left of the client are never read, so a junk entry a client writes there cannot
//! push the choice onto a header it also wrote. Headers from an untrusted peer are never
//! believed.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::Request;
use chatbox_core::config::HttpConfig;
use http::HeaderMap;

use super::accept::PeerAddr;

/// The headers consulted, in order.
const FORWARDING_HEADERS: [&str; 2] = ["x-forwarded-for", "x-real-ip"];

/// The client IP for a request from `peer` carrying `headers`, where `is_trusted` says whether
/// an address is a trusted proxy.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, is_trusted: impl Fn(IpAddr) -> bool) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer) {
        return peer;
    }
    FORWARDING_HEADERS
        .iter()
        .find_map(|name| from_header(headers, name, &is_trusted))
        .unwrap_or(peer)
}

/// The client named by one forwarding header, `None` when it is absent, or malformed at or
/// right of the client.
fn from_header(
    headers: &HeaderMap,
    name: &str,
    is_trusted: &impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let mut hops = Vec::new();
    for value in headers.get_all(name) {
        hops.extend(value.to_str().ok()?.split(','));
    }
    let mut left = hops.len();
    for hop in hops.iter().rev() {
        left -= 1;
        let ip = hop.trim().parse::<IpAddr>().ok()?.to_canonical();
        if left == 0 || !is_trusted(ip) {
            return Some(ip);
        }
    }
    None
}

/// The client IP of `req` under `config`; a request without a [`PeerAddr`] (never the case
/// behind the accept loop) counts as `0.0.0.0`.
pub fn client_ip(config: &HttpConfig, req: &Request) -> IpAddr {
    let peer =
        req.extensions().get::<PeerAddr>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
    resolve(peer, req.headers(), |ip| is_trusted_proxy(config, ip))
}

/// Whether `ip` is inside `chatbox.trusted_proxies`.
pub fn is_trusted_proxy(config: &HttpConfig, ip: IpAddr) -> bool {
    config.trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// Whether `ip` is inside `chatbox.health_probe_networks` (exempt from the probe limit).
pub fn is_health_probe(config: &HttpConfig, ip: IpAddr) -> bool {
    config.health_probe_networks.iter().any(|net| net.contains(&ip))
}

/// Whether `ip` may read `{P}/metrics/prometheus` (§4.11): inside
/// `chatbox.metrics_allowed_networks`, or anyone when that list is empty.
pub fn metrics_allowed(config: &HttpConfig, ip: IpAddr) -> bool {
    config.metrics_allowed_networks.is_empty()
        || config.metrics_allowed_networks.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::config::default_trusted_proxies;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.append(*name, value);
            }
        }
        map
    }

    fn trusted(ip: IpAddr) -> bool {
        let nets = default_trusted_proxies();
        nets.iter().any(|n| n.contains(&ip))
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(resolve(ip("203.0.113.9"), &h, trusted), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_for_is_read_right_to_left_skipping_proxies() {
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("203.0.113.7"));
        // Several header lines are one list.
        let h = headers(&[("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "192.168.1.1")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("198.51.100.1"));
        // Every hop trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("10.1.1.1"));
    }

    #[test]
    fn junk_left_of_the_client_is_never_read() {
        // The proxy appended the real client; the client wrote the junk and the X-Real-IP.
        let h = headers(&[("x-forwarded-for", "junk, 203.0.113.7"), ("x-real-ip", "127.0.0.1")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("203.0.113.7"));
        let h = headers(&[("x-forwarded-for", "x"), ("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("203.0.113.7"));
    }

    #[test]
    fn malformed_forwarded_for_falls_back_to_real_ip_then_peer() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7, junk"), ("x-real-ip", "198.51.100.4")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("198.51.100.4"));
        let h = headers(&[("x-forwarded-for", "198.51.100.1, junk, 10.2.2.2")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("10.0.0.1"));
        let h = headers(&[("x-forwarded-for", "")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, trusted), ip("10.0.0.1"));
        assert_eq!(resolve(ip("10.0.0.1"), &HeaderMap::new(), trusted), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.7")]);
        assert_eq!(resolve(ip("::ffff:10.0.0.1"), &h, trusted), ip("203.0.113.7"));
    }
}
