//! Challenges from creation to settlement on a real Postgres with the test clock: rules, browse,
//! proofs in and out of their windows, reports, reviews and appeals, cancellation refunds, and a
//! settlement that pays exactly what the domain's arithmetic says — once, even when killed and
//! rerun or run by two schedulers at once.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::assert_sound;

use nene_core::{
    challenges::{self, Browse, ChallengeState, NewChallenge, NewChallengeWire},
    ledger::{self, AccountId, Credit, IdempotencyKey, LotSource, SystemAccount},
    lifecycle,
    proofs::{self, Decision, NewProof, ProofError, Reason, Review},
};
use nene_domain::{
    Points,
    rules::{ChallengeRules, RawProofRules, RawRules},
    seeded::SplitMix64,
    settlement::{Participant, settle},
    time::format_rfc3339,
};
use sqlx::PgPool;
use uuid::Uuid;

const DAY: i64 = 86_400;
const FEE: i64 = 10_000;
const REVIEWER: &str = "reviewer_1";

async fn now(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT floor(extract(epoch FROM platform_now()))::int8")
        .fetch_one(db)
        .await
        .unwrap()
}

async fn advance(db: &PgPool, seconds: i64) {
    sqlx::query("UPDATE test_clock SET offset_seconds = offset_seconds + $1 WHERE id")
        .bind(seconds)
        .execute(db)
        .await
        .unwrap();
}

/// A 1-week challenge starting at the next Seoul midnight ≥ 1 day away, proofs 06:00–09:00.
async fn wire(db: &PgPool, min_participants: i64, house_fee_bps: i64) -> NewChallengeWire {
    let mut wire = NewChallengeWire::one_week("Wake up at 6", FEE, 100, now(db).await);
    wire.min_participants = min_participants;
    wire.house_fee_bps = house_fee_bps;
    wire.proof = RawProofRules {
        days_per_week: 7,
        window_start: "06:00".to_owned(),
        window_end: "09:00".to_owned(),
        time_zone: "Asia/Seoul".to_owned(),
    };
    wire
}

async fn fund_and_join(db: &PgPool, challenge: Uuid, user: &str) {
    let mut conn = db.acquire().await.unwrap();
    let wallet = ledger::ensure_wallet_in_tx(&mut conn, user).await.unwrap();
    drop(conn);
    ledger::credit(
        db,
        &Credit {
            key: IdempotencyKey::parse(&format!("fund:{user}")).unwrap(),
            wallet,
            from: ledger::system_account(SystemAccount::PaymentClearing),
            amount: Points::new(FEE).unwrap(),
            source: LotSource::Charge,
        },
    )
    .await
    .unwrap();
    challenges::join(db, challenge, user).await.unwrap();
}

async fn balance(db: &PgPool, user: &str) -> i64 {
    let mut conn = db.acquire().await.unwrap();
    let wallet: AccountId = ledger::ensure_wallet_in_tx(&mut conn, user).await.unwrap();
    ledger::wallet_balance(&mut conn, wallet)
        .await
        .unwrap()
        .balance
        .get()
}

fn proof() -> NewProof {
    NewProof {
        image_url: "https://img.nene.test/p.jpg".to_owned(),
        note: String::new(),
    }
}

async fn state_of(db: &PgPool, challenge: Uuid) -> ChallengeState {
    challenges::get(db, challenge).await.unwrap().state
}

#[sqlx::test(migrations = "./migrations")]
async fn rules_outside_their_bounds_are_refused_and_a_valid_challenge_recruits(db: PgPool) {
    let valid = wire(&db, 2, 500).await;
    let created = challenges::create(&db, Some("maker"), &NewChallenge::parse(&valid).unwrap())
        .await
        .unwrap();
    assert_eq!(created.state, ChallengeState::Recruiting);
    assert_eq!(created.required_days, Some(7));
    assert_eq!(created.creator.as_deref(), Some("maker"));
    let mut cases: Vec<NewChallengeWire> = Vec::new();
    for (fee, capacity, min) in [
        (1_500, 100, 2),
        (999, 100, 2),
        (10_000, 1, 2),
        (10_000, 10, 11),
    ] {
        let mut bad = valid.clone();
        (bad.entry_fee, bad.capacity, bad.min_participants) = (fee, capacity, min);
        cases.push(bad);
    }
    let mut bad = valid.clone();
    bad.ends_at = format_rfc3339(
        nene_domain::time::parse_rfc3339(&valid.starts_at)
            .ok_or("t")
            .unwrap()
            + 10 * DAY,
    );
    cases.push(bad);
    let mut bad = valid.clone();
    bad.house_fee_bps = 3_001;
    cases.push(bad);
    let mut bad = valid.clone();
    bad.proof.time_zone = "Mars/Olympus".to_owned();
    cases.push(bad);
    let mut bad = valid.clone();
    bad.starts_at = "tomorrow".to_owned();
    cases.push(bad);
    for case in &cases {
        assert!(NewChallenge::parse(case).is_err(), "{case:?}");
    }
    // Recruitment that would already be over is refused.
    advance(&db, 3 * DAY).await;
    let late = challenges::create(&db, None, &NewChallenge::parse(&valid).unwrap()).await;
    assert!(late.is_err());
}

#[sqlx::test(migrations = "./migrations")]
async fn browsing_filters_by_state_category_and_text_and_pages_newest_first(db: PgPool) {
    for i in 0..5 {
        let mut w = wire(&db, 2, 0).await;
        w.title = format!("아침 달리기 {i}");
        w.category = if i % 2 == 0 { "run" } else { "study" }.to_owned();
        challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
            .await
            .unwrap();
    }
    let runs = challenges::list(
        &db,
        &Browse {
            category: Some("run".to_owned()),
            limit: Some(2),
            ..Browse::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(runs.items.len(), 2);
    assert!(runs.items[0].id > runs.items[1].id, "newest first");
    let rest = challenges::list(
        &db,
        &Browse {
            category: Some("run".to_owned()),
            cursor: runs.next_cursor.clone(),
            ..Browse::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);
    let korean = challenges::list(
        &db,
        &Browse {
            q: Some("달리기 3".to_owned()),
            state: Some("RECRUITING".to_owned()),
            ..Browse::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(korean.items.len(), 1);
    let none = challenges::list(
        &db,
        &Browse {
            state: Some("SETTLED".to_owned()),
            ..Browse::default()
        },
    )
    .await
    .unwrap();
    assert!(none.items.is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_challenge_runs_from_recruiting_to_settled_paying_what_the_rules_promise(db: PgPool) {
    let w = wire(&db, 2, 1_000).await;
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    let users = ["ahn", "baek", "choi", "dong"];
    for user in users {
        fund_and_join(&db, challenge, user).await;
    }
    // Before the start: nobody can prove.
    let early = proofs::submit(&db, challenge, "ahn", &proof()).await;
    assert!(
        matches!(early, Err(ProofError::OutsideWindow(_))),
        "{early:?}"
    );
    // Recruitment closes and the challenge starts.
    advance(&db, starts_at - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::InProgress);
    let mut rejected = None;
    let mut appealed = None;
    for day in 0..7 {
        // 07:00 Seoul of this day.
        advance(&db, starts_at + day * DAY + 7 * 3_600 - now(&db).await).await;
        for (i, user) in users.iter().enumerate() {
            // ahn proves every day; baek misses day 3; choi proves 4 days; dong every day.
            let proves = match i {
                1 => day != 3,
                2 => day < 4,
                _ => true,
            };
            if proves {
                let p = proofs::submit(&db, challenge, user, &proof())
                    .await
                    .unwrap();
                if *user == "dong" && day == 2 {
                    rejected = Some(p.id);
                }
                if *user == "ahn" && day == 5 {
                    appealed = Some(p.id);
                }
            }
        }
        if day == 0 {
            let twice = proofs::submit(&db, challenge, "ahn", &proof()).await;
            assert!(matches!(twice, Err(ProofError::AlreadySubmitted)));
            let stranger = proofs::submit(&db, challenge, "stranger", &proof()).await;
            assert!(matches!(stranger, Err(ProofError::NotAParticipant)));
        }
    }
    // Live rates on the last day: three of four proved today and are on course.
    let detail = challenges::get(&db, challenge).await.unwrap();
    assert_eq!(
        (detail.proof_rate_today, detail.success_rate),
        (Some(7_500), Some(7_500))
    );
    // 10:00 on the last day: outside the window.
    advance(&db, 3 * 3_600).await;
    let late = proofs::submit(&db, challenge, "baek", &proof()).await;
    assert!(matches!(late, Err(ProofError::OutsideWindow(_))));
    let reason = Reason {
        reason: "photo from yesterday".to_owned(),
    };
    let reviewers = [REVIEWER.to_owned()];
    // dong's day-2 proof: reported, then rejected — dong ends at 6/7.
    let dong = rejected.ok_or("no proof").unwrap();
    proofs::report(&db, dong, "ahn", &reason).await.unwrap();
    let reject = Review {
        decision: Decision::Reject,
        reason_code: Some("STALE_PHOTO".to_owned()),
    };
    let not_reviewer = proofs::review(&db, &reviewers, dong, "ahn", &reject).await;
    assert!(matches!(not_reviewer, Err(ProofError::NotAReviewer)));
    proofs::review(&db, &reviewers, dong, REVIEWER, &reject)
        .await
        .unwrap();
    // ahn's day-5 proof: rejected, appealed, approved — ahn stays at 7/7.
    let ahn = appealed.ok_or("no proof").unwrap();
    proofs::review(&db, &reviewers, ahn, REVIEWER, &reject)
        .await
        .unwrap();
    let by_other = proofs::appeal(&db, ahn, "dong", &reason).await;
    assert!(
        matches!(by_other, Err(ProofError::NotYours)),
        "{by_other:?}"
    );
    let own_report = proofs::report(&db, ahn, "ahn", &reason).await;
    assert!(
        matches!(own_report, Err(ProofError::NotYours)),
        "{own_report:?}"
    );
    let outsider_report = proofs::report(&db, ahn, "stranger", &reason).await;
    assert!(
        matches!(outsider_report, Err(ProofError::NotAParticipant)),
        "{outsider_report:?}"
    );
    proofs::appeal(&db, ahn, "ahn", &reason).await.unwrap();
    let approve = Review {
        decision: Decision::Approve,
        reason_code: None,
    };
    proofs::review(&db, &reviewers, ahn, REVIEWER, &approve)
        .await
        .unwrap();
    // What each participant is shown before the end is what settlement will pay.
    let shown = proofs::my_standing(&db, challenge, "choi").await.unwrap();
    assert_eq!(shown.counted_days, 4);
    // The end, then the review window, then settlement.
    advance(&db, starts_at + 7 * DAY - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Ended);
    let appeal_late = proofs::appeal(&db, dong, "dong", &reason).await;
    assert!(
        appeal_late.is_ok(),
        "appeals stay open after the end, until a day before reviews close"
    );
    // The reviewers' day: the rejection is upheld on appeal (an appeal nobody decides would count).
    advance(&db, challenges::REVIEW_WINDOW_SECONDS - 3_600).await;
    proofs::review(&db, &reviewers, dong, REVIEWER, &reject)
        .await
        .unwrap();
    advance(&db, 3_600).await;
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);

    // The domain's arithmetic on (7, 6, 4, 6) of 7 — dong's rejection was upheld on appeal.
    let counted = [7_u32, 6, 4, 6];
    let expected = settle(
        7,
        1_000,
        &counted
            .iter()
            .map(|c| Participant {
                stake: Points::new(FEE).unwrap(),
                counted_days: *c,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for (i, user) in users.iter().enumerate() {
        let payout = &expected.payouts[i];
        assert_eq!(
            balance(&db, user).await,
            payout.refund.get() + payout.prize.get(),
            "{user}"
        );
    }
    assert_eq!(shown.expected_refund, expected.payouts[2].refund.get());
    // ahn: 10,000 + prize; baek and dong (6/7 = 85.7%): 10,000; choi (4/7): floor(40,000/7).
    assert_eq!(balance(&db, "baek").await, 10_000);
    assert_eq!(balance(&db, "choi").await, 5_714);
    assert_eq!(balance(&db, "ahn").await, 10_000 + (4_286 - 428));
    assert_sound(&db).await;
    // Running the scheduler again changes nothing.
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(balance(&db, "ahn").await, 13_858);
    assert_sound(&db).await;
}

/// A participant with no proof that counts had a week counted for nothing: Postgres's `LEAST`
/// ignores NULLs, and the count's outer join gives such a participant one NULL row. On a one-week
/// challenge of seven days a week that was full achievement — a full refund and a share of the
/// prize taken from those who proved.
#[sqlx::test(migrations = "./migrations")]
async fn a_participant_who_never_proved_forfeits_the_stake_to_one_who_proved_every_day(db: PgPool) {
    let w = wire(&db, 2, 0).await;
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    for user in ["diligent", "absent", "rejected_only"] {
        fund_and_join(&db, challenge, user).await;
    }
    advance(&db, starts_at - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    let reviewers = [REVIEWER.to_owned()];
    for day in 0..7 {
        advance(&db, starts_at + day * DAY + 7 * 3_600 - now(&db).await).await;
        proofs::submit(&db, challenge, "diligent", &proof())
            .await
            .unwrap();
        if day == 0 {
            // Proved once, and that proof was rejected: nothing of it counts either.
            let p = proofs::submit(&db, challenge, "rejected_only", &proof())
                .await
                .unwrap();
            let reject = Review {
                decision: Decision::Reject,
                reason_code: Some("STALE_PHOTO".to_owned()),
            };
            proofs::review(&db, &reviewers, p.id, REVIEWER, &reject)
                .await
                .unwrap();
        }
    }
    for user in ["absent", "rejected_only"] {
        let shown = proofs::my_standing(&db, challenge, user).await.unwrap();
        assert_eq!(
            (
                shown.counted_days,
                shown.achievement_bps,
                shown.expected_refund
            ),
            (0, 0, 0),
            "{user} is shown what it will get"
        );
    }
    advance(
        &db,
        starts_at + 7 * DAY + challenges::REVIEW_WINDOW_SECONDS - now(&db).await,
    )
    .await;
    lifecycle::run_once(&db).await.unwrap();
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);
    assert_eq!(balance(&db, "absent").await, 0);
    assert_eq!(balance(&db, "rejected_only").await, 0);
    assert_eq!(balance(&db, "diligent").await, 3 * FEE);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_challenge_below_its_minimum_is_canceled_and_every_stake_goes_back_to_its_lots(
    db: PgPool,
) {
    let w = wire(&db, 3, 0).await;
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    for user in ["only_1", "only_2"] {
        fund_and_join(&db, challenge, user).await;
        assert_eq!(balance(&db, user).await, 0);
    }
    advance(&db, 3 * DAY).await;
    let pass = lifecycle::run_once(&db).await.unwrap();
    assert_eq!((pass.canceled, pass.refunded), (1, 2));
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Canceled);
    for user in ["only_1", "only_2"] {
        assert_eq!(balance(&db, user).await, FEE);
    }
    let again = lifecycle::run_once(&db).await.unwrap();
    assert_eq!(again.refunded, 0);
    assert_sound(&db).await;
}

/// A challenge of `n` participants, ended and past review, with random proofs.
async fn ended_challenge(db: &PgPool, n: usize, seed: u64) -> Uuid {
    let w = wire(db, 2, 750).await;
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    let mut big = w.clone();
    big.capacity = 10_000;
    let challenge = challenges::create(db, None, &NewChallenge::parse(&big).unwrap())
        .await
        .unwrap()
        .id;
    for i in 0..n {
        fund_and_join(db, challenge, &format!("p{i:05}")).await;
    }
    advance(db, starts_at - now(db).await).await;
    lifecycle::run_once(db).await.unwrap();
    let mut random = SplitMix64::new(seed);
    let users: Vec<String> = (0..n).map(|i| format!("p{i:05}")).collect();
    let mut rows: Vec<(String, i32)> = Vec::new();
    for user in &users {
        let days = random.below(8);
        for day in 0..days {
            rows.push((user.clone(), i32::try_from(day).unwrap_or(0)));
        }
    }
    let (proof_users, days): (Vec<String>, Vec<i32>) = rows.into_iter().unzip();
    sqlx::query(
        "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, submitted_at) \
         SELECT gen_random_uuid(), $1, u, d, d / 7, 'https://img.test/p', now() \
         FROM UNNEST($2::text[], $3::int4[]) AS x(u, d)",
    )
    .bind(challenge)
    .bind(&proof_users)
    .bind(&days)
    .execute(db)
    .await
    .unwrap();
    advance(db, 7 * DAY + challenges::REVIEW_WINDOW_SECONDS).await;
    lifecycle::run_once(db).await.unwrap();
    challenge
}

async fn ledger_fingerprint(db: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT a.owner_id, w.balance FROM ledger_wallets w \
         JOIN ledger_accounts a ON a.id = w.account_id ORDER BY a.owner_id",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn a_settlement_killed_between_batches_and_rerun_pays_each_participant_once(db: PgPool) {
    // Not run by the pass in ended_challenge: keep the challenge ENDED by settling by hand.
    let challenge = {
        let w = wire(&db, 2, 750).await;
        let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
            .ok_or("t")
            .unwrap();
        let mut big = w.clone();
        big.capacity = 10_000;
        let id = challenges::create(&db, None, &NewChallenge::parse(&big).unwrap())
            .await
            .unwrap()
            .id;
        for i in 0..2_300 {
            fund_and_join(&db, id, &format!("k{i:05}")).await;
        }
        advance(&db, starts_at - now(&db).await).await;
        lifecycle::run_once(&db).await.unwrap();
        sqlx::query(
            "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, submitted_at) \
             SELECT gen_random_uuid(), $1, user_id, d, 0, 'https://img.test/p', now() \
             FROM challenge_participants, generate_series(0, (hashtext(user_id) & 7) - 1) AS d \
             WHERE challenge_id = $1 AND (hashtext(user_id) & 7) BETWEEN 1 AND 7",
        )
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
        advance(&db, 7 * DAY).await;
        lifecycle::run_once(&db).await.unwrap();
        advance(&db, challenges::REVIEW_WINDOW_SECONDS).await;
        id
    };
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Ended);
    // Killed after computing and one batch.
    let escrow = lifecycle::compute_payouts(&db, challenge)
        .await
        .unwrap()
        .expect("not due");
    assert_eq!(
        lifecycle::post_payout_batch(&db, challenge, escrow)
            .await
            .unwrap(),
        2_000
    );
    // Rerun from scratch, twice at once.
    let (a, b) = tokio::join!(
        lifecycle::settle_challenge(&db, challenge),
        lifecycle::settle_challenge(&db, challenge)
    );
    assert!(a.unwrap() || b.unwrap(), "one of them finished");
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);
    let paid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transfers WHERE idempotency_key LIKE 'settle:%:refund'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let with_refund: i64 =
        sqlx::query_scalar("SELECT count(*) FROM challenge_payouts WHERE refund > 0")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        paid, with_refund,
        "one refund transfer per participant owed one"
    );
    // Balances equal the payouts, exactly.
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM challenge_payouts p JOIN ledger_accounts a \
             ON a.kind = 'user_wallet' AND a.owner_id = p.user_id \
         JOIN ledger_wallets w ON w.account_id = a.id WHERE w.balance <> p.refund + p.prize",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(wrong, 0);
    let escrow_left: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(CASE WHEN to_account_id = $1 THEN amount ELSE -amount END), 0)::int8 \
         FROM ledger_transfers WHERE $1 IN (from_account_id, to_account_id)",
    )
    .bind(escrow)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(escrow_left, 0, "the escrow is emptied exactly");
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn two_schedulers_at_once_settle_a_challenge_once(db: PgPool) {
    let challenge = ended_challenge(&db, 40, 7).await;
    // ended_challenge's own pass may have settled it already; two more passes change nothing.
    let before = ledger_fingerprint(&db).await;
    let (a, b) = tokio::join!(lifecycle::run_once(&db), lifecycle::run_once(&db));
    a.unwrap();
    b.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);
    assert_eq!(ledger_fingerprint(&db).await, before);
    let settlements: i64 = sqlx::query_scalar("SELECT count(*) FROM challenge_settlements")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(settlements, 1);
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn the_databases_count_of_proof_days_is_the_domains(db: PgPool) {
    let w = wire(&db, 2, 0).await;
    let mut rules_raw: RawRules = RawRules {
        entry_fee: w.entry_fee,
        capacity: w.capacity,
        min_participants: w.min_participants,
        recruit_ends_at: 0,
        starts_at: 0,
        ends_at: 0,
        proof: w.proof.clone(),
        house_fee_bps: 0,
    };
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    for i in 0..30 {
        fund_and_join(&db, challenge, &format!("c{i:02}")).await;
    }
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    rules_raw.recruit_ends_at = starts_at;
    rules_raw.starts_at = starts_at;
    rules_raw.ends_at = starts_at + 14 * DAY;
    rules_raw.proof.days_per_week = 3;
    let rules = ChallengeRules::parse(&rules_raw).unwrap();
    const STATES: [&str; 5] = ["submitted", "reported", "approved", "rejected", "appealed"];
    let mut random = SplitMix64::new(42);
    let mut expected = Vec::new();
    for i in 0..30 {
        let user = format!("c{i:02}");
        // Every fifth participant never proves: the count must be 0, not a week.
        let days: Vec<u32> = if i % 5 == 0 {
            Vec::new()
        } else {
            (0..14)
                .filter(|_| random.below(2) == 1)
                .map(|d| d as u32)
                .collect()
        };
        // Every state a proof can be in: only a rejection takes a day out of the count.
        let mut counting = Vec::new();
        for day in &days {
            let state = STATES[usize::try_from(random.below(5)).unwrap_or(0)];
            sqlx::query(
                "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, submitted_at, \
                     state, reason_code) \
                 VALUES (gen_random_uuid(), $1, $2, $3, $3 / 7, 'https://img.test/p', now(), \
                     $4::proof_state, CASE WHEN $4 = 'rejected' THEN 'STALE_PHOTO' END)",
            )
            .bind(challenge)
            .bind(&user)
            .bind(i32::try_from(*day).unwrap_or(0))
            .bind(state)
            .execute(&db)
            .await.unwrap();
            if state != "rejected" {
                counting.push(*day);
            }
        }
        expected.push((
            user,
            i32::try_from(rules.counted_days(&counting)).unwrap_or(-1),
        ));
    }
    let mut conn = db.acquire().await.unwrap();
    let counted = proofs::counted_days(&mut conn, challenge, 3).await.unwrap();
    assert_eq!(counted, expected);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_participant_who_has_not_proved_gets_one_reminder_before_the_window_closes(db: PgPool) {
    let w = wire(&db, 2, 0).await;
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    let challenge = challenges::create(&db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    for user in ["early_bird", "sleeper"] {
        fund_and_join(&db, challenge, user).await;
    }
    advance(&db, starts_at + 7 * 3_600 - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    proofs::submit(&db, challenge, "early_bird", &proof())
        .await
        .unwrap();
    let reminders = |db: PgPool| async move {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM notifications WHERE kind = 'proof_reminder' ORDER BY user_id",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        rows
    };
    // 07:00: too early (the window closes at 09:00, the reminder is due at 08:00).
    assert!(reminders(db.clone()).await.is_empty());
    advance(&db, 3_600 + 60).await;
    let pass = lifecycle::run_once(&db).await.unwrap();
    assert_eq!(pass.reminded, 1);
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(reminders(db.clone()).await, vec!["sleeper".to_owned()]);
}

/// Proofs of `user` on challenge days `days`, written straight to the table (as the settlement
/// tests do): the report, appeal and review paths do not care how a proof came in. In day order.
async fn insert_proofs(db: &PgPool, challenge: Uuid, user: &str, days: &[i32]) -> Vec<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, submitted_at) \
         SELECT gen_random_uuid(), $1, $2, d, d / 7, 'https://img.test/p', platform_now() \
         FROM UNNEST($3::int4[]) AS d ORDER BY d RETURNING id",
    )
    .bind(challenge)
    .bind(user)
    .bind(days)
    .fetch_all(db)
    .await
    .unwrap()
}

async fn proof_state(db: &PgPool, proof: Uuid) -> String {
    sqlx::query_scalar("SELECT state::text FROM proofs WHERE id = $1")
        .bind(proof)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A started one-week challenge (house fee 0) with `users` joined; returns it and its start.
async fn started(db: &PgPool, users: &[&str]) -> (Uuid, i64) {
    let w = wire(db, 2, 0).await;
    let starts_at = nene_domain::time::parse_rfc3339(&w.starts_at)
        .ok_or("t")
        .unwrap();
    let challenge = challenges::create(db, None, &NewChallenge::parse(&w).unwrap())
        .await
        .unwrap()
        .id;
    for user in users {
        fund_and_join(db, challenge, user).await;
    }
    advance(db, starts_at - now(db).await).await;
    lifecycle::run_once(db).await.unwrap();
    (challenge, starts_at)
}

/// When reviews of a one-week challenge starting at `starts_at` close.
fn review_ends_at(starts_at: i64) -> i64 {
    starts_at + 7 * DAY + challenges::REVIEW_WINDOW_SECONDS
}

fn reason(text: &str) -> Reason {
    Reason {
        reason: text.to_owned(),
    }
}

/// The attack: a participant who proves every day reports three of another's proofs a
/// minute before reports close, and nobody reviews them. A report is a claim, not a decision: the
/// author's proofs keep counting, the stake comes back whole, and the reporter wins nothing.
#[sqlx::test(migrations = "./migrations")]
async fn a_last_minute_report_nobody_reviews_costs_the_author_nothing(db: PgPool) {
    let (challenge, starts_at) = started(&db, &["author", "reporter"]).await;
    let mut authors = Vec::new();
    for day in 0..7 {
        advance(&db, starts_at + day * DAY + 7 * 3_600 - now(&db).await).await;
        authors.push(
            proofs::submit(&db, challenge, "author", &proof())
                .await
                .unwrap()
                .id,
        );
        proofs::submit(&db, challenge, "reporter", &proof())
            .await
            .unwrap();
    }
    let close = proofs::reports_close_at(review_ends_at(starts_at));
    advance(&db, close - 60 - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    for proof in &authors[..3] {
        proofs::report(&db, *proof, "reporter", &reason("fake"))
            .await
            .unwrap();
        assert_eq!(proof_state(&db, *proof).await, "reported");
    }
    let shown = proofs::my_standing(&db, challenge, "author").await.unwrap();
    assert_eq!(
        (
            shown.counted_days,
            shown.expected_refund,
            shown.expected_prize
        ),
        (7, FEE, 0),
        "while the reports are open the author is shown the whole stake back"
    );
    assert_eq!(shown.reports_close_at, format_rfc3339(close));
    // Nobody reviews; reviews close and settlement runs.
    advance(&db, review_ends_at(starts_at) - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);
    assert_eq!(balance(&db, "author").await, FEE, "the whole stake back");
    assert_eq!(
        balance(&db, "reporter").await,
        FEE,
        "no prize out of the author's stake"
    );
    assert_sound(&db).await;
}

#[sqlx::test(migrations = "./migrations")]
async fn a_report_or_appeal_after_the_cut_off_is_refused_and_leaves_the_proof_as_it_was(
    db: PgPool,
) {
    let (challenge, starts_at) = started(&db, &["author", "reporter"]).await;
    advance(&db, starts_at + 6 * DAY + 7 * 3_600 - now(&db).await).await;
    let ids = insert_proofs(&db, challenge, "author", &[0, 1, 2]).await;
    let reviewers = [REVIEWER.to_owned()];
    let close = proofs::reports_close_at(review_ends_at(starts_at));
    assert_eq!(
        review_ends_at(starts_at) - close,
        proofs::REVIEWER_TIME_MIN_SECONDS,
        "reviewers have their whole day"
    );
    // The last second before the cut-off still takes a report.
    advance(&db, close - 1 - now(&db).await).await;
    proofs::report(&db, ids[0], "reporter", &reason("fake"))
        .await
        .unwrap();
    advance(&db, 1).await;
    let late = proofs::report(&db, ids[1], "reporter", &reason("fake")).await;
    let Err(error) = late else {
        panic!("a report at the cut-off was taken")
    };
    assert!(matches!(error, ProofError::ReportsClosed), "{error:?}");
    assert_eq!(
        (error.code().as_str(), error.code().http_status()),
        ("REPORTS_CLOSED", 409)
    );
    assert_eq!(proof_state(&db, ids[1]).await, "submitted");
    let disputes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM proof_disputes WHERE proof_id = $1")
            .bind(ids[1])
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(disputes, 0, "nothing of the refused report is kept");
    // Reviewers keep their day: the open report is decided, and a proof can still be rejected...
    let reject = Review {
        decision: Decision::Reject,
        reason_code: Some("STALE_PHOTO".to_owned()),
    };
    proofs::review(&db, &reviewers, ids[0], REVIEWER, &reject)
        .await
        .unwrap();
    proofs::review(&db, &reviewers, ids[2], REVIEWER, &reject)
        .await
        .unwrap();
    // ...but appeals closed with reports: a last-minute appeal would outlast every reviewer.
    let appeal = proofs::appeal(&db, ids[2], "author", &reason("it was today")).await;
    let Err(error) = appeal else {
        panic!("an appeal after the cut-off was taken")
    };
    assert!(matches!(error, ProofError::AppealsClosed), "{error:?}");
    assert_eq!(
        (error.code().as_str(), error.code().http_status()),
        ("APPEALS_CLOSED", 409)
    );
    assert_eq!(proof_state(&db, ids[2]).await, "rejected");
    // Reviews close with the review window.
    advance(&db, review_ends_at(starts_at) - now(&db).await).await;
    let approve = Review {
        decision: Decision::Approve,
        reason_code: None,
    };
    let closed = proofs::review(&db, &reviewers, ids[1], REVIEWER, &approve).await;
    assert!(
        matches!(closed, Err(ProofError::StateConflict)),
        "{closed:?}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_sixth_report_of_a_day_is_refused_with_429_and_the_next_day_brings_five_more(
    db: PgPool,
) {
    let (challenge, starts_at) = started(&db, &["author", "reporter"]).await;
    // 10:00 Seoul on day 5: six proofs of the author to report.
    advance(&db, starts_at + 5 * DAY + 10 * 3_600 - now(&db).await).await;
    let ids = insert_proofs(&db, challenge, "author", &[0, 1, 2, 3, 4, 5]).await;
    let allowed = usize::try_from(proofs::REPORTS_PER_DAY_MAX).unwrap_or(0);
    assert_eq!(allowed, 5);
    for id in &ids[..allowed] {
        proofs::report(&db, *id, "reporter", &reason("fake"))
            .await
            .unwrap();
    }
    let sixth = proofs::report(&db, ids[5], "reporter", &reason("fake")).await;
    let Err(error) = sixth else {
        panic!("a sixth report in a day was taken")
    };
    assert!(matches!(error, ProofError::ReportLimitReached), "{error:?}");
    assert_eq!(
        (error.code().as_str(), error.code().http_status()),
        ("REPORT_LIMIT_REACHED", 429)
    );
    assert_eq!(proof_state(&db, ids[5]).await, "submitted");
    // The schema holds the same bound as the code.
    let past_the_bound =
        sqlx::query("UPDATE proof_report_days SET reports = reports + 1 WHERE reporter_id = $1")
            .bind("reporter")
            .execute(&db)
            .await;
    assert!(past_the_bound.is_err(), "{past_the_bound:?}");
    // The day is the challenge's: 23:59 Seoul is still today, midnight is tomorrow.
    advance(&db, starts_at + 6 * DAY - 60 - now(&db).await).await;
    let still_today = proofs::report(&db, ids[5], "reporter", &reason("fake")).await;
    assert!(
        matches!(still_today, Err(ProofError::ReportLimitReached)),
        "{still_today:?}"
    );
    advance(&db, 60).await;
    proofs::report(&db, ids[5], "reporter", &reason("fake"))
        .await
        .unwrap();
    assert_eq!(proof_state(&db, ids[5]).await, "reported");
}

#[sqlx::test(migrations = "./migrations")]
async fn six_reports_at_once_never_admit_more_than_five(db: PgPool) {
    let authors = ["author_1", "author_2", "author_3"];
    let reporters = ["reporter_1", "reporter_2", "reporter_3"];
    let everyone: Vec<&str> = authors.iter().chain(&reporters).copied().collect();
    let (challenge, starts_at) = started(&db, &everyone).await;
    advance(&db, starts_at + 5 * DAY + 10 * 3_600 - now(&db).await).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (author, reporter) in authors.iter().zip(reporters) {
        for id in insert_proofs(&db, challenge, author, &[0, 1, 2, 3, 4, 5]).await {
            let db = db.clone();
            tasks.spawn(async move {
                let outcome = proofs::report(&db, id, reporter, &reason("fake")).await;
                (reporter, outcome)
            });
        }
    }
    let mut taken = std::collections::BTreeMap::<&str, (u32, u32)>::new();
    while let Some(joined) = tasks.join_next().await {
        let (reporter, outcome) = joined.unwrap();
        let entry = taken.entry(reporter).or_default();
        match outcome {
            Ok(()) => entry.0 += 1,
            Err(ProofError::ReportLimitReached) => entry.1 += 1,
            Err(other) => panic!("{reporter}: {other:?}"),
        }
    }
    for reporter in reporters {
        assert_eq!(taken.get(reporter), Some(&(5, 1)), "{reporter}");
        let reported: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM proofs p JOIN proof_disputes d ON d.proof_id = p.id \
             WHERE d.opened_by = $1 AND p.state = 'reported'",
        )
        .bind(reporter)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(reported, 5, "{reporter}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn the_reviewers_queue_lists_open_reports_and_appeals_oldest_first_only_to_reviewers(
    db: PgPool,
) {
    let (challenge, starts_at) = started(&db, &["author", "reporter"]).await;
    advance(&db, starts_at + 3 * DAY + 10 * 3_600 - now(&db).await).await;
    let ids = insert_proofs(&db, challenge, "author", &[0, 1, 2, 3]).await;
    let reviewers = [REVIEWER.to_owned()];
    let reject = Review {
        decision: Decision::Reject,
        reason_code: Some("STALE_PHOTO".to_owned()),
    };
    let approve = Review {
        decision: Decision::Approve,
        reason_code: None,
    };
    // Opened in this order: a report of day 2, a report of day 0, an appeal of day 1; a report of
    // day 3 is decided and leaves the queue.
    proofs::report(&db, ids[2], "reporter", &reason("same photo as day 1"))
        .await
        .unwrap();
    advance(&db, 60).await;
    proofs::report(&db, ids[0], "reporter", &reason("not a run"))
        .await
        .unwrap();
    proofs::review(&db, &reviewers, ids[1], REVIEWER, &reject)
        .await
        .unwrap();
    advance(&db, 60).await;
    proofs::appeal(&db, ids[1], "author", &reason("it was today"))
        .await
        .unwrap();
    proofs::report(&db, ids[3], "reporter", &reason("blurry"))
        .await
        .unwrap();
    proofs::review(&db, &reviewers, ids[3], REVIEWER, &approve)
        .await
        .unwrap();

    let outsider = proofs::review_queue(&db, &reviewers, "reporter", None, 50).await;
    let Err(error) = outsider else {
        panic!("a participant saw the reviewers' queue")
    };
    assert_eq!(
        (error.code().as_str(), error.code().http_status()),
        ("FORBIDDEN", 403)
    );

    let page = proofs::review_queue(&db, &reviewers, REVIEWER, None, 50)
        .await
        .unwrap();
    let seen: Vec<(&str, Uuid, &str, &str)> = page
        .items
        .iter()
        .map(|item| {
            (
                item.kind.as_str(),
                item.proof.id,
                item.opened_by.as_str(),
                item.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("report", ids[2], "reporter", "same photo as day 1"),
            ("report", ids[0], "reporter", "not a run"),
            ("appeal", ids[1], "author", "it was today"),
        ]
    );
    assert_eq!(page.next_cursor, None);
    let first = &page.items[0];
    assert_eq!(
        (
            first.proof.user_id.as_str(),
            first.proof.state.as_str(),
            first.proof.challenge_id
        ),
        ("author", "reported", challenge)
    );
    assert!(page.items[0].opened_at < page.items[1].opened_at);
    assert!(page.items[1].opened_at < page.items[2].opened_at);
    assert_eq!(
        first.review_ends_at,
        format_rfc3339(review_ends_at(starts_at))
    );
    assert_eq!(
        page.items[2].proof.reason_code.as_deref(),
        Some("STALE_PHOTO")
    );

    // A page at a time, oldest first.
    let one = proofs::review_queue(&db, &reviewers, REVIEWER, None, 2)
        .await
        .unwrap();
    assert_eq!(one.items, page.items[..2]);
    let cursor = one
        .next_cursor
        .as_deref()
        .and_then(proofs::parse_queue_cursor);
    assert!(cursor.is_some(), "{:?}", one.next_cursor);
    let rest = proofs::review_queue(&db, &reviewers, REVIEWER, cursor, 2)
        .await
        .unwrap();
    assert_eq!(
        (rest.items, rest.next_cursor),
        (page.items[2..].to_vec(), None)
    );

    // A decision takes an item off; once reviews close, nothing is left to decide.
    proofs::review(&db, &reviewers, ids[2], REVIEWER, &approve)
        .await
        .unwrap();
    let after = proofs::review_queue(&db, &reviewers, REVIEWER, None, 50)
        .await
        .unwrap();
    assert_eq!(after.items.len(), 2);
    advance(&db, review_ends_at(starts_at) - now(&db).await).await;
    let closed = proofs::review_queue(&db, &reviewers, REVIEWER, None, 50)
        .await
        .unwrap();
    assert!(closed.items.is_empty(), "{closed:?}");
}

/// A rejection under appeal that nobody decided counts at settlement: the author appealed in time,
/// reviewers had their day, and the platform's slowness does not cost the author. An appeal is one
/// second look: once decided, the same proof cannot be appealed again.
#[sqlx::test(migrations = "./migrations")]
async fn an_appeal_nobody_decides_counts_at_settlement_and_a_proof_is_appealed_once(db: PgPool) {
    let (challenge, starts_at) = started(&db, &["author", "other"]).await;
    advance(&db, starts_at + 6 * DAY + 10 * 3_600 - now(&db).await).await;
    let ids = insert_proofs(&db, challenge, "author", &[0, 1, 2, 3, 4, 5, 6]).await;
    insert_proofs(&db, challenge, "other", &[0, 1, 2, 3, 4, 5, 6]).await;
    let reviewers = [REVIEWER.to_owned()];
    let reject = Review {
        decision: Decision::Reject,
        reason_code: Some("STALE_PHOTO".to_owned()),
    };
    for id in &ids[1..3] {
        proofs::review(&db, &reviewers, *id, REVIEWER, &reject)
            .await
            .unwrap();
        proofs::appeal(&db, *id, "author", &reason("it was today"))
            .await
            .unwrap();
    }
    // Day 2's appeal is decided against the author, and cannot be appealed again.
    proofs::review(&db, &reviewers, ids[2], REVIEWER, &reject)
        .await
        .unwrap();
    let again = proofs::appeal(&db, ids[2], "author", &reason("really")).await;
    assert!(matches!(again, Err(ProofError::StateConflict)), "{again:?}");
    // Day 1's appeal is never decided: 6 of 7 count (85.7%), the whole stake comes back. Had the
    // open appeal not counted, 5 of 7 would have forfeited 2,858 points to `other`.
    let shown = proofs::my_standing(&db, challenge, "author").await.unwrap();
    assert_eq!((shown.counted_days, shown.expected_refund), (6, FEE));
    advance(&db, review_ends_at(starts_at) - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    assert_eq!(state_of(&db, challenge).await, ChallengeState::Settled);
    assert_eq!(proof_state(&db, ids[1]).await, "appealed");
    assert_eq!(balance(&db, "author").await, FEE);
    assert_eq!(balance(&db, "other").await, FEE);
    assert_sound(&db).await;
}

/// A review begun a moment before reviews close may reach the challenge while settlement holds it
/// to count: it waits, and once the payouts are counted it is refused, so no proof changes state
/// under a settlement that already paid by the old one. (The clock cannot say it alone: a
/// transaction's `platform_now()` is its start.)
#[sqlx::test(migrations = "./migrations")]
async fn a_review_that_waits_on_settlement_is_refused_once_the_payouts_are_counted(db: PgPool) {
    let (challenge, starts_at) = started(&db, &["author", "other"]).await;
    advance(&db, starts_at + 6 * DAY + 10 * 3_600 - now(&db).await).await;
    let ids = insert_proofs(&db, challenge, "author", &[0]).await;
    advance(&db, starts_at + 7 * DAY + 3_600 - now(&db).await).await;
    lifecycle::run_once(&db).await.unwrap();
    // Settlement's first step, held open: the challenge row locked, the payouts' totals written.
    let mut settling = db.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM challenges WHERE id = $1 FOR UPDATE")
        .bind(challenge)
        .execute(&mut *settling)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO challenge_settlements (challenge_id, participants, stakes, pool, house) \
         VALUES ($1, 2, 20000, 0, 0)",
    )
    .bind(challenge)
    .execute(&mut *settling)
    .await
    .unwrap();
    let reviewing = tokio::spawn({
        let db = db.clone();
        let proof = ids[0];
        async move {
            let reject = Review {
                decision: Decision::Reject,
                reason_code: Some("STALE_PHOTO".to_owned()),
            };
            proofs::review(&db, &[REVIEWER.to_owned()], proof, REVIEWER, &reject).await
        }
    });
    // Until the review is queued on the challenge's lock (or done, if it never waits).
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%FOR SHARE%')",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if waiting || reviewing.is_finished() {
            break;
        }
        tokio::task::yield_now().await;
    }
    settling.commit().await.unwrap();
    let outcome = reviewing.await.unwrap();
    assert!(
        matches!(outcome, Err(ProofError::StateConflict)),
        "{outcome:?}"
    );
    assert_eq!(proof_state(&db, ids[0]).await, "submitted");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_page_of_proofs_outside_one_to_a_hundred_is_refused_not_clamped(db: PgPool) {
    let challenge = Uuid::now_v7();
    for limit in [0, -1, proofs::PROOF_PAGE_MAX + 1, i64::MAX] {
        let page = proofs::list(&db, challenge, None, Some(limit)).await;
        assert!(
            matches!(page, Err(ProofError::Invalid)),
            "limit {limit}: {:?}",
            page.map(|(items, _)| items.len())
        );
    }
    for limit in [None, Some(1), Some(proofs::PROOF_PAGE_MAX)] {
        let (items, next) = proofs::list(&db, challenge, None, limit).await.unwrap();
        assert!(items.is_empty() && next.is_none());
    }
}
