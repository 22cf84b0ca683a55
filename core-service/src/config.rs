//! Configuration from the environment, parsed once at start-up.

use std::net::SocketAddr;

use nene_domain::signing::{SignatureError, SigningSecret};

pub const VAR_DATABASE_URL: &str = "DATABASE_URL";
pub const VAR_REDIS_URL: &str = "REDIS_URL";
pub const VAR_SIGNING_SECRET: &str = "CORE_SIGNING_SECRET";
pub const VAR_BIND: &str = "CORE_BIND";

/// Where the core listens unless told otherwise: loopback, so a developer's core is not exposed.
pub const BIND_DEFAULT: &str = "127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub signing_secret: SigningSecret,
    pub bind: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the variable {0} is not set")]
    Missing(&'static str),
    #[error("{VAR_BIND} is not a socket address: {0}")]
    Bind(String),
    #[error("{VAR_SIGNING_SECRET}: {0}")]
    Secret(SignatureError),
}

impl CoreConfig {
    /// # Errors
    /// [`ConfigError`] naming the first missing or invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database_url =
            lookup(VAR_DATABASE_URL).ok_or(ConfigError::Missing(VAR_DATABASE_URL))?;
        let redis_url = lookup(VAR_REDIS_URL).filter(|url| !url.is_empty());
        let secret = lookup(VAR_SIGNING_SECRET).ok_or(ConfigError::Missing(VAR_SIGNING_SECRET))?;
        let signing_secret = SigningSecret::parse(&secret).map_err(ConfigError::Secret)?;
        let bind = lookup(VAR_BIND).unwrap_or_else(|| BIND_DEFAULT.to_owned());
        let bind = bind.parse().map_err(|_| ConfigError::Bind(bind))?;
        Ok(CoreConfig {
            database_url,
            redis_url,
            signing_secret,
            bind,
        })
    }
}
