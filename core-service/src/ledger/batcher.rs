//! Group commit for debits. Callers hand a debit to the batcher and await their own receipt; a
//! worker takes every debit waiting (up to [`DEBIT_BATCH_MAX`]) and runs them as one statement — one
//! round trip and one commit for the lot — through `ledger_debit_batch` ([`debit_batch_in_tx`]),
//! so each caller gets exactly the result it would have had alone (its receipt,
//! `INSUFFICIENT_POINTS`, a replay, …).
//!
//! A batch locks its wallets in account id order, so two batches cannot deadlock on wallets; its
//! debits run in (wallet, key) order. If a batch fails as a whole (a deadlock or a race on a key
//! used by two transactions at once, a lost connection), each of its debits is run again on its
//! own: nothing has happened, so the retry is safe.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    ops::{DEBIT_BATCH_LEN_MAX, debit, debit_batch_in_tx},
    types::{Debit, LedgerError, TransferReceipt},
};

/// Most debits in one statement. Large enough that a hot wallet's lock is held for many debits per
/// commit; small enough that one batch takes a few milliseconds, which bounds everyone's wait.
pub const DEBIT_BATCH_MAX: usize = 128;
/// Debits waiting for a worker before callers are pushed back on (they wait to enqueue).
pub const DEBIT_QUEUE_MAX: usize = 8_192;
/// Batches in flight at once: one per core of the database server is where more stops helping.
pub const DEBIT_BATCH_WORKERS: usize = 2;

const _: () = assert!(DEBIT_BATCH_MAX <= DEBIT_QUEUE_MAX);
const _: () = assert!(DEBIT_BATCH_MAX <= DEBIT_BATCH_LEN_MAX);

type Reply = oneshot::Sender<Result<TransferReceipt, LedgerError>>;

/// A handle to the batcher; cheap to clone.
#[derive(Clone)]
pub struct DebitBatcher {
    queue: mpsc::Sender<(Debit, Reply)>,
}

impl DebitBatcher {
    /// Starts the workers on the current Tokio runtime.
    #[must_use]
    pub fn spawn(db: PgPool) -> Self {
        let (queue, receiver) = mpsc::channel(DEBIT_QUEUE_MAX);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..DEBIT_BATCH_WORKERS {
            tokio::spawn(work(db.clone(), Arc::clone(&receiver)));
        }
        DebitBatcher { queue }
    }

    /// Debits through the batcher; the same contract as [`super::debit`].
    ///
    /// # Errors
    /// As [`super::debit_in_tx`]; `Inconsistent` if the batcher has stopped.
    pub async fn debit(&self, request: Debit) -> Result<TransferReceipt, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .await
            .map_err(|_| LedgerError::Inconsistent("the debit batcher has stopped"))?;
        answer
            .await
            .map_err(|_| LedgerError::Inconsistent("the debit batcher dropped a debit"))?
    }
}

async fn work(db: PgPool, receiver: Arc<Mutex<mpsc::Receiver<(Debit, Reply)>>>) {
    loop {
        let mut batch = Vec::with_capacity(DEBIT_BATCH_MAX);
        {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                tracing::info!("debit batcher stopped: every handle is gone");
                return;
            };
            batch.push(first);
            while batch.len() < DEBIT_BATCH_MAX {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        run_batch(&db, batch).await;
    }
}

async fn run_batch(db: &PgPool, mut batch: Vec<(Debit, Reply)>) {
    batch.sort_by(|(a, _), (b, _)| (a.wallet.0, a.key.as_str()).cmp(&(b.wallet.0, b.key.as_str())));
    let (requests, replies): (Vec<Debit>, Vec<Reply>) = batch.into_iter().unzip();
    match run_as_one_statement(db, &requests).await {
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            tracing::warn!(
                size = requests.len(),
                %error,
                "a debit batch failed as a whole; running its debits one by one"
            );
            for (request, reply) in requests.iter().zip(replies) {
                let _ = reply.send(debit(db, request).await);
            }
        }
    }
}

async fn run_as_one_statement(
    db: &PgPool,
    requests: &[Debit],
) -> Result<Vec<Result<TransferReceipt, LedgerError>>, LedgerError> {
    // One statement is atomic on its own: no explicit transaction, one round trip.
    let mut conn = db.acquire().await?;
    debit_batch_in_tx(&mut conn, requests).await
}
