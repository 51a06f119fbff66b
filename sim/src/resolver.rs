//! The simulation's DNS for the `file_url` rule: a fixed table (the engine's `StaticResolver`),
//! so simulations check that a host resolving to a private address is refused and a public one
//! accepted, without a real lookup (madsim has no resolver).

use std::net::IpAddr;

use chatbox::engine::dns::StaticResolver;

/// The simulated world's names: `files.example.com` is public, `intranet.example.com` private.
pub fn world() -> StaticResolver {
    StaticResolver::default()
        .with("files.example.com", [IpAddr::from([93, 184, 216, 34])])
        .with("intranet.example.com", [IpAddr::from([10, 0, 0, 7])])
}
