//! Authorization codes and access tokens: what the authorize endpoint approved, the token
//! endpoint's checks when a code is exchanged, and the sessions user-info endpoints look up.
//!
//! A code is single-use: the first exchange that names it (at its own provider) uses it up,
//! whether or not the rest of the request passes, so a retry with the same code is refused as
//! the providers refuse it. Clients are not registered: any `client_id` is accepted, and the
//! token request must repeat the one the code was issued to. A `client_secret` is required where
//! the provider requires one (Naver, Google) and any non-empty value passes.

use std::collections::HashMap;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD},
};

use super::{
    params::Params,
    pkce::CodeChallenge,
    provider::{Provider, SandboxUser},
};

/// Kakao's codes live 10 minutes; Google's and Naver's are shorter in practice, but a test
/// never waits that long between the redirect and the exchange.
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// A test run issues hundreds of codes; the bound stops a load test from growing memory without
/// end. When full, expired entries go first, then the oldest.
pub const CODES_MAX: usize = 10_000;
/// Access tokens, bounded like codes for the same reason.
pub const ACCESS_TOKENS_MAX: usize = 10_000;

/// Kakao's access tokens last 6 hours and its token response says 21599.
pub const KAKAO_ACCESS_TOKEN_SECONDS: i64 = 21_599;
/// Kakao's refresh tokens last 2 months (`refresh_token_expires_in: 5183999`).
pub const KAKAO_REFRESH_TOKEN_SECONDS: i64 = 5_183_999;
/// Naver's access tokens last an hour (`expires_in: "3600"`).
pub const NAVER_ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Google's access tokens last an hour, announced one second short (`expires_in: 3599`).
pub const GOOGLE_ACCESS_TOKEN_SECONDS: i64 = 3599;

const _: () = assert!(CODE_TTL_MS > 0 && CODES_MAX > 0 && ACCESS_TOKENS_MAX > 0);

/// What the user approved at the authorize endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub provider: Provider,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// As requested, split on commas (Kakao's separator) and spaces.
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub user: SandboxUser,
    /// When the user approved: `auth_time`, and Kakao's `connected_at`.
    pub approved_at_ms: i64,
}

impl Grant {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

/// A token request's parameters, as the token endpoint reads them.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequest<'a> {
    pub grant_type: Option<&'a str>,
    pub code: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    pub state: Option<&'a str>,
}

impl<'a> TokenRequest<'a> {
    pub fn from_params(params: &'a Params) -> Self {
        Self {
            grant_type: params.get("grant_type"),
            code: params.get("code"),
            client_id: params.get("client_id"),
            client_secret: params.get("client_secret"),
            redirect_uri: params.get("redirect_uri"),
            code_verifier: params.get("code_verifier"),
            state: params.get("state"),
        }
    }
}

/// Why a token request was refused; each provider answers it in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The parameters could not be decoded.
    Malformed(String),
    MissingParameter(&'static str),
    UnsupportedGrantType(String),
    /// Unknown, already used, expired, or issued by another provider.
    CodeNotFound,
    /// The code was issued to another `client_id`.
    ClientMismatch,
    RedirectUriMismatch,
    /// Naver: the `state` is not the authorize request's.
    StateMismatch,
    /// The code was issued with a PKCE challenge and the request has no verifier.
    VerifierMissing,
    VerifierMismatch,
}

/// Tokens issued for one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_seconds: i64,
}

/// A map whose entries expire and whose size is bounded.
#[derive(Debug)]
struct BoundedMap<V> {
    entries: HashMap<String, Entry<V>>,
    max: usize,
    next_sequence: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires_at_ms: i64,
    sequence: u64,
}

impl<V> BoundedMap<V> {
    fn new(max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            max,
            next_sequence: 0,
        }
    }

    fn insert(&mut self, key: String, value: V, expires_at_ms: i64, now_ms: i64) {
        if self.entries.len() >= self.max {
            self.entries.retain(|_, entry| entry.expires_at_ms > now_ms);
        }
        if self.entries.len() >= self.max {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.sequence)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.entries.insert(
            key,
            Entry {
                value,
                expires_at_ms,
                sequence,
            },
        );
    }

    fn get(&self, key: &str, now_ms: i64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|entry| entry.expires_at_ms > now_ms)
            .map(|entry| &entry.value)
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        self.entries.remove(key).map(|entry| entry.value)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Every code and access token the sandbox has issued and not forgotten.
#[derive(Debug)]
pub struct Grants {
    codes: BoundedMap<Grant>,
    access_tokens: BoundedMap<Grant>,
}

impl Default for Grants {
    fn default() -> Self {
        Self {
            codes: BoundedMap::new(CODES_MAX),
            access_tokens: BoundedMap::new(ACCESS_TOKENS_MAX),
        }
    }
}

impl Grants {
    /// Stores `grant` under a fresh code and returns the code.
    pub fn issue_code(&mut self, grant: Grant, now_ms: i64) -> String {
        let code = match grant.provider {
            // Google's codes start `4/0A`, so the client must encode the slash.
            Provider::Google => format!("4/0A{}", random_url_safe()),
            Provider::Kakao | Provider::Naver => random_url_safe(),
        };
        self.codes
            .insert(code.clone(), grant, now_ms + CODE_TTL_MS, now_ms);
        code
    }

    /// The grant behind a live code, without using it up (to know whether the exchange will mint
    /// an `id_token` before deciding which fault applies).
    pub fn peek(&self, provider: Provider, code: &str, now_ms: i64) -> Option<&Grant> {
        self.codes
            .get(code, now_ms)
            .filter(|grant| grant.provider == provider)
    }

    /// Exchanges a code: checks the request, uses the code up, and checks it against the request.
    ///
    /// # Errors
    /// The first check that fails, in the order: grant type, required parameters, the code, the
    /// client, the redirect URI (Kakao, Google), the state (Naver), the PKCE verifier.
    pub fn exchange(
        &mut self,
        provider: Provider,
        request: &TokenRequest<'_>,
        now_ms: i64,
    ) -> Result<Grant, ExchangeError> {
        let grant_type = request
            .grant_type
            .ok_or(ExchangeError::MissingParameter("grant_type"))?;
        if grant_type != "authorization_code" {
            return Err(ExchangeError::UnsupportedGrantType(grant_type.to_owned()));
        }
        let client_id = request
            .client_id
            .ok_or(ExchangeError::MissingParameter("client_id"))?;
        if matches!(provider, Provider::Naver | Provider::Google) && request.client_secret.is_none()
        {
            return Err(ExchangeError::MissingParameter("client_secret"));
        }
        let code = request
            .code
            .ok_or(ExchangeError::MissingParameter("code"))?;
        let redirect_uri = match provider {
            Provider::Kakao | Provider::Google => Some(
                request
                    .redirect_uri
                    .ok_or(ExchangeError::MissingParameter("redirect_uri"))?,
            ),
            Provider::Naver => None,
        };
        let state = match provider {
            Provider::Naver => Some(
                request
                    .state
                    .ok_or(ExchangeError::MissingParameter("state"))?,
            ),
            Provider::Kakao | Provider::Google => None,
        };
        if self.peek(provider, code, now_ms).is_none() {
            return Err(ExchangeError::CodeNotFound);
        }
        let grant = self.codes.remove(code).ok_or(ExchangeError::CodeNotFound)?;
        if grant.client_id != client_id {
            return Err(ExchangeError::ClientMismatch);
        }
        if redirect_uri.is_some_and(|redirect_uri| redirect_uri != grant.redirect_uri) {
            return Err(ExchangeError::RedirectUriMismatch);
        }
        if state.is_some_and(|state| Some(state) != grant.state.as_deref()) {
            return Err(ExchangeError::StateMismatch);
        }
        if let Some(challenge) = &grant.code_challenge {
            let verifier = request
                .code_verifier
                .ok_or(ExchangeError::VerifierMissing)?;
            if !challenge.is_met_by(verifier) {
                return Err(ExchangeError::VerifierMismatch);
            }
        }
        Ok(grant)
    }

    /// Issues an access token (and a refresh token) for an exchanged grant.
    ///
    /// Refresh tokens are issued for their shape only: the sandbox does not accept
    /// `grant_type=refresh_token`.
    pub fn issue_tokens(&mut self, grant: Grant, now_ms: i64) -> Issued {
        let (access_token, expires_in_seconds) = match grant.provider {
            Provider::Kakao => (random_url_safe(), KAKAO_ACCESS_TOKEN_SECONDS),
            // Naver's tokens are standard base64 (`+` and `/` included) starting `AAAA`.
            Provider::Naver => (
                format!("AAAA{}", random_standard()),
                NAVER_ACCESS_TOKEN_SECONDS,
            ),
            Provider::Google => (
                format!("ya29.{}", random_url_safe()),
                GOOGLE_ACCESS_TOKEN_SECONDS,
            ),
        };
        self.access_tokens.insert(
            access_token.clone(),
            grant,
            now_ms + expires_in_seconds * 1000,
            now_ms,
        );
        Issued {
            access_token,
            refresh_token: random_url_safe(),
            expires_in_seconds,
        }
    }

    /// The grant behind a live access token issued by `provider`.
    pub fn session(&self, provider: Provider, access_token: &str, now_ms: i64) -> Option<&Grant> {
        self.access_tokens
            .get(access_token, now_ms)
            .filter(|grant| grant.provider == provider)
    }

    /// Codes and access tokens held (expired ones included until evicted).
    pub fn held(&self) -> (usize, usize) {
        (self.codes.len(), self.access_tokens.len())
    }
}

/// 256 random bits from two v4 UUIDs (each 122 random bits; the version bits are fixed).
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

fn random_url_safe() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

fn random_standard() -> String {
    STANDARD_NO_PAD.encode(random_bytes())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::oauth::pkce::s256;

    pub(crate) const NOW_MS: i64 = 1_707_794_294_123;
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    pub(crate) fn grant(provider: Provider) -> Grant {
        Grant {
            provider,
            client_id: "client-1".to_owned(),
            redirect_uri: "https://app.example/cb".to_owned(),
            state: Some("state-1".to_owned()),
            scopes: vec!["openid".to_owned()],
            nonce: Some("nonce-1".to_owned()),
            code_challenge: None,
            user: SandboxUser::default_user(),
            approved_at_ms: NOW_MS,
        }
    }

    fn request(code: &str) -> TokenRequest<'_> {
        TokenRequest {
            grant_type: Some("authorization_code"),
            code: Some(code),
            client_id: Some("client-1"),
            client_secret: Some("secret"),
            redirect_uri: Some("https://app.example/cb"),
            code_verifier: None,
            state: Some("state-1"),
        }
    }

    #[test]
    fn a_code_is_exchanged_once_and_a_second_exchange_is_invalid_grant() {
        for provider in Provider::ALL {
            let mut grants = Grants::default();
            let code = grants.issue_code(grant(provider), NOW_MS);
            let first = grants.exchange(provider, &request(&code), NOW_MS + 1000);
            assert_eq!(first.map(|grant| grant.provider), Ok(provider));
            let second = grants.exchange(provider, &request(&code), NOW_MS + 2000);
            assert_eq!(second, Err(ExchangeError::CodeNotFound));
        }
    }

    #[test]
    fn a_code_is_refused_after_its_ttl_and_at_another_provider() {
        let mut grants = Grants::default();
        let code = grants.issue_code(grant(Provider::Kakao), NOW_MS);
        let elsewhere = grants.exchange(Provider::Google, &request(&code), NOW_MS);
        assert_eq!(elsewhere, Err(ExchangeError::CodeNotFound));
        let late = grants.exchange(Provider::Kakao, &request(&code), NOW_MS + CODE_TTL_MS);
        assert_eq!(late, Err(ExchangeError::CodeNotFound));
    }

    #[test]
    fn the_token_request_must_repeat_the_client_and_the_redirect_uri() {
        let mut grants = Grants::default();
        let code = grants.issue_code(grant(Provider::Kakao), NOW_MS);
        let other_client = TokenRequest {
            client_id: Some("client-2"),
            ..request(&code)
        };
        let outcome = grants.exchange(Provider::Kakao, &other_client, NOW_MS);
        assert_eq!(outcome, Err(ExchangeError::ClientMismatch));
        let code = grants.issue_code(grant(Provider::Google), NOW_MS);
        let other_redirect = TokenRequest {
            redirect_uri: Some("https://app.example/cb/"),
            ..request(&code)
        };
        let outcome = grants.exchange(Provider::Google, &other_redirect, NOW_MS);
        assert_eq!(outcome, Err(ExchangeError::RedirectUriMismatch));
        let retry = grants.exchange(Provider::Google, &request(&code), NOW_MS);
        assert_eq!(
            retry,
            Err(ExchangeError::CodeNotFound),
            "used up by the failure"
        );
    }

    #[test]
    fn naver_checks_the_state_and_ignores_the_redirect_uri() {
        let mut grants = Grants::default();
        let code = grants.issue_code(grant(Provider::Naver), NOW_MS);
        let no_redirect = TokenRequest {
            redirect_uri: None,
            ..request(&code)
        };
        assert!(
            grants
                .exchange(Provider::Naver, &no_redirect, NOW_MS)
                .is_ok()
        );
        let code = grants.issue_code(grant(Provider::Naver), NOW_MS);
        let other_state = TokenRequest {
            state: Some("state-2"),
            ..request(&code)
        };
        let outcome = grants.exchange(Provider::Naver, &other_state, NOW_MS);
        assert_eq!(outcome, Err(ExchangeError::StateMismatch));
    }

    #[test]
    fn a_pkce_code_needs_the_verifier_that_hashes_to_its_challenge() {
        let mut grants = Grants::default();
        let challenge = CodeChallenge::parse(&s256(VERIFIER), Some("S256")).ok();
        let with_pkce = Grant {
            code_challenge: challenge,
            ..grant(Provider::Google)
        };
        let code = grants.issue_code(with_pkce.clone(), NOW_MS);
        let outcome = grants.exchange(Provider::Google, &request(&code), NOW_MS);
        assert_eq!(outcome, Err(ExchangeError::VerifierMissing));
        let code = grants.issue_code(with_pkce.clone(), NOW_MS);
        let other_verifier = "x".repeat(43);
        let wrong = TokenRequest {
            code_verifier: Some(&other_verifier),
            ..request(&code)
        };
        let outcome = grants.exchange(Provider::Google, &wrong, NOW_MS);
        assert_eq!(outcome, Err(ExchangeError::VerifierMismatch));
        let code = grants.issue_code(with_pkce, NOW_MS);
        let right = TokenRequest {
            code_verifier: Some(VERIFIER),
            ..request(&code)
        };
        assert!(grants.exchange(Provider::Google, &right, NOW_MS).is_ok());
    }

    #[test]
    fn the_providers_that_require_a_client_secret_refuse_a_request_without_one() {
        for (provider, required) in [
            (Provider::Kakao, false),
            (Provider::Naver, true),
            (Provider::Google, true),
        ] {
            let mut grants = Grants::default();
            let code = grants.issue_code(grant(provider), NOW_MS);
            let no_secret = TokenRequest {
                client_secret: None,
                ..request(&code)
            };
            let outcome = grants.exchange(provider, &no_secret, NOW_MS);
            if required {
                assert_eq!(
                    outcome,
                    Err(ExchangeError::MissingParameter("client_secret"))
                );
            } else {
                assert!(outcome.is_ok());
            }
        }
    }

    #[test]
    fn a_grant_type_other_than_authorization_code_is_unsupported() {
        let mut grants = Grants::default();
        let refresh = TokenRequest {
            grant_type: Some("refresh_token"),
            ..request("code")
        };
        let outcome = grants.exchange(Provider::Kakao, &refresh, NOW_MS);
        assert_eq!(
            outcome,
            Err(ExchangeError::UnsupportedGrantType(
                "refresh_token".to_owned()
            ))
        );
    }

    #[test]
    fn an_access_token_finds_its_user_until_it_expires_and_only_at_its_provider() {
        let mut grants = Grants::default();
        let issued = grants.issue_tokens(grant(Provider::Naver), NOW_MS);
        assert_eq!(issued.expires_in_seconds, NAVER_ACCESS_TOKEN_SECONDS);
        assert!(issued.access_token.starts_with("AAAA"));
        let session = grants.session(Provider::Naver, &issued.access_token, NOW_MS + 1000);
        assert_eq!(session.map(|grant| grant.user.as_str()), Some("test-user"));
        assert!(
            grants
                .session(Provider::Kakao, &issued.access_token, NOW_MS)
                .is_none()
        );
        let expired_at = NOW_MS + NAVER_ACCESS_TOKEN_SECONDS * 1000;
        assert!(
            grants
                .session(Provider::Naver, &issued.access_token, expired_at)
                .is_none()
        );
    }

    #[test]
    fn a_full_store_forgets_its_oldest_entry_first() {
        let mut map = BoundedMap::new(3);
        for key in ["a", "b", "c", "d"] {
            map.insert(key.to_owned(), key, NOW_MS + 1000, NOW_MS);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("a", NOW_MS), None);
        assert_eq!(map.get("d", NOW_MS), Some(&"d"));
        map.insert("e".to_owned(), "e", NOW_MS + 5000, NOW_MS + 2000);
        assert_eq!(map.len(), 1, "the expired ones went first");
    }
}
