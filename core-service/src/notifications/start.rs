//! Starting the dispatcher from the configuration: the service account's key file (or, in dev
//! mode, the sandbox's served key), the FCM client, and the background task.

use std::{path::PathBuf, time::Duration};

use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{
    dispatcher::{Dispatcher, DispatcherSettings},
    fcm::{CredentialsError, FCM_SEND_TIMEOUT_DEFAULT, FcmClient, FcmConfig, ServiceAccount},
    outcome::Backoff,
};

/// Google's key files are about 2.3 KB; anything much larger is not one.
pub const KEY_FILE_BYTES_MAX: u64 = 64 * 1024;
/// The sandbox may start after the core (`./nene up` starts it first, tests may not): its key is
/// asked for again this often until it answers.
pub const SANDBOX_KEY_RETRY_INTERVAL: Duration = Duration::from_secs(2);

/// Where the service account's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `FCM_SERVICE_ACCOUNT_FILE`: the key file downloaded from the Google Cloud console.
    File(PathBuf),
    /// Dev mode only: the sandbox's `GET /sandbox/fcm/service-account.json`.
    Url(String),
}

/// The notification settings of `config.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    /// `None`: FCM is not configured; nothing is pushed and notifications stay PENDING (listed in
    /// the app, delivered once FCM is configured).
    pub key: Option<KeySource>,
    pub api_url: String,
    pub token_url: String,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The schedule's key prefix in Redis (`NOTIFY_REDIS_PREFIX`): one per deployment sharing a
    /// Redis.
    pub redis_prefix: String,
    /// Whom FCM's and the token endpoint's certificates must chain to.
    pub tls: crate::tls::Trust,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}: {1}")]
    KeyFile(PathBuf, String),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

fn read_key_file(path: &PathBuf) -> Result<String, StartError> {
    let bad = |what: String| StartError::KeyFile(path.clone(), what);
    let size = std::fs::metadata(path)
        .map_err(|error| bad(error.to_string()))?
        .len();
    if size > KEY_FILE_BYTES_MAX {
        return Err(bad(format!("{size} bytes is not a key file")));
    }
    std::fs::read_to_string(path).map_err(|error| bad(error.to_string()))
}

async fn fetch_key(url: &str, tls: &crate::tls::Trust) -> Result<String, String> {
    let response = tls
        .http(crate::tls::HttpVersions::Http1)
        .map_err(|error| error.to_string())?
        .build()
        .map_err(|error| error.to_string())?
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.text().await.map_err(|error| error.to_string())
}

fn dispatcher(
    settings: &NotificationSettings,
    json: &str,
    db: PgPool,
    redis: Option<redis::Client>,
) -> Result<Dispatcher, StartError> {
    let fcm = FcmClient::new(FcmConfig {
        api_url: settings.api_url.clone(),
        token_url: settings.token_url.clone(),
        account: ServiceAccount::from_json(json)?,
        send_timeout: FCM_SEND_TIMEOUT_DEFAULT,
        tls: settings.tls.clone(),
    })?;
    Ok(Dispatcher::new(
        db,
        fcm,
        redis,
        DispatcherSettings {
            backoff: Backoff {
                base_ms: settings.retry_base_ms,
                max_ms: settings.retry_max_ms,
            },
            redis_prefix: settings.redis_prefix.clone(),
            ..DispatcherSettings::default()
        },
    ))
}

/// Starts the dispatcher in the background, if FCM is configured, until `stop`: the returned task
/// ends once the dispatcher has finished its sends in flight and given back the rest.
///
/// # Errors
/// The key file cannot be read or is not a service account's key: a misconfigured production
/// core stops at start rather than queueing notifications it can never send.
pub fn spawn(
    settings: &NotificationSettings,
    db: PgPool,
    redis: Option<redis::Client>,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, StartError> {
    match &settings.key {
        None => {
            tracing::warn!(
                "FCM is not configured (FCM_SERVICE_ACCOUNT_FILE): notifications stay pending"
            );
            Ok(None)
        }
        Some(KeySource::File(path)) => {
            let json = read_key_file(path)?;
            let dispatcher = dispatcher(settings, &json, db, redis)?;
            tracing::info!(key = %path.display(), "notification dispatcher started");
            Ok(Some(tokio::spawn(
                dispatcher.run_until(stop.cancelled_owned()),
            )))
        }
        Some(KeySource::Url(url)) => {
            let (settings, url) = (settings.clone(), url.clone());
            Ok(Some(tokio::spawn(async move {
                while !stop.is_cancelled() {
                    match fetch_key(&url, &settings.tls).await {
                        Ok(json) => match dispatcher(&settings, &json, db.clone(), redis.clone()) {
                            Ok(dispatcher) => {
                                tracing::info!(%url, "notification dispatcher started");
                                dispatcher.run_until(stop.cancelled_owned()).await;
                                return;
                            }
                            Err(error) => {
                                tracing::error!(%error, %url, "the sandbox's key is unusable");
                                return;
                            }
                        },
                        Err(error) => {
                            tracing::warn!(%error, %url, "the sandbox's FCM key is not there yet");
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = tokio::time::sleep(SANDBOX_KEY_RETRY_INTERVAL) => {}
                            }
                        }
                    }
                }
                tracing::info!("stopped before the sandbox's FCM key arrived");
            })))
        }
    }
}
