//! The OAuth 2.0 / OpenID Connect client for Kakao, Naver and Google: the authorize URL, the code
//! exchange (form-encoded, PKCE verifier), `id_token` verification against the provider's JWKS
//! (RS256 pinned, issuer, audience, expiry, nonce), and the provider's user id.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One call to a provider; the whole callback has [`PROVIDER_DEADLINE`]. Both stay under the
/// edge's own bound on a core call, so a provider that hangs becomes our clear 502, not the
/// edge's timeout.
pub const PROVIDER_CALL_TIMEOUT: Duration = Duration::from_millis(2_000);
pub const PROVIDER_DEADLINE: Duration = Duration::from_millis(3_500);
const _: () = assert!(
    PROVIDER_CALL_TIMEOUT.as_millis() < PROVIDER_DEADLINE.as_millis()
        && PROVIDER_DEADLINE.as_millis() < nene_domain::limits::CORE_TIMEOUT_MS as u128
);
/// A provider's published keys are reused this long; an unknown `kid` refetches sooner (keys
/// rotate), at most once per [`JWKS_REFETCH_MIN`].
pub const JWKS_TTL: Duration = Duration::from_secs(3_600);
pub const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Tolerated clock difference with the provider when checking `exp`.
pub const ID_TOKEN_LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "auth_provider", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Kakao,
    Naver,
    Google,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Kakao, Provider::Naver, Provider::Google];

    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        Provider::ALL.into_iter().find(|p| p.as_str() == raw)
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Kakao => "kakao",
            Provider::Naver => "naver",
            Provider::Google => "google",
        }
    }
}

/// Where a provider lives and how it speaks.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorize: String,
    pub token: String,
    pub userinfo: String,
    /// OpenID Connect providers: their JWKS and issuer. Naver has neither.
    pub oidc: Option<(String, &'static str)>,
    pub scope: &'static str,
}

impl Endpoints {
    /// The provider's real endpoints, or the sandbox's (which mirrors each real host under a
    /// prefix) when `sandbox` is given.
    #[must_use]
    pub fn of(provider: Provider, sandbox: Option<&str>) -> Self {
        let at = |real_host: &str, sandbox_prefix: &str, path: &str| match sandbox {
            Some(base) => format!("{}/{sandbox_prefix}{path}", base.trim_end_matches('/')),
            None => format!("https://{real_host}{path}"),
        };
        match provider {
            Provider::Kakao => Endpoints {
                authorize: at("kauth.kakao.com", "kakao", "/oauth/authorize"),
                token: at("kauth.kakao.com", "kakao", "/oauth/token"),
                userinfo: at("kapi.kakao.com", "kakao", "/v2/user/me"),
                oidc: Some((
                    at("kauth.kakao.com", "kakao", "/.well-known/jwks.json"),
                    "https://kauth.kakao.com",
                )),
                scope: "openid profile_nickname",
            },
            Provider::Naver => Endpoints {
                authorize: at("nid.naver.com", "naver", "/oauth2.0/authorize"),
                token: at("nid.naver.com", "naver", "/oauth2.0/token"),
                userinfo: at("openapi.naver.com", "naver", "/v1/nid/me"),
                oidc: None,
                scope: "",
            },
            Provider::Google => Endpoints {
                authorize: at("accounts.google.com", "google", "/o/oauth2/v2/auth"),
                token: at("oauth2.googleapis.com", "google", "/token"),
                userinfo: at("openidconnect.googleapis.com", "google", "/v1/userinfo"),
                oidc: Some((
                    at("www.googleapis.com", "google", "/oauth2/v3/certs"),
                    "https://accounts.google.com",
                )),
                scope: "openid email profile",
            },
        }
    }
}

/// Our registration at one provider. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct ProviderClient {
    pub provider: Provider,
    pub client_id: String,
    pub client_secret: String,
    pub endpoints: Endpoints,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient")
            .field("provider", &self.provider)
            .field("client_id", &self.client_id)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// What the login promised the provider, kept until the callback.
#[derive(Debug, Clone)]
pub struct LoginSecrets {
    pub state: String,
    pub code_verifier: String,
    pub nonce: String,
}

impl LoginSecrets {
    /// Fresh secrets from 3 × 256 random bits.
    #[must_use]
    pub fn generate() -> Self {
        LoginSecrets {
            state: random_token(),
            code_verifier: random_token(),
            nonce: random_token(),
        }
    }
}

/// 256 random bits, base64url: 43 characters, as PKCE wants for a verifier.
#[must_use]
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    bytes[..16].copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
    bytes[16..].copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// PKCE S256: `BASE64URL(SHA256(verifier))`.
#[must_use]
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl ProviderClient {
    /// The URL the user's browser is sent to.
    #[must_use]
    pub fn authorize_url(&self, redirect_uri: &str, secrets: &LoginSecrets) -> String {
        let challenge = code_challenge(&secrets.code_verifier);
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("state", secrets.state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        if self.endpoints.oidc.is_some() {
            params.push(("nonce", secrets.nonce.as_str()));
        }
        if !self.endpoints.scope.is_empty() {
            params.push(("scope", self.endpoints.scope));
        }
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        format!("{}?{query}", self.endpoints.authorize)
    }
}

/// How the provider let us down.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Down, slow, or answering 5xx: a 502 for the client, try again later.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the code (used, expired, wrong verifier, …).
    #[error("provider refused: {0}")]
    Refused(String),
    /// The answer is not trustworthy: a bad signature, issuer, audience, expiry or nonce.
    #[error("identity rejected: {0}")]
    Rejected(String),
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kid: String,
    n: String,
    e: String,
    #[serde(default)]
    kty: String,
}

#[derive(Debug, Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
}

/// An RSA public key's modulus and exponent (base64url), by `kid`.
type PublishedKeys = HashMap<String, (String, String)>;

/// Published keys per provider, with when they were fetched.
#[derive(Default)]
pub struct JwksCache {
    keys: Mutex<HashMap<Provider, (Instant, PublishedKeys)>>,
}

/// The provider's user id, from a verified `id_token` or from the user-info endpoint.
///
/// # Errors
/// [`ProviderError`].
pub async fn identify(
    http: &reqwest::Client,
    jwks: &JwksCache,
    client: &ProviderClient,
    code: &str,
    redirect_uri: &str,
    secrets: &LoginSecrets,
) -> Result<String, ProviderError> {
    let work = async {
        let answer = exchange(http, client, code, redirect_uri, secrets).await?;
        match &client.endpoints.oidc {
            Some((jwks_url, issuer)) => {
                let id_token = answer
                    .id_token
                    .ok_or_else(|| ProviderError::Rejected("no id_token".to_owned()))?;
                verify_id_token(
                    http,
                    jwks,
                    client,
                    jwks_url,
                    issuer,
                    &id_token,
                    &secrets.nonce,
                )
                .await
            }
            None => {
                let access_token = answer
                    .access_token
                    .ok_or_else(|| ProviderError::Refused("no access_token".to_owned()))?;
                naver_user_id(http, &client.endpoints.userinfo, &access_token).await
            }
        }
    };
    tokio::time::timeout(PROVIDER_DEADLINE, work)
        .await
        .map_err(|_| ProviderError::Unavailable("deadline passed".to_owned()))?
}

async fn exchange(
    http: &reqwest::Client,
    client: &ProviderClient,
    code: &str,
    redirect_uri: &str,
    secrets: &LoginSecrets,
) -> Result<TokenAnswer, ProviderError> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client.client_id.as_str()),
        ("client_secret", client.client_secret.as_str()),
        ("redirect_uri", redirect_uri),
        ("code", code),
        ("code_verifier", secrets.code_verifier.as_str()),
    ];
    if client.provider == Provider::Naver {
        form.push(("state", secrets.state.as_str()));
    }
    let response = http
        .post(&client.endpoints.token)
        .timeout(PROVIDER_CALL_TIMEOUT)
        .form(&form)
        .send()
        .await
        .map_err(|error| ProviderError::Unavailable(transport(&error)))?;
    let status = response.status();
    if status.is_server_error() {
        return Err(ProviderError::Unavailable(format!(
            "token endpoint {status}"
        )));
    }
    let answer: TokenAnswer = response
        .json()
        .await
        .map_err(|error| ProviderError::Unavailable(format!("token answer: {error}")))?;
    // Naver reports errors with a 200.
    if let Some(error) = &answer.error {
        return Err(ProviderError::Refused(format!(
            "{error}: {}",
            answer.error_description.as_deref().unwrap_or_default()
        )));
    }
    if !status.is_success() {
        return Err(ProviderError::Refused(format!("token endpoint {status}")));
    }
    Ok(answer)
}

async fn verify_id_token(
    http: &reqwest::Client,
    jwks: &JwksCache,
    client: &ProviderClient,
    jwks_url: &str,
    issuer: &str,
    id_token: &str,
    nonce: &str,
) -> Result<String, ProviderError> {
    let header =
        decode_header(id_token).map_err(|error| ProviderError::Rejected(error.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(ProviderError::Rejected(format!("alg {:?}", header.alg)));
    }
    let kid = header
        .kid
        .ok_or_else(|| ProviderError::Rejected("no kid".to_owned()))?;
    let (n, e) = jwks.key(http, client.provider, jwks_url, &kid).await?;
    let key = DecodingKey::from_rsa_components(&n, &e)
        .map_err(|error| ProviderError::Rejected(format!("jwk: {error}")))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = ID_TOKEN_LEEWAY_SECONDS;
    let claims = decode::<IdClaims>(id_token, &key, &validation)
        .map_err(|error| ProviderError::Rejected(error.to_string()))?
        .claims;
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(ProviderError::Rejected("nonce".to_owned()));
    }
    if claims.sub.is_empty() {
        return Err(ProviderError::Rejected("empty sub".to_owned()));
    }
    Ok(claims.sub)
}

impl JwksCache {
    async fn key(
        &self,
        http: &reqwest::Client,
        provider: Provider,
        url: &str,
        kid: &str,
    ) -> Result<(String, String), ProviderError> {
        let cached = self.lookup(provider, kid);
        match cached {
            Lookup::Found(key) => return Ok(key),
            Lookup::UnknownRecently => {
                return Err(ProviderError::Rejected(format!("unknown kid {kid}")));
            }
            Lookup::Fetch => {}
        }
        let response = http
            .get(url)
            .timeout(PROVIDER_CALL_TIMEOUT)
            .send()
            .await
            .map_err(|error| ProviderError::Unavailable(transport(&error)))?;
        if !response.status().is_success() {
            return Err(ProviderError::Unavailable(format!(
                "jwks {}",
                response.status()
            )));
        }
        let published: Jwks = response
            .json()
            .await
            .map_err(|error| ProviderError::Unavailable(format!("jwks: {error}")))?;
        let keys: PublishedKeys = published
            .keys
            .into_iter()
            .filter(|key| key.kty == "RSA")
            .map(|key| (key.kid, (key.n, key.e)))
            .collect();
        let found = keys.get(kid).cloned();
        if let Ok(mut cache) = self.keys.lock() {
            cache.insert(provider, (Instant::now(), keys));
        }
        found.ok_or_else(|| ProviderError::Rejected(format!("unknown kid {kid}")))
    }

    fn lookup(&self, provider: Provider, kid: &str) -> Lookup {
        let Ok(cache) = self.keys.lock() else {
            return Lookup::Fetch;
        };
        match cache.get(&provider) {
            Some((fetched, keys)) if fetched.elapsed() < JWKS_TTL => match keys.get(kid) {
                Some(key) => Lookup::Found(key.clone()),
                None if fetched.elapsed() < JWKS_REFETCH_MIN => Lookup::UnknownRecently,
                None => Lookup::Fetch,
            },
            _ => Lookup::Fetch,
        }
    }
}

enum Lookup {
    Found((String, String)),
    UnknownRecently,
    Fetch,
}

#[derive(Debug, Deserialize)]
struct NaverMe {
    resultcode: String,
    #[serde(default)]
    response: Option<NaverProfile>,
}

#[derive(Debug, Deserialize)]
struct NaverProfile {
    id: String,
}

async fn naver_user_id(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<String, ProviderError> {
    let response = http
        .get(url)
        .timeout(PROVIDER_CALL_TIMEOUT)
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|error| ProviderError::Unavailable(transport(&error)))?;
    if response.status().is_server_error() {
        return Err(ProviderError::Unavailable(format!(
            "user info {}",
            response.status()
        )));
    }
    let me: NaverMe = response
        .json()
        .await
        .map_err(|error| ProviderError::Unavailable(format!("user info: {error}")))?;
    match (me.resultcode.as_str(), me.response) {
        ("00", Some(profile)) if !profile.id.is_empty() => Ok(profile.id),
        (code, _) => Err(ProviderError::Refused(format!("naver resultcode {code}"))),
    }
}

/// The kind of failure, in words safe to log. A TLS failure (a certificate we do not trust) is
/// logged as an error: it will not pass by itself.
fn transport(error: &reqwest::Error) -> String {
    match crate::tls::TransportFailure::of(error) {
        failure @ crate::tls::TransportFailure::Tls(_) => {
            tracing::error!(%failure, "the TLS handshake with a login provider failed");
            failure.to_string()
        }
        // reqwest's own words may carry the URL; the kind is enough.
        crate::tls::TransportFailure::Other(_) => "transport failed".to_owned(),
        failure => failure.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_the_rfc_7636_example() {
        // RFC 7636, appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn login_secrets_are_long_random_and_distinct() {
        let a = LoginSecrets::generate();
        let b = LoginSecrets::generate();
        assert_eq!(a.code_verifier.len(), 43);
        assert_ne!(a.state, b.state);
        assert_ne!(a.state, a.nonce);
    }

    #[test]
    fn the_sandbox_mirrors_each_real_host_under_its_prefix() {
        let real = Endpoints::of(Provider::Kakao, None);
        assert_eq!(real.userinfo, "https://kapi.kakao.com/v2/user/me");
        let sandbox = Endpoints::of(Provider::Kakao, Some("http://127.0.0.1:8090/"));
        assert_eq!(sandbox.userinfo, "http://127.0.0.1:8090/kakao/v2/user/me");
        assert!(Endpoints::of(Provider::Naver, None).oidc.is_none());
    }
}
