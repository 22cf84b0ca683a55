//! Configuration from the environment, parsed once at start-up.

use std::{net::SocketAddr, time::Duration};

use nene_domain::signing::{SignatureError, SigningSecret};

use crate::auth::{
    AuthConfig,
    oauth::{Endpoints, Provider, ProviderClient},
};
use crate::notifications::{
    dispatcher::{REDIS_PREFIX_DEFAULT, RETRY_BASE_MS_DEFAULT, RETRY_MAX_MS_DEFAULT},
    fcm::{FCM_API_URL_DEFAULT, GOOGLE_TOKEN_URL},
    start::{KeySource, NotificationSettings},
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
pub const VAR_EDGE_URL: &str = "EDGE_URL";
pub const VAR_OAUTH_SANDBOX_URL: &str = "OAUTH_SANDBOX_URL";
pub const VAR_FCM_SERVICE_ACCOUNT_FILE: &str = "FCM_SERVICE_ACCOUNT_FILE";
pub const VAR_FCM_API_URL: &str = "FCM_API_URL";
pub const VAR_FCM_TOKEN_URL: &str = "FCM_TOKEN_URL";
pub const VAR_FCM_SANDBOX_URL: &str = "FCM_SANDBOX_URL";
pub const VAR_NOTIFY_RETRY_BASE_MS: &str = "NOTIFY_RETRY_BASE_MS";
pub const VAR_NOTIFY_RETRY_MAX_MS: &str = "NOTIFY_RETRY_MAX_MS";
pub const VAR_NOTIFY_REDIS_PREFIX: &str = "NOTIFY_REDIS_PREFIX";

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
    /// FCM and the notification dispatcher.
    pub notifications: NotificationSettings,
    /// User ids allowed to review proofs.
    pub reviewers: Vec<String>,
    /// Where the edge listens, for pushes into its Durable Objects (optional).
    pub edge_url: Option<String>,
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
        let notifications = notification_settings(&lookup, dev_mode)?;
        let reviewers = lookup(VAR_CHALLENGE_REVIEWERS)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(CoreConfig {
            edge_url: lookup(VAR_EDGE_URL).filter(|url| !url.is_empty()),
            notifications,
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

/// FCM and the dispatcher. The key file (`FCM_SERVICE_ACCOUNT_FILE`) is what turns push on;
/// `FCM_API_URL` and `FCM_TOKEN_URL` default to Google's. In dev mode `FCM_SANDBOX_URL` (the
/// sandbox's base URL) makes all three default to the sandbox: its API, its token endpoint and
/// the key it serves at `/sandbox/fcm/service-account.json`.
fn notification_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    dev_mode: bool,
) -> Result<NotificationSettings, ConfigError> {
    let sandbox = lookup(VAR_FCM_SANDBOX_URL)
        .filter(|url| dev_mode && !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned());
    let key = lookup(VAR_FCM_SERVICE_ACCOUNT_FILE)
        .filter(|path| !path.is_empty())
        .map(|path| KeySource::File(path.into()))
        .or_else(|| {
            sandbox
                .as_ref()
                .map(|url| KeySource::Url(format!("{url}/sandbox/fcm/service-account.json")))
        });
    let api_url = lookup(VAR_FCM_API_URL)
        .or_else(|| sandbox.as_ref().map(|url| format!("{url}/fcm")))
        .unwrap_or_else(|| FCM_API_URL_DEFAULT.to_owned());
    let token_url = lookup(VAR_FCM_TOKEN_URL)
        .or_else(|| sandbox.as_ref().map(|url| format!("{url}/fcm/token")))
        .unwrap_or_else(|| GOOGLE_TOKEN_URL.to_owned());
    Ok(NotificationSettings {
        key,
        api_url,
        token_url,
        retry_base_ms: number(lookup, VAR_NOTIFY_RETRY_BASE_MS, RETRY_BASE_MS_DEFAULT)?,
        retry_max_ms: number(lookup, VAR_NOTIFY_RETRY_MAX_MS, RETRY_MAX_MS_DEFAULT)?,
        redis_prefix: lookup(VAR_NOTIFY_REDIS_PREFIX)
            .filter(|prefix| !prefix.is_empty())
            .unwrap_or_else(|| REDIS_PREFIX_DEFAULT.to_owned()),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dev_mode: bool, vars: &[(&str, &str)]) -> NotificationSettings {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        notification_settings(&lookup, dev_mode).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn without_a_key_file_push_is_off_and_fcm_is_googles() {
        let off = settings(false, &[]);
        assert_eq!(off.key, None);
        assert_eq!(off.api_url, FCM_API_URL_DEFAULT);
        assert_eq!(off.token_url, GOOGLE_TOKEN_URL);
        assert_eq!(off.retry_base_ms, RETRY_BASE_MS_DEFAULT);
    }

    #[test]
    fn in_dev_mode_the_sandbox_url_points_fcm_its_token_endpoint_and_the_key_at_the_sandbox() {
        let sandbox = [(VAR_FCM_SANDBOX_URL, "http://127.0.0.1:8090/")];
        let dev = settings(true, &sandbox);
        assert_eq!(
            dev.key,
            Some(KeySource::Url(
                "http://127.0.0.1:8090/sandbox/fcm/service-account.json".to_owned()
            ))
        );
        assert_eq!(dev.api_url, "http://127.0.0.1:8090/fcm");
        assert_eq!(dev.token_url, "http://127.0.0.1:8090/fcm/token");
        // Outside dev mode the sandbox is never used.
        assert_eq!(settings(false, &sandbox).key, None);
        // An explicit key file wins.
        let file = settings(
            true,
            &[
                sandbox[0],
                (VAR_FCM_SERVICE_ACCOUNT_FILE, "/etc/nene/fcm.json"),
            ],
        );
        assert_eq!(file.key, Some(KeySource::File("/etc/nene/fcm.json".into())));
    }

    #[test]
    fn a_retry_delay_that_is_not_a_number_is_refused() {
        let lookup = |name: &str| (name == VAR_NOTIFY_RETRY_BASE_MS).then(|| "soon".to_owned());
        assert!(notification_settings(&lookup, false).is_err());
    }
}
