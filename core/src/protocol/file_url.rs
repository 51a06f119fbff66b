//! The `file_url` rule of PROTOCOL.md §3.8 (`file_upload`, rule 2) as a pure check.
//!
//! [`check_file_url`] decides everything that needs no network: `https`, a host, and — when the
//! host is an IP literal — that it is not internal. For a host name it returns
//! [`FileUrlHost::Domain`]; the server then resolves the name and calls [`is_forbidden_ip`] on
//! every address (a failed lookup is not an error, per §3.8). Any refusal is answered with
//! [`ErrorInfo::invalid_file_url`](crate::protocol::ErrorInfo::invalid_file_url).
//!
//! URLs are parsed with the WHATWG rules of the `url` crate, so unusual IPv4 spellings
//! (`https://2130706433/`, `https://0x7f.1/`) are recognised as the literals they are.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// The host a valid file URL points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileUrlHost {
    /// A host name (lower-cased, IDNA-encoded): resolve it and check each address with
    /// [`is_forbidden_ip`].
    Domain(String),
    /// An IP literal that is already known not to be forbidden.
    Ip(IpAddr),
}

impl FileUrlHost {
    /// The name to resolve, or `None` for an IP literal (nothing left to check).
    pub fn domain(&self) -> Option<&str> {
        match self {
            FileUrlHost::Domain(name) => Some(name),
            FileUrlHost::Ip(_) => None,
        }
    }
}

/// Why a file URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileUrlError {
    /// Not a URL.
    #[error("file URL does not parse: {0}")]
    Unparsable(String),
    /// The scheme is not `https`.
    #[error("file URL scheme {0:?} is not https")]
    NotHttps(String),
    /// No host.
    #[error("file URL has no host")]
    NoHost,
    /// The host is (or resolves to) an internal address.
    #[error("file URL points at internal address {0}")]
    ForbiddenAddress(IpAddr),
}

/// Checks `url` per §3.8 rule 2, without DNS. See the module doc.
pub fn check_file_url(url: &str) -> Result<FileUrlHost, FileUrlError> {
    let parsed = Url::parse(url).map_err(|e| FileUrlError::Unparsable(e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(FileUrlError::NotHttps(parsed.scheme().to_string()));
    }
    match parsed.host() {
        None => Err(FileUrlError::NoHost),
        Some(Host::Domain("")) => Err(FileUrlError::NoHost),
        Some(Host::Domain(name)) => Ok(FileUrlHost::Domain(name.to_string())),
        Some(Host::Ipv4(v4)) => allowed(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => allowed(IpAddr::V6(v6)),
    }
}

fn allowed(ip: IpAddr) -> Result<FileUrlHost, FileUrlError> {
    if is_forbidden_ip(ip) {
        Err(FileUrlError::ForbiddenAddress(ip))
    } else {
        Ok(FileUrlHost::Ip(ip))
    }
}

/// Whether a file URL may not point at `ip`: IPv4 `0.0.0.0/8`, `10/8`, `127/8`, `169.254/16`,
/// `172.16/12`, `192.168/16`; IPv6 `::`, `::1`, `fc00::/7`, `fe80::/10`; and IPv4-mapped IPv6
/// (`::ffff:a.b.c.d`) of the forbidden IPv4 ranges.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    a == 0
        || a == 10
        || a == 127
        || (a == 169 && b == 254)
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 168)
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link local
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(url: &str) {
        assert!(
            matches!(check_file_url(url), Err(FileUrlError::ForbiddenAddress(_))),
            "{url}: {:?}",
            check_file_url(url)
        );
    }

    #[test]
    fn https_domain_is_returned_for_resolution() {
        assert_eq!(
            check_file_url("https://CDN.Example.com/abc.png?x=1"),
            Ok(FileUrlHost::Domain("cdn.example.com".into()))
        );
        assert_eq!(
            check_file_url("https://cdn.example.com:8443/a")
                .ok()
                .as_ref()
                .and_then(FileUrlHost::domain),
            Some("cdn.example.com")
        );
    }

    #[test]
    fn only_https_is_accepted() {
        assert!(matches!(
            check_file_url("http://cdn.example.com/a"),
            Err(FileUrlError::NotHttps(_))
        ));
        assert!(matches!(
            check_file_url("ftp://cdn.example.com/a"),
            Err(FileUrlError::NotHttps(_))
        ));
        assert!(matches!(check_file_url("file:///etc/passwd"), Err(FileUrlError::NotHttps(_))));
        assert!(check_file_url("HTTPS://cdn.example.com/a").is_ok());
    }

    #[test]
    fn unparsable_or_hostless_urls_are_refused() {
        for url in ["", "abc.png", "https://", "https://[::1/", "https://a b/"] {
            assert!(check_file_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn extra_slashes_are_normalised_as_browsers_do() {
        // WHATWG parsing: the host of `https:///cdn.example.com/a` is `cdn.example.com`.
        assert_eq!(
            check_file_url("https:///cdn.example.com/a"),
            Ok(FileUrlHost::Domain("cdn.example.com".into()))
        );
        forbidden("https:///127.0.0.1/a");
    }

    #[test]
    fn internal_ip_literals_are_refused() {
        for url in [
            "https://10.1.2.3/a",
            "https://172.16.0.1/a",
            "https://172.31.255.255/a",
            "https://192.168.1.1/a",
            "https://127.0.0.1/a",
            "https://169.254.169.254/latest/meta-data",
            "https://0.0.0.0/a",
            "https://[::1]/a",
            "https://[::]/a",
            "https://[fc00::1]/a",
            "https://[fd12:3456::1]/a",
            "https://[fe80::1]/a",
            "https://[::ffff:127.0.0.1]/a",
            "https://[::ffff:10.0.0.1]/a",
            "https://2130706433/a",
            "https://0x7f.1/a",
            "https://127.1/a",
        ] {
            forbidden(url);
        }
    }

    #[test]
    fn public_ip_literals_pass() {
        for url in [
            "https://8.8.8.8/a",
            "https://172.15.0.1/a",
            "https://172.32.0.1/a",
            "https://192.169.0.1/a",
            "https://[2001:db8::1]/a",
            "https://[::ffff:8.8.8.8]/a",
        ] {
            assert!(matches!(check_file_url(url), Ok(FileUrlHost::Ip(_))), "{url}");
        }
    }

    #[test]
    fn resolved_addresses_are_checked_the_same_way() {
        assert!(is_forbidden_ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53))));
        assert!(!is_forbidden_ip(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34))));
        assert!(is_forbidden_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(!is_forbidden_ip(IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0, 0, 0, 0, 0, 1))));
    }
}
