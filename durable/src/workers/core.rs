//! Signed calls from the objects to the core's internal API.

use std::time::Duration;

use futures::future::{Either, select};
use nene_domain::{
    internal_api,
    limits::CORE_TIMEOUT_MS,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret},
};
use worker::{AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit};

use super::now_ms;

/// The core's URL and the shared secret, from the object's environment.
fn core_link(env: &Env) -> Option<(String, SigningSecret)> {
    let url = env.var("CORE_URL").ok()?.to_string();
    let secret = SigningSecret::parse(&env.var("CORE_SIGNING_SECRET").ok()?.to_string()).ok()?;
    Some((url.trim_end_matches('/').to_owned(), secret))
}

/// A signed call to the core (one of its [`internal_api`] routes) as `user`; `None` when it did
/// not answer in time or could not be reached.
pub(super) async fn core_call(
    env: &Env,
    call: &internal_api::Call,
    user: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let method = call.method().as_str();
    let path = call.path_and_query();
    let (base, secret) = core_link(env)?;
    let timestamp = now_ms() / 1_000;
    let signature = secret.sign(&SignedParts {
        method,
        path_and_query: path,
        timestamp_unix_seconds: timestamp,
        user,
        body,
    });
    let headers = Headers::new();
    headers.set(HEADER_TIMESTAMP, &timestamp.to_string()).ok()?;
    headers.set(HEADER_SIGNATURE, &signature).ok()?;
    if !user.is_empty() {
        headers.set(HEADER_USER, user).ok()?;
    }
    let mut init = RequestInit::new();
    if !body.is_empty() {
        headers.set("content-type", "application/json").ok()?;
        init.with_body(Some(wasm_bindgen::JsValue::from_str(
            std::str::from_utf8(body).ok()?,
        )));
    }
    init.with_method(Method::from(method.to_owned()))
        .with_headers(headers);
    let request = Request::new_with_init(&format!("{base}{path}"), &init).ok()?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let call = std::pin::pin!(fetch.send_with_signal(&signal));
    let timer = Delay::from(Duration::from_millis(CORE_TIMEOUT_MS));
    match select(call, timer).await {
        Either::Left((Ok(mut response), _)) => {
            let status = response.status_code();
            let body = response.bytes().await.ok()?;
            Some((status, body))
        }
        Either::Left((Err(_), _)) => None,
        Either::Right(((), _)) => {
            controller.abort();
            None
        }
    }
}
