//! What a host must give the router. Each adapter (Workers, Spin, native tests) implements these
//! few traits; nothing else in the edge knows which host it runs on.

use bytes::Bytes;
use nene_domain::ChallengeId;
use std::{future::Future, pin::Pin, sync::Arc};

use crate::{client_address::ClientAddressRule, config::EdgeConfig};

/// A boxed future that axum can hold across `.await`. Hosts whose futures are not `Send`
/// (Workers, Spin: single-threaded wasm) wrap them in `send_wrapper::SendWrapper`, which is sound
/// there because the future never leaves its one thread.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An outbound HTTP request, fully buffered: every body we send is small and bounded.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: http::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The host aborts the call after this long and answers [`TransportError::Timeout`].
    pub timeout_ms: u64,
}

#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("the call timed out")]
    Timeout,
    #[error("the peer could not be reached: {0}")]
    Unreachable(String),
}

/// Outbound HTTP with a timeout.
pub trait Transport: Send + Sync {
    fn send(&self, request: OutboundRequest)
    -> BoxFuture<Result<OutboundResponse, TransportError>>;
}

/// Which Durable Object a call goes to.
#[derive(Debug, Clone, Copy)]
pub enum ObjectName<'a> {
    /// The `ChallengeRoom` named after a challenge.
    Room(&'a ChallengeId),
    /// The `Wallet` named after a user.
    Wallet(&'a str),
}

/// Calls into Durable Objects. Hosts without them (Spin) have none, and the routes that need one
/// go to the core instead, which is correct on its own.
pub trait Rooms: Send + Sync {
    /// `request.url` is a path of the object's protocol (`nene_durable`).
    fn send(
        &self,
        object: ObjectName<'_>,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>>;
}

/// The host's wall clock and randomness.
pub trait Host: Send + Sync {
    /// Which runtime serves the edge (`workers`, `spin`, `test`), reported by `/v1/health`.
    fn runtime(&self) -> &'static str;
    fn now_unix_seconds(&self) -> i64;
    /// 16 random bytes, hex: request ids. The host's CSPRNG, so ids are unguessable.
    fn random_id(&self) -> String;
}

/// A response kept by the host's cache: the core's JSON and when the edge stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub body: Bytes,
    /// Unix seconds, by the host's clock.
    pub stored_at: i64,
}

/// A cache of answers by key (a URL), shared beyond one request: the Workers Cache API, which
/// keeps them in the data centre. Hosts without one (Spin) have none, and their routes ask the
/// core every time, which is correct on its own.
pub trait AnswerCache: Send + Sync {
    /// The answer stored under `key`, if the cache still has it.
    fn get(&self, key: &str) -> BoxFuture<Option<CachedAnswer>>;
    /// Stores `answer` under `key` for at most `keep_seconds`. Best effort: a failure is a miss
    /// later, never an error now.
    fn put(&self, key: String, answer: CachedAnswer, keep_seconds: u32) -> BoxFuture<()>;
    /// Runs `work` after the response has gone, without holding it back (Workers: `waitUntil`).
    fn after_response(&self, work: BoxFuture<()>);
}

/// The router's state: the platform, shared by every handler.
pub type AppState = Arc<Platform>;

/// Everything the router runs on.
#[derive(Clone)]
pub struct Platform {
    pub config: EdgeConfig,
    pub host: Arc<dyn Host>,
    pub transport: Arc<dyn Transport>,
    pub rooms: Option<Arc<dyn Rooms>>,
    /// Where first pages of search are kept between requests, on hosts that have such a cache.
    pub cache: Option<Arc<dyn AnswerCache>>,
    /// Where this host's client addresses come from (the login rate limits).
    pub client_address: ClientAddressRule,
}
