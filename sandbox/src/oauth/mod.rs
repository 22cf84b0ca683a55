//! Kakao, Naver and Google login (OAuth 2.0 authorization code, OpenID Connect for Kakao and
//! Google), stateful, with fault injection.
//!
//! Each provider lives under a path prefix standing for its real hosts, so that pointing a
//! client at the real provider is a change of base URL only:
//! `/kakao` = `kauth.kakao.com` and `kapi.kakao.com`; `/naver` = `nid.naver.com` and
//! `openapi.naver.com`; `/google` = `accounts.google.com`, `oauth2.googleapis.com`,
//! `openidconnect.googleapis.com` and `www.googleapis.com`.
//!
//! # Kakao
//! - `GET /kakao/oauth/authorize` `?client_id&redirect_uri&response_type=code[&state][&scope]
//!   [&nonce][&code_challenge&code_challenge_method=S256]` → `302 redirect_uri?code=…[&state=…]`.
//! - `POST /kakao/oauth/token` (form: `grant_type=authorization_code, client_id, redirect_uri,
//!   code[, client_secret][, code_verifier]`) → `{token_type:"bearer", access_token, expires_in:
//!   21599, refresh_token, refresh_token_expires_in: 5183999, scope, id_token?}`. Errors: `400
//!   {error, error_description, error_code}`: `invalid_grant`/`KOE320` for a code that is unknown,
//!   used, expired, issued to another client or whose PKCE verifier is missing or wrong;
//!   `invalid_grant`/`KOE303` for another redirect URI; `invalid_request`/`KOE001` for a missing
//!   parameter; `unsupported_grant_type`/`KOE001`.
//! - `GET|POST /kakao/v2/user/me` (Bearer) → `{id: <number>, connected_at, properties:
//!   {nickname}, kakao_account: {profile_nickname_needs_agreement: false, profile: {nickname,
//!   is_default_nickname: false}, email… with scope account_email}}`; `401 {msg, code: -401}`.
//! - `GET /kakao/.well-known/jwks.json`.
//!
//! # Naver (no OpenID Connect, no PKCE)
//! - `GET /naver/oauth2.0/authorize` `?response_type=code&client_id&redirect_uri&state` (state
//!   required) → `302 redirect_uri?code=…&state=…`.
//! - `GET|POST /naver/oauth2.0/token` (query or form: `grant_type, client_id, client_secret, code,
//!   state`) → `{access_token, refresh_token, token_type:"bearer", expires_in:"3600"}` (a
//!   string). Errors are `200 {error:"invalid_request", error_description}` as Naver answers them
//!   (`"no valid data in session"` for an unusable code).
//! - `GET|POST /naver/v1/nid/me` (Bearer) → `{resultcode:"00", message:"success", response: {id,
//!   nickname, email}}`; `401 {resultcode:"024"|"028", message}`.
//!
//! # Google
//! - `GET /google/o/oauth2/v2/auth` `?client_id&redirect_uri&response_type=code&scope[&state]
//!   [&nonce][&code_challenge&code_challenge_method=S256]` (scope required).
//! - `POST /google/token` (form: `code, client_id, client_secret, redirect_uri,
//!   grant_type[, code_verifier]`) → `{access_token, expires_in: 3599, token_type:"Bearer",
//!   scope, id_token?}` (`email` and `profile` answered by their long names). Errors `400
//!   {error, error_description}`: `invalid_grant`/`"Bad Request"` for a code that is unknown,
//!   used, expired or issued to another client, `invalid_grant`/`"Missing code verifier."` or
//!   `"Invalid code verifier."`, `redirect_uri_mismatch`/`"Bad Request"`, `invalid_request` for a
//!   missing parameter (`"client_secret is missing."`), `unsupported_grant_type`.
//! - `GET /google/v1/userinfo` and `GET /google/oauth2/v3/userinfo` (Bearer) → `{sub,
//!   email?, email_verified?, name?}` by scope; `401 {error:"invalid_request",
//!   error_description:"Invalid Credentials"}`.
//! - `GET /google/oauth2/v3/certs`.
//!
//! # All providers
//! The authorize endpoint approves at once (see [`authorize`]): `sandbox_user=NAME` picks the
//! test user (default `test-user`), `sandbox_consent=deny` plays a user who cancels. Codes are
//! single-use and live 10 minutes; `id_token`s are described in [`id_token`], the keys and their
//! `kid`s in [`keys`], user ids in [`provider`]. Clients are not registered: any `client_id` and
//! any non-empty `client_secret` pass, and the token request must repeat the authorize request's
//! `client_id` (and `redirect_uri`, at Kakao and Google). Refresh tokens are issued but
//! `grant_type=refresh_token` is not supported.
//!
//! # Control plane (not the providers': no auth, JSON, for tests)
//! Errors are `400 {error:"invalid_request", error_description}`.
//! - `POST /sandbox/oauth/faults` `{provider: "kakao"|"naver"|"google"|"any", endpoint:
//!   "token"|"userinfo"|"jwks"|"any", kind: "error"|"hang"|"latency"|"bad_signature"|
//!   "wrong_nonce"|"expired_id_token"|"wrong_audience", status? (error only, default 503),
//!   latencyMs? (latency only, ≤ 120000), count? (default 1)}` → `201 {rules: [...]}`; `GET`
//!   lists the rules; `DELETE` clears them (`204`). See [`faults`].
//! - `GET /sandbox/oauth/stats` → `{kakao: {authorize, token, userinfo, jwks}, naver: {…},
//!   google: {…}}`: requests received, faulted ones included.
//! - `POST /sandbox/oauth/reset` → `204`: forgets codes, tokens, faults and counts.

pub mod authorize;
mod control;
pub mod faults;
mod google;
pub mod grants;
mod http;
pub mod id_token;
mod kakao;
pub mod keys;
mod naver;
pub mod params;
pub mod pkce;
pub mod provider;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{Router, extract::DefaultBodyLimit};
use serde_json::{Map, Value};

use crate::clock;
use faults::{Endpoint, Faults};
use grants::Grants;
use provider::Provider;

/// Token requests and fault rules are well under 2 KB; the bound refuses anything else early.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// How long `hang` keeps a request unanswered: longer than any client timeout worth testing,
/// bounded so the task ends.
pub const HANG_DURATION: Duration = Duration::from_secs(120);

/// Requests received, per provider and endpoint.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    counts: [[u64; Endpoint::ALL.len()]; Provider::ALL.len()],
}

impl Stats {
    pub fn count(&mut self, provider: Provider, endpoint: Endpoint) {
        let count = &mut self.counts[provider.index()][endpoint.index()];
        *count = count.saturating_add(1);
    }

    pub fn get(&self, provider: Provider, endpoint: Endpoint) -> u64 {
        self.counts[provider.index()][endpoint.index()]
    }

    pub fn to_json(&self) -> Value {
        let mut providers = Map::new();
        for provider in Provider::ALL {
            let mut endpoints = Map::new();
            for endpoint in Endpoint::ALL {
                endpoints.insert(
                    endpoint.name().to_owned(),
                    self.get(provider, endpoint).into(),
                );
            }
            providers.insert(provider.name().to_owned(), endpoints.into());
        }
        providers.into()
    }
}

/// Everything the providers change, behind one mutex held only for short, await-free sections.
#[derive(Debug, Default)]
struct Core {
    grants: Grants,
    faults: Faults,
    stats: Stats,
}

/// The router's state: one per [`router`] call.
#[derive(Clone, Default)]
struct OAuth {
    core: Arc<Mutex<Core>>,
}

impl OAuth {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The three providers and their control plane, with their own, fresh state.
pub fn router() -> Router {
    Router::new()
        .merge(kakao::routes())
        .merge(naver::routes())
        .merge(google::routes())
        .merge(control::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(OAuth::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_per_provider_and_endpoint() {
        let mut stats = Stats::default();
        stats.count(Provider::Naver, Endpoint::Token);
        stats.count(Provider::Naver, Endpoint::Token);
        stats.count(Provider::Google, Endpoint::Jwks);
        let json = stats.to_json();
        assert_eq!(json["naver"]["token"], 2);
        assert_eq!(json["google"]["jwks"], 1);
        assert_eq!(json["kakao"]["authorize"], 0);
    }
}
