//! Configuration of the edge, read once per request from the host's variables (a Worker and a
//! Spin component have no start-up of their own). A configuration that is wrong is refused
//! whole: the hosts then answer every request 503 and log the error, which names the variable
//! (`crate::router::configured_router`).
//!
//! Outside dev mode it refuses what only a development setup may have: a core reached over plain
//! http or at a loopback or private address, and any secret this repository publishes
//! (`nene_domain::deployment`). Secrets under 32 bytes are refused in every mode.

use nene_domain::{
    access_token::{TokenError, TokenKeys},
    deployment::{UrlProblem, check_deployment_url},
    signing::{SignatureError, SigningSecret},
};

/// Base URL of the core service: `https://core.example.com` in production, e.g.
/// `http://127.0.0.1:8081` in dev mode.
pub const VAR_CORE_URL: &str = "CORE_URL";
/// Secret shared with the core for request signatures (≥ 32 bytes).
pub const VAR_CORE_SIGNING_SECRET: &str = "CORE_SIGNING_SECRET";
/// Access-token keys, `kid:secret[,kid:secret…]`; the first signs, all verify (rotation).
pub const VAR_ACCESS_TOKEN_KEYS: &str = "ACCESS_TOKEN_KEYS";
/// `dev` turns on the development-only routes (`/v1/dev/…`); anything else, or absent, is production.
pub const VAR_ENVIRONMENT: &str = "NENE_ENV";
/// Spin only: the header a trusted proxy in front of the component sets to the client's address
/// (e.g. `x-real-ip`). Unset, the connection's address (`spin-client-addr`) is the client's. The
/// Worker ignores it: on Cloudflare only `CF-Connecting-IP` is trusted. See `client_address`.
pub const VAR_TRUSTED_CLIENT_IP_HEADER: &str = "TRUSTED_CLIENT_IP_HEADER";

/// Longest core URL we accept; a URL is short, and the bound keeps a misconfiguration obvious.
const CORE_URL_LEN_MAX: usize = 2_048;

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Without a trailing slash.
    pub core_url: String,
    pub signing_secret: SigningSecret,
    pub token_keys: TokenKeys,
    pub dev_mode: bool,
    /// [`VAR_TRUSTED_CLIENT_IP_HEADER`], when set (and not empty).
    pub trusted_client_ip_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the variable {0} is not set")]
    Missing(&'static str),
    #[error("{VAR_CORE_URL} must be an http(s) URL")]
    InvalidCoreUrl,
    #[error("{VAR_CORE_SIGNING_SECRET}: {0}")]
    Secret(SignatureError),
    #[error("{VAR_ACCESS_TOKEN_KEYS}: {0}")]
    TokenKeys(TokenError),
    #[error("{VAR_TRUSTED_CLIENT_IP_HEADER} must be an HTTP header name")]
    InvalidTrustedHeader,
    #[error("{VAR_CORE_URL}: {0} (outside dev mode)")]
    CoreUrlNotDeployable(UrlProblem),
    #[error(
        "{0} holds a secret published in this repository for development and tests; set a secret of your own (outside dev mode)"
    )]
    PublishedSecret(&'static str),
}

impl EdgeConfig {
    /// Reads the configuration through `lookup` (the host's environment or bindings).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let core_url = lookup(VAR_CORE_URL).ok_or(ConfigError::Missing(VAR_CORE_URL))?;
        let core_url = core_url.trim_end_matches('/').to_owned();
        let is_http = core_url.starts_with("http://") || core_url.starts_with("https://");
        if !is_http || core_url.len() > CORE_URL_LEN_MAX {
            return Err(ConfigError::InvalidCoreUrl);
        }
        let secret =
            lookup(VAR_CORE_SIGNING_SECRET).ok_or(ConfigError::Missing(VAR_CORE_SIGNING_SECRET))?;
        let signing_secret = SigningSecret::parse(&secret).map_err(ConfigError::Secret)?;
        let token_keys = lookup(VAR_ACCESS_TOKEN_KEYS)
            .ok_or(ConfigError::Missing(VAR_ACCESS_TOKEN_KEYS))
            .and_then(|list| TokenKeys::parse(&list).map_err(ConfigError::TokenKeys))?;
        let dev_mode = lookup(VAR_ENVIRONMENT).as_deref() == Some("dev");
        let trusted_client_ip_header = lookup(VAR_TRUSTED_CLIENT_IP_HEADER)
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .map(|name| {
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ConfigError::InvalidTrustedHeader)
            })
            .transpose()?;
        if !dev_mode {
            check_deployment_url(&core_url).map_err(ConfigError::CoreUrlNotDeployable)?;
            if signing_secret.is_published() {
                return Err(ConfigError::PublishedSecret(VAR_CORE_SIGNING_SECRET));
            }
            if token_keys.published_key().is_some() {
                return Err(ConfigError::PublishedSecret(VAR_ACCESS_TOKEN_KEYS));
            }
        }
        Ok(EdgeConfig {
            core_url,
            signing_secret,
            token_keys,
            dev_mode,
            trusted_client_ip_header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-production-signing-secret-of-40-bytes!";
    const KEYS: &str = "k1:a-production-access-token-key-of-40-bytes";

    /// A production configuration with `changes` applied (`None` removes a variable).
    fn config(changes: &[(&str, Option<&str>)]) -> Result<EdgeConfig, ConfigError> {
        let mut vars = vec![
            (VAR_CORE_URL, Some("https://core.example.com")),
            (VAR_CORE_SIGNING_SECRET, Some(SECRET)),
            (VAR_ACCESS_TOKEN_KEYS, Some(KEYS)),
            (VAR_ENVIRONMENT, Some("production")),
        ];
        for (name, value) in changes {
            match vars.iter_mut().find(|(var, _)| var == name) {
                Some(entry) => entry.1 = *value,
                None => vars.push((*name, *value)),
            }
        }
        EdgeConfig::from_lookup(|name| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .and_then(|(_, value)| value.map(str::to_owned))
        })
    }

    fn dev(changes: &[(&str, Option<&str>)]) -> Result<EdgeConfig, ConfigError> {
        let mut all = vec![(VAR_ENVIRONMENT, Some("dev"))];
        all.extend_from_slice(changes);
        config(&all)
    }

    const DEV_SECRET: &str = "dev-only-signing-secret-0123456789abcdef";
    const DEV_KEYS: &str = "dev:dev-only-access-token-key-0123456789abcdef";

    #[test]
    fn a_production_configuration_with_its_own_secrets_and_an_https_core_is_accepted() {
        let config = config(&[]).unwrap();
        assert_eq!(config.core_url, "https://core.example.com");
        assert!(!config.dev_mode);
    }

    #[test]
    fn without_nene_env_the_edge_is_in_production() {
        assert_eq!(
            config(&[
                (VAR_ENVIRONMENT, None),
                (VAR_CORE_URL, Some("http://127.0.0.1:8081"))
            ])
            .err(),
            Some(ConfigError::CoreUrlNotDeployable(UrlProblem::NotHttps))
        );
    }

    #[test]
    fn a_plain_http_core_url_is_refused_outside_dev_mode() {
        let error = config(&[(VAR_CORE_URL, Some("http://core.example.com"))]).err();
        assert_eq!(
            error,
            Some(ConfigError::CoreUrlNotDeployable(UrlProblem::NotHttps))
        );
        assert!(error.is_some_and(|e| e.to_string().starts_with("CORE_URL: ")));
    }

    #[test]
    fn a_loopback_or_private_core_url_is_refused_outside_dev_mode() {
        for (url, problem) in [
            ("https://127.0.0.1:8081", UrlProblem::Loopback),
            ("https://localhost", UrlProblem::Loopback),
            ("https://10.1.2.3", UrlProblem::Private),
        ] {
            assert_eq!(
                config(&[(VAR_CORE_URL, Some(url))]).err(),
                Some(ConfigError::CoreUrlNotDeployable(problem)),
                "{url}"
            );
        }
    }

    #[test]
    fn the_dev_signing_secret_is_refused_outside_dev_mode() {
        let error = config(&[(VAR_CORE_SIGNING_SECRET, Some(DEV_SECRET))]).err();
        assert_eq!(
            error,
            Some(ConfigError::PublishedSecret(VAR_CORE_SIGNING_SECRET))
        );
        assert!(error.is_some_and(|e| e.to_string().starts_with("CORE_SIGNING_SECRET holds")));
    }

    #[test]
    fn a_published_access_token_key_is_refused_outside_dev_mode_even_as_a_verifying_key() {
        let rotated = format!("{KEYS},{DEV_KEYS}");
        assert_eq!(
            config(&[(VAR_ACCESS_TOKEN_KEYS, Some(&rotated))]).err(),
            Some(ConfigError::PublishedSecret(VAR_ACCESS_TOKEN_KEYS))
        );
        assert_eq!(
            config(&[(
                VAR_ACCESS_TOKEN_KEYS,
                Some("e2e:e2e-access-token-key-e2e-access-token-key")
            )])
            .err(),
            Some(ConfigError::PublishedSecret(VAR_ACCESS_TOKEN_KEYS))
        );
    }

    #[test]
    fn a_secret_under_32_bytes_is_refused_in_every_mode() {
        for mode in [Some("production"), Some("dev")] {
            assert_eq!(
                config(&[
                    (VAR_ENVIRONMENT, mode),
                    (VAR_CORE_SIGNING_SECRET, Some("short-secret"))
                ])
                .err(),
                Some(ConfigError::Secret(SignatureError::SecretTooShort))
            );
            assert_eq!(
                config(&[
                    (VAR_ENVIRONMENT, mode),
                    (VAR_ACCESS_TOKEN_KEYS, Some("k1:short-key"))
                ])
                .err(),
                Some(ConfigError::TokenKeys(TokenError::WeakKey))
            );
        }
    }

    #[test]
    fn dev_mode_runs_with_the_dev_values_on_loopback() {
        let config = dev(&[
            (VAR_CORE_URL, Some("http://127.0.0.1:8081/")),
            (VAR_CORE_SIGNING_SECRET, Some(DEV_SECRET)),
            (VAR_ACCESS_TOKEN_KEYS, Some(DEV_KEYS)),
        ])
        .unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.core_url, "http://127.0.0.1:8081");
    }

    #[test]
    fn a_missing_variable_is_named() {
        for var in [VAR_CORE_URL, VAR_CORE_SIGNING_SECRET, VAR_ACCESS_TOKEN_KEYS] {
            let error = config(&[(var, None)]).err();
            assert_eq!(error, Some(ConfigError::Missing(var)));
            assert!(error.is_some_and(|e| e.to_string().contains(var)));
        }
    }
}
