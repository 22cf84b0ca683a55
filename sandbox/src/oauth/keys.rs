//! The RSA keys the sandbox signs `id_token`s with, and the JWKS documents that publish them.
//!
//! Three fixed 2048-bit test keys, generated once with `openssl genrsa -traditional 2048` and
//! committed as PKCS#1 PEM under `keys/`: Kakao's, Google's, and a rogue key that no JWKS
//! publishes, which signs the `bad_signature` fault's tokens (under the provider's own `kid`, so a
//! verifier must really check the signature to notice). They protect nothing; never reuse them.
//!
//! The JWKS `n` and `e` are computed from the private keys when the keys are first used, so they
//! cannot drift from the PEM files.

use std::sync::LazyLock;

use jsonwebtoken::{
    Algorithm, EncodingKey,
    jwk::{AlgorithmParameters, Jwk},
};
use serde_json::{Value, json};

use super::provider::Provider;

/// Kakao's key id in `id_token` headers and in `/kakao/.well-known/jwks.json`.
pub const KAKAO_KID: &str = "nene-sandbox-kakao-1";
/// Google's key id in `id_token` headers and in `/google/oauth2/v3/certs`.
pub const GOOGLE_KID: &str = "nene-sandbox-google-1";
/// Never published; `bad_signature` tokens carry the provider's kid instead.
pub const ROGUE_KID: &str = "nene-sandbox-rogue-1";

const KAKAO_PEM: &str = include_str!("keys/kakao.pem");
const GOOGLE_PEM: &str = include_str!("keys/google.pem");
const ROGUE_PEM: &str = include_str!("keys/rogue.pem");

/// A private key ready to sign, with its public half as JWKS components.
pub struct SigningKey {
    pub kid: &'static str,
    pub(crate) encoding: EncodingKey,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// # Errors
    /// The PEM is not an RSA private key.
    pub fn from_pem(kid: &'static str, pem: &str) -> Result<Self, String> {
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|error| format!("{kid}: {error}"))?;
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|error| format!("{kid}: {error}"))?;
        let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            return Err(format!("{kid}: not an RSA key"));
        };
        Ok(Self {
            kid,
            encoding,
            n: rsa.n,
            e: rsa.e,
        })
    }

    /// The key as a JWKS entry.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": self.n,
            "e": self.e,
        })
    }
}

/// Every key the sandbox holds.
#[derive(Debug)]
pub struct KeySet {
    kakao: SigningKey,
    google: SigningKey,
    rogue: SigningKey,
}

/// Parsed once per process: parsing checks the RSA key, which is slow in debug builds.
static EMBEDDED: LazyLock<Result<KeySet, String>> = LazyLock::new(KeySet::parse_embedded);

impl KeySet {
    /// The committed keys.
    ///
    /// # Errors
    /// A committed PEM file is broken (a unit test keeps them whole).
    pub fn embedded() -> Result<&'static Self, &'static str> {
        EMBEDDED.as_ref().map_err(String::as_str)
    }

    fn parse_embedded() -> Result<Self, String> {
        Ok(Self {
            kakao: SigningKey::from_pem(KAKAO_KID, KAKAO_PEM)?,
            google: SigningKey::from_pem(GOOGLE_KID, GOOGLE_PEM)?,
            rogue: SigningKey::from_pem(ROGUE_KID, ROGUE_PEM)?,
        })
    }

    /// The key `provider` signs with; Naver signs nothing.
    pub fn signing(&self, provider: Provider) -> Option<&SigningKey> {
        match provider {
            Provider::Kakao => Some(&self.kakao),
            Provider::Naver => None,
            Provider::Google => Some(&self.google),
        }
    }

    /// The key that is in no JWKS.
    pub fn rogue(&self) -> &SigningKey {
        &self.rogue
    }

    /// `{"keys": [...]}` as `provider` publishes it.
    pub fn jwks(&self, provider: Provider) -> Option<Value> {
        let key = self.signing(provider)?;
        Some(json!({ "keys": [key.jwk()] }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> &'static KeySet {
        KeySet::embedded().unwrap()
    }

    #[test]
    fn the_committed_keys_parse_and_are_three_different_keys() {
        let keys = keys();
        assert_ne!(keys.kakao.n, keys.google.n);
        assert_ne!(keys.kakao.n, keys.rogue.n);
        assert_ne!(keys.google.n, keys.rogue.n);
        for key in [&keys.kakao, &keys.google, &keys.rogue] {
            assert_eq!(key.e, "AQAB", "65537");
            // 2048 bits: 256 bytes, 342 base64url characters without padding.
            assert_eq!(key.n.len(), 342);
        }
    }

    #[test]
    fn a_jwks_publishes_only_its_providers_key_and_never_the_rogue_one() {
        let keys = keys();
        let kakao = keys.jwks(Provider::Kakao).unwrap_or_default();
        assert_eq!(kakao["keys"][0]["kid"], KAKAO_KID);
        assert_eq!(kakao["keys"][0]["kty"], "RSA");
        assert_eq!(kakao["keys"][0]["use"], "sig");
        assert_eq!(kakao["keys"][0]["alg"], "RS256");
        assert_eq!(kakao["keys"].as_array().map(Vec::len), Some(1));
        let google = keys.jwks(Provider::Google).unwrap_or_default();
        assert_eq!(google["keys"][0]["kid"], GOOGLE_KID);
        assert_eq!(keys.jwks(Provider::Naver), None);
        for jwks in [kakao, google] {
            assert_ne!(jwks["keys"][0]["n"], keys.rogue.n.as_str());
        }
    }

    #[test]
    fn a_pem_without_an_rsa_private_key_block_is_refused() {
        assert!(SigningKey::from_pem("x", "-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(
            SigningKey::from_pem(
                "x",
                "-----BEGIN RSA PRIVATE KEY-----\n!!!\n-----END RSA PRIVATE KEY-----"
            )
            .is_err()
        );
    }
}
