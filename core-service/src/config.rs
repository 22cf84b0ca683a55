//! Configuration from the environment, parsed once at start-up: the core refuses to start with a
//! configuration that is wrong, and the error names the variable and what is wrong with it.
//!
//! Outside dev mode (`NENE_ENV` other than `dev`, or unset) it also refuses what only a
//! development setup may have: a secret this repository publishes (`nene_domain::deployment`),
//! any `*_SANDBOX_URL`, an `EDGE_URL` (or a Toss or FCM URL) that is not https or points at a
//! loopback or private address, a login provider with only half its credentials, and login
//! providers without `AUTH_REDIRECT_URIS`. Secrets under 32 bytes are refused in every mode.

use std::{net::SocketAddr, time::Duration};

use nene_domain::{
    deployment::{UrlProblem, check_deployment_url, is_published_secret},
    limits::CORE_TIMEOUT_MS,
    signing::{SignatureError, SigningSecret},
};
use sqlx::postgres::PgPoolOptions;

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
use crate::shutdown::{DRAIN_TIMEOUT_MS_DEFAULT, DRAIN_TIMEOUT_MS_MAX, DRAIN_TIMEOUT_MS_MIN};
use crate::tls::{Trust, TrustError};

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
pub const VAR_SHOP_ADMINS: &str = "SHOP_ADMINS";
pub const VAR_EDGE_URL: &str = "EDGE_URL";
pub const VAR_OAUTH_SANDBOX_URL: &str = "OAUTH_SANDBOX_URL";
pub const VAR_FCM_SERVICE_ACCOUNT_FILE: &str = "FCM_SERVICE_ACCOUNT_FILE";
pub const VAR_FCM_API_URL: &str = "FCM_API_URL";
pub const VAR_FCM_TOKEN_URL: &str = "FCM_TOKEN_URL";
pub const VAR_FCM_SANDBOX_URL: &str = "FCM_SANDBOX_URL";
pub const VAR_NOTIFY_RETRY_BASE_MS: &str = "NOTIFY_RETRY_BASE_MS";
pub const VAR_NOTIFY_RETRY_MAX_MS: &str = "NOTIFY_RETRY_MAX_MS";
pub const VAR_NOTIFY_REDIS_PREFIX: &str = "NOTIFY_REDIS_PREFIX";
pub const VAR_MIGRATE_ON_START: &str = "CORE_MIGRATE_ON_START";
pub const VAR_DB_POOL_CONNECTIONS: &str = "DB_POOL_CONNECTIONS";
pub const VAR_DB_ACQUIRE_TIMEOUT_MS: &str = "DB_ACQUIRE_TIMEOUT_MS";
pub const VAR_DB_STATEMENT_TIMEOUT_MS: &str = "DB_STATEMENT_TIMEOUT_MS";
pub const VAR_EXTRA_CA_FILE: &str = "EXTRA_CA_FILE";
pub const VAR_SHUTDOWN_DRAIN_TIMEOUT_MS: &str = "SHUTDOWN_DRAIN_TIMEOUT_MS";
pub const VAR_SEARCH_INDEX_DIR: &str = "SEARCH_INDEX_DIR";

/// Every variable that points a real service at the sandbox. A sandbox stands in for Toss, FCM or
/// a login provider in dev mode only: outside it, any of these being set is refused. (A test
/// below holds this list to every `VAR_*_SANDBOX_URL` of this file.)
pub const SANDBOX_URL_VARS: &[&str] = &[VAR_OAUTH_SANDBOX_URL, VAR_FCM_SANDBOX_URL];

/// Connections to Postgres per core instance, by default. Postgres' default limit is 100;
/// several replicas and the test suite share it, and a 2-core machine gains nothing from more.
pub const DB_POOL_CONNECTIONS_DEFAULT: u32 = 32;
/// Fewest: the background tasks (payment worker, notification dispatcher, scheduler,
/// maintenance, the debit batcher) may each hold one while requests still need one.
pub const DB_POOL_CONNECTIONS_MIN: u32 = 6;
/// Most: every connection is a Postgres backend process (several MB each); past a few hundred per
/// instance a connection pooler in front of Postgres is the answer, not a bigger pool.
pub const DB_POOL_CONNECTIONS_MAX: u32 = 256;
const _: () = assert!(
    DB_POOL_CONNECTIONS_MIN <= DB_POOL_CONNECTIONS_DEFAULT
        && DB_POOL_CONNECTIONS_DEFAULT <= DB_POOL_CONNECTIONS_MAX
);

/// How long a request waits for a pooled connection before failing rather than queueing forever,
/// by default: well inside the edge's wait for the core, so a saturated pool answers a clear
/// error before the edge gives up on the call.
pub const DB_ACQUIRE_TIMEOUT_MS_DEFAULT: u64 = 3_000;
/// Shortest: less turns an ordinary burst into errors.
pub const DB_ACQUIRE_TIMEOUT_MS_MIN: u64 = 100;
/// Longest: the edge's wait for the core; a request still waiting for a connection after that has
/// been answered 503 at the edge already.
pub const DB_ACQUIRE_TIMEOUT_MS_MAX: u64 = CORE_TIMEOUT_MS;
const _: () = assert!(
    DB_ACQUIRE_TIMEOUT_MS_MIN <= DB_ACQUIRE_TIMEOUT_MS_DEFAULT
        && DB_ACQUIRE_TIMEOUT_MS_DEFAULT < DB_ACQUIRE_TIMEOUT_MS_MAX
);

/// Postgres' `statement_timeout` on every connection of the pool, by default: a runaway
/// statement (a bad plan, a lock queue) is cancelled instead of holding its connection and locks
/// for ever. Our longest statements are settlement's (one challenge of 100,000 participants
/// settles in about 10 s in all, docs/decisions/0010-challenge-lifecycle.md); a minute leaves
/// them room on a slower machine. Migrations run on a connection of their own, without it.
pub const DB_STATEMENT_TIMEOUT_MS_DEFAULT: u64 = 60_000;
/// Shortest: a second; less would cancel ordinary work on a busy database (0, which turns the
/// timeout off, is refused too).
pub const DB_STATEMENT_TIMEOUT_MS_MIN: u64 = 1_000;
/// Longest: ten minutes; past that the timeout no longer protects anything.
pub const DB_STATEMENT_TIMEOUT_MS_MAX: u64 = 600_000;
const _: () = assert!(
    DB_STATEMENT_TIMEOUT_MS_MIN <= DB_STATEMENT_TIMEOUT_MS_DEFAULT
        && DB_STATEMENT_TIMEOUT_MS_DEFAULT <= DB_STATEMENT_TIMEOUT_MS_MAX
);
// A request's statements must be able to run while the edge still waits for the answer.
const _: () = assert!(DB_STATEMENT_TIMEOUT_MS_MIN < CORE_TIMEOUT_MS);

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

/// The Postgres pool's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbSettings {
    pub pool_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            pool_connections: DB_POOL_CONNECTIONS_DEFAULT,
            acquire_timeout: Duration::from_millis(DB_ACQUIRE_TIMEOUT_MS_DEFAULT),
            statement_timeout: Duration::from_millis(DB_STATEMENT_TIMEOUT_MS_DEFAULT),
        }
    }
}

impl DbSettings {
    /// The pool these settings describe: its size, its acquire timeout, and the statement
    /// timeout set on every connection it opens.
    #[must_use]
    pub fn pool_options(&self) -> PgPoolOptions {
        let statement_timeout_ms = self.statement_timeout.as_millis().to_string();
        PgPoolOptions::new()
            .max_connections(self.pool_connections)
            .acquire_timeout(self.acquire_timeout)
            .after_connect(move |connection, _meta| {
                let statement_timeout_ms = statement_timeout_ms.clone();
                Box::pin(async move {
                    // `SET` takes no bind parameters; set_config does, and `false` makes it last
                    // for the session (the connection), not one transaction.
                    sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                        .bind(statement_timeout_ms)
                        .execute(connection)
                        .await?;
                    Ok(())
                })
            })
    }
}

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
    /// User ids allowed to manage the shop's products and orders.
    pub shop_admins: Vec<String>,
    /// Where the edge listens, for pushes into its Durable Objects (optional).
    pub edge_url: Option<String>,
    /// `CORE_MIGRATE_ON_START`: apply migrations at start (default in dev mode) or only check
    /// that the schema is current and refuse to start otherwise (default elsewhere, where a
    /// deploy runs `nene-core migrate` as the schema's owner first: [`crate::schema`]).
    pub migrate_on_start: bool,
    pub db: DbSettings,
    /// After SIGTERM, how long requests in flight and the background loops' items in hand may
    /// take (`crate::shutdown`).
    pub drain_timeout: Duration,
    /// Whom every TLS connection out of the core trusts: Mozilla's roots and `EXTRA_CA_FILE`'s.
    pub tls: Trust,
    /// Where the search index lives (`SEARCH_INDEX_DIR`, a directory of its own per replica), or
    /// in memory, rebuilt from Postgres at every start, when unset.
    pub search_index: crate::search::tantivy_index::IndexLocation,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the variable {0} is not set")]
    Missing(&'static str),
    #[error("{VAR_BIND} is not a socket address: {0}")]
    Bind(String),
    #[error("{VAR_SIGNING_SECRET}: {0}")]
    Secret(SignatureError),
    #[error("{0} is not a valid number")]
    Number(&'static str),
    #[error("{0} must be `true` or `false`")]
    Boolean(&'static str),
    #[error("{VAR_TOSS_SECRET_KEY} must be a Toss secret key (test_sk_… or live_sk_…)")]
    TossKey,
    #[error("{name} must be within {min}..={max} {unit}")]
    OutOfRange {
        name: &'static str,
        min: u64,
        max: u64,
        unit: &'static str,
    },
    #[error(
        "{0} holds a secret published in this repository for development and tests; set a secret of your own (outside dev mode)"
    )]
    PublishedSecret(String),
    #[error("{0} is set: a sandbox stands in for a real service in dev mode only")]
    SandboxOutsideDev(&'static str),
    #[error("{name}: {problem} (outside dev mode)")]
    UrlNotDeployable {
        name: &'static str,
        problem: UrlProblem,
    },
    #[error("{set} is set without {missing}: a login provider needs both (outside dev mode)")]
    HalfProvider { set: String, missing: String },
    #[error(
        "{VAR_AUTH_REDIRECT_URIS} is empty while login providers are on ({0}): no login could return anywhere"
    )]
    NoRedirectUris(String),
    #[error("{VAR_EXTRA_CA_FILE}: {0}")]
    ExtraCa(TrustError),
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

/// A number within `min..=max`, `default` when unset.
fn bounded(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    (min, max, unit): (u64, u64, &'static str),
) -> Result<u64, ConfigError> {
    let value = number(lookup, name, default)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            name,
            min,
            max,
            unit,
        })
    }
}

/// The pool's settings, each within its bounds.
fn db_settings(lookup: &impl Fn(&str) -> Option<String>) -> Result<DbSettings, ConfigError> {
    let pool_connections = bounded(
        lookup,
        VAR_DB_POOL_CONNECTIONS,
        u64::from(DB_POOL_CONNECTIONS_DEFAULT),
        (
            u64::from(DB_POOL_CONNECTIONS_MIN),
            u64::from(DB_POOL_CONNECTIONS_MAX),
            "connections",
        ),
    )?;
    let acquire_timeout_ms = bounded(
        lookup,
        VAR_DB_ACQUIRE_TIMEOUT_MS,
        DB_ACQUIRE_TIMEOUT_MS_DEFAULT,
        (DB_ACQUIRE_TIMEOUT_MS_MIN, DB_ACQUIRE_TIMEOUT_MS_MAX, "ms"),
    )?;
    let statement_timeout_ms = bounded(
        lookup,
        VAR_DB_STATEMENT_TIMEOUT_MS,
        DB_STATEMENT_TIMEOUT_MS_DEFAULT,
        (
            DB_STATEMENT_TIMEOUT_MS_MIN,
            DB_STATEMENT_TIMEOUT_MS_MAX,
            "ms",
        ),
    )?;
    Ok(DbSettings {
        // Within DB_POOL_CONNECTIONS_MAX, which is a u32.
        pool_connections: u32::try_from(pool_connections).unwrap_or(DB_POOL_CONNECTIONS_MAX),
        acquire_timeout: Duration::from_millis(acquire_timeout_ms),
        statement_timeout: Duration::from_millis(statement_timeout_ms),
    })
}

/// A set, non-empty variable.
/// A comma-separated list of user ids (`CHALLENGE_REVIEWERS`, `SHOP_ADMINS`), blanks dropped.
fn user_list(raw: Option<String>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|value| !value.trim().is_empty())
}

/// Outside dev mode, a URL variable (when set) must be https at a public address.
fn deployable_url(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    dev_mode: bool,
) -> Result<(), ConfigError> {
    match set(lookup, name) {
        Some(url) if !dev_mode => check_deployment_url(&url)
            .map_err(|problem| ConfigError::UrlNotDeployable { name, problem }),
        _ => Ok(()),
    }
}

/// What only a development setup may have, refused outside dev mode.
fn refuse_dev_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    dev_mode: bool,
) -> Result<(), ConfigError> {
    if dev_mode {
        return Ok(());
    }
    if let Some(name) = SANDBOX_URL_VARS
        .iter()
        .copied()
        .find(|name| set(lookup, name).is_some())
    {
        return Err(ConfigError::SandboxOutsideDev(name));
    }
    for name in [
        VAR_EDGE_URL,
        VAR_TOSS_API_URL,
        VAR_FCM_API_URL,
        VAR_FCM_TOKEN_URL,
    ] {
        deployable_url(lookup, name, dev_mode)?;
    }
    Ok(())
}

impl CoreConfig {
    /// # Errors
    /// [`ConfigError`] naming the first missing or invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let database_url =
            lookup(VAR_DATABASE_URL).ok_or(ConfigError::Missing(VAR_DATABASE_URL))?;
        let redis_url = lookup(VAR_REDIS_URL).filter(|url| !url.is_empty());
        let dev_mode = lookup(VAR_ENVIRONMENT).as_deref() == Some("dev");
        refuse_dev_settings(&lookup, dev_mode)?;
        let secret = lookup(VAR_SIGNING_SECRET).ok_or(ConfigError::Missing(VAR_SIGNING_SECRET))?;
        let signing_secret = SigningSecret::parse(&secret).map_err(ConfigError::Secret)?;
        if !dev_mode && signing_secret.is_published() {
            return Err(ConfigError::PublishedSecret(VAR_SIGNING_SECRET.to_owned()));
        }
        let bind = lookup(VAR_BIND).unwrap_or_else(|| BIND_DEFAULT.to_owned());
        let bind = bind.parse().map_err(|_| ConfigError::Bind(bind))?;
        let tls = trust(&lookup)?;
        // Outside dev mode the key is required and may not be the docs' published test key. Any
        // other test key is allowed: a staging deployment runs outside dev mode against Toss's
        // test environment with a test key of its own, and a test key cannot move real money.
        let secret_key = lookup(VAR_TOSS_SECRET_KEY)
            .or_else(|| dev_mode.then(|| TOSS_DOCS_TEST_SECRET_KEY.to_owned()))
            .ok_or(ConfigError::Missing(VAR_TOSS_SECRET_KEY))?;
        if !(secret_key.starts_with("test_sk_") || secret_key.starts_with("live_sk_")) {
            return Err(ConfigError::TossKey);
        }
        if !dev_mode && is_published_secret(&secret_key) {
            return Err(ConfigError::PublishedSecret(VAR_TOSS_SECRET_KEY.to_owned()));
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
            tls: tls.clone(),
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
        let auth = auth_config(&lookup, dev_mode, &tls)?;
        let notifications = notification_settings(&lookup, dev_mode, &tls)?;
        let reviewers = user_list(lookup(VAR_CHALLENGE_REVIEWERS));
        let shop_admins = user_list(lookup(VAR_SHOP_ADMINS));
        let db = db_settings(&lookup)?;
        let drain_timeout = Duration::from_millis(bounded(
            &lookup,
            VAR_SHUTDOWN_DRAIN_TIMEOUT_MS,
            DRAIN_TIMEOUT_MS_DEFAULT,
            (DRAIN_TIMEOUT_MS_MIN, DRAIN_TIMEOUT_MS_MAX, "ms"),
        )?);
        let migrate_on_start = match lookup(VAR_MIGRATE_ON_START).as_deref() {
            None | Some("") => dev_mode,
            Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(ConfigError::Boolean(VAR_MIGRATE_ON_START)),
        };
        Ok(CoreConfig {
            search_index: search_index_location(&lookup),
            migrate_on_start,
            db,
            drain_timeout,
            edge_url: lookup(VAR_EDGE_URL).filter(|url| !url.is_empty()),
            notifications,
            reviewers,
            shop_admins,
            auth,
            database_url,
            redis_url,
            signing_secret,
            bind,
            dev_mode,
            toss,
            payments,
            tls,
        })
    }
}

/// `SEARCH_INDEX_DIR`: a directory on local disk, or (unset or empty) memory.
#[must_use]
pub fn search_index_location(
    lookup: &impl Fn(&str) -> Option<String>,
) -> crate::search::tantivy_index::IndexLocation {
    use crate::search::tantivy_index::IndexLocation;
    set(lookup, VAR_SEARCH_INDEX_DIR)
        .map_or(IndexLocation::Memory, |dir| IndexLocation::Disk(dir.into()))
}

/// `EXTRA_CA_FILE`: PEM, one or more certificates trusted beside Mozilla's roots. Set but
/// missing, unreadable or without a certificate, the core refuses to start rather than fail
/// every call later.
/// The roots every TLS connection of the core trusts: Mozilla's, and the `EXTRA_CA_FILE`'s if set.
/// Also read on its own by `nene-core migrate`, which needs nothing else of the configuration.
///
/// # Errors
/// When `EXTRA_CA_FILE` is set but cannot be read or holds no certificate.
pub fn trust(lookup: &impl Fn(&str) -> Option<String>) -> Result<Trust, ConfigError> {
    match lookup(VAR_EXTRA_CA_FILE).filter(|path| !path.is_empty()) {
        None => Ok(Trust::public_roots()),
        Some(path) => {
            Trust::with_extra_file(std::path::Path::new(&path)).map_err(ConfigError::ExtraCa)
        }
    }
}

/// FCM and the dispatcher. The key file (`FCM_SERVICE_ACCOUNT_FILE`) is what turns push on;
/// `FCM_API_URL` and `FCM_TOKEN_URL` default to Google's. In dev mode `FCM_SANDBOX_URL` (the
/// sandbox's base URL) makes all three default to the sandbox: its API, its token endpoint and
/// the key it serves at `/sandbox/fcm/service-account.json`.
fn notification_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    dev_mode: bool,
    tls: &Trust,
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
        tls: tls.clone(),
    })
}

/// Sign-in settings: the redirect allow-list and one client per configured provider
/// (`OAUTH_KAKAO_CLIENT_ID`/`_SECRET`, …). In dev mode every provider is configured with dev
/// credentials, which only the sandbox accepts, and `OAUTH_SANDBOX_URL` serves them all. Outside
/// dev mode a provider is on when both its variables are set; one without the other is refused
/// (a half-configured provider is a mistake, not a wish to turn it off), and so are providers
/// without `AUTH_REDIRECT_URIS` (no login could return) and a published client secret.
fn auth_config(
    lookup: &impl Fn(&str) -> Option<String>,
    dev_mode: bool,
    tls: &Trust,
) -> Result<AuthConfig, ConfigError> {
    let redirect_uris: Vec<String> = lookup(VAR_AUTH_REDIRECT_URIS)
        .or_else(|| dev_mode.then(|| AUTH_REDIRECT_URIS_DEV.to_owned()))
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .collect();
    // Outside dev mode a sandbox URL has been refused already (`refuse_dev_settings`).
    let sandbox = lookup(VAR_OAUTH_SANDBOX_URL).filter(|url| dev_mode && !url.is_empty());
    let mut providers = Vec::new();
    for provider in Provider::ALL {
        let name = provider.as_str().to_uppercase();
        let id_var = format!("OAUTH_{name}_CLIENT_ID");
        let secret_var = format!("OAUTH_{name}_CLIENT_SECRET");
        let (client_id, client_secret) = match (set(lookup, &id_var), set(lookup, &secret_var)) {
            (Some(id), Some(secret)) => (id, secret),
            (None, None) if !dev_mode => continue,
            (id, secret) if dev_mode => (
                id.unwrap_or_else(|| format!("nene-dev-{}", provider.as_str())),
                secret.unwrap_or_else(|| "nene-dev-secret".to_owned()),
            ),
            (Some(_), None) => {
                return Err(ConfigError::HalfProvider {
                    set: id_var,
                    missing: secret_var,
                });
            }
            (None, _) => {
                return Err(ConfigError::HalfProvider {
                    set: secret_var,
                    missing: id_var,
                });
            }
        };
        if !dev_mode && is_published_secret(&client_secret) {
            return Err(ConfigError::PublishedSecret(secret_var));
        }
        providers.push(ProviderClient {
            provider,
            client_id,
            client_secret,
            endpoints: Endpoints::of(provider, sandbox.as_deref()),
        });
    }
    if !providers.is_empty() && redirect_uris.is_empty() {
        let names: Vec<&str> = providers.iter().map(|p| p.provider.as_str()).collect();
        return Err(ConfigError::NoRedirectUris(names.join(", ")));
    }
    Ok(AuthConfig {
        redirect_uris,
        providers,
        tls: tls.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_SECRET: &str = "a-production-signing-secret-of-40-bytes!";
    const OWN_TOSS_KEY: &str = "live_sk_a-key-of-our-own-0123456789";
    const DEV_SECRET: &str = "dev-only-signing-secret-0123456789abcdef";

    /// A production configuration with `changes` applied (`None` removes a variable).
    fn config(changes: &[(&str, Option<&str>)]) -> Result<CoreConfig, ConfigError> {
        let mut vars: Vec<(String, Option<String>)> = [
            (VAR_DATABASE_URL, "postgres://nene@db.internal/nene"),
            (VAR_SIGNING_SECRET, OWN_SECRET),
            (VAR_TOSS_SECRET_KEY, OWN_TOSS_KEY),
        ]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Some((*value).to_owned())))
        .collect();
        for (name, value) in changes {
            let value = value.map(str::to_owned);
            match vars.iter_mut().find(|(var, _)| var == name) {
                Some(entry) => entry.1 = value,
                None => vars.push(((*name).to_owned(), value)),
            }
        }
        CoreConfig::from_lookup(|name| {
            vars.iter()
                .find(|(var, _)| var == name)
                .and_then(|(_, value)| value.clone())
        })
    }

    fn error(changes: &[(&str, Option<&str>)]) -> ConfigError {
        match config(changes) {
            Ok(_) => panic!("{changes:?} was accepted"),
            Err(error) => error,
        }
    }

    /// `./nene up`'s core, as `nene` starts it.
    fn dev_stack() -> Vec<(&'static str, Option<&'static str>)> {
        vec![
            (VAR_ENVIRONMENT, Some("dev")),
            (VAR_SIGNING_SECRET, Some(DEV_SECRET)),
            (VAR_TOSS_SECRET_KEY, None),
            (VAR_TOSS_API_URL, Some("http://127.0.0.1:8090")),
            (VAR_OAUTH_SANDBOX_URL, Some("http://127.0.0.1:8090")),
            (VAR_FCM_SANDBOX_URL, Some("http://127.0.0.1:8090")),
            (VAR_EDGE_URL, Some("http://127.0.0.1:8787")),
        ]
    }

    #[test]
    fn a_production_configuration_with_its_own_secrets_starts() {
        let config = config(&[]).unwrap();
        assert!(!config.dev_mode);
        assert!(config.auth.providers.is_empty());
        assert_eq!(config.db, DbSettings::default());
    }

    #[test]
    fn dev_mode_starts_with_the_dev_values_and_the_sandboxes() {
        let config = config(&dev_stack()).unwrap();
        assert!(config.dev_mode);
        assert_eq!(config.toss.secret_key, TOSS_DOCS_TEST_SECRET_KEY);
        assert_eq!(config.auth.providers.len(), Provider::ALL.len());
        assert!(
            config
                .auth
                .providers
                .iter()
                .all(|p| p.endpoints.token.starts_with("http://127.0.0.1:8090/"))
        );
    }

    #[test]
    fn the_dev_signing_secret_is_refused_outside_dev_mode() {
        let refused = error(&[(VAR_SIGNING_SECRET, Some(DEV_SECRET))]);
        assert_eq!(
            refused,
            ConfigError::PublishedSecret(VAR_SIGNING_SECRET.to_owned())
        );
        assert!(refused.to_string().starts_with("CORE_SIGNING_SECRET holds"));
        let e2e = "e2e-signing-secret-0123456789abcdef0123";
        assert_eq!(
            error(&[(VAR_SIGNING_SECRET, Some(e2e))]),
            ConfigError::PublishedSecret(VAR_SIGNING_SECRET.to_owned())
        );
    }

    #[test]
    fn a_secret_under_32_bytes_is_refused_in_every_mode() {
        for mode in [None, Some("dev")] {
            assert_eq!(
                error(&[
                    (VAR_ENVIRONMENT, mode),
                    (VAR_SIGNING_SECRET, Some("short-secret"))
                ]),
                ConfigError::Secret(SignatureError::SecretTooShort)
            );
        }
    }

    #[test]
    fn the_toss_key_is_required_outside_dev_mode_and_may_not_be_the_docs_key() {
        assert_eq!(
            error(&[(VAR_TOSS_SECRET_KEY, None)]),
            ConfigError::Missing(VAR_TOSS_SECRET_KEY)
        );
        assert_eq!(
            error(&[(VAR_TOSS_SECRET_KEY, Some(TOSS_DOCS_TEST_SECRET_KEY))]),
            ConfigError::PublishedSecret(VAR_TOSS_SECRET_KEY.to_owned())
        );
        // A test key of one's own: a staging deployment against Toss's test environment.
        assert!(config(&[(VAR_TOSS_SECRET_KEY, Some("test_sk_our-own-staging-key"))]).is_ok());
    }

    #[test]
    fn every_sandbox_url_is_refused_outside_dev_mode() {
        for &name in SANDBOX_URL_VARS {
            let refused = error(&[(name, Some("http://127.0.0.1:8090"))]);
            assert_eq!(refused, ConfigError::SandboxOutsideDev(name));
            assert!(refused.to_string().starts_with(name), "{refused}");
        }
    }

    #[test]
    fn every_sandbox_url_variable_of_this_file_is_in_the_refused_list() {
        let source = include_str!("config.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub const VAR_"))
            .filter_map(|rest| rest.split('"').nth(1))
            .filter(|name| name.ends_with("_SANDBOX_URL"))
            .collect();
        assert!(!declared.is_empty());
        for name in declared {
            assert!(SANDBOX_URL_VARS.contains(&name), "{name} is not refused");
        }
    }

    #[test]
    fn the_edge_url_must_be_https_at_a_public_address_outside_dev_mode() {
        for (url, problem) in [
            ("http://edge.example.com", UrlProblem::NotHttps),
            ("https://127.0.0.1:8787", UrlProblem::Loopback),
            ("https://localhost:8787", UrlProblem::Loopback),
            ("https://192.168.0.10", UrlProblem::Private),
        ] {
            let refused = error(&[(VAR_EDGE_URL, Some(url))]);
            assert_eq!(
                refused,
                ConfigError::UrlNotDeployable {
                    name: VAR_EDGE_URL,
                    problem
                },
                "{url}"
            );
            assert!(refused.to_string().starts_with("EDGE_URL: "));
        }
        let config = config(&[(VAR_EDGE_URL, Some("https://api.example.com"))]).unwrap();
        assert_eq!(config.edge_url.as_deref(), Some("https://api.example.com"));
    }

    #[test]
    fn toss_and_fcm_urls_must_be_https_outside_dev_mode() {
        for name in [VAR_TOSS_API_URL, VAR_FCM_API_URL, VAR_FCM_TOKEN_URL] {
            assert_eq!(
                error(&[(name, Some("http://127.0.0.1:8090"))]),
                ConfigError::UrlNotDeployable {
                    name,
                    problem: UrlProblem::NotHttps
                }
            );
        }
    }

    #[test]
    fn a_login_provider_with_half_its_credentials_is_refused_outside_dev_mode() {
        let redirect = (
            VAR_AUTH_REDIRECT_URIS,
            Some("https://app.example.com/auth/done"),
        );
        let refused = error(&[redirect, ("OAUTH_KAKAO_CLIENT_ID", Some("kakao-app-1"))]);
        assert_eq!(
            refused,
            ConfigError::HalfProvider {
                set: "OAUTH_KAKAO_CLIENT_ID".to_owned(),
                missing: "OAUTH_KAKAO_CLIENT_SECRET".to_owned()
            }
        );
        assert!(refused.to_string().contains("OAUTH_KAKAO_CLIENT_SECRET"));
        assert_eq!(
            error(&[redirect, ("OAUTH_GOOGLE_CLIENT_SECRET", Some("GOCSPX-x"))]),
            ConfigError::HalfProvider {
                set: "OAUTH_GOOGLE_CLIENT_SECRET".to_owned(),
                missing: "OAUTH_GOOGLE_CLIENT_ID".to_owned()
            }
        );
    }

    #[test]
    fn login_providers_without_redirect_uris_are_refused_outside_dev_mode() {
        let naver = [
            ("OAUTH_NAVER_CLIENT_ID", Some("naver-app")),
            ("OAUTH_NAVER_CLIENT_SECRET", Some("naver-secret")),
        ];
        let refused = error(&naver);
        assert_eq!(refused, ConfigError::NoRedirectUris("naver".to_owned()));
        assert!(refused.to_string().starts_with("AUTH_REDIRECT_URIS"));
        let mut with_redirects = naver.to_vec();
        with_redirects.push((VAR_AUTH_REDIRECT_URIS, Some("nene://auth/callback")));
        let config = config(&with_redirects).unwrap();
        assert_eq!(config.auth.providers.len(), 1);
        assert!(
            config.auth.providers[0]
                .endpoints
                .token
                .starts_with("https://nid.naver.com/")
        );
    }

    #[test]
    fn the_dev_login_secret_is_refused_outside_dev_mode() {
        assert_eq!(
            error(&[
                (VAR_AUTH_REDIRECT_URIS, Some("nene://auth/callback")),
                ("OAUTH_KAKAO_CLIENT_ID", Some("nene-dev-kakao")),
                ("OAUTH_KAKAO_CLIENT_SECRET", Some("nene-dev-secret")),
            ]),
            ConfigError::PublishedSecret("OAUTH_KAKAO_CLIENT_SECRET".to_owned())
        );
    }

    #[test]
    fn the_pool_settings_default_and_are_read_within_their_bounds() {
        let db = config(&[
            (VAR_DB_POOL_CONNECTIONS, Some("64")),
            (VAR_DB_ACQUIRE_TIMEOUT_MS, Some("1500")),
            (VAR_DB_STATEMENT_TIMEOUT_MS, Some("30000")),
        ])
        .map(|config| config.db)
        .unwrap();
        assert_eq!(
            db,
            DbSettings {
                pool_connections: 64,
                acquire_timeout: Duration::from_millis(1_500),
                statement_timeout: Duration::from_secs(30),
            }
        );
        let bounds = [
            (
                VAR_DB_POOL_CONNECTIONS,
                u64::from(DB_POOL_CONNECTIONS_MIN),
                u64::from(DB_POOL_CONNECTIONS_MAX),
            ),
            (
                VAR_DB_ACQUIRE_TIMEOUT_MS,
                DB_ACQUIRE_TIMEOUT_MS_MIN,
                DB_ACQUIRE_TIMEOUT_MS_MAX,
            ),
            (
                VAR_DB_STATEMENT_TIMEOUT_MS,
                DB_STATEMENT_TIMEOUT_MS_MIN,
                DB_STATEMENT_TIMEOUT_MS_MAX,
            ),
        ];
        for (name, min, max) in bounds {
            for edge in [min, max] {
                let value = edge.to_string();
                assert!(
                    config(&[(name, Some(value.as_str()))]).is_ok(),
                    "{name}={edge}"
                );
            }
        }
    }

    #[test]
    fn a_pool_setting_out_of_its_bounds_is_refused_naming_the_variable() {
        for (name, value) in [
            (VAR_DB_POOL_CONNECTIONS, "0"),
            (VAR_DB_POOL_CONNECTIONS, "5"),
            (VAR_DB_POOL_CONNECTIONS, "257"),
            (VAR_DB_ACQUIRE_TIMEOUT_MS, "99"),
            (VAR_DB_ACQUIRE_TIMEOUT_MS, "5001"),
            (VAR_DB_STATEMENT_TIMEOUT_MS, "0"),
            (VAR_DB_STATEMENT_TIMEOUT_MS, "999"),
            (VAR_DB_STATEMENT_TIMEOUT_MS, "600001"),
        ] {
            let refused = error(&[(name, Some(value))]);
            assert!(
                matches!(refused, ConfigError::OutOfRange { name: named, .. } if named == name),
                "{name}={value}: {refused}"
            );
            assert!(refused.to_string().starts_with(name), "{refused}");
        }
        assert_eq!(
            error(&[(VAR_DB_POOL_CONNECTIONS, Some("many"))]),
            ConfigError::Number(VAR_DB_POOL_CONNECTIONS)
        );
    }

    #[test]
    fn the_drain_timeout_defaults_and_is_refused_outside_its_bounds_naming_the_variable() {
        let drain = |value: Option<&str>| {
            config(&[(VAR_SHUTDOWN_DRAIN_TIMEOUT_MS, value)]).map(|config| config.drain_timeout)
        };
        assert_eq!(
            drain(None),
            Ok(Duration::from_millis(DRAIN_TIMEOUT_MS_DEFAULT))
        );
        for edge in [DRAIN_TIMEOUT_MS_MIN, DRAIN_TIMEOUT_MS_MAX] {
            assert_eq!(
                drain(Some(&edge.to_string())),
                Ok(Duration::from_millis(edge))
            );
        }
        for outside in [0, DRAIN_TIMEOUT_MS_MIN - 1, DRAIN_TIMEOUT_MS_MAX + 1] {
            let refused = error(&[(VAR_SHUTDOWN_DRAIN_TIMEOUT_MS, Some(&outside.to_string()))]);
            assert_eq!(
                refused,
                ConfigError::OutOfRange {
                    name: VAR_SHUTDOWN_DRAIN_TIMEOUT_MS,
                    min: DRAIN_TIMEOUT_MS_MIN,
                    max: DRAIN_TIMEOUT_MS_MAX,
                    unit: "ms",
                }
            );
            assert!(
                refused
                    .to_string()
                    .starts_with(VAR_SHUTDOWN_DRAIN_TIMEOUT_MS),
                "{refused}"
            );
        }
    }

    fn settings(dev_mode: bool, vars: &[(&str, &str)]) -> NotificationSettings {
        let lookup = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        notification_settings(&lookup, dev_mode, &Trust::public_roots()).unwrap()
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
        assert!(notification_settings(&lookup, false, &Trust::public_roots()).is_err());
    }

    #[test]
    fn an_extra_ca_file_that_is_missing_or_holds_no_certificate_stops_the_core_naming_it() {
        let missing = error(&[(VAR_EXTRA_CA_FILE, Some("/nonexistent/nene-extra-ca.pem"))]);
        assert!(
            matches!(&missing, ConfigError::ExtraCa(TrustError::Unreadable { path, .. })
                if path == "/nonexistent/nene-extra-ca.pem"),
            "{missing}"
        );
        assert!(
            missing
                .to_string()
                .starts_with("EXTRA_CA_FILE: /nonexistent/nene-extra-ca.pem: "),
            "{missing}"
        );
        let dir = std::env::temp_dir();
        let junk = dir.join(format!(
            "nene-junk-ca-{}.pem",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let junk_path = junk.display().to_string();
        let no_certificate = error(&[(VAR_EXTRA_CA_FILE, Some(junk_path.as_str()))]);
        let _ = std::fs::remove_file(&junk);
        assert_eq!(
            no_certificate,
            ConfigError::ExtraCa(TrustError::NoCertificate)
        );
        assert_eq!(
            no_certificate.to_string(),
            "EXTRA_CA_FILE: no PEM certificate in it"
        );
    }

    #[test]
    fn an_extra_ca_file_with_a_certificate_adds_it_to_every_client_and_unset_adds_none() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let file =
            std::env::temp_dir().join(format!("nene-ca-{}.pem", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, ca.pem()).unwrap();
        let path = file.display().to_string();
        let trusting = config(&[(VAR_EXTRA_CA_FILE, Some(path.as_str()))]);
        let _ = std::fs::remove_file(&file);
        let trusting = trusting.unwrap();
        assert_eq!(trusting.tls.extra_roots(), 1);
        for tls in [
            &trusting.toss.tls,
            &trusting.auth.tls,
            &trusting.notifications.tls,
        ] {
            assert_eq!(tls, &trusting.tls);
        }
        // Unset or empty: Mozilla's roots only.
        for unset in [None, Some("")] {
            let public = config(&[(VAR_EXTRA_CA_FILE, unset)]).unwrap();
            assert_eq!(public.tls.extra_roots(), 0);
        }
    }

    #[test]
    fn the_service_migrates_at_start_in_dev_mode_and_only_checks_elsewhere_unless_told() {
        let migrates = |changes: &[(&str, Option<&str>)]| config(changes).unwrap().migrate_on_start;
        assert!(migrates(&[(VAR_ENVIRONMENT, Some("dev"))]));
        assert!(!migrates(&[]));
        assert!(!migrates(&[(VAR_ENVIRONMENT, Some("production"))]));
        assert!(!migrates(&[
            (VAR_ENVIRONMENT, Some("dev")),
            (VAR_MIGRATE_ON_START, Some("false"))
        ]));
        assert!(migrates(&[(VAR_MIGRATE_ON_START, Some("true"))]));
    }

    #[test]
    fn a_migrate_on_start_that_is_not_true_or_false_is_refused() {
        assert!(matches!(
            config(&[(VAR_MIGRATE_ON_START, Some("yes"))]),
            Err(ConfigError::Boolean(VAR_MIGRATE_ON_START))
        ));
    }
}
