//! Sign-in: the login states behind `start`/`callback`, users and their provider identities,
//! rotating refresh tokens in families, and revocation. The edge mints the access JWTs; their
//! `jti` is `{family}.{random}`, so revoking a family (logout, refresh-token reuse) revokes every
//! access token issued in it, which [`is_revoked`] answers.

pub mod oauth;
pub mod users;

use std::{sync::Arc, time::Duration};

use nene_domain::{
    ErrorCode,
    pkce::{CodeChallenge, CodeVerifier, PkceError},
};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use oauth::{JwksCache, LoginSecrets, Provider, ProviderClient, ProviderError};

/// A signed-in user and their new session (`Session`) and a rotated one (`Rotated`): the answers
/// of `AUTH_CALLBACK` and `AUTH_REFRESH` as they go on the wire.
pub use nene_domain::internal_api::auth::{Rotated, Session};

/// A login has this long between `start` and `callback`: the user is at the provider's consent
/// screen meanwhile.
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(600);
/// A refresh token lives this long unless rotated first.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3_600);
/// Login attempts (start and callback) per client IP per minute: a person retries a few times; a
/// script trying codes or states is stopped.
pub const LOGINS_PER_IP_PER_MINUTE: i32 = 30;
/// Logins per provider identity per minute: one account cannot mint sessions in bulk.
pub const LOGINS_PER_IDENTITY_PER_MINUTE: i32 = 10;
/// Default nicknames are tried this many times before giving up (each try is random).
const DEFAULT_NICKNAME_TRIES_MAX: u32 = 8;

/// Sign-in settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Exactly the `redirect_uri`s a login may return to: no open redirect.
    pub redirect_uris: Vec<String>,
    pub providers: Vec<ProviderClient>,
    /// Whom the calls to the providers trust over HTTPS.
    pub tls: crate::tls::Trust,
}

/// What sign-in needs at run time.
#[derive(Clone)]
pub struct Auth {
    pub db: PgPool,
    pub config: AuthConfig,
    pub http: reqwest::Client,
    pub jwks: Arc<JwksCache>,
}

impl Auth {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(db: PgPool, config: AuthConfig) -> Result<Self, crate::tls::ClientError> {
        let http = config
            .tls
            .http(crate::tls::HttpVersions::Http1)?
            .timeout(oauth::PROVIDER_CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Auth {
            db,
            config,
            http,
            jwks: Arc::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown or unconfigured provider")]
    UnknownProvider,
    #[error("redirect_uri not in the allow-list")]
    RedirectUriNotAllowed,
    #[error("unknown, used or expired login state")]
    LoginState,
    #[error("code_challenge: {0}")]
    CodeChallenge(PkceError),
    /// The callback did not carry the verifier of the challenge its login started with: the code
    /// and state may have reached someone other than the client that started the login.
    #[error("the callback's code_verifier is missing or does not answer the login's challenge")]
    ClientNotVerified,
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    #[error("refresh token unknown, expired or revoked")]
    RefreshTokenInvalid,
    #[error("refresh token reused: family revoked")]
    RefreshTokenReused,
    #[error("rate limited")]
    RateLimited,
    #[error("profile: {0}")]
    Profile(#[from] nene_domain::users::ProfileError),
    #[error("nickname taken")]
    NicknameTaken,
    #[error("device id or push token out of bounds")]
    InvalidDevice,
    #[error("no such user")]
    UnknownUser,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl AuthError {
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::UnknownProvider | AuthError::UnknownUser => ErrorCode::NotFound,
            AuthError::RedirectUriNotAllowed => ErrorCode::RedirectUriNotAllowed,
            // The same code as an unknown state, on purpose: the remedy is the same (the state is
            // spent; start again), and a holder of an intercepted code and state learns nothing
            // from the answer about which of the two failed.
            AuthError::LoginState | AuthError::ClientNotVerified => ErrorCode::LoginStateInvalid,
            AuthError::CodeChallenge(_) => ErrorCode::ValidationFailed,
            AuthError::Provider(ProviderError::Unavailable(_)) => ErrorCode::ProviderUnavailable,
            AuthError::Provider(ProviderError::Refused(_)) => ErrorCode::LoginStateInvalid,
            AuthError::Provider(ProviderError::Rejected(_)) => ErrorCode::IdentityRejected,
            AuthError::RefreshTokenInvalid => ErrorCode::Unauthorized,
            AuthError::RefreshTokenReused => ErrorCode::RefreshTokenReused,
            AuthError::RateLimited => ErrorCode::RateLimited,
            AuthError::Profile(_) | AuthError::InvalidDevice => ErrorCode::ValidationFailed,
            AuthError::NicknameTaken => ErrorCode::NicknameTaken,
            AuthError::Database(_) => ErrorCode::Internal,
        }
    }
}

impl Auth {
    fn client(&self, provider: &str) -> Result<&ProviderClient, AuthError> {
        let provider = Provider::parse(provider).ok_or(AuthError::UnknownProvider)?;
        self.config
            .providers
            .iter()
            .find(|client| client.provider == provider)
            .ok_or(AuthError::UnknownProvider)
    }
}

/// Counts one hit on `bucket` in the current minute; refuses past `limit`.
async fn rate_limit(db: &PgPool, bucket: &str, limit: i32) -> Result<(), AuthError> {
    let hits: i32 = sqlx::query_scalar(
        "INSERT INTO rate_limit_windows (bucket, window_start, hits) \
         VALUES ($1, date_trunc('minute', now()), 1) \
         ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1 \
         RETURNING hits",
    )
    .bind(bucket)
    .fetch_one(db)
    .await?;
    if hits > limit {
        tracing::warn!(bucket, hits, "login rate limit reached");
        return Err(AuthError::RateLimited);
    }
    Ok(())
}

/// Starts a login: checks the redirect URI, stores state, our PKCE verifier (for the provider),
/// the nonce and the client's `code_challenge` (for the callback), and answers the provider's
/// authorize URL.
///
/// # Errors
/// `UnknownProvider`, `RedirectUriNotAllowed`, `RateLimited`, `Database`.
pub async fn start(
    auth: &Auth,
    provider: &str,
    redirect_uri: &str,
    code_challenge: &CodeChallenge,
    client_ip: &str,
) -> Result<String, AuthError> {
    let client = auth.client(provider)?;
    if !auth
        .config
        .redirect_uris
        .iter()
        .any(|uri| uri == redirect_uri)
    {
        return Err(AuthError::RedirectUriNotAllowed);
    }
    rate_limit(
        &auth.db,
        &format!("ip:{client_ip}"),
        LOGINS_PER_IP_PER_MINUTE,
    )
    .await?;
    let secrets = LoginSecrets::generate();
    sqlx::query(
        "INSERT INTO auth_states \
             (state, provider, redirect_uri, code_verifier, nonce, client_code_challenge, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
    )
    .bind(&secrets.state)
    .bind(client.provider)
    .bind(redirect_uri)
    .bind(&secrets.code_verifier)
    .bind(&secrets.nonce)
    .bind(code_challenge.as_base64url())
    .bind(LOGIN_STATE_TTL.as_secs_f64())
    .execute(&auth.db)
    .await?;
    Ok(client.authorize_url(redirect_uri, &secrets))
}

/// Finishes a login: consumes the state (once, before it expires), checks the client's
/// `code_verifier` against the challenge the login started with, exchanges the code, verifies the
/// identity, finds or creates the user, and opens a refresh family.
///
/// The order is the point: the state is spent first, so a wrong verifier burns it (no second
/// guess with the same code and state), and the provider is called only for the client that
/// started the login.
///
/// # Errors
/// `LoginState`, `ClientNotVerified` (a missing, malformed or wrong verifier), `Provider`
/// (unavailable → 502, refused, or rejected identity), `RateLimited`.
#[tracing::instrument(skip(auth, code, state, client_verifier))]
pub async fn callback(
    auth: &Auth,
    provider: &str,
    code: &str,
    state: &str,
    client_verifier: Option<&str>,
    client_ip: &str,
) -> Result<Session, AuthError> {
    let client = auth.client(provider)?;
    rate_limit(
        &auth.db,
        &format!("ip:{client_ip}"),
        LOGINS_PER_IP_PER_MINUTE,
    )
    .await?;
    let consumed: Option<(String, String, String, String)> = sqlx::query_as(
        "UPDATE auth_states SET used_at = now() \
         WHERE state = $1 AND provider = $2 AND used_at IS NULL AND expires_at > now() \
         RETURNING redirect_uri, code_verifier, nonce, client_code_challenge",
    )
    .bind(state)
    .bind(client.provider)
    .fetch_optional(&auth.db)
    .await?;
    let (redirect_uri, code_verifier, nonce, client_challenge) =
        consumed.ok_or(AuthError::LoginState)?;
    // A stored challenge that does not parse (the schema's CHECK keeps its shape) answers no
    // verifier: refused, like a wrong one.
    let client_verified = CodeChallenge::parse_s256(&client_challenge)
        .ok()
        .zip(client_verifier.and_then(|raw| CodeVerifier::parse(raw).ok()))
        .is_some_and(|(challenge, verifier)| challenge.is_answered_by(&verifier));
    if !client_verified {
        // Never the verifier itself: only that the binding failed.
        tracing::warn!(
            provider = client.provider.as_str(),
            verifier_sent = client_verifier.is_some(),
            "login callback refused: the client's code_verifier does not answer the challenge"
        );
        return Err(AuthError::ClientNotVerified);
    }
    let secrets = LoginSecrets {
        state: state.to_owned(),
        code_verifier,
        nonce,
    };
    let provider_user_id = oauth::identify(
        &auth.http,
        &auth.jwks,
        client,
        code,
        &redirect_uri,
        &secrets,
    )
    .await
    .inspect_err(|error| {
        // Never the code, tokens or secrets: only what failed.
        tracing::warn!(provider = client.provider.as_str(), %error, "login failed");
    })?;
    rate_limit(
        &auth.db,
        &format!("identity:{}:{provider_user_id}", client.provider.as_str()),
        LOGINS_PER_IDENTITY_PER_MINUTE,
    )
    .await?;
    let mut tx = auth.db.begin().await?;
    let user = users::find_or_create_in_tx(&mut tx, client.provider, &provider_user_id).await?;
    let (family, refresh_token) = open_family_in_tx(&mut tx, &user.id).await?;
    tx.commit().await?;
    Ok(Session {
        user,
        family: family.to_string(),
        refresh_token,
        refresh_expires_in: REFRESH_TOKEN_TTL.as_secs(),
    })
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

async fn open_family_in_tx(
    conn: &mut PgConnection,
    user: &str,
) -> Result<(Uuid, String), AuthError> {
    let family = Uuid::now_v7();
    sqlx::query("INSERT INTO auth_families (id, user_id) VALUES ($1, $2)")
        .bind(family)
        .bind(user)
        .execute(&mut *conn)
        .await?;
    let token = issue_refresh_in_tx(conn, family).await?;
    Ok((family, token))
}

async fn issue_refresh_in_tx(conn: &mut PgConnection, family: Uuid) -> Result<String, AuthError> {
    let token = oauth::random_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_sha256, family_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
    )
    .bind(token_hash(&token))
    .bind(family)
    .bind(REFRESH_TOKEN_TTL.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(token)
}

/// Rotates a refresh token within its family. A token used before revokes the whole family:
/// either the user or a thief holds a copy, and we cannot tell which.
///
/// # Errors
/// `RefreshTokenInvalid` (unknown, expired, revoked family), `RefreshTokenReused`.
pub async fn refresh(db: &PgPool, refresh_token: &str) -> Result<Rotated, AuthError> {
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, bool, bool, String)> = sqlx::query_as(
        "SELECT t.family_id, t.used_at IS NOT NULL, t.expires_at <= now(), f.user_id \
         FROM refresh_tokens t JOIN auth_families f ON f.id = t.family_id \
         WHERE t.token_sha256 = $1 AND f.revoked_at IS NULL FOR UPDATE OF t, f",
    )
    .bind(token_hash(refresh_token))
    .fetch_optional(&mut *tx)
    .await?;
    let (family, used, expired, user_id) = row.ok_or(AuthError::RefreshTokenInvalid)?;
    if used {
        revoke_family_in_tx(&mut tx, family, "refresh token reused").await?;
        tx.commit().await?;
        tracing::warn!(%family, "refresh token reuse: family revoked");
        return Err(AuthError::RefreshTokenReused);
    }
    if expired {
        return Err(AuthError::RefreshTokenInvalid);
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_sha256 = $1")
        .bind(token_hash(refresh_token))
        .execute(&mut *tx)
        .await?;
    let token = issue_refresh_in_tx(&mut tx, family).await?;
    tx.commit().await?;
    Ok(Rotated {
        user_id,
        family: family.to_string(),
        refresh_token: token,
        refresh_expires_in: REFRESH_TOKEN_TTL.as_secs(),
    })
}

async fn revoke_family_in_tx(
    conn: &mut PgConnection,
    family: Uuid,
    reason: &str,
) -> Result<(), AuthError> {
    sqlx::query(
        "UPDATE auth_families SET revoked_at = now(), revoked_reason = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Login states are kept this long past their expiry (a replay is refused either way: an unknown
/// state is as invalid as a used one), rate-limit windows this long past their minute.
pub const LOGIN_STATE_KEPT_SECONDS: i64 = 86_400;
pub const RATE_LIMIT_WINDOW_KEPT_SECONDS: i64 = 3_600;

/// Removes what sign-in no longer needs, at most `batch` rows of each kind: expired login states,
/// old rate-limit windows, revoked access tokens past their expiry (they would be refused as
/// expired anyway). Returns how many rows it removed.
///
/// # Errors
/// `Database`.
pub async fn purge_expired(db: &PgPool, batch: i64) -> Result<u64, AuthError> {
    let mut removed = 0;
    for statement in [
        "DELETE FROM auth_states WHERE state IN (SELECT state FROM auth_states \
             WHERE expires_at < now() - make_interval(secs => $2) LIMIT $1)",
        "DELETE FROM rate_limit_windows WHERE (bucket, window_start) IN \
             (SELECT bucket, window_start FROM rate_limit_windows \
              WHERE window_start < now() - make_interval(secs => $3) LIMIT $1)",
        "DELETE FROM revoked_access_tokens WHERE jti IN (SELECT jti FROM revoked_access_tokens \
             WHERE expires_at < now() LIMIT $1)",
    ] {
        removed += sqlx::query(statement)
            .bind(batch)
            .bind(LOGIN_STATE_KEPT_SECONDS as f64)
            .bind(RATE_LIMIT_WINDOW_KEPT_SECONDS as f64)
            .execute(db)
            .await?
            .rows_affected();
    }
    Ok(removed)
}

/// The refresh family an access token's `jti` names, if it names one.
#[must_use]
pub fn family_of(jti: &str) -> Option<Uuid> {
    jti.split_once('.')
        .and_then(|(family, _)| Uuid::parse_str(family).ok())
}

/// Logs out: revokes the family of the access token (so its refresh token and every access token
/// of the family stop working) and the token itself.
///
/// # Errors
/// `Database`.
pub async fn logout(
    db: &PgPool,
    user: &str,
    jti: &str,
    expires_at_unix_seconds: i64,
) -> Result<(), AuthError> {
    let mut tx = db.begin().await?;
    if let Some(family) = family_of(jti) {
        sqlx::query(
            "UPDATE auth_families SET revoked_at = now(), revoked_reason = 'logout' \
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, to_timestamp($2)) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at_unix_seconds as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether an access token with this `jti` was revoked (itself, or its family).
///
/// # Errors
/// `Database`.
pub async fn is_revoked(db: &PgPool, jti: &str) -> Result<bool, AuthError> {
    let revoked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $1) \
             OR EXISTS (SELECT 1 FROM auth_families WHERE id = $2 AND revoked_at IS NOT NULL)",
    )
    .bind(jti)
    .bind(family_of(jti))
    .fetch_one(db)
    .await?;
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_names_its_family_before_the_dot() {
        let family = Uuid::now_v7();
        assert_eq!(family_of(&format!("{family}.abc")), Some(family));
        assert_eq!(family_of("jti-without-family"), None);
        assert_eq!(family_of("not-a-uuid.abc"), None);
    }
}
