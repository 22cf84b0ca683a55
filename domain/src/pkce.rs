//! PKCE (RFC 7636) between the app and us: the binding of a login's callback to the client that
//! started it.
//!
//! A login returns to the app through a redirect URI, and one of ours is the custom scheme
//! `nene://auth/callback`, which any app on a phone can register: the `code` and `state` on their
//! way back can land in the wrong app. So the app that starts a login keeps a secret
//! [`CodeVerifier`] and sends only its S256 [`CodeChallenge`] to `start`; the core stores the
//! challenge with the login state, and `callback` finishes the login only for the verifier that
//! answers it (RFC 8252 §8.1, OAuth 2.1 for native apps). An intercepted code and state are then
//! worth nothing: the verifier never left the app that started the login.
//!
//! This is a second binding, beside the core's own PKCE with the provider (which binds the
//! provider's code exchange to our server).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only challenge method accepted. `plain` (the challenge is the verifier) is refused: whoever
/// sees the start request could answer it.
pub const METHOD_S256: &str = "S256";
/// RFC 7636 §4.1: a verifier is 43 to 128 characters.
pub const VERIFIER_CHARS_MIN: usize = 43;
pub const VERIFIER_CHARS_MAX: usize = 128;
/// A SHA-256 digest is 32 bytes.
const DIGEST_BYTES: usize = 32;
/// An S256 challenge is the unpadded base64url of a SHA-256 digest: ⌈32 × 8 / 6⌉ = 43 characters.
pub const S256_CHALLENGE_CHARS: usize = 43;
const _: () = assert!(S256_CHALLENGE_CHARS == (DIGEST_BYTES * 8).div_ceil(6));

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge_method must be S256 (plain is not accepted)")]
    MethodNotS256,
    #[error(
        "code_challenge must be the unpadded base64url SHA-256 of the code_verifier \
         (43 characters of A-Z, a-z, 0-9, '-', '_')"
    )]
    MalformedChallenge,
    #[error("code_verifier must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_', '~'")]
    MalformedVerifier,
}

/// The S256 challenge of a client's verifier: the SHA-256 digest the verifier must hash to.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeChallenge([u8; DIGEST_BYTES]);

impl std::fmt::Debug for CodeChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CodeChallenge({})", self.as_base64url())
    }
}

impl CodeChallenge {
    /// A challenge as a client sends it to `start`: `method` must be `S256`.
    ///
    /// # Errors
    /// [`PkceError::MethodNotS256`] for any other method (`plain` included),
    /// [`PkceError::MalformedChallenge`] for a challenge that is not an S256 digest.
    pub fn parse_with_method(method: &str, challenge: &str) -> Result<Self, PkceError> {
        if method != METHOD_S256 {
            return Err(PkceError::MethodNotS256);
        }
        CodeChallenge::parse_s256(challenge)
    }

    /// An S256 challenge: 43 characters of unpadded base64url that decode to 32 bytes (a decoder
    /// that tolerated stray trailing bits would let two spellings name one digest; ours refuses).
    ///
    /// # Errors
    /// [`PkceError::MalformedChallenge`].
    pub fn parse_s256(challenge: &str) -> Result<Self, PkceError> {
        if challenge.len() != S256_CHALLENGE_CHARS {
            return Err(PkceError::MalformedChallenge);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(challenge)
            .map_err(|_| PkceError::MalformedChallenge)?;
        let digest: [u8; DIGEST_BYTES] = bytes
            .try_into()
            .map_err(|_| PkceError::MalformedChallenge)?;
        Ok(CodeChallenge(digest))
    }

    /// The challenge a client computes from its verifier: `BASE64URL(SHA256(verifier))`.
    #[must_use]
    pub fn of(verifier: &CodeVerifier) -> Self {
        CodeChallenge(Sha256::digest(verifier.0.as_bytes()).into())
    }

    /// The wire (and stored) form.
    #[must_use]
    pub fn as_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Whether `verifier` hashes to this challenge. The digests are compared in constant time, so
    /// the time taken says nothing about how many bytes matched.
    #[must_use]
    pub fn is_answered_by(&self, verifier: &CodeVerifier) -> bool {
        let digest: [u8; DIGEST_BYTES] = Sha256::digest(verifier.0.as_bytes()).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

/// A client's secret verifier: 43–128 characters of the RFC 7636 alphabet
/// (`A-Z a-z 0-9 - . _ ~`). `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier(<redacted>)")
    }
}

impl CodeVerifier {
    /// # Errors
    /// [`PkceError::MalformedVerifier`] outside the length or the alphabet.
    pub fn parse(raw: &str) -> Result<Self, PkceError> {
        let in_alphabet = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if in_alphabet && (VERIFIER_CHARS_MIN..=VERIFIER_CHARS_MAX).contains(&raw.len()) {
            Ok(CodeVerifier(raw.to_owned()))
        } else {
            Err(PkceError::MalformedVerifier)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(raw: &str) -> CodeVerifier {
        CodeVerifier::parse(raw).unwrap()
    }

    #[test]
    fn the_challenge_of_rfc_7636_appendix_b_is_answered_by_its_verifier() {
        let verifier = verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let challenge =
            CodeChallenge::parse_with_method("S256", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
                .unwrap();
        assert_eq!(CodeChallenge::of(&verifier), challenge);
        assert!(challenge.is_answered_by(&verifier));
        assert_eq!(
            challenge.as_base64url(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn another_verifier_does_not_answer_the_challenge() {
        let challenge = CodeChallenge::of(&verifier(&"a".repeat(43)));
        assert!(!challenge.is_answered_by(&verifier(&"b".repeat(43))));
        assert!(!challenge.is_answered_by(&verifier(&"a".repeat(44))));
    }

    #[test]
    fn the_plain_method_and_malformed_challenges_are_refused() {
        let good = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        for method in ["plain", "s256", "", "S512"] {
            assert_eq!(
                CodeChallenge::parse_with_method(method, good),
                Err(PkceError::MethodNotS256),
                "{method}"
            );
        }
        for bad in [
            "",
            "short",
            // A verifier sent as its own challenge (what `plain` would do).
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXkdBjft",
            // Standard base64's alphabet and padding.
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=",
            // The right length, but stray bits in the last character.
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c네",
        ] {
            assert_eq!(
                CodeChallenge::parse_with_method("S256", bad),
                Err(PkceError::MalformedChallenge),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_verifier_is_43_to_128_characters_of_the_rfc_alphabet() {
        for ok in [
            "a".repeat(43),
            "Z".repeat(128),
            "0123456789-._~ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".to_owned(),
        ] {
            assert!(CodeVerifier::parse(&ok).is_ok(), "{ok}");
        }
        for bad in [
            String::new(),
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(43)),
            format!("{} ", "a".repeat(43)),
            format!("{}네", "a".repeat(43)),
        ] {
            assert_eq!(
                CodeVerifier::parse(&bad),
                Err(PkceError::MalformedVerifier),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_verifier_is_never_shown_in_debug_output() {
        let secret = "s3cret".repeat(8);
        assert!(!format!("{:?}", verifier(&secret)).contains("s3cret"));
    }
}
