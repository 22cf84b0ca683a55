//! PKCE (RFC 7636), S256 only: the authorize request commits to `code_challenge =
//! BASE64URL(SHA256(code_verifier))` and the token request must show the verifier.
//!
//! `plain` is refused at authorize: no provider requires it, and a client that falls back to it
//! has lost PKCE's protection without noticing.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// RFC 7636 §4.1: a verifier is 43 to 128 unreserved characters.
pub const CODE_VERIFIER_CHARS_MIN: usize = 43;
pub const CODE_VERIFIER_CHARS_MAX: usize = 128;
/// An S256 challenge is a SHA-256 digest in unpadded base64url: 43 characters.
pub const CODE_CHALLENGE_CHARS: usize = 43;

/// A checked S256 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

impl CodeChallenge {
    /// # Errors
    /// A message for the error redirect: the method is not `S256` or the challenge is malformed.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, String> {
        if method != Some("S256") {
            return Err(format!(
                "code_challenge_method must be S256, not {}",
                method.unwrap_or("(absent, meaning plain)")
            ));
        }
        let decoded = URL_SAFE_NO_PAD.decode(challenge).ok();
        if challenge.len() != CODE_CHALLENGE_CHARS || decoded.is_none_or(|bytes| bytes.len() != 32)
        {
            return Err("code_challenge must be an unpadded base64url SHA-256 digest".to_owned());
        }
        Ok(Self(challenge.to_owned()))
    }

    /// Whether `verifier` is well formed and hashes to this challenge.
    pub fn is_met_by(&self, verifier: &str) -> bool {
        let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        (CODE_VERIFIER_CHARS_MIN..=CODE_VERIFIER_CHARS_MAX).contains(&verifier.len())
            && verifier.chars().all(unreserved)
            && s256(verifier) == self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `BASE64URL(SHA256(verifier))`, what a client sends as `code_challenge`.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn the_rfc_example_verifier_meets_its_challenge() {
        assert_eq!(s256(RFC_VERIFIER), RFC_CHALLENGE);
        let challenge = CodeChallenge::parse(RFC_CHALLENGE, Some("S256"));
        assert!(challenge.is_ok_and(|challenge| challenge.is_met_by(RFC_VERIFIER)));
    }

    #[test]
    fn a_pkce_verifier_that_does_not_match_the_challenge_is_refused() {
        let Ok(challenge) = CodeChallenge::parse(RFC_CHALLENGE, Some("S256")) else {
            unreachable!("the RFC's challenge parses");
        };
        let other = "eBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(!challenge.is_met_by(other));
        assert!(!challenge.is_met_by(""));
        assert!(
            !challenge.is_met_by(RFC_CHALLENGE),
            "the challenge is not its own verifier"
        );
    }

    #[test]
    fn a_plain_or_missing_method_and_a_malformed_challenge_are_refused() {
        assert!(CodeChallenge::parse(RFC_CHALLENGE, Some("plain")).is_err());
        assert!(CodeChallenge::parse(RFC_CHALLENGE, None).is_err());
        assert!(CodeChallenge::parse("short", Some("S256")).is_err());
        assert!(CodeChallenge::parse(&format!("{}=", &RFC_CHALLENGE[..42]), Some("S256")).is_err());
    }
}
