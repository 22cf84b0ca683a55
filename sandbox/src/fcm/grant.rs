//! The OAuth 2.0 token endpoint for service accounts (RFC 7523, the JWT bearer grant) as
//! `oauth2.googleapis.com/token` answers it, and the access tokens it issues.
//!
//! A request is `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`. The
//! assertion is checked in Google's order: its account (`iss`), its signature (RS256, by the key
//! the header's `kid` names, or by any registered key of the account when there is no `kid`), its
//! timeframe (`exp` in the future, `exp − iat` ≤ an hour, `iat` not ahead of the clock), its
//! audience, its scope. An access token lives an hour; FCM checks it by a hash-map lookup.

use std::collections::{HashMap, VecDeque};

use jsonwebtoken::{Algorithm, Validation, dangerous::insecure_decode_claims};
use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::{Value, json};

use super::{
    error::FcmError,
    service_account::{Registry, ServiceAccountKey},
};

pub const JWT_BEARER_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const FIREBASE_MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The real token endpoint, the `aud` a client writes when it talks to Google.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The sandbox's token endpoint, under the host the client reached it by.
pub const TOKEN_PATH: &str = "/fcm/token";

/// Google refuses assertions that live longer than an hour.
pub const ASSERTION_SECONDS_MAX: i64 = 3600;
/// How far ahead of the sandbox's clock `iat` may be: the client signs on another clock (in
/// practice the same machine's, so a minute is generous).
pub const CLOCK_SKEW_SECONDS_MAX: i64 = 60;
/// Access tokens live an hour, as Google's do.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Google answers `expires_in: 3599` for its hour-long tokens.
pub const EXPIRES_IN_SECONDS: i64 = ACCESS_TOKEN_SECONDS - 1;
/// Live access tokens kept at once: a client caches its token for the hour, so even a test suite
/// that restarts the core often needs a few hundred; past the bound the oldest are forgotten.
pub const ACCESS_TOKENS_MAX: usize = 10_000;
/// Form bodies are an assertion of about 800 bytes and a grant type.
pub const ASSERTION_BYTES_MAX: usize = 8 * 1024;

const _: () = assert!(EXPIRES_IN_SECONDS < ACCESS_TOKEN_SECONDS);

/// Why an assertion was refused; each is answered as Google answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantError {
    MissingParameter(&'static str),
    UnsupportedGrantType(String),
    /// Not a JWT (three base64url parts of JSON).
    Malformed,
    /// `iss` names no service account.
    AccountNotFound,
    /// Signed by a key the account does not have, or not RS256.
    InvalidSignature,
    /// Expired, longer than an hour, or issued in the future.
    InvalidTimeframe,
    AudienceMismatch,
    MissingScope,
    InvalidScope,
}

impl GrantError {
    pub fn error(&self) -> &'static str {
        match self {
            Self::MissingParameter(_) => "invalid_request",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::Malformed
            | Self::AccountNotFound
            | Self::InvalidSignature
            | Self::InvalidTimeframe
            | Self::AudienceMismatch => "invalid_grant",
            Self::MissingScope | Self::InvalidScope => "invalid_scope",
        }
    }

    pub fn description(&self) -> String {
        match self {
            Self::MissingParameter(name) => format!("Missing required parameter: {name}"),
            Self::UnsupportedGrantType(grant_type) => format!("Invalid grant_type: {grant_type}"),
            // Google's wording for this case is not documented; the sandbox's choice.
            Self::Malformed => "Invalid JWT: the assertion is not a JWT.".to_owned(),
            Self::AccountNotFound => "Invalid grant: account not found".to_owned(),
            Self::InvalidSignature => "Invalid JWT Signature.".to_owned(),
            Self::InvalidTimeframe => "Invalid JWT: Token must be a short-lived token (60 \
                 minutes) and in a reasonable timeframe. Check your iat and exp values and use a \
                 clock with skew to account for clock differences between systems."
                .to_owned(),
            Self::AudienceMismatch => "Invalid JWT: Failed audience check.".to_owned(),
            Self::MissingScope => "Empty or missing scope not allowed.".to_owned(),
            Self::InvalidScope => "Invalid OAuth scope or ID token audience provided.".to_owned(),
        }
    }

    /// `400 {"error", "error_description"}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": self.error(), "error_description": self.description() })
    }
}

/// The claims of a service account's assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// The user to impersonate (domain-wide delegation); read and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl AssertionClaims {
    /// What a well-behaved client signs at `now_seconds` for `key`, addressed to `audience`.
    pub fn for_key(key: &ServiceAccountKey, audience: &str, now_seconds: i64) -> Self {
        Self {
            iss: key.client_email.clone(),
            scope: Some(FIREBASE_MESSAGING_SCOPE.to_owned()),
            aud: audience.to_owned(),
            iat: now_seconds,
            exp: now_seconds + ASSERTION_SECONDS_MAX,
            sub: None,
        }
    }
}

/// Reads the form body of a token request: the assertion, once the grant type is right.
///
/// # Errors
/// A parameter is missing or the grant type is not the JWT bearer grant.
pub fn assertion_from_form(body: &[u8]) -> Result<String, GrantError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| GrantError::MissingParameter("grant_type"))?;
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match find("grant_type") {
        None | Some("") => return Err(GrantError::MissingParameter("grant_type")),
        Some(JWT_BEARER_GRANT_TYPE) => {}
        Some(other) => return Err(GrantError::UnsupportedGrantType(other.to_owned())),
    }
    match find("assertion") {
        None | Some("") => Err(GrantError::MissingParameter("assertion")),
        Some(assertion) => Ok(assertion.to_owned()),
    }
}

/// Verifies a service account's assertion; `audiences` are the token URLs accepted as `aud`.
///
/// # Errors
/// The first check that fails, in Google's order (see the module documentation).
pub fn verify_assertion<'r>(
    registry: &'r Registry,
    assertion: &str,
    audiences: &[&str],
    now_seconds: i64,
) -> Result<&'r ServiceAccountKey, GrantError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| GrantError::Malformed)?;
    let claims: AssertionClaims =
        insecure_decode_claims(assertion).map_err(|_| GrantError::Malformed)?;
    if !registry.knows_account(&claims.iss) {
        return Err(GrantError::AccountNotFound);
    }
    if header.alg != Algorithm::RS256 {
        return Err(GrantError::InvalidSignature);
    }
    let key = registry
        .keys_of(&claims.iss)
        .filter(|key| {
            header
                .kid
                .as_ref()
                .is_none_or(|kid| *kid == key.private_key_id)
        })
        .find(|key| signature_holds(key, assertion))
        .ok_or(GrantError::InvalidSignature)?;
    let AssertionClaims { iat, exp, .. } = claims;
    let timely = exp > now_seconds
        && exp > iat
        && exp - iat <= ASSERTION_SECONDS_MAX
        && iat <= now_seconds + CLOCK_SKEW_SECONDS_MAX;
    if !timely {
        return Err(GrantError::InvalidTimeframe);
    }
    if !audiences.contains(&claims.aud.as_str()) {
        return Err(GrantError::AudienceMismatch);
    }
    let scope = claims.scope.as_deref().unwrap_or_default();
    if scope.trim().is_empty() {
        return Err(GrantError::MissingScope);
    }
    if !scope
        .split_ascii_whitespace()
        .any(|scope| scope == FIREBASE_MESSAGING_SCOPE)
    {
        return Err(GrantError::InvalidScope);
    }
    Ok(key)
}

/// Whether `key` signed `assertion` (RS256); the claims are checked by the caller.
fn signature_holds(key: &ServiceAccountKey, assertion: &str) -> bool {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<IgnoredAny>(assertion, &key.decoding, &validation).is_ok()
}

/// What an access token grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessToken {
    /// The project of the service account it was issued to.
    pub project_id: &'static str,
    pub expires_at_ms: i64,
}

/// The access tokens issued and still remembered, oldest first.
#[derive(Debug, Default)]
pub struct AccessTokens {
    by_token: HashMap<String, AccessToken>,
    /// Issue order, which is also expiry order: every token lives the same hour.
    order: VecDeque<String>,
}

impl AccessTokens {
    /// Mints a token for `project_id`, forgetting expired tokens (and, past
    /// [`ACCESS_TOKENS_MAX`], the oldest).
    pub fn issue(&mut self, project_id: &'static str, now_ms: i64) -> String {
        while let Some(oldest) = self.order.front() {
            let expired = self
                .by_token
                .get(oldest)
                .is_none_or(|token| token.expires_at_ms <= now_ms);
            if !expired && self.by_token.len() < ACCESS_TOKENS_MAX {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.by_token.remove(&oldest);
            }
        }
        // Google's tokens start `ya29.`; the rest is opaque.
        let token = format!(
            "ya29.a0{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let granted = AccessToken {
            project_id,
            expires_at_ms: now_ms.saturating_add(ACCESS_TOKEN_SECONDS * 1000),
        };
        self.by_token.insert(token.clone(), granted);
        self.order.push_back(token.clone());
        token
    }

    /// The grant behind a bearer token: one hash-map lookup.
    ///
    /// # Errors
    /// `401 UNAUTHENTICATED` for an unknown or expired token.
    pub fn check(&self, token: &str, now_ms: i64) -> Result<AccessToken, FcmError> {
        let granted = self
            .by_token
            .get(token)
            .ok_or_else(FcmError::token_unknown)?;
        if granted.expires_at_ms <= now_ms {
            return Err(FcmError::token_expired());
        }
        Ok(*granted)
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcm::{error::ErrorCode, service_account::PROJECT_ID};

    const NOW_SECONDS: i64 = 1_707_794_294;
    const OWN_URL: &str = "http://127.0.0.1:8090/fcm/token";
    const AUDIENCES: [&str; 2] = [GOOGLE_TOKEN_URL, OWN_URL];

    fn registry() -> &'static Registry {
        Registry::embedded().unwrap()
    }

    fn claims() -> AssertionClaims {
        AssertionClaims::for_key(registry().registered(), GOOGLE_TOKEN_URL, NOW_SECONDS)
    }

    fn signed(key: &ServiceAccountKey, claims: &AssertionClaims) -> String {
        key.sign(claims).unwrap()
    }

    fn verify(assertion: &str) -> Result<String, GrantError> {
        verify_assertion(registry(), assertion, &AUDIENCES, NOW_SECONDS)
            .map(|key| key.private_key_id.clone())
    }

    #[test]
    fn an_assertion_signed_by_the_registered_key_is_granted_at_either_audience() {
        let registered = registry().registered();
        assert_eq!(
            verify(&signed(registered, &claims())),
            Ok(registered.private_key_id.clone())
        );
        let own = AssertionClaims {
            aud: OWN_URL.to_owned(),
            ..claims()
        };
        assert!(verify(&signed(registered, &own)).is_ok());
    }

    #[test]
    fn an_assertion_signed_by_another_key_is_invalid_grant() {
        let rogue = signed(registry().unregistered(), &claims());
        assert_eq!(verify(&rogue), Err(GrantError::InvalidSignature));
        assert_eq!(GrantError::InvalidSignature.error(), "invalid_grant");
        assert_eq!(
            GrantError::InvalidSignature.to_json()["error_description"],
            "Invalid JWT Signature."
        );
    }

    #[test]
    fn an_assertion_whose_signature_was_tampered_with_is_invalid_grant() {
        let honest = signed(registry().registered(), &claims());
        let forged_claims = AssertionClaims {
            scope: Some(format!("{FIREBASE_MESSAGING_SCOPE} extra")),
            ..claims()
        };
        let forged = signed(registry().unregistered(), &forged_claims);
        let (honest_head, _) = honest.rsplit_once('.').unwrap_or_default();
        let (_, forged_signature) = forged.rsplit_once('.').unwrap_or_default();
        let spliced = format!("{honest_head}.{forged_signature}");
        assert_eq!(verify(&spliced), Err(GrantError::InvalidSignature));
    }

    #[test]
    fn an_assertion_from_an_unknown_account_is_account_not_found() {
        let stranger = AssertionClaims {
            iss: "someone@elsewhere.iam.gserviceaccount.com".to_owned(),
            ..claims()
        };
        let assertion = signed(registry().registered(), &stranger);
        assert_eq!(verify(&assertion), Err(GrantError::AccountNotFound));
    }

    #[test]
    fn an_expired_or_overlong_or_future_assertion_is_out_of_its_timeframe() {
        let key = registry().registered();
        for (iat, exp) in [
            (NOW_SECONDS - 3600, NOW_SECONDS),
            (NOW_SECONDS, NOW_SECONDS + ASSERTION_SECONDS_MAX + 1),
            (NOW_SECONDS + 600, NOW_SECONDS + 1200),
            (NOW_SECONDS + 10, NOW_SECONDS + 5),
        ] {
            let claims = AssertionClaims {
                iat,
                exp,
                ..claims()
            };
            assert_eq!(
                verify(&signed(key, &claims)),
                Err(GrantError::InvalidTimeframe),
                "{iat} {exp}"
            );
        }
        let just_an_hour = AssertionClaims {
            iat: NOW_SECONDS - 10,
            exp: NOW_SECONDS - 10 + ASSERTION_SECONDS_MAX,
            ..claims()
        };
        assert!(verify(&signed(key, &just_an_hour)).is_ok());
    }

    #[test]
    fn an_assertion_for_another_audience_fails_the_audience_check() {
        let elsewhere = AssertionClaims {
            aud: "https://www.googleapis.com/oauth2/v4/tokenx".to_owned(),
            ..claims()
        };
        let assertion = signed(registry().registered(), &elsewhere);
        assert_eq!(verify(&assertion), Err(GrantError::AudienceMismatch));
    }

    #[test]
    fn an_assertion_without_the_firebase_messaging_scope_is_invalid_scope() {
        let key = registry().registered();
        let other = AssertionClaims {
            scope: Some("https://www.googleapis.com/auth/userinfo.email".to_owned()),
            ..claims()
        };
        assert_eq!(verify(&signed(key, &other)), Err(GrantError::InvalidScope));
        let none = AssertionClaims {
            scope: None,
            ..claims()
        };
        assert_eq!(verify(&signed(key, &none)), Err(GrantError::MissingScope));
        let several = AssertionClaims {
            scope: Some(format!(
                "https://www.googleapis.com/auth/cloud-platform {FIREBASE_MESSAGING_SCOPE}"
            )),
            ..claims()
        };
        assert!(verify(&signed(key, &several)).is_ok());
    }

    #[test]
    fn garbage_is_malformed_and_the_form_needs_the_jwt_bearer_grant() {
        assert_eq!(verify("not.a.jwt"), Err(GrantError::Malformed));
        assert_eq!(verify(""), Err(GrantError::Malformed));
        let form = |body: &str| assertion_from_form(body.as_bytes());
        assert_eq!(
            form(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c"
            ),
            Ok("a.b.c".to_owned())
        );
        assert_eq!(
            form("assertion=a.b.c"),
            Err(GrantError::MissingParameter("grant_type"))
        );
        assert_eq!(
            form("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"),
            Err(GrantError::MissingParameter("assertion"))
        );
        assert_eq!(
            form("grant_type=client_credentials&assertion=x"),
            Err(GrantError::UnsupportedGrantType(
                "client_credentials".to_owned()
            ))
        );
    }

    #[test]
    fn an_access_token_is_checked_by_lookup_and_expires_after_an_hour() {
        let now_ms = NOW_SECONDS * 1000;
        let mut tokens = AccessTokens::default();
        let token = tokens.issue(PROJECT_ID, now_ms);
        assert!(token.starts_with("ya29."));
        assert_eq!(
            tokens
                .check(&token, now_ms)
                .map(|granted| granted.project_id),
            Ok(PROJECT_ID)
        );
        let later = now_ms + ACCESS_TOKEN_SECONDS * 1000;
        let expired = tokens.check(&token, later);
        assert_eq!(
            expired.map_err(|e| (e.code, e.reason)),
            Err((ErrorCode::Unauthenticated, Some("ACCESS_TOKEN_EXPIRED")))
        );
        let unknown = tokens.check("ya29.nope", now_ms);
        assert_eq!(unknown.map_err(|e| e.code), Err(ErrorCode::Unauthenticated));
        // Issuing after the hour forgets the expired token.
        let _fresh = tokens.issue(PROJECT_ID, later);
        assert_eq!(tokens.len(), 1);
    }

    #[test]
    fn the_token_store_is_bounded_and_forgets_the_oldest() {
        let mut tokens = AccessTokens::default();
        let first = tokens.issue(PROJECT_ID, 0);
        for _ in 1..ACCESS_TOKENS_MAX {
            tokens.issue(PROJECT_ID, 0);
        }
        assert_eq!(tokens.len(), ACCESS_TOKENS_MAX);
        let last = tokens.issue(PROJECT_ID, 0);
        assert_eq!(tokens.len(), ACCESS_TOKENS_MAX);
        assert!(tokens.check(&first, 0).is_err());
        assert!(tokens.check(&last, 0).is_ok());
    }
}
