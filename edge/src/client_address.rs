//! Who is calling, for the login rate limits: the client's address as the host reports it, never
//! as the client does. A header a client can set (`X-Forwarded-For`, `X-Real-IP`, …) is never
//! read on its own authority: with it, a script could pose as a new address on every try (dodging
//! the limit) or as someone else's (using up theirs).
//!
//! Each host says which rule holds ([`ClientAddressRule`], set by the host adapter); the choice
//! itself is made here, in platform-free code the native tests run:
//! - **Cloudflare Workers**: `CF-Connecting-IP` only. Cloudflare sets it on every request it
//!   forwards to a Worker and replaces any value a client sent.
//! - **Spin**: the header a trusted proxy in front of Spin sets, when one is configured
//!   ([`crate::config::VAR_TRUSTED_CLIENT_IP_HEADER`]); otherwise the connection's address, which
//!   Spin's HTTP trigger adds to every request as `spin-client-addr` (`ip:port`). Spin appends its
//!   value after the request's own headers, so a client that sends its own `spin-client-addr`
//!   only adds an earlier value: the last one is Spin's. (Plain `wasmtime serve`, which the tests
//!   use, adds none: there the component must sit behind a proxy that sets the configured
//!   header, or it has no address to trust.)
//!
//! A request for which the rule finds no address is refused with `400 BAD_REQUEST` naming the
//! header, rather than counted in one bucket shared by every such request: one script could then
//! use up that bucket and lock everyone out of signing in. Under a correct deployment this never
//! happens to a real client (Cloudflare and Spin always set their header); it happens to a request
//! that bypassed the configured proxy, or to a deployment missing its configuration, and the
//! refusal says which header was missing.
//!
//! With a trusted proxy configured, a request without the proxy's header is refused even though
//! Spin knows the connection: behind the proxy, that connection is the proxy's, shared by every
//! client, which is the one shared bucket this module exists to avoid.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use axum::{extract::FromRequestParts, http::request::Parts};
use http::{HeaderMap, HeaderName};
use nene_domain::ErrorCode;

use crate::{error::ApiError, platform::Platform};

/// Set by Cloudflare on every request to a Worker: the address of the client that connected.
pub const HEADER_CF_CONNECTING_IP: &str = "cf-connecting-ip";
/// Set by Spin's HTTP trigger on every request: the connection's peer, `ip:port`.
pub const HEADER_SPIN_CLIENT_ADDR: &str = "spin-client-addr";
/// An IPv6 subscriber is usually given a whole /64 and may pick any address in it: counting per
/// address would give one person 2^64 buckets. Counting per /64 gives them one.
pub const IPV6_RATE_LIMIT_PREFIX_BITS: u32 = 64;
/// Longest header value read for an address: `[` + 39 characters of IPv6 + `]:65535` fits many
/// times; a longer value is junk and is not parsed at all.
const ADDRESS_HEADER_LEN_MAX: usize = 256;

/// Where a host's client address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddressRule {
    /// Cloudflare Workers: [`HEADER_CF_CONNECTING_IP`].
    Cloudflare,
    /// Spin: the trusted proxy's header when one is configured, else [`HEADER_SPIN_CLIENT_ADDR`].
    Spin { trusted_header: Option<HeaderName> },
}

/// The rule found no address it trusts in this request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "This request carries no client address this server trusts (the {header} header is missing \
     or not an IP address); sign-in needs one for its rate limit."
)]
pub struct NoClientAddress {
    pub header: String,
}

/// A client's address, as the host reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(IpAddr);

impl ClientAddressRule {
    /// The client's address in `headers` under this rule.
    ///
    /// # Errors
    /// [`NoClientAddress`] naming the header the rule reads, when it is missing or unreadable.
    pub fn client_address(&self, headers: &HeaderMap) -> Result<ClientAddress, NoClientAddress> {
        let header = match self {
            ClientAddressRule::Cloudflare => HeaderName::from_static(HEADER_CF_CONNECTING_IP),
            ClientAddressRule::Spin {
                trusted_header: Some(trusted),
            } => trusted.clone(),
            ClientAddressRule::Spin {
                trusted_header: None,
            } => HeaderName::from_static(HEADER_SPIN_CLIENT_ADDR),
        };
        last_address(headers, &header)
            .map(ClientAddress)
            .ok_or_else(|| NoClientAddress {
                header: header.as_str().to_owned(),
            })
    }
}

/// The last address in the last value of `header`: the one its setter wrote. Spin appends its
/// `spin-client-addr` after the client's headers, and a proxy that appends to a list header
/// (`X-Forwarded-For`) appends its own observation at the end; anything before it came from the
/// client. A header the proxy overwrites holds one address, which is also the last.
fn last_address(headers: &HeaderMap, header: &HeaderName) -> Option<IpAddr> {
    let value = headers.get_all(header).iter().next_back()?.to_str().ok()?;
    if value.len() > ADDRESS_HEADER_LEN_MAX {
        return None;
    }
    let entry = value.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

impl ClientAddress {
    #[must_use]
    pub fn ip(&self) -> IpAddr {
        self.0
    }

    /// The key the login rate limit counts under: the IPv4 address (an IPv4-mapped IPv6 address
    /// is its IPv4 address), or the IPv6 address's /64 network.
    #[must_use]
    pub fn rate_limit_key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let mask = u128::MAX << (128 - IPV6_RATE_LIMIT_PREFIX_BITS);
                    let network = Ipv6Addr::from(u128::from(v6) & mask);
                    format!("{network}/{IPV6_RATE_LIMIT_PREFIX_BITS}")
                }
            },
        }
    }
}

/// The caller's rate-limit key ([`ClientAddress::rate_limit_key`]) under the host's rule; a
/// request without a trusted address is refused before anything is asked of the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub String);

impl FromRequestParts<Arc<Platform>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Arc<Platform>,
    ) -> Result<Self, Self::Rejection> {
        platform
            .client_address
            .client_address(&parts.headers)
            .map(|address| ClientIp(address.rate_limit_key()))
            .map_err(|missing| ApiError::with_message(ErrorCode::BadRequest, missing.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let value = http::HeaderValue::from_str(value).unwrap();
            map.append(name, value);
        }
        map
    }

    fn key(rule: &ClientAddressRule, pairs: &[(&str, &str)]) -> Option<String> {
        rule.client_address(&headers(pairs))
            .ok()
            .map(|address| address.rate_limit_key())
    }

    #[test]
    fn on_workers_only_cf_connecting_ip_counts() {
        let rule = ClientAddressRule::Cloudflare;
        assert_eq!(
            key(
                &rule,
                &[
                    ("cf-connecting-ip", "203.0.113.7"),
                    ("x-forwarded-for", "198.51.100.1")
                ]
            ),
            Some("203.0.113.7".to_owned())
        );
        for ignored in [
            ("x-forwarded-for", "198.51.100.1"),
            ("x-real-ip", "198.51.100.1"),
            ("spin-client-addr", "198.51.100.1:4000"),
        ] {
            let refused = rule.client_address(&headers(&[ignored]));
            assert_eq!(
                refused,
                Err(NoClientAddress {
                    header: "cf-connecting-ip".to_owned()
                }),
                "{ignored:?}"
            );
        }
        assert_eq!(key(&rule, &[("cf-connecting-ip", "not-an-ip")]), None);
        assert_eq!(key(&rule, &[("cf-connecting-ip", "")]), None);
    }

    #[test]
    fn on_spin_the_connection_address_counts_without_its_port_and_spins_value_wins() {
        let rule = ClientAddressRule::Spin {
            trusted_header: None,
        };
        assert_eq!(
            key(&rule, &[("spin-client-addr", "203.0.113.7:51234")]),
            Some("203.0.113.7".to_owned())
        );
        // Two connections from one address are one client.
        assert_eq!(
            key(&rule, &[("spin-client-addr", "203.0.113.7:60000")]),
            Some("203.0.113.7".to_owned())
        );
        // A client's own spin-client-addr comes first; Spin's, appended after it, is the one read.
        assert_eq!(
            key(
                &rule,
                &[
                    ("spin-client-addr", "198.51.100.99:1"),
                    ("spin-client-addr", "203.0.113.7:51234")
                ]
            ),
            Some("203.0.113.7".to_owned())
        );
        // Client-set headers are not read at all.
        assert_eq!(
            rule.client_address(&headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("cf-connecting-ip", "198.51.100.2"),
            ])),
            Err(NoClientAddress {
                header: "spin-client-addr".to_owned()
            })
        );
    }

    #[test]
    fn on_spin_a_configured_proxy_header_counts_and_nothing_else() {
        let rule = ClientAddressRule::Spin {
            trusted_header: Some(HeaderName::from_static("x-real-ip")),
        };
        assert_eq!(
            key(
                &rule,
                &[
                    ("x-real-ip", "203.0.113.7"),
                    ("spin-client-addr", "10.0.0.2:443")
                ]
            ),
            Some("203.0.113.7".to_owned())
        );
        // Without the proxy's header the connection is the proxy's, shared by everyone: refused.
        assert_eq!(
            rule.client_address(&headers(&[("spin-client-addr", "10.0.0.2:443")])),
            Err(NoClientAddress {
                header: "x-real-ip".to_owned()
            })
        );
        // A proxy that appends to a list header: its entry is the last one.
        let appending = ClientAddressRule::Spin {
            trusted_header: Some(HeaderName::from_static("x-forwarded-for")),
        };
        assert_eq!(
            key(
                &appending,
                &[("x-forwarded-for", "198.51.100.1, 198.51.100.2, 203.0.113.7")]
            ),
            Some("203.0.113.7".to_owned())
        );
        assert_eq!(
            key(&appending, &[("x-forwarded-for", "203.0.113.7, forged")]),
            None
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_ipv4_as_ipv4() {
        let rule = ClientAddressRule::Cloudflare;
        let one = key(&rule, &[("cf-connecting-ip", "2001:db8:1:2:aaaa::1")]);
        let same_network = key(&rule, &[("cf-connecting-ip", "2001:db8:1:2:ffff:1:2:3")]);
        let other_network = key(&rule, &[("cf-connecting-ip", "2001:db8:1:3::1")]);
        assert_eq!(one, Some("2001:db8:1:2::/64".to_owned()));
        assert_eq!(one, same_network);
        assert_ne!(one, other_network);
        assert_eq!(
            key(&rule, &[("cf-connecting-ip", "::ffff:203.0.113.7")]),
            Some("203.0.113.7".to_owned())
        );
        let spin = ClientAddressRule::Spin {
            trusted_header: None,
        };
        assert_eq!(
            key(&spin, &[("spin-client-addr", "[2001:db8:1:2::9]:443")]),
            Some("2001:db8:1:2::/64".to_owned())
        );
    }

    #[test]
    fn an_overlong_header_is_not_parsed() {
        let long = format!("{}203.0.113.7", " ".repeat(ADDRESS_HEADER_LEN_MAX));
        assert_eq!(
            key(
                &ClientAddressRule::Cloudflare,
                &[("cf-connecting-ip", &long)]
            ),
            None
        );
    }
}
