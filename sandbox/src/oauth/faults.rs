//! Injected faults: rules that make the next matching provider calls slow, fail, hang, or
//! return a broken `id_token`. This is what the real providers cannot be asked to do, and what a
//! login flow must survive.
//!
//! A rule names a provider and an endpoint (either may be `any`); the list's order and counting
//! are [`crate::faults`]'; `count` is at least 1. An id-token rule matches only a token call that
//! mints an `id_token` (Kakao or Google, scope `openid`), so it is not wasted on a call it cannot
//! affect.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{id_token::Tamper, provider::Provider};
use crate::faults::{self, Counted, Rule, Uses, ZeroCount};

/// The login providers' rules.
pub type Faults = faults::Faults<FaultRule>;
/// What an `error` rule answers when it names no status: the providers' outages look like this.
pub const FAULT_STATUS_DEFAULT: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

/// A provider endpoint, for statistics and fault rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The browser's visit; counted, never faulted (the user's browser, not our server, calls it).
    Authorize,
    Token,
    Userinfo,
    Jwks,
}

impl Endpoint {
    pub const ALL: [Self; 4] = [Self::Authorize, Self::Token, Self::Userinfo, Self::Jwks];

    pub fn name(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::Token => "token",
            Self::Userinfo => "userinfo",
            Self::Jwks => "jwks",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Authorize => 0,
            Self::Token => 1,
            Self::Userinfo => 2,
            Self::Jwks => 3,
        }
    }
}

/// The provider a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderSelector {
    Kakao,
    Naver,
    Google,
    Any,
}

impl ProviderSelector {
    fn matches(self, provider: Provider) -> bool {
        match self {
            Self::Kakao => provider == Provider::Kakao,
            Self::Naver => provider == Provider::Naver,
            Self::Google => provider == Provider::Google,
            Self::Any => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kakao => "kakao",
            Self::Naver => "naver",
            Self::Google => "google",
            Self::Any => "any",
        }
    }
}

/// The endpoint a rule applies to; `any` is token, userinfo and jwks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointSelector {
    Token,
    Userinfo,
    Jwks,
    Any,
}

impl EndpointSelector {
    fn matches(self, endpoint: Endpoint) -> bool {
        match self {
            Self::Token => endpoint == Endpoint::Token,
            Self::Userinfo => endpoint == Endpoint::Userinfo,
            Self::Jwks => endpoint == Endpoint::Jwks,
            Self::Any => endpoint != Endpoint::Authorize,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Userinfo => "userinfo",
            Self::Jwks => "jwks",
            Self::Any => "any",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Sleep, then answer normally.
    Latency { ms: u64 },
    /// Answer `status` with the provider's error body; change nothing (a code stays unused).
    Error { status: StatusCode },
    /// Answer nothing for [`HANG_DURATION`](super::HANG_DURATION), change nothing.
    Hang,
    /// Answer normally, with this wrong in the `id_token`.
    IdToken(Tamper),
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            Self::Latency { .. } => "latency",
            Self::Error { .. } => "error",
            Self::Hang => "hang",
            Self::IdToken(Tamper::BadSignature) => "bad_signature",
            Self::IdToken(Tamper::WrongNonce) => "wrong_nonce",
            Self::IdToken(Tamper::Expired) => "expired_id_token",
            Self::IdToken(Tamper::WrongAudience) => "wrong_audience",
            Self::IdToken(Tamper::None) => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub provider: ProviderSelector,
    pub endpoint: EndpointSelector,
    pub kind: FaultKind,
}

impl FaultRule {
    fn matches(&self, provider: Provider, endpoint: Endpoint, mints_id_token: bool) -> bool {
        let kind_applies = match self.kind {
            FaultKind::IdToken(_) => endpoint == Endpoint::Token && mints_id_token,
            _ => true,
        };
        self.provider.matches(provider) && self.endpoint.matches(endpoint) && kind_applies
    }
}

impl Rule for FaultRule {
    type Kind = FaultKind;

    fn kind(&self) -> &FaultKind {
        &self.kind
    }

    fn to_json(&self) -> Value {
        let mut json = json!({
            "provider": self.provider.name(),
            "endpoint": self.endpoint.name(),
            "kind": self.kind.name(),
        });
        match self.kind {
            FaultKind::Latency { ms } => json["latencyMs"] = json!(ms),
            FaultKind::Error { status } => json["status"] = json!(status.as_u16()),
            FaultKind::Hang | FaultKind::IdToken(_) => {}
        }
        json
    }
}

/// The control plane's `POST /sandbox/oauth/faults` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultSpec {
    pub provider: ProviderSelector,
    pub endpoint: EndpointSelector,
    pub kind: String,
    pub status: Option<u16>,
    pub latency_ms: Option<u64>,
    pub count: Option<u32>,
}

impl FaultSpec {
    /// # Errors
    /// A message saying which field is wrong.
    pub fn into_rule(self) -> Result<Counted<FaultRule>, String> {
        let uses = Uses::from_count(self.count, ZeroCount::Refused)?;
        if self.status.is_some() && self.kind != "error" {
            return Err("status applies to kind error only".to_owned());
        }
        if self.latency_ms.is_some() && self.kind != "latency" {
            return Err("latencyMs applies to kind latency only".to_owned());
        }
        let kind = match self.kind.as_str() {
            "latency" => FaultKind::Latency {
                ms: faults::latency_ms(self.latency_ms)?,
            },
            "error" => FaultKind::Error {
                status: match self.status {
                    None => FAULT_STATUS_DEFAULT,
                    Some(status) => faults::error_status(status)?,
                },
            },
            "hang" => FaultKind::Hang,
            "bad_signature" => FaultKind::IdToken(Tamper::BadSignature),
            "wrong_nonce" => FaultKind::IdToken(Tamper::WrongNonce),
            "expired_id_token" => FaultKind::IdToken(Tamper::Expired),
            "wrong_audience" => FaultKind::IdToken(Tamper::WrongAudience),
            other => {
                return Err(format!(
                    "unknown kind {other:?}: latency, error, hang, bad_signature, wrong_nonce, \
                     expired_id_token or wrong_audience"
                ));
            }
        };
        if let FaultKind::IdToken(_) = kind {
            if self.provider == ProviderSelector::Naver {
                return Err("Naver issues no id_token".to_owned());
            }
            if !matches!(
                self.endpoint,
                EndpointSelector::Token | EndpointSelector::Any
            ) {
                return Err(format!(
                    "{} applies to the token endpoint, which mints id_tokens",
                    self.kind
                ));
            }
        }
        Ok(Counted {
            rule: FaultRule {
                provider: self.provider,
                endpoint: self.endpoint,
                kind,
            },
            uses,
        })
    }
}

impl Faults {
    /// Uses up one call of the first rule matching the call.
    pub fn take(
        &mut self,
        provider: Provider,
        endpoint: Endpoint,
        mints_id_token: bool,
    ) -> Option<FaultKind> {
        self.take_first(|rule| rule.matches(provider, endpoint, mints_id_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: Value) -> Result<Counted<FaultRule>, String> {
        serde_json::from_value::<FaultSpec>(json)
            .map_err(|error| error.to_string())
            .and_then(FaultSpec::into_rule)
    }

    fn faults(rules: &[Value]) -> Faults {
        let mut faults = Faults::default();
        for json in rules {
            let added = rule(json.clone()).and_then(|rule| faults.add(rule));
            assert_eq!(added, Ok(()), "{json}");
        }
        faults
    }

    #[test]
    fn a_rule_applies_to_its_count_of_matching_calls_and_then_lapses() {
        let mut faults = faults(&[json!({
            "provider": "kakao", "endpoint": "token", "kind": "error", "status": 500, "count": 2
        })]);
        let error = Some(FaultKind::Error {
            status: StatusCode::INTERNAL_SERVER_ERROR,
        });
        assert_eq!(faults.take(Provider::Google, Endpoint::Token, true), None);
        assert_eq!(
            faults.take(Provider::Kakao, Endpoint::Userinfo, false),
            None
        );
        assert_eq!(faults.take(Provider::Kakao, Endpoint::Token, false), error);
        assert_eq!(faults.take(Provider::Kakao, Endpoint::Token, true), error);
        assert_eq!(faults.take(Provider::Kakao, Endpoint::Token, true), None);
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn an_error_rule_defaults_to_503_and_any_matches_every_server_endpoint() {
        let mut faults =
            faults(&[json!({"provider": "any", "endpoint": "any", "kind": "error", "count": 9})]);
        assert_eq!(
            faults.take(Provider::Naver, Endpoint::Authorize, false),
            None
        );
        for endpoint in [Endpoint::Token, Endpoint::Userinfo, Endpoint::Jwks] {
            assert_eq!(
                faults.take(Provider::Naver, endpoint, false),
                Some(FaultKind::Error {
                    status: StatusCode::SERVICE_UNAVAILABLE
                })
            );
        }
    }

    #[test]
    fn an_id_token_rule_waits_for_a_token_call_that_mints_one() {
        let mut faults =
            faults(&[json!({"provider": "any", "endpoint": "any", "kind": "wrong_nonce"})]);
        assert_eq!(
            faults.take(Provider::Google, Endpoint::Userinfo, false),
            None
        );
        assert_eq!(faults.take(Provider::Naver, Endpoint::Token, false), None);
        assert_eq!(
            faults.take(Provider::Google, Endpoint::Token, true),
            Some(FaultKind::IdToken(Tamper::WrongNonce))
        );
        assert!(faults.rules().is_empty());
    }

    #[test]
    fn a_rule_that_cannot_apply_or_is_malformed_is_refused() {
        for json in [
            json!({"provider": "naver", "endpoint": "token", "kind": "bad_signature"}),
            json!({"provider": "google", "endpoint": "jwks", "kind": "expired_id_token"}),
            json!({"provider": "google", "endpoint": "token", "kind": "latency"}),
            json!({"provider": "google", "endpoint": "token", "kind": "latency", "latencyMs": 120_001}),
            json!({"provider": "google", "endpoint": "token", "kind": "error", "status": 302}),
            json!({"provider": "google", "endpoint": "token", "kind": "hang", "status": 500}),
            json!({"provider": "google", "endpoint": "token", "kind": "hang", "count": 0}),
            json!({"provider": "google", "endpoint": "token", "kind": "explode"}),
            json!({"provider": "yahoo", "endpoint": "token", "kind": "hang"}),
            json!({"provider": "google", "endpoint": "authorize", "kind": "hang"}),
            json!({"provider": "google", "endpoint": "token", "kind": "hang", "extra": 1}),
        ] {
            assert!(rule(json.clone()).is_err(), "{json}");
        }
    }
}
