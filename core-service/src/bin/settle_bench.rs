//! `settle-bench`: the settlement benchmark of issue 7. Settles one challenge of 100,000
//! participants (random achievement, 1,000 bps house fee) with the production batch
//! (`lifecycle::settle_challenge`), and prints the time, payouts/s and ledger rows/s beside a
//! baseline from the same run: one `INSERT … SELECT` of as many plain rows (the floor for writing
//! that much on this machine).
//!
//!     ./nene bench settle
//!
//! The bench uses its own throwaway database, where it lifts the 10,000-seat capacity rule so one
//! challenge can hold 100,000 participants; the setup writes the joins set-based (a charge lot and
//! a join debit per participant), exactly the rows real joins leave. `BENCH_PARTICIPANTS` changes
//! the count.

use std::time::Instant;

use nene_core::{
    challenges::{self, NewChallenge, NewChallengeWire},
    ledger::{self, SystemAccount, check_invariants},
    lifecycle, migrate,
};
use nene_domain::settings::parsed_or;
use sqlx::postgres::PgPoolOptions;

type Error = Box<dyn std::error::Error + Send + Sync>;

const FEE: i64 = 10_000;
/// Connections for the bench's pool: settlement runs one batch at a time.
const DB_POOL_CONNECTIONS_MAX: u32 = 8;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let participants: i64 = parsed_or(|n| std::env::var(n).ok(), "BENCH_PARTICIPANTS", 100_000);
    let database = nene_core::scratch::ScratchDatabase::create("nene_settle_bench").await?;
    let outcome = run(&database.url, participants).await;
    database.drop().await?;
    outcome
}

async fn run(url: &str, participants: i64) -> Result<(), Error> {
    let db = PgPoolOptions::new()
        .max_connections(DB_POOL_CONNECTIONS_MAX)
        .connect(url)
        .await?;
    migrate(&db).await?;
    let now: i64 = sqlx::query_scalar("SELECT floor(extract(epoch FROM now()))::int8")
        .fetch_one(&db)
        .await?;
    let mut wire = NewChallengeWire::one_week("Settlement bench", FEE, 10_000, now);
    wire.house_fee_bps = 1_000;
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&wire)?).await?;
    eprintln!("setting up {participants} participants with their joins and proofs …");
    let began = Instant::now();
    let mut conn = db.acquire().await?;
    let clearing = ledger::system_account(SystemAccount::PaymentClearing);
    sqlx::query("ALTER TABLE challenges DROP CONSTRAINT challenges_capacity_check")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "CREATE TEMP TABLE bench_users AS SELECT 'u' || lpad(i::text, 7, '0') AS user_id, \
             gen_random_uuid() AS account, gen_random_uuid() AS credit_t, \
             gen_random_uuid() AS lot, gen_random_uuid() AS debit_t \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(participants)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, owner_id) \
         SELECT account, 'user_wallet', user_id FROM bench_users",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO ledger_wallets (account_id) SELECT account FROM bench_users")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO ledger_transfers \
             (id, idempotency_key, kind, from_account_id, to_account_id, amount) \
         SELECT credit_t, 'fund:' || user_id, 'credit', $1, account, $2 FROM bench_users",
    )
    .bind(clearing)
    .bind(FEE)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_lots (id, wallet_id, source, credit_transfer_id, amount, remaining) \
         SELECT lot, account, 'charge', credit_t, $1, 0 FROM bench_users",
    )
    .bind(FEE)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_transfers \
             (id, idempotency_key, kind, from_account_id, to_account_id, amount) \
         SELECT debit_t, 'join:' || $1::uuid || ':' || user_id, 'debit', account, $2, $3 \
         FROM bench_users",
    )
    .bind(challenge.id)
    .bind(challenge.escrow)
    .bind(FEE)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_lot_allocations (transfer_id, lot_id, amount) \
         SELECT debit_t, lot, $1 FROM bench_users",
    )
    .bind(FEE)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO challenge_participants (challenge_id, user_id, join_transfer_id) \
         SELECT $1, user_id, debit_t FROM bench_users",
    )
    .bind(challenge.id)
    .execute(&mut *conn)
    .await?;
    // Achievement 0–7 of 7 days, spread by a hash of the user.
    sqlx::query(
        "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, submitted_at) \
         SELECT gen_random_uuid(), $1, user_id, d, 0, 'https://img.bench/p', now() \
         FROM bench_users, generate_series(0, 6) AS d WHERE d < (hashtext(user_id) & 7)",
    )
    .bind(challenge.id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE challenges SET capacity = $1, participants = $1, state = 'ended' WHERE id = $2",
    )
    .bind(i32::try_from(participants)?)
    .bind(challenge.id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE test_clock SET offset_seconds = 30 * 86400 WHERE id")
        .execute(&mut *conn)
        .await?;
    eprintln!(
        "setup took {:.1} s; settling …",
        began.elapsed().as_secs_f64()
    );

    let began = Instant::now();
    sqlx::query("CREATE TEMP TABLE bench_baseline AS SELECT 1 AS x WITH NO DATA")
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO bench_baseline SELECT 1 FROM generate_series(1, $1)")
        .bind(participants)
        .execute(&mut *conn)
        .await?;
    let baseline = began.elapsed();
    drop(conn);

    let began = Instant::now();
    let finished = lifecycle::settle_challenge(&db, challenge.id).await?;
    let elapsed = began.elapsed();

    let (payouts, credits): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM challenge_payouts), \
                (SELECT count(*) FROM ledger_transfers WHERE idempotency_key LIKE 'settle:%')",
    )
    .fetch_one(&db)
    .await?;
    let mut conn = db.acquire().await?;
    let violations = check_invariants(&mut conn).await?;
    let seconds = elapsed.as_secs_f64();
    println!();
    println!("settlement of one challenge, {participants} participants, one machine");
    println!(
        "settled: {finished}; time {seconds:.2} s (goal < 60 s); {:.0} payouts/s; {credits} ledger \
         transfers ({:.0}/s)",
        payouts as f64 / seconds,
        credits as f64 / seconds,
    );
    println!(
        "baseline: one INSERT of {participants} plain rows took {:.3} s; settlement / baseline = {:.0}×",
        baseline.as_secs_f64(),
        seconds / baseline.as_secs_f64()
    );
    println!(
        "ledger checker: {}",
        nene_core::ledger::verdict(&violations)
    );
    if violations.is_empty() && finished {
        Ok(())
    } else {
        Err(format!("settlement finished: {finished}; violations: {violations:?}").into())
    }
}
