//! The Cloudflare Workers host: a few lines that build the platform from the Worker's bindings and
//! hand the request to the shared router. Also re-exports the Durable Object classes, which must
//! be exported from the Worker's module.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::future::{Either, select};
use send_wrapper::SendWrapper;
use tower::Service;
use worker::{
    AbortController, Cache, Context, Delay, Env, Fetch, Headers, HttpRequest, Method, Request,
    RequestInit, event,
};

use crate::{
    client_address::ClientAddressRule,
    platform::{
        AnswerCache, BoxFuture, CachedAnswer, Host, ObjectName, OutboundRequest, OutboundResponse,
        Platform, Rooms, Transport, TransportError,
    },
    router::configured_router,
};
use nene_durable::{CHALLENGE_ROOM_BINDING, WALLET_BINDING};

#[event(fetch)]
async fn fetch(
    request: HttpRequest,
    env: Env,
    ctx: Context,
) -> worker::Result<http::Response<axum::body::Body>> {
    let env = Arc::new(SendWrapper::new(env));
    let rooms_env = Arc::clone(&env);
    let mut app = configured_router(
        |name| env.var(name).ok().map(|v| v.to_string()),
        |config| Platform {
            config,
            host: Arc::new(WorkersHost),
            transport: Arc::new(FetchTransport),
            rooms: Some(Arc::new(DurableRooms { env: rooms_env })),
            cache: Some(Arc::new(WorkersCache {
                ctx: SendWrapper::new(ctx),
            })),
            client_address: ClientAddressRule::Cloudflare,
        },
        |line| worker::console_error!("{line}"),
    );
    let response = app
        .call(request)
        .await
        .unwrap_or_else(|never| match never {});
    Ok(response)
}

struct WorkersHost;

impl Host for WorkersHost {
    fn runtime(&self) -> &'static str {
        "workers"
    }

    fn now_unix_seconds(&self) -> i64 {
        // Date::now is milliseconds since the epoch as f64; whole seconds fit in i64 exactly.
        #[allow(clippy::cast_possible_truncation)]
        let seconds = (worker::Date::now().as_millis() / 1_000) as i64;
        seconds
    }

    fn random_id(&self) -> String {
        let mut bytes = [0_u8; 16];
        // Workers always provide crypto.getRandomValues; a failure would be a runtime defect.
        if getrandom::fill(&mut bytes).is_err() {
            worker::console_error!("crypto.getRandomValues failed");
        }
        hex::encode(bytes)
    }
}

fn to_worker_request(request: &OutboundRequest) -> Result<Request, TransportError> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers
            .set(name, value)
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(request.method.as_str().to_owned()))
        .with_headers(headers);
    if !request.body.is_empty() {
        let body = js_sys_body(&request.body);
        init.with_body(Some(body));
    }
    Request::new_with_init(&request.url, &init)
        .map_err(|e| TransportError::Unreachable(e.to_string()))
}

fn js_sys_body(body: &Bytes) -> wasm_bindgen::JsValue {
    worker::js_sys::Uint8Array::from(body.as_ref()).into()
}

async fn read_response(mut response: worker::Response) -> Result<OutboundResponse, TransportError> {
    let status = response.status_code();
    let body = response
        .bytes()
        .await
        .map_err(|e| TransportError::Unreachable(e.to_string()))?;
    Ok(OutboundResponse {
        status,
        body: Bytes::from(body),
    })
}

/// Races `call` against the request's timeout; on timeout the call is aborted.
async fn with_timeout<F>(
    timeout_ms: u64,
    controller: AbortController,
    call: F,
) -> Result<OutboundResponse, TransportError>
where
    F: std::future::Future<Output = worker::Result<worker::Response>>,
{
    let call = std::pin::pin!(call);
    let timer = Delay::from(Duration::from_millis(timeout_ms));
    match select(call, timer).await {
        Either::Left((Ok(response), _)) => read_response(response).await,
        Either::Left((Err(error), _)) => Err(TransportError::Unreachable(error.to_string())),
        Either::Right(((), _)) => {
            controller.abort();
            Err(TransportError::Timeout)
        }
    }
}

struct FetchTransport;

impl Transport for FetchTransport {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        Box::pin(SendWrapper::new(async move {
            let worker_request = to_worker_request(&request)?;
            let controller = AbortController::default();
            let signal = controller.signal();
            let fetch = Fetch::Request(worker_request);
            with_timeout(
                request.timeout_ms,
                controller,
                fetch.send_with_signal(&signal),
            )
            .await
        }))
    }
}

struct DurableRooms {
    env: Arc<SendWrapper<Env>>,
}

impl Rooms for DurableRooms {
    fn send(
        &self,
        object: ObjectName<'_>,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        let env = Arc::clone(&self.env);
        let (binding, name) = match object {
            ObjectName::Room(challenge) => (CHALLENGE_ROOM_BINDING, challenge.as_str().to_owned()),
            ObjectName::Wallet(user) => (WALLET_BINDING, user.to_owned()),
        };
        Box::pin(SendWrapper::new(async move {
            let stub = env
                .durable_object(binding)
                .and_then(|namespace| namespace.get_by_name(&name))
                .map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let worker_request = to_worker_request(&request)?;
            // A stub call cannot take an abort signal; dropping it on timeout stops our wait,
            // and the room itself finishes or fails on its own.
            with_timeout(
                request.timeout_ms,
                AbortController::default(),
                stub.fetch_with_request(worker_request),
            )
            .await
        }))
    }
}

/// The header a cached answer keeps its storing time in (Unix seconds).
const HEADER_STORED_AT: &str = "x-nene-stored-at";

/// The data centre's cache (`caches.default`). On a `workers.dev` host it stores nothing (a
/// Cloudflare rule), so production runs on a custom domain; `wrangler dev` keeps it locally.
struct WorkersCache {
    ctx: SendWrapper<Context>,
}

impl AnswerCache for WorkersCache {
    fn get(&self, key: &str) -> BoxFuture<Option<CachedAnswer>> {
        let key = key.to_owned();
        Box::pin(SendWrapper::new(async move {
            let mut response = Cache::default().get(key, false).await.ok()??;
            let stored_at = response
                .headers()
                .get(HEADER_STORED_AT)
                .ok()??
                .parse()
                .ok()?;
            let body = response.bytes().await.ok()?;
            Some(CachedAnswer {
                body: Bytes::from(body),
                stored_at,
            })
        }))
    }

    fn put(&self, key: String, answer: CachedAnswer, keep_seconds: u32) -> BoxFuture<()> {
        Box::pin(SendWrapper::new(async move {
            let headers = Headers::new();
            let stored = headers
                .set("content-type", "application/json")
                .and_then(|()| headers.set("cache-control", &format!("max-age={keep_seconds}")))
                .and_then(|()| headers.set(HEADER_STORED_AT, &answer.stored_at.to_string()))
                .and_then(|()| worker::Response::from_bytes(answer.body.to_vec()));
            let result = match stored {
                Ok(response) => {
                    Cache::default()
                        .put(key, response.with_headers(headers))
                        .await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                worker::console_error!("search cache: put failed: {error}");
            }
        }))
    }

    fn after_response(&self, work: BoxFuture<()>) {
        self.ctx.wait_until(work);
    }
}
