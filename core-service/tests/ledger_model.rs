//! A seeded, randomized state-machine test of the ledger: thousands of mixed operations — with
//! replayed keys, reused keys and rolled-back transactions injected — run against the real ledger
//! and against a plain in-memory model of it. After every step the touched wallet must equal the
//! model; every 100 steps and at the end, the invariant checker must find nothing.
//!
//! `NENE_LEDGER_SEED=<n>` replays one seed; `NENE_LEDGER_STEPS=<n>` changes the length.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nene_core::ledger::{self, *};
use nene_domain::{Points, seeded::SplitMix64};
use sqlx::{PgConnection, PgPool};

const WALLETS: usize = 6;
const STEPS_DEFAULT: usize = 3_000;
const CHECK_EVERY: usize = 100;

fn p(amount: i64) -> Points {
    Points::new(amount).unwrap()
}

#[derive(Default, Clone)]
struct WalletModel {
    /// (lot, remaining) in FIFO order, empty lots included.
    lots: Vec<(LotId, i64)>,
    held: i64,
}

impl WalletModel {
    fn balance(&self) -> i64 {
        self.lots.iter().map(|(_, r)| r).sum()
    }
    fn available(&self) -> i64 {
        self.balance() - self.held
    }
    /// FIFO: what a debit of `amount` takes.
    fn take(&mut self, mut amount: i64) -> Vec<(LotId, i64)> {
        let mut taken = Vec::new();
        for (lot, remaining) in &mut self.lots {
            if amount == 0 {
                break;
            }
            let share = (*remaining).min(amount);
            if share > 0 {
                *remaining -= share;
                amount -= share;
                taken.push((*lot, share));
            }
        }
        assert_eq!(amount, 0, "model overdraft");
        taken
    }
}

struct HoldModel {
    wallet: usize,
    amount: i64,
    pending: bool,
}

struct DebitModel {
    wallet: usize,
    /// Net taken per lot, in the debit's (FIFO) order.
    taken: Vec<(LotId, i64)>,
}

#[derive(Clone, Debug)]
enum Op {
    Credit(Credit),
    Debit(Debit),
    Transfer(Transfer),
    Hold(Hold),
    Post(PostHold),
    Release(ReleaseHold),
    Refund(Refund),
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Transfer(TransferReceipt),
    Hold(HoldReceipt),
}

async fn run(conn: &mut PgConnection, op: &Op) -> Result<Outcome, LedgerError> {
    Ok(match op {
        Op::Credit(r) => Outcome::Transfer(credit_in_tx(conn, r).await?),
        Op::Debit(r) => Outcome::Transfer(debit_in_tx(conn, r).await?),
        Op::Transfer(r) => Outcome::Transfer(transfer_in_tx(conn, r).await?),
        Op::Hold(r) => Outcome::Hold(hold_in_tx(conn, r).await?),
        Op::Post(r) => Outcome::Hold(post_hold_in_tx(conn, r).await?),
        Op::Release(r) => Outcome::Hold(release_hold_in_tx(conn, r).await?),
        Op::Refund(r) => Outcome::Transfer(refund_in_tx(conn, r).await?),
    })
}

fn with_amount(op: &Op, amount: Points) -> Op {
    match op.clone() {
        Op::Credit(r) => Op::Credit(Credit { amount, ..r }),
        Op::Debit(r) => Op::Debit(Debit { amount, ..r }),
        Op::Transfer(r) => Op::Transfer(Transfer { amount, ..r }),
        Op::Hold(r) => Op::Hold(Hold { amount, ..r }),
        Op::Post(r) => Op::Post(PostHold { amount, ..r }),
        Op::Release(r) => Op::Release(ReleaseHold {
            key: r.key,
            hold: HoldId(uuid::Uuid::now_v7()),
        }),
        Op::Refund(r) => Op::Refund(Refund { amount, ..r }),
    }
}

fn op_amount(op: &Op) -> i64 {
    match op {
        Op::Credit(r) => r.amount.get(),
        Op::Debit(r) => r.amount.get(),
        Op::Transfer(r) => r.amount.get(),
        Op::Hold(r) => r.amount.get(),
        Op::Post(r) => r.amount.get(),
        Op::Release(_) => 0,
        Op::Refund(r) => r.amount.get(),
    }
}

struct Simulation {
    rng: SplitMix64,
    wallets: Vec<AccountId>,
    model: Vec<WalletModel>,
    holds: Vec<(HoldId, HoldModel)>,
    debits: Vec<(TransferId, DebitModel)>,
    done: Vec<(Op, Outcome)>,
    next_key: usize,
}

impl Simulation {
    fn key(&mut self) -> IdempotencyKey {
        self.next_key += 1;
        IdempotencyKey::parse(&format!("sim:{}", self.next_key)).unwrap()
    }

    fn wallet_index(&self, account: AccountId) -> usize {
        self.wallets
            .iter()
            .position(|w| *w == account)
            .expect("not a wallet")
    }

    fn random_op(&mut self) -> Op {
        let w = self.rng.index(WALLETS);
        let wallet = self.wallets[w];
        let house = ledger::system_account(SystemAccount::House);
        let shop = ledger::system_account(SystemAccount::ShopSales);
        match self.rng.index(10) {
            0 | 1 => Op::Credit(Credit {
                key: self.key(),
                wallet,
                from: ledger::system_account(SystemAccount::PaymentClearing),
                amount: p(self.rng.amount(5_000)),
                source: if self.rng.index(4) == 0 {
                    LotSource::Prize
                } else {
                    LotSource::Charge
                },
            }),
            2 | 3 => Op::Debit(Debit {
                key: self.key(),
                wallet,
                to: shop,
                amount: p(self.rng.amount(3_000)),
            }),
            4 => Op::Hold(Hold {
                key: self.key(),
                wallet,
                amount: p(self.rng.amount(2_000)),
                expires_in_seconds: 3_600,
            }),
            5 if !self.holds.is_empty() => {
                let index = self.rng.index(self.holds.len());
                let (hold, held) = (self.holds[index].0, self.holds[index].1.amount);
                let amount = self.rng.amount(held + 200);
                Op::Post(PostHold {
                    key: self.key(),
                    hold,
                    to: shop,
                    amount: p(amount),
                })
            }
            6 if !self.holds.is_empty() => {
                let hold = self.holds[self.rng.index(self.holds.len())].0;
                Op::Release(ReleaseHold {
                    key: self.key(),
                    hold,
                })
            }
            7 | 8 if !self.debits.is_empty() => {
                let index = self.rng.index(self.debits.len());
                let debit = self.debits[index].0;
                let refundable: i64 = self.debits[index].1.taken.iter().map(|(_, n)| n).sum();
                let amount = self.rng.amount(refundable + 100);
                Op::Refund(Refund {
                    key: self.key(),
                    debit,
                    amount: p(amount),
                })
            }
            _ => Op::Transfer(Transfer {
                key: self.key(),
                from: house,
                to: shop,
                amount: p(self.rng.amount(100)),
            }),
        }
    }

    /// What the model says `op` does; applies it to the model when it succeeds.
    fn expect_and_apply(&mut self, op: &Op, actual: &Result<Outcome, LedgerError>) {
        match op {
            Op::Credit(r) => {
                let Ok(Outcome::Transfer(receipt)) = actual else {
                    panic!("credit failed: {actual:?}")
                };
                let lot = receipt.lot.expect("no lot");
                let w = self.wallet_index(r.wallet);
                self.model[w].lots.push((lot, r.amount.get()));
            }
            Op::Debit(r) => {
                let w = self.wallet_index(r.wallet);
                if r.amount.get() > self.model[w].available() {
                    assert!(
                        matches!(actual, Err(LedgerError::InsufficientPoints)),
                        "{actual:?}"
                    );
                    return;
                }
                let taken = self.model[w].take(r.amount.get());
                let Ok(Outcome::Transfer(receipt)) = actual else {
                    panic!("debit failed: {actual:?}")
                };
                let got: Vec<(LotId, i64)> = receipt
                    .allocations
                    .iter()
                    .map(|a| (a.lot, a.amount.get()))
                    .collect();
                assert_eq!(got, taken, "FIFO allocations differ from the model");
                self.debits
                    .push((receipt.transfer, DebitModel { wallet: w, taken }));
            }
            Op::Transfer(_) => assert!(matches!(actual, Ok(Outcome::Transfer(_))), "{actual:?}"),
            Op::Hold(r) => {
                let w = self.wallet_index(r.wallet);
                if r.amount.get() > self.model[w].available() {
                    assert!(
                        matches!(actual, Err(LedgerError::InsufficientPoints)),
                        "{actual:?}"
                    );
                    return;
                }
                let Ok(Outcome::Hold(receipt)) = actual else {
                    panic!("hold failed: {actual:?}")
                };
                self.model[w].held += r.amount.get();
                self.holds.push((
                    receipt.hold,
                    HoldModel {
                        wallet: w,
                        amount: r.amount.get(),
                        pending: true,
                    },
                ));
            }
            Op::Post(r) => {
                let index = self.holds.iter().position(|(id, _)| *id == r.hold).unwrap();
                let (pending, held, w) = {
                    let hold = &self.holds[index].1;
                    (hold.pending, hold.amount, hold.wallet)
                };
                if !pending {
                    assert!(
                        matches!(actual, Err(LedgerError::HoldNotPending(_))),
                        "{actual:?}"
                    );
                    return;
                }
                if r.amount.get() > held {
                    assert!(
                        matches!(actual, Err(LedgerError::ExceedsHold)),
                        "{actual:?}"
                    );
                    return;
                }
                self.model[w].held -= held;
                let taken = self.model[w].take(r.amount.get());
                self.holds[index].1.pending = false;
                let Ok(Outcome::Hold(receipt)) = actual else {
                    panic!("post failed: {actual:?}")
                };
                let debit = receipt.debit.as_ref().expect("no debit");
                let got: Vec<(LotId, i64)> = debit
                    .allocations
                    .iter()
                    .map(|a| (a.lot, a.amount.get()))
                    .collect();
                assert_eq!(
                    got, taken,
                    "FIFO allocations of a post differ from the model"
                );
                self.debits
                    .push((debit.transfer, DebitModel { wallet: w, taken }));
            }
            Op::Release(r) => {
                let index = self.holds.iter().position(|(id, _)| *id == r.hold).unwrap();
                if !self.holds[index].1.pending {
                    assert!(
                        matches!(actual, Err(LedgerError::HoldNotPending(_))),
                        "{actual:?}"
                    );
                    return;
                }
                assert!(matches!(actual, Ok(Outcome::Hold(_))), "{actual:?}");
                let hold = &mut self.holds[index].1;
                hold.pending = false;
                self.model[hold.wallet].held -= hold.amount;
            }
            Op::Refund(r) => {
                let index = self
                    .debits
                    .iter()
                    .position(|(id, _)| *id == r.debit)
                    .unwrap();
                let refundable: i64 = self.debits[index].1.taken.iter().map(|(_, n)| n).sum();
                if r.amount.get() > refundable {
                    assert!(
                        matches!(actual, Err(LedgerError::RefundExceedsDebit)),
                        "{actual:?}"
                    );
                    return;
                }
                // Newest lot of the debit first.
                let mut left = r.amount.get();
                let mut given = Vec::new();
                let w = self.debits[index].1.wallet;
                for (lot, net) in self.debits[index].1.taken.iter_mut().rev() {
                    if left == 0 {
                        break;
                    }
                    let share = (*net).min(left);
                    if share > 0 {
                        *net -= share;
                        left -= share;
                        given.push((*lot, share));
                        if let Some(entry) = self.model[w].lots.iter_mut().find(|(id, _)| id == lot)
                        {
                            entry.1 += share;
                        }
                    }
                }
                let Ok(Outcome::Transfer(receipt)) = actual else {
                    panic!("refund failed: {actual:?}")
                };
                let got: Vec<(LotId, i64)> = receipt
                    .allocations
                    .iter()
                    .map(|a| (a.lot, a.amount.get()))
                    .collect();
                assert_eq!(got, given, "refund allocations differ from the model");
            }
        }
    }

    async fn assert_wallet_matches(&self, conn: &mut PgConnection, w: usize, step: usize) {
        let view = wallet_balance(conn, self.wallets[w]).await.unwrap();
        let model = &self.model[w];
        assert_eq!(
            view.balance.get(),
            model.balance(),
            "step {step}: balance of wallet {w}"
        );
        assert_eq!(
            view.held.get(),
            model.held,
            "step {step}: held of wallet {w}"
        );
        let lots: Vec<(LotId, i64)> = view
            .lots
            .iter()
            .map(|l| (l.id, l.remaining.get()))
            .collect();
        let expected: Vec<(LotId, i64)> =
            model.lots.iter().copied().filter(|(_, r)| *r > 0).collect();
        assert_eq!(lots, expected, "step {step}: lots of wallet {w}");
    }
}

fn touched_wallet(sim: &Simulation, op: &Op) -> Option<usize> {
    match op {
        Op::Credit(r) => Some(sim.wallet_index(r.wallet)),
        Op::Debit(r) => Some(sim.wallet_index(r.wallet)),
        Op::Hold(r) => Some(sim.wallet_index(r.wallet)),
        Op::Post(r) => sim
            .holds
            .iter()
            .find(|(id, _)| *id == r.hold)
            .map(|(_, h)| h.wallet),
        Op::Release(r) => sim
            .holds
            .iter()
            .find(|(id, _)| *id == r.hold)
            .map(|(_, h)| h.wallet),
        Op::Refund(r) => sim
            .debits
            .iter()
            .find(|(id, _)| *id == r.debit)
            .map(|(_, d)| d.wallet),
        Op::Transfer(_) => None,
    }
}

async fn assert_sound(conn: &mut PgConnection, step: usize, seed: u64) {
    let violations = check_invariants(conn).await.unwrap();
    assert!(
        violations.is_empty(),
        "seed {seed}, step {step}: {violations:#?}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn thousands_of_random_operations_agree_with_the_model_and_keep_every_invariant(db: PgPool) {
    let seed: u64 = std::env::var("NENE_LEDGER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x4E45_4E45_2026);
    let steps: usize = std::env::var("NENE_LEDGER_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS_DEFAULT);
    let mut conn = db.acquire().await.unwrap();
    let mut wallets = Vec::new();
    for i in 0..WALLETS {
        wallets.push(
            ensure_wallet_in_tx(&mut conn, &format!("sim-user-{i}"))
                .await
                .unwrap(),
        );
    }
    let mut sim = Simulation {
        rng: SplitMix64::new(seed),
        wallets,
        model: vec![WalletModel::default(); WALLETS],
        holds: Vec::new(),
        debits: Vec::new(),
        done: Vec::new(),
        next_key: 0,
    };
    let (mut replays, mut reuses, mut rollbacks) = (0, 0, 0);
    for step in 0..steps {
        let roll = sim.rng.index(20);
        if roll == 0 && !sim.done.is_empty() {
            // A duplicate delivery: the same key and request returns the first outcome, no effect.
            let (op, first) = &sim.done[sim.rng.index(sim.done.len())];
            let again = run(&mut conn, op)
                .await
                .unwrap_or_else(|e| panic!("step {step}: replay failed: {e}"));
            assert_eq!(
                &again, first,
                "step {step}: a replay must return the first outcome"
            );
            replays += 1;
        } else if roll == 1 && !sim.done.is_empty() {
            // The same key for a different request is refused, and changes nothing.
            let op = sim.done[sim.rng.index(sim.done.len())].0.clone();
            let changed = with_amount(&op, p(op_amount(&op) + 1));
            let result = run(&mut conn, &changed).await;
            assert!(
                matches!(result, Err(LedgerError::IdempotencyKeyReused)),
                "step {step}: {result:?}"
            );
            reuses += 1;
        } else if roll == 2 {
            // A failure after the write: the caller's transaction rolls back; nothing happened.
            let op = sim.random_op();
            let mut tx = db.begin().await.unwrap();
            let _ = run(&mut tx, &op).await;
            tx.rollback().await.unwrap();
            if let Some(w) = touched_wallet(&sim, &op) {
                sim.assert_wallet_matches(&mut conn, w, step).await;
            }
            rollbacks += 1;
        } else {
            let op = sim.random_op();
            let wallet = touched_wallet(&sim, &op);
            let actual = run(&mut conn, &op).await;
            sim.expect_and_apply(&op, &actual);
            if let Some(w) = wallet {
                sim.assert_wallet_matches(&mut conn, w, step).await;
            }
            if let Ok(outcome) = actual {
                sim.done.push((op, outcome));
            }
        }
        if step % CHECK_EVERY == 0 {
            assert_sound(&mut conn, step, seed).await;
        }
    }
    assert_sound(&mut conn, steps, seed).await;
    for w in 0..WALLETS {
        sim.assert_wallet_matches(&mut conn, w, steps).await;
    }
    assert!(
        replays > 0 && reuses > 0 && rollbacks > 0,
        "every fault kind was exercised"
    );
    println!(
        "seed {seed}: {steps} steps, {} effects, {replays} replays, {reuses} reused keys, {rollbacks} rollbacks",
        sim.done.len()
    );
}
