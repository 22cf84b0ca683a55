//! Group commit for debits. Callers hand a debit to the batcher and await their own receipt; a
//! worker takes every debit waiting (up to [`DEBIT_BATCH_MAX`]) and runs them as one statement — one
//! round trip and one commit for the lot — each through `ledger_debit`, so each caller gets exactly
//! the result it would have had alone (its receipt, `INSUFFICIENT_POINTS`, a replay, …).
//!
//! A batch locks its wallets in (wallet, key) order, so two batches cannot deadlock on wallets.
//! If a batch fails as a whole (a deadlock on a key reused across batches, a lost connection), each
//! of its debits is run again on its own: nothing has happened, so the retry is safe.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{
    idempotency::request_hash,
    ops::{debit, decode_outcome},
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
    match run_as_one_statement(db, &batch).await {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                let _ = reply.send(decode_outcome(outcome));
            }
        }
        Ok(_) | Err(_) => {
            tracing::warn!(
                size = batch.len(),
                "a debit batch failed as a whole; running its debits one by one"
            );
            for (request, reply) in batch {
                let _ = reply.send(debit(db, &request).await);
            }
        }
    }
}

async fn run_as_one_statement(
    db: &PgPool,
    batch: &[(Debit, Reply)],
) -> Result<Vec<serde_json::Value>, LedgerError> {
    let mut keys = Vec::with_capacity(batch.len());
    let mut hashes = Vec::with_capacity(batch.len());
    let mut transfers = Vec::with_capacity(batch.len());
    let mut wallets = Vec::with_capacity(batch.len());
    let mut counterparties = Vec::with_capacity(batch.len());
    let mut amounts = Vec::with_capacity(batch.len());
    for (request, _) in batch {
        keys.push(request.key.as_str().to_owned());
        hashes.push(request_hash("debit", request)?);
        transfers.push(Uuid::now_v7());
        wallets.push(request.wallet.0);
        counterparties.push(request.to.0);
        amounts.push(request.amount.get());
    }
    // Rows are produced, and so `ledger_debit` runs, in array order.
    Ok(sqlx::query_scalar(
        "SELECT ledger_debit(r.key, r.hash, r.transfer, r.wallet, r.counterparty, r.amount) \
         FROM UNNEST($1::text[], $2::bytea[], $3::uuid[], $4::uuid[], $5::uuid[], $6::int8[]) \
              WITH ORDINALITY AS r(key, hash, transfer, wallet, counterparty, amount, position) \
         ORDER BY r.position",
    )
    .bind(&keys)
    .bind(&hashes)
    .bind(&transfers)
    .bind(&wallets)
    .bind(&counterparties)
    .bind(&amounts)
    .fetch_all(db)
    .await?)
}
