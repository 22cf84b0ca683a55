//! Access tokens: short-lived JWTs the edge issues at login and refresh, and checks on every call.
//!
//! HS256 only (pinned: a token that names any other algorithm, `none` included, is refused
//! before its signature is looked at), with a key id so keys can rotate: the edge signs with one
//! key and accepts any key still configured. Claims: `sub` (the user), `exp`, `iat`, `jti` (for
//! revocation), `aud`. Expiry is checked against the caller's clock, not the library's, so the
//! same code runs on Workers, on Spin and in tests.
//!
//! The compact JWS is written here (HMAC-SHA256 from `hmac`, the signature checked in constant
//! time), not with `jsonwebtoken`: that crate compiles every algorithm it knows into whoever uses
//! it (RSA, ECDSA, EdDSA: about 100 KiB of the Worker after gzip), and we accept exactly one. Its
//! tests check tokens both ways against `jsonwebtoken` itself.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The audience of every access token: our public API.
pub const AUDIENCE: &str = "nene-api";
/// How long an access token lives: short, because revocation outside money-moving endpoints is
/// eventual (issue 6: refused everywhere within 60 s), and a refresh is cheap.
pub const ACCESS_TOKEN_TTL_SECONDS: i64 = 600;
/// Shortest signing key accepted: HS256 wants at least its output size.
pub const KEY_BYTES_MIN: usize = 32;
/// Longest token we parse: ours are ~300 bytes; the bound keeps a hostile header cheap to refuse.
pub const TOKEN_BYTES_MAX: usize = 4_096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub aud: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    WrongAlgorithm,
    #[error("the token names an unknown key")]
    UnknownKey,
    #[error("the token's signature or claims are invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("a signing key must be at least {KEY_BYTES_MIN} bytes and have a key id")]
    WeakKey,
}

/// A token's JOSE header: what we write, and all we read of one.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the signer says a verifier must understand (RFC 7515 §4.1.11): we understand
    /// none, so a token naming any is refused.
    #[serde(default, skip_serializing)]
    crit: Option<serde_json::Value>,
}

/// The one algorithm we sign and accept.
const ALGORITHM: &str = "HS256";

/// HMAC-SHA256 of a token's signing input (`header.payload`) under `secret`.
fn mac(secret: &[u8], signing_input: &str) -> Hmac<Sha256> {
    crate::signing::hmac_sha256(secret, signing_input.as_bytes())
}

/// A token's header or payload: base64url of JSON.
fn json_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let json = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&json).ok()
}

/// One HS256 key with its id.
#[derive(Clone)]
pub struct TokenKey {
    kid: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKey({}, <redacted>)", self.kid)
    }
}

impl TokenKey {
    /// # Errors
    /// [`TokenError::WeakKey`] for an empty kid or a secret under [`KEY_BYTES_MIN`] bytes.
    pub fn new(kid: &str, secret: &str) -> Result<Self, TokenError> {
        if kid.is_empty() || secret.len() < KEY_BYTES_MIN {
            return Err(TokenError::WeakKey);
        }
        Ok(TokenKey {
            kid: kid.to_owned(),
            secret: secret.as_bytes().to_vec(),
        })
    }

    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether the secret is one this repository publishes (`crate::deployment`).
    #[must_use]
    pub fn is_published(&self) -> bool {
        std::str::from_utf8(&self.secret).is_ok_and(crate::deployment::is_published_secret)
    }
}

/// The keys in force: the first signs, all verify.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// Parses `kid:secret,kid:secret`; the first key signs.
    ///
    /// # Errors
    /// [`TokenError::WeakKey`] when the list is empty or any key is weak.
    pub fn parse(list: &str) -> Result<Self, TokenError> {
        let keys = list
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(|entry| {
                let (kid, secret) = entry.trim().split_once(':').ok_or(TokenError::WeakKey)?;
                TokenKey::new(kid, secret)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(TokenError::WeakKey);
        }
        Ok(TokenKeys { keys })
    }

    /// The id of the first key whose secret this repository publishes, if any.
    #[must_use]
    pub fn published_key(&self) -> Option<&str> {
        self.keys
            .iter()
            .find(|key| key.is_published())
            .map(TokenKey::kid)
    }

    /// Issues a token for `user`, valid from `now` for [`ACCESS_TOKEN_TTL_SECONDS`].
    ///
    /// # Errors
    /// [`TokenError::Invalid`] if encoding fails (it does not for HS256 and these claims).
    pub fn issue(
        &self,
        user: &str,
        jti: &str,
        now_unix_seconds: i64,
    ) -> Result<String, TokenError> {
        let key = &self.keys[0];
        let claims = AccessClaims {
            sub: user.to_owned(),
            exp: now_unix_seconds + ACCESS_TOKEN_TTL_SECONDS,
            iat: now_unix_seconds,
            jti: jti.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let header = Header {
            alg: ALGORITHM.to_owned(),
            typ: Some("JWT".to_owned()),
            kid: Some(key.kid.clone()),
            crit: None,
        };
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Invalid)?;
        let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Invalid)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = mac(&key.secret, &signing_input).finalize().into_bytes();
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// Verifies a token and returns its claims.
    ///
    /// # Errors
    /// [`TokenError`]: malformed, wrong algorithm (including `none`), unknown key id, bad
    /// signature or audience, or expired at `now`.
    pub fn verify(&self, token: &str, now_unix_seconds: i64) -> Result<AccessClaims, TokenError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload_part), Some(signature_part), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = json_part(header_part).ok_or(TokenError::Malformed)?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        if header.crit.is_some() {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_part)
            .map_err(|_| TokenError::Invalid)?;
        let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
        mac(&key.secret, signing_input)
            .verify_slice(&signature)
            .map_err(|_| TokenError::Invalid)?;
        // Signed by us: now the claims, every one required.
        let claims: AccessClaims = json_part(payload_part).ok_or(TokenError::Invalid)?;
        if claims.aud != AUDIENCE {
            return Err(TokenError::Invalid);
        }
        if now_unix_seconds >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn keys() -> TokenKeys {
        TokenKeys::parse(
            "k2:second-key-second-key-second-key-0001,k1:first-key-first-key-first-key-first-01",
        )
        .unwrap()
    }

    fn token() -> String {
        keys().issue("user-1", "jti-1", NOW).unwrap()
    }

    #[test]
    fn a_token_we_issued_verifies_with_its_claims() {
        let claims = keys().verify(&token(), NOW + 1).unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.jti, "jti-1");
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(claims.exp, NOW + ACCESS_TOKEN_TTL_SECONDS);
    }

    #[test]
    fn a_token_signed_by_a_retiring_key_still_verifies_until_the_key_is_removed() {
        let old = TokenKeys::parse("k1:first-key-first-key-first-key-first-01").unwrap();
        let issued = old.issue("user-1", "j", NOW).unwrap();
        assert!(keys().verify(&issued, NOW).is_ok());
        let rotated = TokenKeys::parse("k2:second-key-second-key-second-key-0001").unwrap();
        assert_eq!(rotated.verify(&issued, NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn an_expired_token_is_refused() {
        assert_eq!(
            keys().verify(&token(), NOW + ACCESS_TOKEN_TTL_SECONDS),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k2"}"#);
        let payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"user-1","exp":{},"iat":{NOW},"jti":"x","aud":"{AUDIENCE}"}}"#,
            NOW + 60
        ));
        let forged = format!("{header}.{payload}.");
        assert!(keys().verify(&forged, NOW).is_err());
    }

    #[test]
    fn another_algorithm_is_refused_before_the_signature() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT","kid":"k2"}"#);
        let parts: Vec<String> = token().split('.').map(str::to_owned).collect();
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(keys().verify(&forged, NOW), Err(TokenError::WrongAlgorithm));
    }

    #[test]
    fn a_token_signed_with_another_key_or_tampered_is_refused() {
        let stranger = TokenKeys::parse("k2:not-our-key-not-our-key-not-our-key-00").unwrap();
        let forged = stranger.issue("user-1", "j", NOW).unwrap();
        assert_eq!(keys().verify(&forged, NOW), Err(TokenError::Invalid));
        let parts: Vec<String> = token().split('.').map(str::to_owned).collect();
        let payload = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"admin","exp":{},"iat":{NOW},"jti":"jti-1","aud":"{AUDIENCE}"}}"#,
            NOW + 600
        ));
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(keys().verify(&tampered, NOW), Err(TokenError::Invalid));
    }

    /// A token `jsonwebtoken` writes, with `claims` and `kid`, under `secret`.
    fn library_token(claims: &AccessClaims, kid: &str, secret: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    #[test]
    fn tokens_pass_both_ways_between_us_and_the_jsonwebtoken_library() {
        let claims = AccessClaims {
            sub: "user-1".into(),
            exp: NOW + 60,
            iat: NOW,
            jti: "j".into(),
            aud: AUDIENCE.into(),
        };
        let theirs = library_token(&claims, "k1", "first-key-first-key-first-key-first-01");
        assert_eq!(keys().verify(&theirs, NOW), Ok(claims));

        let ours = token();
        let key = jsonwebtoken::DecodingKey::from_secret(b"second-key-second-key-second-key-0001")
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<AccessClaims>(&ours, &key, &validation).unwrap();
        assert_eq!(decoded.claims.sub, "user-1");
        assert_eq!(decoded.header.kid.as_deref(), Some("k2"));
    }

    #[test]
    fn a_token_with_extensions_we_do_not_understand_or_missing_claims_is_refused() {
        let sign = |header: &str, payload: &str| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let signature = mac(b"second-key-second-key-second-key-0001", &input)
                .finalize()
                .into_bytes();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        };
        let payload = format!(
            r#"{{"sub":"user-1","exp":{},"iat":{NOW},"jti":"x","aud":"{AUDIENCE}"}}"#,
            NOW + 60
        );
        let plain = sign(r#"{"alg":"HS256","kid":"k2"}"#, &payload);
        assert!(keys().verify(&plain, NOW).is_ok(), "the control");
        let critical = sign(
            r#"{"alg":"HS256","kid":"k2","crit":["b64"],"b64":false}"#,
            &payload,
        );
        assert_eq!(keys().verify(&critical, NOW), Err(TokenError::Invalid));
        let without_jti = sign(
            r#"{"alg":"HS256","kid":"k2"}"#,
            &format!(
                r#"{{"sub":"user-1","exp":{},"iat":{NOW},"aud":"{AUDIENCE}"}}"#,
                NOW + 60
            ),
        );
        assert_eq!(keys().verify(&without_jti, NOW), Err(TokenError::Invalid));
        assert_eq!(
            keys().verify(&format!("{plain}.extra"), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_token_for_another_audience_is_refused() {
        let key = TokenKey::new("k2", "second-key-second-key-second-key-0001").unwrap();
        let claims = AccessClaims {
            sub: "user-1".into(),
            exp: NOW + 60,
            iat: NOW,
            jti: "j".into(),
            aud: "someone-else".into(),
        };
        let other = library_token(&claims, key.kid(), "second-key-second-key-second-key-0001");
        assert_eq!(keys().verify(&other, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn weak_or_missing_keys_are_refused() {
        assert!(TokenKeys::parse("").is_err());
        assert!(TokenKeys::parse("k1:short").is_err());
        assert!(TokenKeys::parse(":no-kid-no-kid-no-kid-no-kid-no-kid-00").is_err());
        assert!(keys().verify("not-a-token", NOW).is_err());
        assert!(
            keys()
                .verify(&"x".repeat(TOKEN_BYTES_MAX + 1), NOW)
                .is_err()
        );
    }
}
