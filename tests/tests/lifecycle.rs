//! A whole challenge through the Worker under `wrangler dev`, with the test clock: creation,
//! joins, a week of proofs (some missed, one reported — seen on the reviewers' queue — and
//! rejected, one rejected, appealed and approved), the end, reports closing a day before reviews,
//! and settlement — every wallet checked to the point and the ledger checker clean.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nene_domain::time::{format_rfc3339, parse_rfc3339};
use nene_e2e::{Core, E2E_REVIEWER, Wrangler, core_call, edge_call as call, scratch_dir};
use serde_json::json;

const DAY: i64 = 86_400;
const FEE: i64 = 10_000;

/// Moves the platform clock to `target` (never back); returns the new now.
async fn clock_to(edge: &str, now: &mut i64, target: i64) {
    if target > *now {
        let (status, body) = call(
            edge,
            "POST",
            "/v1/dev/clock",
            "nobody",
            Some(json!({ "advance_seconds": target - *now })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        *now = parse_rfc3339(body["now"].as_str().unwrap_or_default()).unwrap_or(0);
    }
}

#[tokio::test]
async fn a_challenge_goes_from_creation_to_settlement_through_the_edge_with_the_test_clock() {
    let dir = scratch_dir("lifecycle_workers");
    let edge_port = nene_e2e::free_port();
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let core = Core::start_with(&dir, None, Some(&edge_url)).await;
    let edge = Wrangler::start_on(edge_port, &core.url, &dir.join("state"), &dir).await;
    let url = edge.url.as_str();
    let (status, tick) = call(
        url,
        "POST",
        "/v1/dev/clock",
        "x",
        Some(json!({ "advance_seconds": 1 })),
    )
    .await;
    assert_eq!(status, 200, "{tick}");
    let mut now = parse_rfc3339(tick["now"].as_str().unwrap_or_default()).unwrap_or(0);
    const SEOUL: i64 = 9 * 3_600;
    let starts_at = ((now + SEOUL).div_euclid(DAY) + 2) * DAY - SEOUL;
    let body = json!({
        "title": "6시 기상", "category": "morning", "entry_fee": FEE, "capacity": 10,
        "min_participants": 2, "recruit_ends_at": format_rfc3339(starts_at),
        "starts_at": format_rfc3339(starts_at), "ends_at": format_rfc3339(starts_at + 7 * DAY),
        "proof": { "days_per_week": 7, "window_start": "06:00", "window_end": "09:00",
                   "time_zone": "Asia/Seoul" },
        "house_fee_bps": 1_000,
    });
    let (status, challenge) = call(url, "POST", "/v1/challenges", "host", Some(body)).await;
    assert_eq!(status, 201, "{challenge}");
    let id = challenge["id"].as_str().unwrap_or_default().to_owned();
    let (status, list) = call(url, "GET", "/v1/challenges?category=morning", "host", None).await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    let users = ["ahn", "baek", "choi", "dong"];
    for user in users {
        nene_e2e::fund_user(&core, user, FEE).await;
        let (status, seat) = call(
            url,
            "POST",
            &format!("/v1/challenges/{id}/join"),
            user,
            None,
        )
        .await;
        assert_eq!(status, 201, "{user}: {seat}");
    }
    // Recruitment closes at the start: the scheduler pushes it into the room, which then refuses
    // by itself — with the core failing every join, a forwarded join would be a 503.
    clock_to(url, &mut now, starts_at).await;
    let (status, _) = core_call(
        &core,
        "POST",
        "/internal/v1/dev/faults",
        "",
        &json!({ "join_failures": 1_000 }),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        url,
        "POST",
        &format!("/v1/challenges/{id}/join"),
        "latecomer",
        None,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("CHALLENGE_NOT_RECRUITING")),
        "{body}"
    );
    let (status, _) = core_call(
        &core,
        "POST",
        "/internal/v1/dev/faults",
        "",
        &json!({ "join_failures": 0 }),
    )
    .await;
    assert_eq!(status, 200);
    let proof = json!({ "image_url": "https://img.nene.test/p.jpg", "note": "" });
    let path = format!("/v1/challenges/{id}/proofs");
    let mut dong_day_2 = String::new();
    let mut ahn_day_5 = String::new();
    let mut choi_day_0 = String::new();
    for day in 0..7 {
        clock_to(url, &mut now, starts_at + day * DAY + 7 * 3_600).await;
        for (i, user) in users.iter().enumerate() {
            let proves = match i {
                1 => day != 3,
                2 => day < 4,
                _ => true,
            };
            if proves {
                let (status, p) = call(url, "POST", &path, user, Some(proof.clone())).await;
                assert_eq!(status, 201, "{user} day {day}: {p}");
                let pid = p["id"].as_str().unwrap_or_default().to_owned();
                if *user == "dong" && day == 2 {
                    dong_day_2 = pid.clone();
                }
                if *user == "ahn" && day == 5 {
                    ahn_day_5 = pid.clone();
                }
                if *user == "choi" && day == 0 {
                    choi_day_0 = pid;
                }
            }
        }
        if day == 0 {
            let (status, body) = call(url, "POST", &path, "ahn", Some(proof.clone())).await;
            assert_eq!(
                (status, &body["error"]["code"]),
                (409, &json!("PROOF_ALREADY_SUBMITTED"))
            );
            let (status, body) = call(url, "POST", &path, "stranger", Some(proof.clone())).await;
            assert_eq!(
                (status, &body["error"]["code"]),
                (403, &json!("NOT_A_PARTICIPANT"))
            );
        }
    }
    clock_to(url, &mut now, starts_at + 6 * DAY + 10 * 3_600).await;
    let (status, body) = call(url, "POST", &path, "baek", Some(proof.clone())).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("OUTSIDE_PROOF_WINDOW"))
    );

    let reason = json!({ "reason": "yesterday's photo" });
    let reject = json!({ "decision": "reject", "reason_code": "STALE_PHOTO" });
    let (status, _) = call(
        url,
        "POST",
        &format!("/v1/proofs/{dong_day_2}/report"),
        "ahn",
        Some(reason.clone()),
    )
    .await;
    assert_eq!(status, 204);
    // The report waits on the reviewers' queue, which only reviewers see.
    let (status, queue) = call(url, "GET", "/v1/admin/proofs/queue", E2E_REVIEWER, None).await;
    assert_eq!(status, 200, "{queue}");
    assert_eq!(
        (
            &queue["items"][0]["kind"],
            &queue["items"][0]["opened_by"],
            &queue["items"][0]["proof"]["id"],
            queue["items"].as_array().map(Vec::len),
        ),
        (&json!("report"), &json!("ahn"), &json!(dong_day_2), Some(1)),
        "{queue}"
    );
    let (status, _) = call(url, "GET", "/v1/admin/proofs/queue", "ahn", None).await;
    assert_eq!(status, 403, "only reviewers see the queue");
    let review = |pid: &str| format!("/v1/admin/proofs/{pid}/review");
    let (status, _) = call(
        url,
        "POST",
        &review(&dong_day_2),
        "ahn",
        Some(reject.clone()),
    )
    .await;
    assert_eq!(status, 403, "only reviewers review");
    let (status, _) = call(
        url,
        "POST",
        &review(&dong_day_2),
        E2E_REVIEWER,
        Some(reject.clone()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        url,
        "POST",
        &review(&ahn_day_5),
        E2E_REVIEWER,
        Some(reject.clone()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        url,
        "POST",
        &format!("/v1/proofs/{ahn_day_5}/appeal"),
        "ahn",
        Some(reason.clone()),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        url,
        "POST",
        &review(&ahn_day_5),
        E2E_REVIEWER,
        Some(json!({ "decision": "approve" })),
    )
    .await;
    assert_eq!(status, 204);

    let (status, detail) = call(url, "GET", &format!("/v1/challenges/{id}"), "host", None).await;
    assert_eq!(status, 200, "{detail}");
    // Day 6 (the last): ahn, baek, dong proved; choi stopped after day 3.
    assert_eq!(detail["live"]["proof_rate_today"], 7_500, "{detail}");
    assert_eq!(detail["live"]["participants"], 4);
    let (status, mine) = call(url, "GET", &format!("/v1/challenges/{id}/me"), "choi", None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(
        (&mine["counted_days"], &mine["expected_refund"]),
        (&json!(4), &json!(5_714))
    );

    // Reports close a day before reviews: a day after the end.
    assert_eq!(
        parse_rfc3339(mine["reports_close_at"].as_str().unwrap_or_default()),
        Some(starts_at + 8 * DAY),
        "{mine}"
    );
    clock_to(url, &mut now, starts_at + 8 * DAY).await;
    let (status, body) = call(
        url,
        "POST",
        &format!("/v1/proofs/{choi_day_0}/report"),
        "baek",
        Some(reason.clone()),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("REPORTS_CLOSED")),
        "{body}"
    );

    clock_to(url, &mut now, starts_at + 7 * DAY + 2 * DAY + 60).await;
    let (status, detail) = call(url, "GET", &format!("/v1/challenges/{id}"), "host", None).await;
    assert_eq!(
        (status, &detail["state"]),
        (200, &json!("SETTLED")),
        "{detail}"
    );
    // (7, 6, 4, 6) of 7, 1,000 bps: ahn 10,000 + 3,858; baek and dong 10,000; choi 5,714.
    for (user, expected) in [
        ("ahn", 13_858),
        ("baek", 10_000),
        ("choi", 5_714),
        ("dong", 10_000),
    ] {
        let (status, wallet) = call(url, "GET", "/v1/wallet", user, None).await;
        assert_eq!(
            (status, &wallet["balance"]),
            (200, &json!(expected)),
            "{user}"
        );
    }
    let violations = nene_e2e::ledger_violations(&core).await;
    assert_eq!(violations, json!([]));
}
