//! The core's internal API as data: every route the core mounts, named once here. The core builds
//! its router from these constants and nothing else, and its callers (the edge, the Durable
//! Objects) name the same constants when they call it. So "which internal routes exist" is a
//! list, and a test holds the list to its callers: a route that no edge or Durable Object code
//! calls is not mounted in production (`core-service/tests/internal_routes.rs`).
//!
//! Why it matters: every internal route is reachable by anyone holding the edge's signing secret.
//! A route kept "for tests" (a raw ledger credit, say) turns one leak of that secret into
//! unlimited points; tests call the core's operations as library functions instead.
//!
//! Callers write `internal_api::NAME` (the module path, not a renamed import): that is how the
//! test finds them.
//!
//! The messages of these routes live here too (sign-in's in [`auth`]): both sides import the same
//! type, so a field renamed on one side does not compile on the other.

pub mod auth;

/// An HTTP method of an internal route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method as it goes on the wire (and into the signature).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Who a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Called by the edge or a Durable Object; mounted in every deployment.
    Production,
    /// Mounted only in dev mode (`NENE_ENV=dev`), for the local stack and the tests; its path is
    /// under [`DEV_PATH_PREFIX`].
    DevOnly,
}

/// Every internal path starts with this (the core requires the edge's signature on all of them).
pub const PATH_PREFIX: &str = "/internal/v1/";
/// Every dev-only path starts with this, so a dev route is recognisable in any log.
pub const DEV_PATH_PREFIX: &str = "/internal/v1/dev/";

/// One route of the core's internal API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// The constant's name, for messages.
    pub name: &'static str,
    pub method: Method,
    /// The path as the core's router mounts it, `{…}` marking a segment.
    pub path: &'static str,
    pub audience: Audience,
}

impl Route {
    /// A call of this route: its path with each `{…}` segment replaced, in order, by `segments`
    /// (each already checked by the caller to be one well-formed path segment). A placeholder
    /// left without a segment stays as it is, which the core answers with 404.
    #[must_use]
    pub fn call(&self, segments: &[&str]) -> Call {
        let mut path = String::with_capacity(self.path.len() + 64);
        let mut segments = segments.iter();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|at| open + at) else {
                break;
            };
            path.push_str(&rest[..open]);
            match segments.next() {
                Some(segment) => path.push_str(segment),
                None => path.push_str(&rest[open..=close]),
            }
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        Call {
            method: self.method,
            path_and_query: path,
        }
    }
}

/// A request to make of the core: the route's method and a concrete path (and query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    method: Method,
    path_and_query: String,
}

impl Call {
    /// The same call with `query` (without its `?`) appended; an empty query adds nothing.
    #[must_use]
    pub fn with_query(mut self, query: &str) -> Call {
        if !query.is_empty() {
            self.path_and_query.push('?');
            self.path_and_query.push_str(query);
        }
        self
    }

    #[must_use]
    pub fn method(&self) -> Method {
        self.method
    }

    #[must_use]
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }
}

macro_rules! routes {
    ($( $(#[doc = $doc:literal])* $name:ident = $audience:ident $method:ident $path:literal; )*) => {
        $(
            $(#[doc = $doc])*
            pub const $name: Route = Route {
                name: stringify!($name),
                method: Method::$method,
                path: $path,
                audience: Audience::$audience,
            };
        )*
        /// Every route of the core's internal API, production and dev-only.
        pub const ALL: &[Route] = &[$($name),*];
    };
}

routes! {
    /// The health report (the edge's `GET /v1/health`).
    HEALTH = Production Get "/internal/v1/health";

    /// Sign-in: the provider's authorize URL.
    AUTH_START = Production Post "/internal/v1/auth/{provider}/start";
    /// Sign-in: the provider's callback, a session.
    AUTH_CALLBACK = Production Post "/internal/v1/auth/{provider}/callback";
    /// A refresh token rotated.
    AUTH_REFRESH = Production Post "/internal/v1/auth/refresh";
    /// Sign-out: the session's refresh family revoked.
    AUTH_LOGOUT = Production Post "/internal/v1/auth/logout";
    /// Whether an access token was revoked (the edge's check on money-moving routes).
    AUTH_REVOKED = Production Post "/internal/v1/auth/revoked";
    /// The signed user's profile.
    ME = Production Get "/internal/v1/me";
    /// A change to the signed user's profile.
    ME_CHANGE = Production Patch "/internal/v1/me";
    /// A push device registered.
    DEVICE_PUT = Production Put "/internal/v1/me/devices/{device_id}";
    /// A push device removed.
    DEVICE_DELETE = Production Delete "/internal/v1/me/devices/{device_id}";

    /// The signed user's wallet (the edge's `GET /v1/wallet`, the `Wallet` object's cache fill).
    WALLET = Production Get "/internal/v1/me/wallet";
    /// The signed user's ledger history.
    WALLET_ENTRIES = Production Get "/internal/v1/me/wallet/entries";

    /// A challenge created.
    CHALLENGE_CREATE = Production Post "/internal/v1/challenges";
    /// Challenges browsed.
    CHALLENGE_BROWSE = Production Get "/internal/v1/challenges";
    /// One challenge.
    CHALLENGE_DETAIL = Production Get "/internal/v1/challenges/{id}";
    /// A join (from the room, or straight from the edge on Spin).
    CHALLENGE_JOIN = Production Post "/internal/v1/challenges/{id}/join";
    /// A proof submitted.
    PROOF_SUBMIT = Production Post "/internal/v1/challenges/{id}/proofs";
    /// A challenge's proofs.
    PROOF_LIST = Production Get "/internal/v1/challenges/{id}/proofs";
    /// The signed user's standing in a challenge.
    CHALLENGE_STANDING = Production Get "/internal/v1/challenges/{id}/me";
    /// A proof reported.
    PROOF_REPORT = Production Post "/internal/v1/proofs/{id}/report";
    /// A rejected proof appealed.
    PROOF_APPEAL = Production Post "/internal/v1/proofs/{id}/appeal";
    /// A reviewer's verdict on a proof.
    PROOF_REVIEW = Production Post "/internal/v1/admin/proofs/{id}/review";
    /// The reviewers' queue of open reports and appeals.
    PROOF_REVIEW_QUEUE = Production Get "/internal/v1/admin/proofs/queue";

    /// An order for points.
    PAYMENT_ORDER = Production Post "/internal/v1/payments/orders";
    /// A payment confirmed after the widget.
    PAYMENT_CONFIRM = Production Post "/internal/v1/payments/confirm";
    /// A payment's state.
    PAYMENT = Production Get "/internal/v1/payments/{order_id}";
    /// A refund of a payment's unused points.
    PAYMENT_REFUND = Production Post "/internal/v1/payments/{order_id}/refund";
    /// Toss's webhook, handed over by the edge.
    TOSS_WEBHOOK = Production Post "/internal/v1/webhooks/toss";

    /// The signed user's notifications.
    NOTIFICATIONS = Production Get "/internal/v1/notifications";

    /// Search: challenges, people or products for a query, with filters and paging.
    SEARCH = Production Get "/internal/v1/search";
    /// Search: completions of a prefix, from the first character.
    SEARCH_SUGGEST = Production Get "/internal/v1/search/suggest";

    /// Dev only: moves the platform's clock (the edge's dev route `POST /v1/dev/clock`).
    DEV_CLOCK = DevOnly Post "/internal/v1/dev/clock";
    /// Dev only: injected failures for the end-to-end tests (no edge route).
    DEV_FAULTS = DevOnly Post "/internal/v1/dev/faults";
}

/// The edge's one internal route, the other way round: the core's push when a challenge's
/// recruitment closes, so its `ChallengeRoom` stops admitting at once. Signed by the core like its
/// own inbound calls (no user); the edge mounts it, the core's lifecycle calls it.
pub const EDGE_ROOM_CLOSE: &str = "/internal/rooms/{challenge_id}/close";

/// [`EDGE_ROOM_CLOSE`] for one challenge.
#[must_use]
pub fn edge_room_close(challenge: &str) -> String {
    EDGE_ROOM_CLOSE.replace("{challenge_id}", challenge)
}

/// Longest session id (an access token's `jti`) a join may name.
pub const SESSION_ID_LEN_MAX: usize = 128;

/// Optional body of [`CHALLENGE_JOIN`]: the session (access token id) the user joins with. The
/// edge (on Spin) and the room (on Workers) send it instead of asking about revocation themselves,
/// so that a join the room refuses alone never costs a call to the core, and the check happens
/// where the money moves. An empty body is a join without one (a room's retry of a seat stored
/// before rooms kept the session).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    pub session: Option<String>,
}

/// Body of [`PAYMENT_REFUND`]: the client's Idempotency-Key, carried in the signed body so that
/// nothing between the edge and the core can change it. An empty object is a refund without one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundBody {
    #[serde(default)]
    pub idempotency_key: Option<crate::idempotency::IdempotencyKey>,
}

/// What a room reads of a [`CHALLENGE_DETAIL`] answer: its seats and whether it still recruits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct ChallengeSeats {
    pub capacity: u32,
    pub state: crate::states::ChallengeState,
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_route_is_named_once_and_mounted_once_under_the_internal_prefix() {
        let names: HashSet<_> = ALL.iter().map(|route| route.name).collect();
        assert_eq!(names.len(), ALL.len(), "a name used twice");
        let endpoints: HashSet<_> = ALL.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(endpoints.len(), ALL.len(), "a method and path listed twice");
        for route in ALL {
            assert!(route.path.starts_with(PATH_PREFIX), "{route:?}");
            assert_eq!(
                route.audience == Audience::DevOnly,
                route.path.starts_with(DEV_PATH_PREFIX),
                "dev-only routes, and only they, live under {DEV_PATH_PREFIX}: {route:?}"
            );
        }
    }

    #[test]
    fn a_call_fills_the_segments_in_order_and_appends_a_query() {
        let call = PROOF_REVIEW.call(&["0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d"]);
        assert_eq!(call.method(), Method::Post);
        assert_eq!(
            call.path_and_query(),
            "/internal/v1/admin/proofs/0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d/review"
        );
        let page = PROOF_LIST.call(&["abc"]).with_query("limit=5&cursor=x");
        assert_eq!(
            page.path_and_query(),
            "/internal/v1/challenges/abc/proofs?limit=5&cursor=x"
        );
        assert_eq!(
            HEALTH.call(&[]).with_query("").path_and_query(),
            HEALTH.path
        );
        // A missing segment leaves the placeholder, which matches no real id.
        assert_eq!(
            CHALLENGE_JOIN.call(&[]).path_and_query(),
            "/internal/v1/challenges/{id}/join"
        );
    }
}
