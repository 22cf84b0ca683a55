//! Stopping the core the way an orchestrator expects (docs/decisions/0012-shutdown.md).
//!
//! On SIGTERM (or SIGINT) the process drains, in this order:
//! 1. at once: `/readyz` answers 503 `draining`, every request that arrives from now on is
//!    refused with 503 `CORE_UNAVAILABLE` and `Connection: close` (`/healthz` still answers: the
//!    process is alive), and every background loop is told to stop claiming work;
//! 2. the requests admitted before the signal finish, and each loop finishes the item in hand and
//!    gives back what it claimed but did not start (payment work, notifications), or stops
//!    between batches (the lifecycle scheduler, settlement, maintenance) — all bounded together
//!    by the drain timeout (`SHUTDOWN_DRAIN_TIMEOUT_MS`, default [`DRAIN_TIMEOUT_MS_DEFAULT`],
//!    within [`DRAIN_TIMEOUT_MS_MIN`]`..=`[`DRAIN_TIMEOUT_MS_MAX`]);
//! 3. the listener closes (connections already queued are still answered), every connection
//!    finishes the answer it is writing, bounded by [`CLOSE_TIMEOUT`];
//! 4. the runtime stops (blocking work gets [`RUNTIME_STOP_TIMEOUT`]) and the process exits 0.
//!
//! Work cut off by a bound is not lost: every claim in the core is a lease in Postgres (payment
//! work) or a visibility deadline in Redis / a transaction in Postgres (notifications), so what a
//! cut-off claimant held comes back to another replica when its lease ends.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;
use tokio_util::{
    sync::CancellationToken,
    task::{TaskTracker, task_tracker::TaskTrackerToken},
};

use crate::{
    notifications::fcm::{FCM_SEND_TIMEOUT_DEFAULT, TOKEN_TIMEOUT},
    payments::{LEASE_TIMEOUT_MULTIPLE, toss::TOSS_TIMEOUT_DEFAULT},
};

/// Kubernetes' default `terminationGracePeriodSeconds`: SIGKILL follows SIGTERM after this. Other
/// orchestrators give about as much (ECS' `stopTimeout` defaults to 30 s too).
pub const ORCHESTRATOR_GRACE: Duration = Duration::from_secs(30);
/// How long the requests in flight and the item each loop holds may take after the signal, by
/// default (`SHUTDOWN_DRAIN_TIMEOUT_MS`). Long enough for a payment call in hand to end on its own
/// with the default Toss timeout (a confirm or a reconciliation makes at most two calls: one
/// lease), short enough to leave the close, the runtime's stop and a margin inside
/// [`ORCHESTRATOR_GRACE`].
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 25_000;
/// Shortest: the edge's wait for the core, so every request the edge is still waiting for when
/// the signal comes gets its answer.
pub const DRAIN_TIMEOUT_MS_MIN: u64 = nene_domain::limits::CORE_TIMEOUT_MS;
/// Longest: five minutes. Every replica of a rolling deploy may take this long to go; work that
/// takes longer is held under a lease, which comes back on its own and need not be waited for.
pub const DRAIN_TIMEOUT_MS_MAX: u64 = 300_000;
const _: () = assert!(
    DRAIN_TIMEOUT_MS_MIN <= DRAIN_TIMEOUT_MS_DEFAULT
        && DRAIN_TIMEOUT_MS_DEFAULT <= DRAIN_TIMEOUT_MS_MAX
);
/// [`DRAIN_TIMEOUT_MS_DEFAULT`] as a duration.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_millis(DRAIN_TIMEOUT_MS_DEFAULT);
/// After the drain: how long the connections still open get to write their last answer.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the runtime waits for blocking work (a DNS lookup) before the process exits anyway.
pub const RUNTIME_STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// What is left of the grace period after all the above: the last log lines, the exit, and the
/// orchestrator's own timing.
pub const EXIT_MARGIN: Duration = Duration::from_secs(2);

const fn millis(duration: Duration) -> u128 {
    duration.as_millis()
}

// With the default drain everything fits in the default grace period, so the orchestrator's
// SIGKILL never lands mid-drain. (A longer drain needs a longer grace period: README.)
const _: () = assert!(
    millis(DRAIN_TIMEOUT_DEFAULT)
        + millis(CLOSE_TIMEOUT)
        + millis(RUNTIME_STOP_TIMEOUT)
        + millis(EXIT_MARGIN)
        <= millis(ORCHESTRATOR_GRACE)
);
// A payment item in hand (at most two Toss calls, one lease) ends inside the default drain.
const _: () = assert!(
    millis(TOSS_TIMEOUT_DEFAULT) * (LEASE_TIMEOUT_MULTIPLE as u128) < millis(DRAIN_TIMEOUT_DEFAULT)
);
// A notification send in flight ends inside the default drain, even one waiting for a fresh
// access token.
const _: () = assert!(
    millis(TOKEN_TIMEOUT) + millis(FCM_SEND_TIMEOUT_DEFAULT) < millis(DRAIN_TIMEOUT_DEFAULT)
);

/// The process's shutdown state: one cancellation token that every loop and the HTTP layer
/// watch, the count of requests admitted before it, and the bound of the drain. Cheap to clone;
/// the default is a process that is not draining, with the default drain timeout.
#[derive(Clone)]
pub struct Shutdown {
    token: CancellationToken,
    requests: TaskTracker,
    began: Arc<OnceLock<Instant>>,
    drain_timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new(DRAIN_TIMEOUT_DEFAULT)
    }
}

impl Shutdown {
    /// A process that is not draining and, once it is, waits at most `drain_timeout` (from the
    /// signal) for its requests and loops.
    #[must_use]
    pub fn new(drain_timeout: Duration) -> Shutdown {
        Shutdown {
            token: CancellationToken::new(),
            requests: TaskTracker::new(),
            began: Arc::new(OnceLock::new()),
            drain_timeout,
        }
    }

    /// The bound of the drain, counted from the signal.
    #[must_use]
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }

    /// Starts the drain: readiness fails, new requests are refused, loops stop claiming.
    /// Idempotent.
    pub fn begin(&self) {
        let _ = self.began.set(Instant::now());
        self.token.cancel();
        self.requests.close();
    }

    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token every background loop stops on.
    #[must_use]
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Completes when the drain begins.
    pub async fn draining(&self) {
        self.token.cancelled().await;
    }

    /// How long ago the drain began (zero before).
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.began.get().map_or(Duration::ZERO, Instant::elapsed)
    }

    /// Admits a request: `None` once the drain has begun. The request counts as in flight until
    /// the returned token is dropped. The token is taken before the check, so a request either
    /// sees the drain and is refused, or is counted by [`Shutdown::requests_finished`].
    #[must_use]
    pub fn admit(&self) -> Option<TaskTrackerToken> {
        let token = self.requests.token();
        (!self.token.is_cancelled()).then_some(token)
    }

    /// Requests admitted and not yet answered.
    #[must_use]
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Completes once the drain has begun and every admitted request has its answer.
    pub async fn requests_finished(&self) {
        self.requests.wait().await;
    }
}

/// Waits for SIGTERM or SIGINT and begins the drain; a second signal during the drain cuts it
/// short (`force`), for a developer's second Ctrl-C.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn listen_for_signals(
    shutdown: Shutdown,
    force: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::spawn(async move {
        for received in 0.. {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            if received == 0 {
                tracing::info!(
                    signal = name,
                    drain_timeout_ms = millis(shutdown.drain_timeout()),
                    "draining: readiness is 503, new requests are refused, loops stop claiming"
                );
                shutdown.begin();
            } else {
                tracing::warn!(signal = name, "second signal: the drain is cut short");
                force.cancel();
                return;
            }
        }
    }))
}

/// The background loops of one process, by name, so the drain can say which one ended how.
#[derive(Default)]
pub struct Loops {
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Loops {
    /// Spawns `task` (which must end on its own once the shutdown token is cancelled).
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.running.push((name, tokio::spawn(task)));
    }

    /// Adds a loop spawned elsewhere.
    pub fn add(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.running.push((name, handle));
    }
}

/// How the drain ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// Loops still running at the bound (their claims come back when their leases end).
    pub loops_cut: Vec<&'static str>,
    /// Requests still in flight at the bound (their connections are closed).
    pub requests_cut: usize,
}

/// Waits — after [`Shutdown::begin`] — for every loop to end and every admitted request to be
/// answered, at most until [`Shutdown::drain_timeout`] after the signal or until `force`.
pub async fn drain(shutdown: &Shutdown, loops: Loops, force: &CancellationToken) -> Drained {
    let deadline =
        tokio::time::Instant::now() + shutdown.drain_timeout().saturating_sub(shutdown.elapsed());
    let mut loops_cut = Vec::new();
    for (name, mut handle) in loops.running {
        let ended = tokio::select! {
            ended = &mut handle => Some(ended),
            () = tokio::time::sleep_until(deadline) => None,
            () = force.cancelled() => None,
        };
        match ended {
            Some(Ok(())) => tracing::info!(
                task = name,
                after_ms = shutdown.elapsed().as_millis(),
                "background loop ended"
            ),
            Some(Err(error)) => tracing::error!(task = name, %error, "background loop failed"),
            None => {
                tracing::warn!(
                    task = name,
                    "background loop still busy at the drain bound: what it holds comes back \
                     when its lease ends"
                );
                loops_cut.push(name);
            }
        }
    }
    let answered = tokio::select! {
        () = shutdown.requests_finished() => true,
        () = tokio::time::sleep_until(deadline) => false,
        () = force.cancelled() => false,
    };
    let requests_cut = if answered {
        0
    } else {
        shutdown.requests_in_flight()
    };
    if requests_cut > 0 {
        tracing::warn!(
            requests_cut,
            "requests still in flight at the drain bound: their connections are closed"
        );
    }
    Drained {
        loops_cut,
        requests_cut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_admitted_before_the_drain_is_waited_for_and_one_after_it_is_refused() {
        let shutdown = Shutdown::default();
        let admitted = shutdown.admit();
        assert!(admitted.is_some());
        shutdown.begin();
        assert!(shutdown.is_draining());
        assert!(shutdown.admit().is_none());
        assert_eq!(shutdown.requests_in_flight(), 1);
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.requests_finished().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(admitted);
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn the_drain_returns_when_the_loops_end_and_names_a_loop_that_does_not() {
        let shutdown = Shutdown::default();
        let mut loops = Loops::default();
        let token = shutdown.token();
        loops.spawn("obedient", async move { token.cancelled().await });
        loops.spawn("deaf", std::future::pending());
        shutdown.begin();
        let force = CancellationToken::new();
        force.cancel();
        let drained = drain(&shutdown, loops, &force).await;
        // The obedient loop may or may not have been polled before `force` won the race; the
        // deaf one is always reported.
        assert!(drained.loops_cut.contains(&"deaf"));
        assert_eq!(drained.requests_cut, 0);
    }

    #[tokio::test]
    async fn the_drain_ends_at_its_bound_naming_the_loop_and_counting_the_requests_still_busy() {
        let bound = Duration::from_millis(200);
        let shutdown = Shutdown::new(bound);
        let mut loops = Loops::default();
        loops.spawn("deaf", std::future::pending());
        let busy = shutdown.admit();
        shutdown.begin();
        let drained = drain(&shutdown, loops, &CancellationToken::new()).await;
        let took = shutdown.elapsed();
        assert_eq!(
            drained,
            Drained {
                loops_cut: vec!["deaf"],
                requests_cut: 1,
            }
        );
        assert!(
            took >= bound && took < bound * 5,
            "the drain took {took:?} for a bound of {bound:?}"
        );
        drop(busy);
    }
}
