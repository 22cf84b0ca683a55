//! The signature on every edge → core request.
//!
//! The core trusts no user id that did not come through the edge, so the edge signs each request
//! with a secret it shares with the core: HMAC-SHA256 over the method, the path and query, a unix
//! timestamp, the asserted user id and a SHA-256 of the body. The core recomputes it and refuses a
//! request whose timestamp is outside [`SIGNATURE_WINDOW_SECONDS`], so a captured request cannot be
//! replayed later; replays inside the window are harmless because every request that moves money
//! also carries an idempotency key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Header carrying the unix time (seconds) at which the edge signed the request.
pub const HEADER_TIMESTAMP: &str = "x-nene-timestamp";
/// Header carrying the hex HMAC-SHA256 signature.
pub const HEADER_SIGNATURE: &str = "x-nene-signature";
/// Header carrying the user id the edge authenticated (absent for anonymous calls).
pub const HEADER_USER: &str = "x-nene-user";

/// How far the signer's clock may be from the verifier's, either way. Workers and the container run
/// on NTP-synchronised hosts (skew well under a second); five minutes also absorbs a retry after a
/// slow network, while a captured request is useless soon after.
pub const SIGNATURE_WINDOW_SECONDS: i64 = 300;

/// Shortest shared secret we accept: 32 bytes is the HMAC-SHA256 block-strength recommendation.
pub const SECRET_BYTES_MIN: usize = 32;

/// The canonical string's version tag: a change of layout changes the tag, so two versions can
/// never verify each other's signatures by accident.
const CANONICAL_VERSION: &str = "NENE-HMAC-SHA256-1";

/// A shared secret that is long enough to sign with.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing secret must be at least {SECRET_BYTES_MIN} bytes")]
    SecretTooShort,
    #[error("the request is not signed")]
    Missing,
    #[error("the signature timestamp is malformed")]
    MalformedTimestamp,
    #[error("the signature timestamp is outside the allowed window")]
    Stale,
    #[error("the signature does not match the request")]
    Mismatch,
}

impl SigningSecret {
    /// # Errors
    /// [`SignatureError::SecretTooShort`] below [`SECRET_BYTES_MIN`] bytes.
    pub fn parse(raw: &str) -> Result<Self, SignatureError> {
        if raw.len() < SECRET_BYTES_MIN {
            return Err(SignatureError::SecretTooShort);
        }
        Ok(SigningSecret(raw.as_bytes().to_vec()))
    }

    /// Whether this is a secret this repository publishes (`crate::deployment`).
    #[must_use]
    pub fn is_published(&self) -> bool {
        std::str::from_utf8(&self.0).is_ok_and(crate::deployment::is_published_secret)
    }

    fn mac(&self, request: &SignedParts<'_>) -> Hmac<Sha256> {
        hmac_sha256(&self.0, request.canonical().as_bytes())
    }

    /// The hex signature of `request`.
    #[must_use]
    pub fn sign(&self, request: &SignedParts<'_>) -> String {
        hex::encode(self.mac(request).finalize().into_bytes())
    }

    /// Checks a signature and its timestamp against the verifier's clock `now_unix_seconds`.
    ///
    /// # Errors
    /// [`SignatureError::Stale`] outside the window, [`SignatureError::Mismatch`] for any change to
    /// the signed parts or a wrong secret.
    pub fn verify(
        &self,
        request: &SignedParts<'_>,
        signature_hex: &str,
        now_unix_seconds: i64,
    ) -> Result<(), SignatureError> {
        // `abs_diff` cannot overflow: `now - timestamp` did for a timestamp near `i64::MIN`
        // (a panic in debug builds, a wrapped "fresh" difference in release).
        if now_unix_seconds.abs_diff(request.timestamp_unix_seconds)
            > SIGNATURE_WINDOW_SECONDS.unsigned_abs()
        {
            return Err(SignatureError::Stale);
        }
        let signature = hex::decode(signature_hex).map_err(|_| SignatureError::Mismatch)?;
        // `verify_slice` compares in constant time.
        self.mac(request)
            .verify_slice(&signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Everything the signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    pub method: &'a str,
    /// Path and query exactly as sent, e.g. `/internal/v1/health?x=1`.
    pub path_and_query: &'a str,
    pub timestamp_unix_seconds: i64,
    /// The authenticated user, or `""` for an anonymous call.
    pub user: &'a str,
    pub body: &'a [u8],
}

impl SignedParts<'_> {
    fn canonical(&self) -> String {
        let body_hash = hex::encode(Sha256::digest(self.body));
        format!(
            "{CANONICAL_VERSION}\n{}\n{}\n{}\n{}\n{body_hash}",
            self.method.to_ascii_uppercase(),
            self.path_and_query,
            self.timestamp_unix_seconds,
            self.user,
        )
    }
}

/// Parses the timestamp header.
///
/// # Errors
/// [`SignatureError::MalformedTimestamp`] when it is not an integer.
pub fn parse_timestamp(raw: &str) -> Result<i64, SignatureError> {
    raw.trim()
        .parse::<i64>()
        .map_err(|_| SignatureError::MalformedTimestamp)
}

/// HMAC-SHA256 of `input` under `key`, ready to finalize or verify (in constant time).
pub(crate) fn hmac_sha256(key: &[u8], input: &[u8]) -> Hmac<Sha256> {
    // `new_from_slice` accepts keys of any length for HMAC, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(input);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn secret() -> SigningSecret {
        SigningSecret::parse("0123456789abcdef0123456789abcdef").unwrap()
    }

    fn parts(body: &[u8]) -> SignedParts<'_> {
        SignedParts {
            method: "POST",
            path_and_query: "/internal/v1/things?x=1",
            timestamp_unix_seconds: NOW,
            user: "user-1",
            body,
        }
    }

    #[test]
    fn a_request_signed_with_the_shared_secret_verifies() {
        let signature = secret().sign(&parts(b"{}"));
        assert_eq!(secret().verify(&parts(b"{}"), &signature, NOW + 10), Ok(()));
    }

    #[test]
    fn a_changed_body_path_method_or_user_does_not_verify() {
        let signature = secret().sign(&parts(b"{\"amount\":1}"));
        let tampered = [
            SignedParts {
                body: b"{\"amount\":9}",
                ..parts(b"")
            },
            SignedParts {
                path_and_query: "/internal/v1/things?x=2",
                ..parts(b"{\"amount\":1}")
            },
            SignedParts {
                method: "GET",
                ..parts(b"{\"amount\":1}")
            },
            SignedParts {
                user: "user-2",
                ..parts(b"{\"amount\":1}")
            },
        ];
        for request in &tampered {
            assert_eq!(
                secret().verify(request, &signature, NOW),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn a_request_older_or_newer_than_the_window_is_stale() {
        let signature = secret().sign(&parts(b""));
        let late = NOW + SIGNATURE_WINDOW_SECONDS + 1;
        let early = NOW - SIGNATURE_WINDOW_SECONDS - 1;
        assert_eq!(
            secret().verify(&parts(b""), &signature, late),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            secret().verify(&parts(b""), &signature, early),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn another_secret_does_not_verify() {
        let other = SigningSecret::parse("ffffffffffffffffffffffffffffffff").unwrap();
        let signature = other.sign(&parts(b""));
        assert_eq!(
            secret().verify(&parts(b""), &signature, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            SigningSecret::parse("short"),
            Err(SignatureError::SecretTooShort)
        ));
    }

    #[test]
    fn a_timestamp_at_the_ends_of_the_integer_range_is_stale_not_a_panic() {
        for (timestamp, now) in [
            (i64::MIN, NOW),
            (i64::MIN + 1, NOW),
            (i64::MAX, NOW),
            (i64::MIN, i64::MAX),
            (i64::MAX, i64::MIN),
            (NOW, i64::MIN),
        ] {
            let request = SignedParts {
                timestamp_unix_seconds: timestamp,
                ..parts(b"")
            };
            let signature = secret().sign(&request);
            assert_eq!(
                secret().verify(&request, &signature, now),
                Err(SignatureError::Stale),
                "{timestamp} at {now}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the headers say, verifying answers and never panics: the core runs it on
            /// every internal request before anything else.
            #[test]
            fn verifying_arbitrary_headers_never_panics(
                method in ".*",
                path in ".*",
                user in ".*",
                timestamp_header in prop_oneof![
                    any::<i64>().prop_map(|t| t.to_string()),
                    "[ +-]?[0-9]{1,25}[ ]?",
                    ".*",
                ],
                signature_header in prop_oneof!["[0-9a-f]{64}", ".*"],
                body in proptest::collection::vec(any::<u8>(), 0..64),
                now in any::<i64>(),
            ) {
                if let Ok(timestamp) = parse_timestamp(&timestamp_header) {
                    let request = SignedParts {
                        method: &method,
                        path_and_query: &path,
                        timestamp_unix_seconds: timestamp,
                        user: &user,
                        body: &body,
                    };
                    let _ = secret().verify(&request, &signature_header, now);
                }
            }

            /// Any timestamp and clock: verifying never panics, and a correctly signed request
            /// passes exactly when the two are within the window.
            #[test]
            fn the_window_holds_for_every_timestamp_and_clock(
                timestamp in any::<i64>(),
                now in any::<i64>(),
            ) {
                let request = SignedParts {
                    timestamp_unix_seconds: timestamp,
                    ..parts(b"{}")
                };
                let signature = secret().sign(&request);
                let within = i128::from(now).abs_diff(i128::from(timestamp))
                    <= u128::from(SIGNATURE_WINDOW_SECONDS.unsigned_abs());
                let verdict = secret().verify(&request, &signature, now);
                prop_assert_eq!(verdict.is_ok(), within);
                if !within {
                    prop_assert_eq!(verdict, Err(SignatureError::Stale));
                }
            }

            /// A timestamp near `i64::MIN` (the overflow of `now - timestamp`) is refused as
            /// stale, whatever the signature.
            #[test]
            fn a_timestamp_near_the_minimum_is_refused(
                offset in 0_i64..1_000_000,
                now in -1_000_000_000_000_i64..1_000_000_000_000,
                signature_header in ".*",
            ) {
                let request = SignedParts {
                    timestamp_unix_seconds: i64::MIN + offset,
                    ..parts(b"")
                };
                prop_assert_eq!(
                    secret().verify(&request, &signature_header, now),
                    Err(SignatureError::Stale)
                );
                let signed = secret().sign(&request);
                prop_assert_eq!(
                    secret().verify(&request, &signed, now),
                    Err(SignatureError::Stale)
                );
            }
        }
    }
}
