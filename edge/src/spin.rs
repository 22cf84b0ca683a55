//! The Spin host: the same router as a `wasi:http` component. Spin has no Durable Objects, so
//! routes that need a room are absent here and money-moving routes go to the core, which is
//! correct on its own. Configuration comes from the component's environment (`spin up --env`,
//! or `wasmtime serve --env`): the component imports nothing Spin-specific, see spin.toml and
//! docs/decisions/0001-toolchain.md.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures::future::{Either, select};
use http_body_util::BodyExt;
use send_wrapper::SendWrapper;
use spin_sdk::http_component;
use tower::ServiceExt;

use crate::{
    client_address::ClientAddressRule,
    platform::{
        BoxFuture, Host, OutboundRequest, OutboundResponse, Platform, Transport, TransportError,
    },
    router::configured_router,
};

#[http_component]
async fn handle(request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let app = configured_router(
        |name| std::env::var(name).ok(),
        |config| Platform {
            client_address: ClientAddressRule::Spin {
                trusted_header: config.trusted_client_ip_header.clone(),
            },
            config,
            host: Arc::new(SpinHost),
            transport: Arc::new(WasiTransport),
            rooms: None,
            cache: None,
        },
        |line| eprintln!("{line}"),
    );
    let response = app
        .oneshot(request.map(axum::body::Body::from))
        .await
        .unwrap_or_else(|never| match never {});
    buffer(response).await
}

async fn buffer(response: axum::response::Response) -> http::Response<Vec<u8>> {
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    http::Response::from_parts(parts, bytes)
}

struct SpinHost;

impl Host for SpinHost {
    fn runtime(&self) -> &'static str {
        "spin"
    }

    fn now_unix_seconds(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            })
    }

    fn random_id(&self) -> String {
        let mut bytes = [0_u8; 16];
        // wasi:random is always present in a Spin or wasmtime host.
        if getrandom::fill(&mut bytes).is_err() {
            eprintln!("wasi:random failed");
        }
        hex::encode(bytes)
    }
}

/// A timer on the WASI monotonic clock, driven by Spin's executor.
struct Sleep {
    deadline_ns: u64,
}

impl Sleep {
    fn new(duration: Duration) -> Self {
        let duration_ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Sleep {
            deadline_ns: wasi::clocks::monotonic_clock::now().saturating_add(duration_ns),
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if wasi::clocks::monotonic_clock::now() >= self.deadline_ns {
            return Poll::Ready(());
        }
        let pollable = wasi::clocks::monotonic_clock::subscribe_instant(self.deadline_ns);
        spin_executor::push_waker(pollable, context.waker().clone());
        Poll::Pending
    }
}

struct WasiTransport;

impl Transport for WasiTransport {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        Box::pin(SendWrapper::new(async move {
            let timeout = Duration::from_millis(request.timeout_ms);
            let mut builder = http::Request::builder()
                .method(request.method.clone())
                .uri(&request.url);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            let outgoing = builder
                .body(request.body.to_vec())
                .map_err(|e| TransportError::Unreachable(e.to_string()))?;
            let call = std::pin::pin!(spin_sdk::http::send::<_, http::Response<Vec<u8>>>(outgoing));
            match select(call, Sleep::new(timeout)).await {
                Either::Left((Ok(response), _)) => Ok(OutboundResponse {
                    status: response.status().as_u16(),
                    body: Bytes::from(response.into_body()),
                }),
                Either::Left((Err(error), _)) => {
                    Err(TransportError::Unreachable(error.to_string()))
                }
                Either::Right(((), _)) => Err(TransportError::Timeout),
            }
        }))
    }
}
