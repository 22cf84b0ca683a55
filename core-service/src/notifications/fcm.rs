//! The FCM HTTP v1 client: a service account's key file, an RS256 assertion exchanged for an
//! access token (cached, refreshed before it expires, one refresh at a time), and
//! `messages:send` whose answers are classified by [`super::outcome::classify`].
//!
//! Pointing it at the sandbox is a change of base URLs and key file only (`FCM_API_URL`,
//! `FCM_TOKEN_URL`, `FCM_SERVICE_ACCOUNT_FILE`; see `config.rs`).

use std::{
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::outcome::{self, DeviceOutcome};

/// FCM's production base URL: sends go to `{base}/v1/projects/{project}/messages:send`.
pub const FCM_API_URL_DEFAULT: &str = "https://fcm.googleapis.com";
/// Google's token endpoint, and the `aud` of every assertion (Google checks it is this URL).
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const FIREBASE_MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions of at most an hour.
pub const ASSERTION_LIFETIME_SECONDS: i64 = 3600;
/// An access token is replaced this long before it expires, so no send races its expiry and a
/// slow token endpoint has minutes to answer while the old token still works.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Google's tokens last an hour; a longer `expires_in` is read as an hour, a shorter one than a
/// minute as a minute (so a broken answer cannot make us refresh on every send).
pub const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(3600);
pub const TOKEN_LIFETIME_MIN: Duration = Duration::from_secs(60);
/// FCM answers a send in tens of milliseconds; five seconds means it is in trouble, and the send
/// is retried later. It bounds how long a batch holds its claims (see the dispatcher).
pub const FCM_SEND_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// The token endpoint gets longer: every send waits for it, but only once an hour.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
/// After the token endpoint failed, sends fail fast for this long instead of each asking again.
pub const TOKEN_FAILURE_HOLD: Duration = Duration::from_secs(1);
/// Answers are read up to this size: FCM's errors are a few hundred bytes.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;
/// Idle connections kept to FCM: as many as sends may be in flight (dispatcher bound). Over
/// HTTP/2 (production FCM) the sends share one connection and this only matters for HTTP/1.1.
pub const IDLE_CONNECTIONS_MAX: usize = 1024;
/// An HTTP/2 connection to FCM is pinged after this long without frames, and dropped when the
/// ping is not answered within [`H2_KEEPALIVE_TIMEOUT`]: every send in flight shares it, so a
/// silently dead connection must be found faster than each send's timeout would.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(H2_KEEPALIVE_TIMEOUT.as_millis() < H2_KEEPALIVE_INTERVAL.as_millis());

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("service account key file: {0}")]
    KeyFile(String),
    #[error("http client: {0}")]
    Http(#[from] crate::tls::ClientError),
}

/// The fields of Google's service-account key file that the client uses.
#[derive(Debug, Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    project_id: String,
    private_key_id: String,
    private_key: String,
    client_email: String,
}

/// A service account, ready to sign assertions.
#[derive(Clone)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    private_key_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads a key file as the Google Cloud console downloads it (`private_key` a PKCS#8 PEM).
    ///
    /// # Errors
    /// [`CredentialsError::KeyFile`] naming what is wrong (never the key itself).
    pub fn from_json(json: &str) -> Result<Self, CredentialsError> {
        let bad = |what: String| CredentialsError::KeyFile(what);
        let file: KeyFile = serde_json::from_str(json).map_err(|error| bad(error.to_string()))?;
        if file.kind != "service_account" {
            return Err(bad(format!("type is {:?}, not service_account", file.kind)));
        }
        if file.project_id.is_empty()
            || !file
                .project_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        {
            return Err(bad("project_id is not a project id".to_owned()));
        }
        // jsonwebtoken's PEM reader takes the PKCS#8 block Google writes (and PKCS#1); its errors
        // name the format, never the key.
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|error| bad(format!("private_key is not an RSA PKCS#8 PEM: {error}")))?;
        let account = Self {
            project_id: file.project_id,
            client_email: file.client_email,
            private_key_id: file.private_key_id,
            key,
        };
        // A key that cannot sign is found at start, not at the first send.
        account
            .assertion(0)
            .map_err(|_| bad("private_key cannot sign RS256".to_owned()))?;
        Ok(account)
    }

    /// The signed assertion of the JWT bearer grant, issued at `now_seconds`.
    fn assertion(&self, now_seconds: i64) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.private_key_id.clone());
        let claims = Claims {
            iss: &self.client_email,
            scope: FIREBASE_MESSAGING_SCOPE,
            aud: GOOGLE_TOKEN_URL,
            iat: now_seconds,
            exp: now_seconds + ASSERTION_LIFETIME_SECONDS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|error| error.to_string())
    }
}

/// Where the client sends, and as whom.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// FCM's base URL ([`FCM_API_URL_DEFAULT`], or the sandbox's `…/fcm`).
    pub api_url: String,
    /// The token endpoint ([`GOOGLE_TOKEN_URL`], or the sandbox's `…/fcm/token`).
    pub token_url: String,
    pub account: ServiceAccount,
    pub send_timeout: Duration,
    /// Whom the client trusts over HTTPS.
    pub tls: crate::tls::Trust,
}

/// How long a token of `expires_in` may be used before it is replaced: its lifetime (bounded)
/// less [`TOKEN_REFRESH_MARGIN`], but at least half of it.
#[must_use]
pub fn token_refresh_after(expires_in: Duration) -> Duration {
    let lifetime = expires_in.clamp(TOKEN_LIFETIME_MIN, TOKEN_LIFETIME_MAX);
    lifetime
        .saturating_sub(TOKEN_REFRESH_MARGIN)
        .max(lifetime / 2)
}

#[derive(Debug, Clone)]
struct CachedToken {
    token: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

struct Inner {
    http: reqwest::Client,
    send_url: String,
    token_url: String,
    account: ServiceAccount,
    token: RwLock<Option<CachedToken>>,
    /// Held while a token is fetched: one fetch at a time, the others wait for its result.
    refreshing: tokio::sync::Mutex<()>,
    /// The token endpoint's last failure, and until when sends fail fast because of it.
    failed: Mutex<Option<(Instant, String)>>,
}

/// The FCM client; cheap to clone (one connection pool and token cache).
#[derive(Clone)]
pub struct FcmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FcmClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FcmClient")
            .field("send_url", &self.inner.send_url)
            .finish_non_exhaustive()
    }
}

fn now_unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Reads at most [`ANSWER_BYTES_MAX`] of a body.
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = ANSWER_BYTES_MAX.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ANSWER_BYTES_MAX {
            break;
        }
    }
    Ok(body)
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl FcmClient {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: FcmConfig) -> Result<Self, CredentialsError> {
        let http = config
            .tls
            .http(crate::tls::HttpVersions::Http2Preferred)?
            .timeout(config.send_timeout)
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .http2_keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
            .build()
            .map_err(crate::tls::ClientError::from)?;
        let api_url = config.api_url.trim_end_matches('/');
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                send_url: format!(
                    "{api_url}/v1/projects/{}/messages:send",
                    config.account.project_id
                ),
                token_url: config.token_url,
                account: config.account,
                token: RwLock::new(None),
                refreshing: tokio::sync::Mutex::new(()),
                failed: Mutex::new(None),
            }),
        })
    }

    /// The project the client sends for.
    #[must_use]
    pub fn project_id(&self) -> &str {
        &self.inner.account.project_id
    }

    fn cached(&self, fresh_only: bool) -> Option<Arc<str>> {
        let now = Instant::now();
        let cached = self
            .inner
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        cached
            .as_ref()
            .filter(|cached| {
                if fresh_only {
                    now < cached.refresh_at
                } else {
                    now < cached.expires_at
                }
            })
            .map(|cached| Arc::clone(&cached.token))
    }

    /// Forgets `token` if it is the cached one (FCM refused it).
    fn forget(&self, token: &str) {
        let mut cached = self
            .inner
            .token
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cached
            .as_ref()
            .is_some_and(|cached| &*cached.token == token)
        {
            *cached = None;
        }
    }

    /// A valid access token: the cached one while it is fresh, otherwise a new one (one fetch at
    /// a time; a token that is stale but not expired is still used if the fetch fails).
    async fn access_token(&self) -> Result<Arc<str>, String> {
        if let Some(token) = self.cached(true) {
            return Ok(token);
        }
        let _refreshing = self.inner.refreshing.lock().await;
        if let Some(token) = self.cached(true) {
            return Ok(token);
        }
        if let Some((until, error)) = self
            .inner
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            && Instant::now() < *until
        {
            return self.cached(false).ok_or_else(|| error.clone());
        }
        match self.fetch_token().await {
            Ok(answer) => {
                let now = Instant::now();
                let lifetime = Duration::from_secs(answer.expires_in)
                    .clamp(TOKEN_LIFETIME_MIN, TOKEN_LIFETIME_MAX);
                let token: Arc<str> = answer.access_token.into();
                *self
                    .inner
                    .token
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(CachedToken {
                    token: Arc::clone(&token),
                    refresh_at: now + token_refresh_after(lifetime),
                    expires_at: now + lifetime,
                });
                *self
                    .inner
                    .failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                Ok(token)
            }
            Err(error) => {
                tracing::warn!(%error, "the FCM token endpoint failed");
                *self
                    .inner
                    .failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now() + TOKEN_FAILURE_HOLD, error.clone()));
                self.cached(false).ok_or(error)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(project = %self.inner.account.project_id))]
    async fn fetch_token(&self) -> Result<TokenAnswer, String> {
        let assertion = self.inner.account.assertion(now_unix_seconds())?;
        let response = self
            .inner
            .http
            .post(&self.inner.token_url)
            .timeout(TOKEN_TIMEOUT)
            .form(&[
                ("grant_type", JWT_BEARER_GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|error| format!("token endpoint: {}", transport(&error)))?;
        let status = response.status();
        let body = bounded_body(response)
            .await
            .map_err(|error| format!("token endpoint: {error}"))?;
        if !status.is_success() {
            return Err(outcome::cut(&format!(
                "token endpoint answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body).map_err(|error| format!("token endpoint answer: {error}"))
    }

    /// Sends one `messages:send` body (`{"message": …}`, see [`super::message::send_body`]) and
    /// says what came of it. An access token FCM refuses is replaced and the message sent once
    /// more; a second refusal is retryable.
    #[tracing::instrument(skip_all)]
    pub async fn send(&self, body: bytes::Bytes) -> DeviceOutcome {
        let mut refreshed = false;
        loop {
            let token = match self.access_token().await {
                Ok(token) => token,
                Err(error) => {
                    return DeviceOutcome::Retry {
                        error: outcome::cut(&format!("access token: {error}")),
                        retry_after_ms: None,
                    };
                }
            };
            match self.send_once(&token, body.clone()).await {
                DeviceOutcome::Unauthenticated(error) if !refreshed => {
                    tracing::info!(%error, "FCM refused the access token: getting a new one");
                    self.forget(&token);
                    refreshed = true;
                }
                DeviceOutcome::Unauthenticated(error) => {
                    return DeviceOutcome::Retry {
                        error,
                        retry_after_ms: None,
                    };
                }
                outcome => return outcome,
            }
        }
    }

    async fn send_once(&self, token: &str, body: bytes::Bytes) -> DeviceOutcome {
        let answer = self
            .inner
            .http
            .post(&self.inner.send_url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(error) => {
                return DeviceOutcome::Retry {
                    error: outcome::cut(&transport(&error)),
                    retry_after_ms: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = outcome::retry_after_ms(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()),
        );
        match bounded_body(response).await {
            Ok(body) => outcome::classify(status, retry_after, &body),
            // The answer's head arrived: a success is a success, anything else is retried.
            Err(_) if (200..300).contains(&status) => DeviceOutcome::Delivered,
            Err(error) => DeviceOutcome::Retry {
                error: outcome::cut(&format!("transport: {status}: {error}")),
                retry_after_ms: retry_after,
            },
        }
    }
}

/// A failed call in words for `last_error` and the logs. A TLS failure (a certificate we do not
/// trust) is logged as an error: it will not pass by itself, though the send is retried.
fn transport(error: &reqwest::Error) -> String {
    let failure = crate::tls::TransportFailure::of(error);
    if failure.is_tls() {
        tracing::error!(%failure, "the TLS handshake with FCM failed");
    }
    failure.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_replaced_five_minutes_before_it_expires_or_halfway_if_short_lived() {
        assert_eq!(
            token_refresh_after(Duration::from_secs(3599)),
            Duration::from_secs(3299)
        );
        assert_eq!(
            token_refresh_after(Duration::from_secs(400)),
            Duration::from_secs(200)
        );
        assert_eq!(
            token_refresh_after(Duration::from_secs(1)),
            Duration::from_secs(30)
        );
        assert_eq!(
            token_refresh_after(Duration::from_secs(86_400)),
            Duration::from_secs(3300)
        );
    }

    #[test]
    fn a_key_file_that_is_not_a_service_accounts_pkcs8_key_is_refused_without_echoing_it() {
        assert!(ServiceAccount::from_json("{}").is_err());
        let user = r#"{"type":"authorized_user","project_id":"p","private_key_id":"k",
            "private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "client_email":"a@b"}"#;
        assert!(ServiceAccount::from_json(user).is_err());
        let pkcs1 = user
            .replace("authorized_user", "service_account")
            .replace("PRIVATE KEY", "RSA PRIVATE KEY");
        let error = ServiceAccount::from_json(&pkcs1)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("PKCS#8") && !error.contains("AAAA"),
            "{error}"
        );
    }
}
