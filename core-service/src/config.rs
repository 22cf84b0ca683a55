//! Configuration from the environment, parsed once at start-up.

use std::{net::SocketAddr, time::Duration};

use nene_domain::signing::{SignatureError, SigningSecret};

use crate::auth::{
    AuthConfig,
    oauth::{Endpoints, Provider, ProviderClient},
};
use crate::payments::{
    PaymentSettings,
    toss::{TOSS_API_URL_DEFAULT, TOSS_TIMEOUT_DEFAULT, TossConfig},
};

/// Toss's public documentation test key: in dev mode (against the sandbox) it is the default, so
/// a fresh clone runs without secrets. Outside dev mode the key must be configured.
pub const TOSS_DOCS_TEST_SECRET_KEY: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";

pub const VAR_DATABASE_URL: &str = "DATABASE_URL";
pub const VAR_REDIS_URL: &str = "REDIS_URL";
pub const VAR_SIGNING_SECRET: &str = "CORE_SIGNING_SECRET";
pub const VAR_BIND: &str = "CORE_BIND";
pub const VAR_ENVIRONMENT: &str = "NENE_ENV";
pub const VAR_TOSS_API_URL: &str = "TOSS_API_URL";
pub const VAR_TOSS_SECRET_KEY: &str = "TOSS_SECRET_KEY";
pub const VAR_TOSS_TIMEOUT_MS: &str = "TOSS_TIMEOUT_MS";
pub const VAR_PAYMENT_RETRY_BASE_MS: &str = "PAYMENT_RETRY_BASE_MS";
pub const VAR_PAYMENT_RETRY_MAX_MS: &str = "PAYMENT_RETRY_MAX_MS";
pub const VAR_PAYMENT_CREDIT_ATTEMPTS_MAX: &str = "PAYMENT_CREDIT_ATTEMPTS_MAX";
pub const VAR_AUTH_REDIRECT_URIS: &str = "AUTH_REDIRECT_URIS";
pub const VAR_CHALLENGE_REVIEWERS: &str = "CHALLENGE_REVIEWERS";
pub const VAR_OAUTH_SANDBOX_URL: &str = "OAUTH_SANDBOX_URL";

/// Where logins may return in dev mode when `AUTH_REDIRECT_URIS` is not set: the local web app
/// and the mobile app's scheme.
pub const AUTH_REDIRECT_URIS_DEV: &str = "http://127.0.0.1:8787/auth/done,nene://auth/callback";

/// First retry of payment work after a second; later ones double up to five minutes, and a charge
/// is credited up to twelve times (about half an hour) before its money is given back.
pub const PAYMENT_RETRY_BASE_MS_DEFAULT: u64 = 1_000;
pub const PAYMENT_RETRY_MAX_MS_DEFAULT: u64 = 300_000;
pub const PAYMENT_CREDIT_ATTEMPTS_MAX_DEFAULT: u32 = 12;
const _: () = assert!(PAYMENT_RETRY_BASE_MS_DEFAULT <= PAYMENT_RETRY_MAX_MS_DEFAULT);

/// Where the core listens unless told otherwise: loopback, so a developer's core is not exposed.
pub const BIND_DEFAULT: &str = "127.0.0.1:8081";

#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub signing_secret: SigningSecret,
    pub bind: SocketAddr,
    /// `NENE_ENV=dev`: the local stack and tests. Enables fault injection routes.
    pub dev_mode: bool,
    pub toss: TossConfig,
    pub payments: PaymentSettings,
    pub auth: AuthConfig,
    /// User ids allowed to review proofs.
    pub reviewers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the variable {0} is not set")]
    Missing(&'static str),
    #[error("{VAR_BIND} is not a socket address: {0}")]
    Bind(String),
    #[error("{VAR_SIGNING_SECRET}: {0}")]
    Secret(SignatureError),
    #[error("{0} is not a valid number")]
    Number(&'static str),
    #[error("{VAR_TOSS_SECRET_KEY} must be a Toss secret key (test_sk_… or live_sk_…)")]
    TossKey,
}

fn number<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    lookup(name).map_or(Ok(default), |raw| {
        raw.parse().map_err(|_| ConfigError::Number(name))
    })
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
        let dev_mode = lookup(VAR_ENVIRONMENT).as_deref() == Some("dev");
        let secret_key = lookup(VAR_TOSS_SECRET_KEY)
            .or_else(|| dev_mode.then(|| TOSS_DOCS_TEST_SECRET_KEY.to_owned()))
            .ok_or(ConfigError::Missing(VAR_TOSS_SECRET_KEY))?;
        if !(secret_key.starts_with("test_sk_") || secret_key.starts_with("live_sk_")) {
            return Err(ConfigError::TossKey);
        }
        let timeout = Duration::from_millis(number(
            &lookup,
            VAR_TOSS_TIMEOUT_MS,
            u64::try_from(TOSS_TIMEOUT_DEFAULT.as_millis()).unwrap_or(u64::MAX),
        )?);
        let toss = TossConfig {
            base_url: lookup(VAR_TOSS_API_URL).unwrap_or_else(|| TOSS_API_URL_DEFAULT.to_owned()),
            secret_key,
            timeout,
        };
        let payments = PaymentSettings {
            retry_delay_base: Duration::from_millis(number(
                &lookup,
                VAR_PAYMENT_RETRY_BASE_MS,
                PAYMENT_RETRY_BASE_MS_DEFAULT,
            )?),
            retry_delay_max: Duration::from_millis(number(
                &lookup,
                VAR_PAYMENT_RETRY_MAX_MS,
                PAYMENT_RETRY_MAX_MS_DEFAULT,
            )?),
            credit_attempts_max: number(
                &lookup,
                VAR_PAYMENT_CREDIT_ATTEMPTS_MAX,
                PAYMENT_CREDIT_ATTEMPTS_MAX_DEFAULT,
            )?,
            toss_timeout: timeout,
        };
        let auth = auth_config(&lookup, dev_mode);
        let reviewers = lookup(VAR_CHALLENGE_REVIEWERS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CoreConfig {
            reviewers,
            auth,
            database_url,
            redis_url,
            signing_secret,
            bind,
            dev_mode,
            toss,
            payments,
        })
    }
}

/// Sign-in settings: the redirect allow-list and one client per configured provider
/// (`OAUTH_KAKAO_CLIENT_ID`/`_SECRET`, …). In dev mode every provider is configured with dev
/// credentials, which only the sandbox accepts.
fn auth_config(lookup: &impl Fn(&str) -> Option<String>, dev_mode: bool) -> AuthConfig {
    let redirect_uris = lookup(VAR_AUTH_REDIRECT_URIS)
        .or_else(|| dev_mode.then(|| AUTH_REDIRECT_URIS_DEV.to_owned()))
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .collect();
    let sandbox = lookup(VAR_OAUTH_SANDBOX_URL);
    let providers = Provider::ALL
        .into_iter()
        .filter_map(|provider| {
            let name = provider.as_str().to_uppercase();
            let client_id = lookup(&format!("OAUTH_{name}_CLIENT_ID"))
                .or_else(|| dev_mode.then(|| format!("nene-dev-{}", provider.as_str())))?;
            let client_secret = lookup(&format!("OAUTH_{name}_CLIENT_SECRET"))
                .or_else(|| dev_mode.then(|| "nene-dev-secret".to_owned()))?;
            Some(ProviderClient {
                provider,
                client_id,
                client_secret,
                endpoints: Endpoints::of(provider, sandbox.as_deref()),
            })
        })
        .collect();
    AuthConfig {
        redirect_uris,
        providers,
    }
}
