//! The providers' endpoints over HTTP: one implementation of authorize, token, user info and
//! JWKS, spoken in each provider's dialect (its error shapes and response fields).
//!
//! Order of work: count the request, consult the faults, then the protocol. No request holds the
//! core mutex across an await.

use axum::{
    Json,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    Core, HANG_DURATION, OAuth,
    authorize::{Refusal, authorize as decide},
    clock,
    faults::{Endpoint, FaultKind},
    grants::{ExchangeError, Grant, Issued, TokenRequest},
    id_token::{self, Tamper},
    keys::KeySet,
    params::Params,
    provider::Provider,
};

/// Why a user-info request is not authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unauthorized {
    MissingHeader,
    InvalidToken,
}

/// What a provider says in its own words.
pub(super) trait Dialect: 'static {
    const PROVIDER: Provider;
    /// Naver documents its token parameters in the query string (GET or POST); the others read
    /// the form body only.
    const TOKEN_PARAMS_IN_QUERY: bool = false;

    fn token_error(error: &ExchangeError) -> Response;
    fn token_body(grant: &Grant, issued: &Issued, id_token: Option<String>) -> Value;
    fn userinfo_body(grant: &Grant) -> Value;
    fn unauthorized(reason: Unauthorized) -> Response;
    /// An injected `error` fault's answer at `endpoint`.
    fn injected(endpoint: Endpoint, status: StatusCode) -> Response;
}

/// The standard OAuth `error` for a status, for injected faults.
pub(super) fn error_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "invalid_client",
        status if status.is_server_error() => "server_error",
        _ => "invalid_request",
    }
}

/// What injected faults write as `error_description`.
pub(super) const INJECTED_DESCRIPTION: &str = "injected by the sandbox";

/// The error page a provider shows the user when it cannot redirect (here as JSON).
fn error_page(description: &str) -> Response {
    let body = json!({ "error": "invalid_request", "error_description": description });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn found(location: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// What to do after consulting the faults.
enum Proceed {
    Normally(Tamper),
    Stop(Response),
}

impl OAuth {
    async fn consult<D: Dialect>(&self, endpoint: Endpoint, mints_id_token: bool) -> Proceed {
        let fault = self
            .lock()
            .faults
            .take(D::PROVIDER, endpoint, mints_id_token);
        match fault {
            None => Proceed::Normally(Tamper::None),
            Some(FaultKind::Latency { ms }) => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Proceed::Normally(Tamper::None)
            }
            Some(FaultKind::Error { status }) => Proceed::Stop(D::injected(endpoint, status)),
            Some(FaultKind::Hang) => {
                tokio::time::sleep(HANG_DURATION).await;
                Proceed::Stop(D::injected(endpoint, StatusCode::GATEWAY_TIMEOUT))
            }
            Some(FaultKind::IdToken(tamper)) => Proceed::Normally(tamper),
        }
    }

    fn counted(&self, provider: Provider, endpoint: Endpoint) {
        self.lock().stats.count(provider, endpoint);
    }
}

/// The authorize endpoint: approves at once and redirects.
pub(super) async fn authorize<D: Dialect>(
    State(oauth): State<OAuth>,
    RawQuery(query): RawQuery,
) -> Response {
    oauth.counted(D::PROVIDER, Endpoint::Authorize);
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(problem) => return error_page(&problem),
    };
    let decided = decide(
        D::PROVIDER,
        &params,
        &mut oauth.lock().grants,
        clock::now_ms(),
    );
    match decided {
        Ok(location) | Err(Refusal::Redirect(location)) => found(location),
        Err(Refusal::Page(problem)) => error_page(&problem),
    }
}

/// The token endpoint: exchanges a code for tokens.
pub(super) async fn token<D: Dialect>(
    State(oauth): State<OAuth>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    oauth.counted(D::PROVIDER, Endpoint::Token);
    let params = Params::parse(&body).and_then(|from_body| {
        if D::TOKEN_PARAMS_IN_QUERY {
            Params::parse(query.unwrap_or_default().as_bytes())?.merge(from_body)
        } else {
            Ok(from_body)
        }
    });
    let params = match params {
        Ok(params) => params,
        Err(problem) => return D::token_error(&ExchangeError::Malformed(problem)),
    };
    let request = TokenRequest::from_params(&params);
    let mints_id_token = request.code.is_some_and(|code| {
        oauth
            .lock()
            .grants
            .peek(D::PROVIDER, code, clock::now_ms())
            .is_some_and(id_token::is_minted_for)
    });
    let tamper = match oauth.consult::<D>(Endpoint::Token, mints_id_token).await {
        Proceed::Normally(tamper) => tamper,
        Proceed::Stop(response) => return response,
    };
    let now_ms = clock::now_ms();
    let exchanged = {
        let mut core = oauth.lock();
        let Core { grants, .. } = &mut *core;
        grants
            .exchange(D::PROVIDER, &request, now_ms)
            .map(|grant| (grant.clone(), grants.issue_tokens(grant, now_ms)))
    };
    let (grant, issued) = match exchanged {
        Ok(exchanged) => exchanged,
        Err(error) => return D::token_error(&error),
    };
    let minted = KeySet::embedded()
        .map_err(str::to_owned)
        .and_then(|keys| id_token::mint(keys, &grant, &issued.access_token, now_ms, tamper));
    match minted {
        Ok(id_token) => Json(D::token_body(&grant, &issued, id_token)).into_response(),
        Err(error) => {
            tracing::error!(%error, provider = D::PROVIDER.name(), "cannot mint an id_token");
            D::injected(Endpoint::Token, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Result<&str, Unauthorized> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Unauthorized::MissingHeader)?;
    let (scheme, token) = value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .ok_or(Unauthorized::InvalidToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Unauthorized::InvalidToken);
    }
    Ok(token)
}

/// The user-info endpoint: who the access token belongs to.
pub(super) async fn userinfo<D: Dialect>(
    State(oauth): State<OAuth>,
    headers: HeaderMap,
) -> Response {
    oauth.counted(D::PROVIDER, Endpoint::Userinfo);
    if let Proceed::Stop(response) = oauth.consult::<D>(Endpoint::Userinfo, false).await {
        return response;
    }
    let token = match bearer(&headers) {
        Ok(token) => token,
        Err(reason) => return D::unauthorized(reason),
    };
    let grant = oauth
        .lock()
        .grants
        .session(D::PROVIDER, token, clock::now_ms())
        .cloned();
    match grant {
        Some(grant) => Json(D::userinfo_body(&grant)).into_response(),
        None => D::unauthorized(Unauthorized::InvalidToken),
    }
}

/// The JWKS endpoint: the provider's public signing key.
pub(super) async fn jwks<D: Dialect>(State(oauth): State<OAuth>) -> Response {
    oauth.counted(D::PROVIDER, Endpoint::Jwks);
    if let Proceed::Stop(response) = oauth.consult::<D>(Endpoint::Jwks, false).await {
        return response;
    }
    let jwks = KeySet::embedded()
        .ok()
        .and_then(|keys| keys.jwks(D::PROVIDER));
    match jwks {
        Some(jwks) => Json(jwks).into_response(),
        None => {
            tracing::error!(provider = D::PROVIDER.name(), "no JWKS to publish");
            D::injected(Endpoint::Jwks, StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_bearer_token_is_read_whatever_the_schemes_case_and_anything_else_is_refused() {
        assert_eq!(bearer(&headers(Some("Bearer abc+/="))), Ok("abc+/="));
        assert_eq!(bearer(&headers(Some("bearer abc"))), Ok("abc"));
        assert_eq!(bearer(&headers(None)), Err(Unauthorized::MissingHeader));
        for value in ["Basic abc", "Bearer", "Bearer  ", "abc"] {
            assert_eq!(
                bearer(&headers(Some(value))),
                Err(Unauthorized::InvalidToken),
                "{value}"
            );
        }
    }
}
