//! One call at a time, shared by everyone who asks while it runs. A Durable Object serves requests
//! concurrently across its `await`s; when many of them need the same answer from the core (a
//! room's rules, on a storm's first requests), they should cost the core one call, not one each.
//!
//! Nothing is cached past the call: when it ends, the next caller starts a new one. So a failed
//! answer is never served to later callers, and the object keeps what it learned in its own
//! storage, not here.

use std::{cell::RefCell, future::Future};

use futures::{
    FutureExt,
    future::{LocalBoxFuture, Shared},
};

/// A call that may be in flight, shared by its waiters. Single-threaded, like the object it
/// lives in.
pub struct SingleFlight<T> {
    in_flight: RefCell<Option<Shared<LocalBoxFuture<'static, T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        SingleFlight {
            in_flight: RefCell::new(None),
        }
    }
}

impl<T: Clone + 'static> SingleFlight<T> {
    /// The answer of the call in flight, or of a new one made by `start` when none is.
    pub async fn run<F>(&self, start: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T> + 'static,
    {
        let flight = self
            .in_flight
            .borrow_mut()
            .get_or_insert_with(|| start().boxed_local().shared())
            .clone();
        let answer = flight.clone().await;
        // Whoever wakes first ends the flight; a newer one (started after it ended) stays.
        let mut in_flight = self.in_flight.borrow_mut();
        if in_flight
            .as_ref()
            .is_some_and(|current| current.ptr_eq(&flight))
        {
            *in_flight = None;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use futures::{channel::oneshot, executor::LocalPool, future::join_all, task::LocalSpawnExt};

    use super::*;

    /// A call whose answer the test gives, counting how often it was started.
    fn call(
        started: &Rc<Cell<u32>>,
        answer: oneshot::Receiver<Result<u32, &'static str>>,
    ) -> impl Future<Output = Result<u32, &'static str>> + 'static {
        started.set(started.get() + 1);
        async move { answer.await.unwrap_or(Err("dropped")) }
    }

    #[test]
    fn callers_that_ask_while_a_call_runs_share_its_answer() {
        let flight = Rc::new(SingleFlight::default());
        let started = Rc::new(Cell::new(0));
        let (answer, receiver) = oneshot::channel();
        let mut receiver = Some(receiver);
        let mut pool = LocalPool::new();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let flight = Rc::clone(&flight);
                let started = Rc::clone(&started);
                let receiver = receiver.take();
                async move {
                    flight
                        .run(|| call(&started, receiver.unwrap_or_else(|| oneshot::channel().1)))
                        .await
                }
            })
            .collect();
        let all = pool.spawner().spawn_local_with_handle(join_all(waiters));
        let Ok(all) = all else {
            unreachable!("a local pool accepts tasks")
        };
        pool.run_until_stalled();
        assert_eq!(started.get(), 1, "one call for fifty callers");
        assert_eq!(answer.send(Ok(7)), Ok(()));
        let answers = pool.run_until(all);
        assert_eq!(answers, vec![Ok(7); 50]);
    }

    #[test]
    fn a_failed_answer_is_not_kept_for_the_next_caller() {
        let flight = SingleFlight::default();
        let started = Rc::new(Cell::new(0));
        let mut pool = LocalPool::new();

        let (answer, receiver) = oneshot::channel();
        assert_eq!(answer.send(Err("core unavailable")), Ok(()));
        let first = pool.run_until(flight.run(|| call(&started, receiver)));
        assert_eq!(first, Err("core unavailable"));

        let (answer, receiver) = oneshot::channel();
        assert_eq!(answer.send(Ok(3)), Ok(()));
        let second = pool.run_until(flight.run(|| call(&started, receiver)));
        assert_eq!(second, Ok(3));
        assert_eq!(started.get(), 2, "the second caller asked afresh");
    }
}
