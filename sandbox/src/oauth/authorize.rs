//! The authorize endpoint's decision, without HTTP: a redirect carrying a fresh code, an error
//! redirect, or an error page.
//!
//! There is no login page: the user is approved at once. The request names its user with
//! `sandbox_user` (default [`SANDBOX_USER_DEFAULT`](super::provider::SANDBOX_USER_DEFAULT)) and
//! may refuse consent with `sandbox_consent=deny`, which answers `error=access_denied` as the
//! providers do when the user presses cancel.
//!
//! As RFC 6749 §4.1.2.1 requires, a request without a usable `redirect_uri` or without a
//! `client_id` is never redirected: it gets an error page (here `400`). Every other problem is
//! an error redirect `redirect_uri?error=…&error_description=…&state=…`.

use super::{
    grants::{Grant, Grants},
    params::{Params, redirect_location},
    pkce::CodeChallenge,
    provider::{Provider, SandboxUser},
};

/// Why an authorize request did not get a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Shown to the user; the client hears nothing.
    Page(String),
    /// The error redirect's `Location`.
    Redirect(String),
}

/// Approves the request and returns the success redirect's `Location`, `redirect_uri?code=…
/// &state=…` (the state echoed exactly, left out when the request had none).
///
/// # Errors
/// [`Refusal::Page`] without a usable `redirect_uri` or `client_id`; otherwise
/// [`Refusal::Redirect`] to the client's `redirect_uri` with the provider's error.
pub fn authorize(
    provider: Provider,
    params: &Params,
    grants: &mut Grants,
    now_ms: i64,
) -> Result<String, Refusal> {
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| Refusal::Page("redirect_uri is required".to_owned()))?;
    check_redirect_uri(redirect_uri).map_err(|problem| Refusal::Page(problem.to_owned()))?;
    let client_id = params
        .get("client_id")
        .ok_or_else(|| Refusal::Page("client_id is required".to_owned()))?;
    let state = params.get("state");
    let refuse = |error: &str, description: &str| {
        let mut query = vec![("error", error)];
        if !description.is_empty() {
            query.push(("error_description", description));
        }
        if let Some(state) = state {
            query.push(("state", state));
        }
        Refusal::Redirect(redirect_location(redirect_uri, &query))
    };
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(refuse("invalid_request", "response_type is required")),
        Some(other) => {
            let error = match provider {
                // KOE201: Kakao names it invalid_request.
                Provider::Kakao => "invalid_request",
                Provider::Naver | Provider::Google => "unsupported_response_type",
            };
            return Err(refuse(
                error,
                &format!("Unsupported response type: {other}"),
            ));
        }
    }
    if provider == Provider::Naver && state.is_none() {
        return Err(refuse("invalid_request", "state is required"));
    }
    let scope = params.get("scope");
    if provider == Provider::Google && scope.is_none() {
        return Err(refuse(
            "invalid_request",
            "Missing required parameter: scope",
        ));
    }
    let user = match params.get("sandbox_user") {
        None => SandboxUser::default_user(),
        Some(name) => {
            SandboxUser::parse(name).map_err(|problem| refuse("invalid_request", &problem))?
        }
    };
    // Naver has no PKCE and ignores the parameters, as it does.
    let code_challenge = match (provider, params.get("code_challenge")) {
        (Provider::Naver, _) | (_, None) => None,
        (_, Some(challenge)) => Some(
            CodeChallenge::parse(challenge, params.get("code_challenge_method"))
                .map_err(|problem| refuse("invalid_request", &problem))?,
        ),
    };
    match params.get("sandbox_consent") {
        None | Some("allow") => {}
        Some("deny") => {
            let description = match provider {
                Provider::Kakao => "User denied access",
                Provider::Naver => "Canceled By User",
                Provider::Google => "",
            };
            return Err(refuse("access_denied", description));
        }
        Some(_) => {
            return Err(refuse(
                "invalid_request",
                "sandbox_consent must be allow or deny",
            ));
        }
    }
    let grant = Grant {
        provider,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        scopes: scope.map(split_scopes).unwrap_or_default(),
        nonce: params.get("nonce").map(str::to_owned),
        code_challenge,
        user,
        approved_at_ms: now_ms,
    };
    let code = grants.issue_code(grant, now_ms);
    let mut query = vec![("code", code.as_str())];
    if let Some(state) = state {
        query.push(("state", state));
    }
    Ok(redirect_location(redirect_uri, &query))
}

/// An absolute `http(s)` URL without a fragment, in visible ASCII (it goes into `Location`).
/// Clients are not registered, so any such URL is accepted.
fn check_redirect_uri(redirect_uri: &str) -> Result<(), &'static str> {
    if !(redirect_uri.starts_with("https://") || redirect_uri.starts_with("http://")) {
        return Err("redirect_uri must be an absolute http or https URL");
    }
    if redirect_uri.contains('#') {
        return Err("redirect_uri must not have a fragment");
    }
    if !redirect_uri.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("redirect_uri must be percent-encoded ASCII without spaces");
    }
    Ok(())
}

/// Kakao separates scopes with commas, the others with spaces; both are accepted everywhere.
fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::grants::{TokenRequest, tests::NOW_MS};

    fn params(query: &str) -> Params {
        Params::parse(query.as_bytes()).unwrap()
    }

    fn query_of(location: &str) -> Params {
        let (_, query) = location.split_once('?').unwrap_or_default();
        params(query)
    }

    const KAKAO: &str = "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb\
        &response_type=code&scope=openid,profile_nickname&nonce=n-1";

    #[test]
    fn the_authorize_redirect_echoes_the_state() {
        let mut grants = Grants::default();
        let state = "s+/=&?é 1";
        let encoded = serde_urlencoded::to_string([("state", state)]).unwrap_or_default();
        let request = format!("{KAKAO}&{encoded}");
        let location = authorize(Provider::Kakao, &params(&request), &mut grants, NOW_MS);
        let location = location.unwrap_or_default();
        assert!(location.starts_with("https://app.example/cb?code="));
        let answer = query_of(&location);
        assert_eq!(answer.get("state"), Some(state));
        assert!(answer.get("code").is_some());
    }

    #[test]
    fn the_code_remembers_who_approved_what() {
        let mut grants = Grants::default();
        let request = format!("{KAKAO}&sandbox_user=alice");
        let location = authorize(Provider::Kakao, &params(&request), &mut grants, NOW_MS);
        let answer = query_of(&location.unwrap_or_default());
        let code = answer.get("code").unwrap_or_default();
        let grant = grants.peek(Provider::Kakao, code, NOW_MS);
        assert_eq!(grant.map(|grant| grant.user.as_str()), Some("alice"));
        assert_eq!(
            grant.map(|grant| grant.scopes.clone()),
            Some(vec!["openid".to_owned(), "profile_nickname".to_owned()])
        );
        assert_eq!(
            grant.and_then(|grant| grant.nonce.clone()).as_deref(),
            Some("n-1")
        );
        let exchanged = grants.exchange(
            Provider::Kakao,
            &TokenRequest {
                grant_type: Some("authorization_code"),
                code: Some(code),
                client_id: Some("app"),
                redirect_uri: Some("https://app.example/cb"),
                ..TokenRequest::default()
            },
            NOW_MS,
        );
        assert!(exchanged.is_ok());
    }

    #[test]
    fn without_a_usable_redirect_uri_or_a_client_id_the_user_sees_an_error_page() {
        let mut grants = Grants::default();
        for query in [
            "client_id=app&response_type=code",
            "client_id=app&response_type=code&redirect_uri=app.example%2Fcb",
            "client_id=app&response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb%23top",
            "response_type=code&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        ] {
            let outcome = authorize(Provider::Google, &params(query), &mut grants, NOW_MS);
            assert!(matches!(outcome, Err(Refusal::Page(_))), "{query}");
        }
        assert_eq!(grants.held(), (0, 0));
    }

    #[test]
    fn a_wrong_response_type_is_an_error_redirect_in_the_providers_words() {
        let mut grants = Grants::default();
        let base =
            "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s1&scope=openid";
        for (provider, error) in [
            (Provider::Kakao, "invalid_request"),
            (Provider::Naver, "unsupported_response_type"),
            (Provider::Google, "unsupported_response_type"),
        ] {
            let query = format!("{base}&response_type=token");
            let outcome = authorize(provider, &params(&query), &mut grants, NOW_MS);
            let Err(Refusal::Redirect(location)) = outcome else {
                unreachable!("{outcome:?}");
            };
            let answer = query_of(&location);
            assert_eq!(answer.get("error"), Some(error));
            assert_eq!(answer.get("state"), Some("s1"));
            assert_eq!(answer.get("code"), None);
        }
    }

    #[test]
    fn naver_requires_a_state_and_google_a_scope() {
        let mut grants = Grants::default();
        let base = "client_id=app&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code";
        for provider in [Provider::Naver, Provider::Google] {
            let outcome = authorize(provider, &params(base), &mut grants, NOW_MS);
            let Err(Refusal::Redirect(location)) = outcome else {
                unreachable!("{outcome:?}");
            };
            assert_eq!(query_of(&location).get("error"), Some("invalid_request"));
        }
        let outcome = authorize(Provider::Kakao, &params(base), &mut grants, NOW_MS);
        assert!(outcome.is_ok(), "Kakao needs neither");
    }

    #[test]
    fn a_plain_pkce_challenge_is_refused_and_naver_ignores_pkce() {
        let mut grants = Grants::default();
        let query = format!("{KAKAO}&state=s&code_challenge=abc&code_challenge_method=plain");
        let outcome = authorize(Provider::Kakao, &params(&query), &mut grants, NOW_MS);
        assert!(matches!(outcome, Err(Refusal::Redirect(_))));
        let outcome = authorize(Provider::Naver, &params(&query), &mut grants, NOW_MS);
        assert!(outcome.is_ok());
    }

    #[test]
    fn a_user_who_denies_consent_is_sent_back_with_access_denied() {
        let mut grants = Grants::default();
        let query = format!("{KAKAO}&state=s9&sandbox_consent=deny");
        let outcome = authorize(Provider::Kakao, &params(&query), &mut grants, NOW_MS);
        let Err(Refusal::Redirect(location)) = outcome else {
            unreachable!("{outcome:?}");
        };
        let answer = query_of(&location);
        assert_eq!(answer.get("error"), Some("access_denied"));
        assert_eq!(answer.get("state"), Some("s9"));
        assert_eq!(grants.held(), (0, 0));
    }
}
