//! Rules that keep a development setting out of production, shared by the edge's and the core's
//! configuration: the secrets this repository publishes, and what a URL one part calls another
//! at must look like outside dev mode.

/// Secrets written in this repository, for the local stack, the end-to-end tests and the
/// sandbox. Anyone can read them, so outside dev mode a configuration holding one of them is
/// refused. Every dev or test secret a deployment could copy is listed here, and a test below
/// holds `scripts/lib.sh` and `tests/src/lib.rs` to this list.
pub const PUBLISHED_SECRETS: &[&str] = &[
    // scripts/lib.sh: `./nene up`'s edge and core (and spin.toml's, before it took variables).
    "dev-only-signing-secret-0123456789abcdef",
    "dev-only-access-token-key-0123456789abcdef",
    // tests/src/lib.rs: the end-to-end stack.
    "e2e-signing-secret-0123456789abcdef0123",
    "e2e-access-token-key-e2e-access-token-key",
    // The core's dev-mode login client secret, which only the sandbox accepts.
    "nene-dev-secret",
    // Toss's public documentation test key, the core's dev-mode default.
    "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R",
];

/// Whether `secret` is one of the [`PUBLISHED_SECRETS`].
#[must_use]
pub fn is_published_secret(secret: &str) -> bool {
    PUBLISHED_SECRETS.contains(&secret.trim())
}

/// Why a URL cannot be where one part of the platform calls another outside dev mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    #[error("it must be an https:// URL (a secret-signed call must not travel in clear text)")]
    NotHttps,
    #[error("it has no host")]
    NoHost,
    #[error(
        "its host is this machine (localhost or a loopback address), which is never a deployment's peer"
    )]
    Loopback,
    #[error(
        "its host is a private, link-local or unspecified address, a development network's, not a deployment's"
    )]
    Private,
}

/// Checks that `url` is an `https://` URL whose host is a name other than `localhost`, or a public
/// IP address: what the edge's `CORE_URL` and the core's `EDGE_URL` must be outside dev mode.
///
/// # Errors
/// The first [`UrlProblem`] found.
pub fn check_deployment_url(url: &str) -> Result<(), UrlProblem> {
    let scheme_end = url.find("://").ok_or(UrlProblem::NotHttps)?;
    if !url[..scheme_end].eq_ignore_ascii_case("https") {
        return Err(UrlProblem::NotHttps);
    }
    let rest = &url[scheme_end + 3..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo (`user:password@`) is not part of the host.
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(UrlProblem::Loopback);
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => check_ip(ip),
        // A name: where it points is the deployment's DNS, not ours to judge here.
        Err(_) => Ok(()),
    }
}

fn check_ip(ip: std::net::IpAddr) -> Result<(), UrlProblem> {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Err(UrlProblem::Loopback)
            } else if v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT: shared, never a public peer.
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
            {
                Err(UrlProblem::Private)
            } else {
                Ok(())
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return check_ip(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Err(UrlProblem::Loopback)
            } else if v6.is_unspecified() || v6.is_unique_local() || v6.is_unicast_link_local() {
                Err(UrlProblem::Private)
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_https_url_is_a_deployment_url() {
        for url in [
            "https://core.example.com",
            "https://core.example.com:8443/",
            "https://user:pw@core.example.com/base",
            "https://203.0.113.7",
            "https://[2001:db8::1]:443/",
            "HTTPS://Core.Example.com",
        ] {
            assert_eq!(check_deployment_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn plain_http_is_refused() {
        assert_eq!(
            check_deployment_url("http://core.example.com"),
            Err(UrlProblem::NotHttps)
        );
        assert_eq!(
            check_deployment_url("core.example.com"),
            Err(UrlProblem::NotHttps)
        );
    }

    #[test]
    fn this_machine_is_refused_however_it_is_written() {
        for url in [
            "https://localhost:8081",
            "https://LOCALHOST.",
            "https://core.localhost",
            "https://127.0.0.1:8081",
            "https://127.1.2.3",
            "https://[::1]:8081",
            "https://[::ffff:127.0.0.1]",
            "https://evil@127.0.0.1",
        ] {
            assert_eq!(
                check_deployment_url(url),
                Err(UrlProblem::Loopback),
                "{url}"
            );
        }
    }

    #[test]
    fn private_and_unspecified_addresses_are_refused() {
        for url in [
            "https://10.0.0.5",
            "https://172.16.0.1",
            "https://192.168.1.10:8443",
            "https://169.254.169.254/latest",
            "https://100.64.0.1",
            "https://0.0.0.0",
            "https://[fd00::1]",
            "https://[fe80::1]",
            "https://[::]",
        ] {
            assert_eq!(check_deployment_url(url), Err(UrlProblem::Private), "{url}");
        }
    }

    #[test]
    fn a_url_without_a_host_is_refused() {
        assert_eq!(check_deployment_url("https://"), Err(UrlProblem::NoHost));
        assert_eq!(check_deployment_url("https:///x"), Err(UrlProblem::NoHost));
    }

    /// The value of the first shell assignment `NAME=${NAME:-value}` in `script`.
    fn shell_default<'a>(script: &'a str, name: &str) -> &'a str {
        let start = format!("{name}=${{{name}:-");
        let at = script
            .find(&start)
            .unwrap_or_else(|| panic!("{name} is not set in the script"));
        let value = &script[at + start.len()..];
        &value[..value.find('}').unwrap_or(value.len())]
    }

    /// The string of the first `pub const NAME: &str = "value";` in `source`.
    fn rust_const<'a>(source: &'a str, name: &str) -> &'a str {
        let start = format!("pub const {name}: &str = \"");
        let at = source
            .find(&start)
            .unwrap_or_else(|| panic!("{name} is not a constant there"));
        let value = &source[at + start.len()..];
        &value[..value.find('"').unwrap_or(value.len())]
    }

    #[test]
    fn every_secret_the_repository_sets_for_dev_and_tests_is_listed_as_published() {
        let lib_sh = include_str!("../../scripts/lib.sh");
        let signing = shell_default(lib_sh, "NENE_DEV_SIGNING_SECRET");
        let keys = shell_default(lib_sh, "NENE_DEV_TOKEN_KEYS");
        let e2e = include_str!("../../tests/src/lib.rs");
        let e2e_signing = rust_const(e2e, "SIGNING_SECRET");
        let e2e_keys = rust_const(e2e, "TOKEN_KEYS");
        for secret in [signing, e2e_signing] {
            assert!(is_published_secret(secret), "{secret} is not listed");
        }
        for list in [keys, e2e_keys] {
            for entry in list.split(',') {
                let (_, secret) = entry.split_once(':').unwrap_or(("", entry));
                assert!(is_published_secret(secret), "{secret} is not listed");
            }
        }
    }
}
