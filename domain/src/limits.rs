//! Named bounds shared by the edge and the core. Each says why it is that number.

/// Largest JSON body the public API accepts. The biggest request we expect is a challenge
/// creation with a description (a few KB); 64 KiB leaves room and keeps a hostile client from
/// making a Worker buffer megabytes.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;

/// Largest body the core accepts from the edge: requests are relayed bodies plus a small envelope.
pub const INTERNAL_BODY_BYTES_MAX: usize = 2 * REQUEST_BODY_BYTES_MAX;

/// How long the edge waits for the core before answering 503. A Worker has 30 s of wall time; a
/// client on a phone gives up well before that. The core answers in milliseconds when healthy.
pub const CORE_TIMEOUT_MS: u64 = 5_000;

/// How long the core waits on Postgres or Redis for a health probe before calling it down.
pub const HEALTH_PROBE_TIMEOUT_MS: u64 = 1_000;

const _: () = assert!(HEALTH_PROBE_TIMEOUT_MS < CORE_TIMEOUT_MS);
const _: () = assert!(INTERNAL_BODY_BYTES_MAX >= REQUEST_BODY_BYTES_MAX);
