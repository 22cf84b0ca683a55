//! Configuration of the edge, read once per request from the host's variables.

use nene_domain::{
    access_token::{TokenError, TokenKeys},
    signing::{SignatureError, SigningSecret},
};

/// Base URL of the core service, e.g. `http://127.0.0.1:8081`.
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
        Ok(EdgeConfig {
            core_url,
            signing_secret,
            token_keys,
            dev_mode,
            trusted_client_ip_header,
        })
    }
}
