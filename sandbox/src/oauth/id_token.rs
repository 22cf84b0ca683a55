//! OpenID Connect `id_token`s for Kakao and Google: RS256 JWTs with the provider's `kid` in the
//! header, verifiable with the provider's published JWKS.
//!
//! A token is minted when the grant's scope has `openid` (Naver speaks no OpenID Connect). The
//! claims are `iss`, `aud` (the client id), `sub` (the provider's user id as a string), `iat`,
//! `exp` (`iat` + [`ID_TOKEN_SECONDS`]), `auth_time` (when the user approved) and `nonce` (the
//! authorize request's, when it sent one); Kakao adds `nickname` (and `email` with
//! `account_email`), Google adds `azp`, `at_hash`, and `email`/`email_verified` with the `email`
//! scope and `name` with `profile`.
//!
//! The id-token faults ([`Tamper`]) break exactly one thing each, so a test shows which check
//! the verifier really makes.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Header, encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{grants::Grant, keys::KeySet, provider::Provider};

/// Both providers' id tokens live an hour.
pub const ID_TOKEN_SECONDS: i64 = 3600;
/// An `expired_id_token` expired this long ago: far past the clock-skew leeway a verifier allows
/// (jsonwebtoken's default is 60 s), so it fails however lenient the check.
pub const EXPIRED_AGO_SECONDS: i64 = 3600;
/// The `nonce` a `wrong_nonce` token carries.
pub const WRONG_NONCE: &str = "nene-sandbox-wrong-nonce";
/// The `aud` a `wrong_audience` token carries.
pub const WRONG_AUDIENCE: &str = "nene-sandbox-wrong-audience";

/// Google's long names for the `email` and `profile` scopes; either form grants the claims.
pub const GOOGLE_EMAIL_SCOPE: &str = "https://www.googleapis.com/auth/userinfo.email";
pub const GOOGLE_PROFILE_SCOPE: &str = "https://www.googleapis.com/auth/userinfo.profile";

/// What an id-token fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    None,
    /// Signed with the rogue key, which no JWKS publishes, under the provider's own `kid`.
    BadSignature,
    /// `nonce` is [`WRONG_NONCE`].
    WrongNonce,
    /// `iat` and `exp` lie in the past: expired [`EXPIRED_AGO_SECONDS`] ago.
    Expired,
    /// `aud` is [`WRONG_AUDIENCE`].
    WrongAudience,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
}

/// Whether exchanging this grant yields an `id_token`.
pub fn is_minted_for(grant: &Grant) -> bool {
    grant.provider.issuer().is_some() && grant.has_scope("openid")
}

/// Google grants e-mail claims for `email` or its long name.
pub fn google_has_email(grant: &Grant) -> bool {
    grant.has_scope("email") || grant.has_scope(GOOGLE_EMAIL_SCOPE)
}

/// Google grants profile claims for `profile` or its long name.
pub fn google_has_profile(grant: &Grant) -> bool {
    grant.has_scope("profile") || grant.has_scope(GOOGLE_PROFILE_SCOPE)
}

/// The honest claims for `grant`, or `None` where no id token is minted.
pub fn claims(grant: &Grant, access_token: &str, now_ms: i64) -> Option<IdTokenClaims> {
    if !is_minted_for(grant) {
        return None;
    }
    let issuer = grant.provider.issuer()?;
    let iat = now_ms.div_euclid(1000);
    let user = &grant.user;
    let mut claims = IdTokenClaims {
        iss: issuer.to_owned(),
        aud: grant.client_id.clone(),
        sub: grant.provider.user_id(user),
        iat,
        exp: iat + ID_TOKEN_SECONDS,
        auth_time: grant.approved_at_ms.div_euclid(1000),
        nonce: grant.nonce.clone(),
        azp: None,
        at_hash: None,
        email: None,
        email_verified: None,
        name: None,
        nickname: None,
    };
    match grant.provider {
        Provider::Kakao => {
            claims.nickname = Some(user.nickname().to_owned());
            if grant.has_scope("account_email") {
                claims.email = Some(user.email());
            }
        }
        Provider::Google => {
            claims.azp = Some(grant.client_id.clone());
            claims.at_hash = Some(at_hash(access_token));
            if google_has_email(grant) {
                claims.email = Some(user.email());
                claims.email_verified = Some(true);
            }
            if google_has_profile(grant) {
                claims.name = Some(user.nickname().to_owned());
            }
        }
        Provider::Naver => return None,
    }
    Some(claims)
}

/// The claims with one thing broken, as `tamper` says.
pub fn tampered(mut claims: IdTokenClaims, tamper: Tamper) -> IdTokenClaims {
    match tamper {
        Tamper::None | Tamper::BadSignature => {}
        Tamper::WrongNonce => claims.nonce = Some(WRONG_NONCE.to_owned()),
        Tamper::WrongAudience => {
            claims.aud = WRONG_AUDIENCE.to_owned();
        }
        Tamper::Expired => {
            claims.exp = claims.iat - EXPIRED_AGO_SECONDS;
            claims.iat = claims.exp - ID_TOKEN_SECONDS;
            claims.auth_time = claims.auth_time.min(claims.iat);
        }
    }
    claims
}

/// OpenID Connect Core §3.1.3.6: the left half of SHA-256 of the access token, base64url.
fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// The signed `id_token` for an exchanged grant, or `None` where none is minted.
///
/// # Errors
/// Signing failed (the keys are committed and tested, so in practice never).
pub fn mint(
    keys: &KeySet,
    grant: &Grant,
    access_token: &str,
    now_ms: i64,
    tamper: Tamper,
) -> Result<Option<String>, String> {
    let Some(claims) = claims(grant, access_token, now_ms) else {
        return Ok(None);
    };
    let key = keys
        .signing(grant.provider)
        .ok_or("no signing key for the provider")?;
    let signer = match tamper {
        Tamper::BadSignature => keys.rogue(),
        _ => key,
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.to_owned());
    encode(&header, &tampered(claims, tamper), &signer.encoding)
        .map(Some)
        .map_err(|error| format!("signing an id_token: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::{
        grants::tests::{NOW_MS, grant},
        keys::{GOOGLE_KID, KAKAO_KID},
    };
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    fn keys() -> &'static KeySet {
        KeySet::embedded().unwrap()
    }

    fn minted(grant: &Grant, tamper: Tamper) -> String {
        mint(keys(), grant, "access-1", NOW_MS, tamper)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Verifies as a client would: the key whose `kid` the header names, from the published JWKS.
    fn verify(provider: Provider, token: &str, client_id: &str) -> Result<IdTokenClaims, String> {
        let header = decode_header(token).map_err(|error| error.to_string())?;
        let jwks = keys().jwks(provider).unwrap_or_default();
        let published = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|key| header.kid.as_deref() == key["kid"].as_str())
            .ok_or("no key with that kid")?;
        let n = published["n"].as_str().unwrap_or_default();
        let e = published["e"].as_str().unwrap_or_default();
        let key = DecodingKey::from_rsa_components(n, e).map_err(|error| error.to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[client_id]);
        validation.set_issuer(&[provider.issuer().unwrap_or_default()]);
        // The claims were minted at NOW_MS, in the past; check expiry against that time below.
        validation.validate_exp = false;
        let data =
            decode::<IdTokenClaims>(token, &key, &validation).map_err(|error| error.to_string())?;
        if data.claims.exp <= NOW_MS / 1000 {
            return Err("expired".to_owned());
        }
        Ok(data.claims)
    }

    #[test]
    fn an_id_token_verifies_against_the_published_jwks_and_carries_the_nonce() {
        for (provider, kid) in [(Provider::Kakao, KAKAO_KID), (Provider::Google, GOOGLE_KID)] {
            let grant = grant(provider);
            let token = minted(&grant, Tamper::None);
            let header = decode_header(&token).ok();
            assert_eq!(header.and_then(|header| header.kid).as_deref(), Some(kid));
            let claims = verify(provider, &token, "client-1");
            let Ok(claims) = claims else {
                unreachable!("{claims:?}");
            };
            assert_eq!(claims.nonce.as_deref(), Some("nonce-1"));
            assert_eq!(claims.sub, provider.user_id(&grant.user));
            assert_eq!(claims.exp - claims.iat, ID_TOKEN_SECONDS);
            assert_eq!(claims.iat, NOW_MS / 1000);
            assert_eq!(claims.auth_time, NOW_MS / 1000);
        }
    }

    #[test]
    fn the_issuers_are_the_providers_own() {
        let kakao = verify(
            Provider::Kakao,
            &minted(&grant(Provider::Kakao), Tamper::None),
            "client-1",
        );
        assert_eq!(
            kakao.map(|claims| claims.iss),
            Ok("https://kauth.kakao.com".to_owned())
        );
        let google = verify(
            Provider::Google,
            &minted(&grant(Provider::Google), Tamper::None),
            "client-1",
        );
        assert_eq!(
            google.map(|claims| claims.iss),
            Ok("https://accounts.google.com".to_owned())
        );
    }

    #[test]
    fn a_token_signed_by_the_rogue_key_fails_verification_under_the_providers_kid() {
        let token = minted(&grant(Provider::Google), Tamper::BadSignature);
        let header = decode_header(&token).ok();
        assert_eq!(
            header.and_then(|header| header.kid).as_deref(),
            Some(GOOGLE_KID)
        );
        assert!(verify(Provider::Google, &token, "client-1").is_err());
    }

    #[test]
    fn a_kakao_token_does_not_verify_with_googles_key() {
        let token = minted(&grant(Provider::Kakao), Tamper::None);
        let google = keys().signing(Provider::Google);
        let n = google.map(|key| key.n.clone()).unwrap_or_default();
        let e = google.map(|key| key.e.clone()).unwrap_or_default();
        let key = DecodingKey::from_rsa_components(&n, &e);
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.validate_exp = false;
        let outcome = key.and_then(|key| decode::<IdTokenClaims>(&token, &key, &validation));
        assert!(outcome.is_err());
    }

    #[test]
    fn each_claim_fault_breaks_exactly_its_claim() {
        let grant = grant(Provider::Kakao);
        let honest = claims(&grant, "access-1", NOW_MS).unwrap();
        let wrong_nonce = tampered(honest.clone(), Tamper::WrongNonce);
        assert_eq!(wrong_nonce.nonce.as_deref(), Some(WRONG_NONCE));
        assert_eq!(
            IdTokenClaims {
                nonce: honest.nonce.clone(),
                ..wrong_nonce
            },
            honest
        );
        let wrong_audience = tampered(honest.clone(), Tamper::WrongAudience);
        assert_eq!(wrong_audience.aud, WRONG_AUDIENCE);
        let expired = tampered(honest.clone(), Tamper::Expired);
        assert_eq!(expired.exp, NOW_MS / 1000 - EXPIRED_AGO_SECONDS);
        assert!(expired.iat < expired.exp && expired.auth_time <= expired.iat);
        let token = minted(&grant, Tamper::WrongAudience);
        assert!(verify(Provider::Kakao, &token, "client-1").is_err());
        let token = minted(&grant, Tamper::Expired);
        assert_eq!(
            verify(Provider::Kakao, &token, "client-1"),
            Err("expired".to_owned())
        );
    }

    #[test]
    fn no_id_token_without_openid_and_never_for_naver() {
        let mut without_openid = grant(Provider::Google);
        without_openid.scopes = vec!["email".to_owned()];
        assert_eq!(
            mint(keys(), &without_openid, "a", NOW_MS, Tamper::None),
            Ok(None)
        );
        assert_eq!(
            mint(keys(), &grant(Provider::Naver), "a", NOW_MS, Tamper::None),
            Ok(None)
        );
    }

    #[test]
    fn google_claims_follow_the_granted_scopes_and_hash_the_access_token() {
        let mut google = grant(Provider::Google);
        google.scopes = vec!["openid".to_owned(), GOOGLE_EMAIL_SCOPE.to_owned()];
        let claims = claims(&google, "ya29.token", NOW_MS).unwrap();
        assert_eq!(claims.email.as_deref(), Some("test-user@example.com"));
        assert_eq!(claims.email_verified, Some(true));
        assert_eq!(claims.name, None);
        assert_eq!(claims.azp.as_deref(), Some("client-1"));
        assert_eq!(claims.at_hash.map(|hash| hash.len()), Some(22), "16 bytes");
    }
}
