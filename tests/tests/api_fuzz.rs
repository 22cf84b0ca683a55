//! The public API under fuzzing: schemathesis (pinned in `tools/python/requirements.txt`, installed
//! by `scripts/setup.sh`) generates requests for every operation of `edge/openapi.json` and sends
//! them to the Worker under `wrangler dev`, in front of the real core and the sandbox. It must find
//! no 5xx, no answer the document does not allow (its status, its content type, its body's schema,
//! an error code the operation does not list), and no answer slower than 5 seconds.
//!
//! A fixed seed and a bounded number of examples per operation keep a run reproducible and under
//! five minutes on a 2-core machine. Requests carry the access token of a user who signed in
//! through the sandbox's Kakao, bought points through the sandbox's Toss, created and joined
//! challenges and submitted a proof; half the generated ids are those real ones (a schemathesis
//! dictionary), so the answers of real resources are checked too, not only 404s. The operations
//! that change the whole session run last, each alone: the dev clock (it moves every component's
//! "now"), then logout (it revokes the token's family).

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use nene_domain::time::{format_rfc3339, parse_rfc3339};
use nene_e2e::{
    Core, E2E_REVIEWER, Sandbox, Wrangler, client, free_port, required_env, scratch_dir, token_for,
};
use serde_json::{Value, json};

/// The seed of every run: the same requests each time (given the same answers).
const SEED: u64 = 20_241_214;
/// Examples per operation and phase: enough to reach every documented status of most operations,
/// few enough for the whole suite to stay under five minutes here.
const EXAMPLES_PER_OPERATION: u32 = 80;
/// An answer slower than this is a finding.
const RESPONSE_SECONDS_MAX: u32 = 5;
/// A request that has not been answered by then is a hang (and a finding).
const REQUEST_TIMEOUT_SECONDS: u32 = 10;
/// One schemathesis run's bound: past it the run is stopped and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The checks that make the document's promises: no server error, and every answer as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";
/// Operations left out of the main run, each run alone afterwards, in this order.
const SESSION_WIDE: [&str; 2] = ["/v1/dev/clock", "/v1/auth/logout"];
/// How often a generated id is one of the seeded real ones instead of a generated one.
const REAL_ID_PROBABILITY: f64 = 0.5;
const DAY: i64 = 86_400;

/// Signs `who` in through the sandbox's Kakao, as an app would (PKCE and all): the user exists
/// afterwards. Answers the access token.
async fn sign_in(edge: &str, who: &str) -> String {
    let session = nene_e2e::sign_in(edge, "kakao", who).await;
    session["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(
        method.parse().unwrap_or(reqwest::Method::GET),
        format!("{base}{path}"),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Buys `amount` points for the token's user through the edge and the sandbox's Toss widget;
/// answers the order's id.
async fn buy(edge: &str, sandbox: &str, token: &str, amount: i64) -> String {
    let (status, order) = call(
        edge,
        "POST",
        "/v1/payments/orders",
        Some(token),
        Some(json!({ "amount": amount })),
    )
    .await;
    assert_eq!(status, 201, "order: {order}");
    let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
    let (status, paid) = call(
        sandbox,
        "POST",
        "/sandbox/toss/pay",
        None,
        Some(json!({ "orderId": order_id, "amount": amount })),
    )
    .await;
    assert!((200..300).contains(&status), "pay: {status} {paid}");
    let confirm =
        json!({ "payment_key": paid["paymentKey"], "order_id": order_id, "amount": amount });
    let (status, payment) = call(
        edge,
        "POST",
        "/v1/payments/confirm",
        Some(token),
        Some(confirm),
    )
    .await;
    assert_eq!(status, 200, "confirm: {payment}");
    order_id
}

/// A one-week challenge (Seoul time, proofs all day) starting at the Seoul midnight at least a
/// day after `now`; answers its id.
async fn create_challenge(edge: &str, token: &str, title: &str, now: i64) -> String {
    const SEOUL: i64 = 9 * 3_600;
    let starts_at = ((now + SEOUL).div_euclid(DAY) + 2) * DAY - SEOUL;
    let body = json!({
        "title": title, "category": "fuzz", "entry_fee": 1_000, "capacity": 10,
        "min_participants": 2, "recruit_ends_at": format_rfc3339(starts_at),
        "starts_at": format_rfc3339(starts_at), "ends_at": format_rfc3339(starts_at + 7 * DAY),
        "proof": { "days_per_week": 7, "window_start": "00:00", "window_end": "24:00",
                   "time_zone": "Asia/Seoul" },
    });
    let (status, challenge) = call(edge, "POST", "/v1/challenges", Some(token), Some(body)).await;
    assert_eq!(status, 201, "create: {challenge}");
    challenge["id"].as_str().unwrap_or_default().to_owned()
}

/// Moves the platform clock forward; answers the new now.
async fn advance_clock(edge: &str, seconds: i64) -> i64 {
    let body = json!({ "advance_seconds": seconds });
    let (status, clock) = call(edge, "POST", "/v1/dev/clock", None, Some(body)).await;
    assert_eq!(status, 200, "clock: {clock}");
    parse_rfc3339(clock["now"].as_str().unwrap_or_default()).unwrap_or(0)
}

/// Real resources for the fuzzer's ids: the fuzzing user's token, a challenge in progress that
/// the user and a partner joined and proved today (the user's proof reported by the partner), one
/// still recruiting, and a paid order.
struct Seeded {
    token: String,
    challenges: Vec<String>,
    proofs: Vec<String>,
    orders: Vec<String>,
}

async fn seed(edge: &str, sandbox: &str) -> Seeded {
    let token = sign_in(edge, "fuzzer").await;
    let partner = sign_in(edge, "fuzz-partner").await;
    let order = buy(edge, sandbox, &token, 100_000).await;
    buy(edge, sandbox, &partner, 10_000).await;
    let now = advance_clock(edge, 1).await;
    let running = create_challenge(edge, &token, "fuzz running", now).await;
    for who in [&token, &partner] {
        let path = format!("/v1/challenges/{running}/join");
        let (status, joined) = call(edge, "POST", &path, Some(who), None).await;
        assert_eq!(status, 201, "join: {joined}");
    }
    // Into the challenge's first day: both prove it.
    let (_, detail) = call(
        edge,
        "GET",
        &format!("/v1/challenges/{running}"),
        Some(&token),
        None,
    )
    .await;
    let starts_at = parse_rfc3339(detail["starts_at"].as_str().unwrap_or_default()).unwrap_or(0);
    let now = advance_clock(edge, starts_at - now + 3_600).await;
    let mut proofs = Vec::new();
    for who in [&token, &partner] {
        let path = format!("/v1/challenges/{running}/proofs");
        let body = json!({ "image_url": "https://img.nene.test/p.jpg", "note": "fuzz" });
        let (status, proof) = call(edge, "POST", &path, Some(who), Some(body)).await;
        assert_eq!(status, 201, "proof: {proof}");
        proofs.push(proof["id"].as_str().unwrap_or_default().to_owned());
    }
    // The partner reports the user's proof: the reviewers' queue has an item.
    let path = format!("/v1/proofs/{}/report", proofs[0]);
    let body = json!({ "reason": "not a photo of the habit" });
    let (status, reported) = call(edge, "POST", &path, Some(&partner), Some(body)).await;
    assert_eq!(status, 204, "report: {reported}");
    let recruiting = create_challenge(edge, &partner, "fuzz recruiting", now).await;
    Seeded {
        token,
        challenges: vec![running, recruiting],
        proofs,
        orders: vec![order],
    }
}

/// schemathesis's configuration: the seeded ids as a dictionary for each path parameter.
fn config(seeded: &Seeded) -> String {
    let list = |values: &[String]| {
        values
            .iter()
            .map(|value| format!("\"{value}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[dictionaries.challenges]\nvalues = [{}]\n\n\
         [dictionaries.proofs]\nvalues = [{}]\n\n\
         [dictionaries.orders]\nvalues = [{}]\n\n\
         [parameters]\n\
         \"path.challenge_id\" = {{ dictionary = \"challenges\", probability = {REAL_ID_PROBABILITY} }}\n\
         \"path.proof_id\" = {{ dictionary = \"proofs\", probability = {REAL_ID_PROBABILITY} }}\n\
         \"path.order_id\" = {{ dictionary = \"orders\", probability = {REAL_ID_PROBABILITY} }}\n",
        list(&seeded.challenges),
        list(&seeded.proofs),
        list(&seeded.orders),
    )
}

/// What one schemathesis run did.
struct Run {
    requests: u64,
    findings: bool,
    output: String,
}

/// Runs schemathesis against `edge` with the access token, on the operations `selection` picks
/// (`--include-path …` / `--exclude-path …`), its output and reports in `dir`.
async fn schemathesis(
    dir: &Path,
    name: &str,
    edge: &str,
    token: &str,
    selection: &[String],
) -> Run {
    let root = required_env("NENE_ROOT");
    let har = dir.join(format!("{name}.har"));
    let mut command = tokio::process::Command::new(required_env("NENE_SCHEMATHESIS"));
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .arg("run")
        .arg(Path::new(&root).join("edge/openapi.json"))
        .args(["--url", edge])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--checks", CHECKS])
        .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--max-response-time", &RESPONSE_SECONDS_MAX.to_string()])
        .args(["--request-timeout", &REQUEST_TIMEOUT_SECONDS.to_string()])
        .args(["--max-redirects", "0"])
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .arg("--no-color")
        .args(selection)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("cannot start schemathesis");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ({name}) ran over {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("schemathesis ({name}): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::write(dir.join(format!("{name}.log")), &text);
    Run {
        requests: har_entries(&har),
        findings: !output.status.success(),
        output: text,
    }
}

/// The requests a run sent: the entries of its HAR report.
fn har_entries(har: &Path) -> u64 {
    let text = std::fs::read_to_string(har).unwrap_or_else(|e| panic!("{}: {e}", har.display()));
    let har: Value = serde_json::from_str(&text).unwrap();
    har["log"]["entries"]
        .as_array()
        .map_or(0, |entries| entries.len() as u64)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_no_undocumented_answer_and_no_hang() {
    let dir = scratch_dir("api_fuzz");
    let sandbox = Sandbox::start(&dir).await;
    let edge_port = free_port();
    let edge_url = format!("http://127.0.0.1:{edge_port}");
    let core = Core::start_with(&dir, Some(&sandbox.url), Some(&edge_url)).await;
    let edge = Wrangler::start_on(edge_port, &core.url, &dir.join("state"), &dir).await;
    let seeded = seed(&edge.url, &sandbox.url).await;
    std::fs::write(dir.join("schemathesis.toml"), config(&seeded)).unwrap();
    let token = seeded.token.as_str();

    let began = Instant::now();
    let reviewer = token_for(E2E_REVIEWER);
    let flags = |flag: &str, values: &[&str]| -> Vec<String> {
        values
            .iter()
            .flat_map(|value| [flag.to_owned(), (*value).to_owned()])
            .collect()
    };
    // Everything but the session-wide operations, as the user; the reviewers' operations again as
    // a reviewer; then each session-wide operation alone.
    let mut plan = vec![
        (
            "main",
            token.to_owned(),
            flags("--exclude-path", &SESSION_WIDE),
        ),
        (
            "reviewer",
            reviewer,
            flags("--include-path-regex", &["^/v1/admin/"]),
        ),
    ];
    for path in SESSION_WIDE {
        plan.push((path, token.to_owned(), flags("--include-path", &[path])));
    }
    let mut runs = Vec::new();
    for (name, token, selection) in plan {
        let file = name.trim_start_matches('/').replace('/', "-");
        let run = schemathesis(&dir, &file, &edge.url, &token, &selection).await;
        runs.push((name, run));
    }
    let requests: u64 = runs.iter().map(|(_, run)| run.requests).sum();
    let summary = format!(
        "api_fuzz: schemathesis sent {requests} requests in {:.0?} ({})\n",
        began.elapsed(),
        runs.iter()
            .map(|(name, run)| format!("{name} {}", run.requests))
            .collect::<Vec<_>>()
            .join(", "),
    );
    // Straight to stderr, past the test harness's capture: `./nene test` shows the count.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    for (name, run) in &runs {
        assert!(
            !run.findings,
            "schemathesis found problems in the {name} run:\n{}\n--- edge log ---\n{}\n--- core log ---\n{}",
            run.output,
            edge.process.log_tail(),
            core.process.log_tail()
        );
    }
    assert!(requests > 0, "no requests were sent");
    drop(sandbox);
}

/// Requests on one keep-alive connection, alternating one the edge refuses for its media type
/// (415: the body is of no use to it) with an ordinary one.
const KEEP_ALIVE_ROUNDS: usize = 20;
/// How long the client waits between a request's head and its body: long enough for an edge that
/// does not wait for the body to have answered already.
const BODY_DELAY: Duration = Duration::from_millis(20);

/// Reads one HTTP/1.1 response (status line, headers, a sized or chunked body); `None` when the
/// server closed the connection instead.
async fn read_response(
    reader: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let (mut length, mut chunked) = (0, false);
    loop {
        line.clear();
        reader.read_line(&mut line).await.ok()?;
        let header = line.trim_end().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.strip_prefix("content-length:") {
            length = value.trim().parse().ok()?;
        }
        chunked |= header.starts_with("transfer-encoding:") && header.contains("chunked");
    }
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.ok()?;
    }
    Some(status)
}

#[tokio::test]
async fn a_keep_alive_connection_survives_a_refusal_of_a_body_that_comes_late() {
    // Found by schemathesis: an answer given over an unread body (a 415, a 401, a 405) broke the
    // connection under wrangler dev: the next request on it failed with a 500 "Network connection
    // lost", or the connection was closed under a client still sending.
    use tokio::io::AsyncWriteExt;
    let dir = scratch_dir("api_fuzz_keep_alive");
    let core = Core::start(&dir).await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let address = edge.url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(reader);
    let body = br#"{"refresh_token": 7}"#;
    for round in 0..KEEP_ALIVE_ROUNDS {
        for (content_type, expected) in [("text/plain", 415), ("application/json", 400)] {
            let head = format!(
                "POST /v1/auth/refresh HTTP/1.1\r\nHost: {address}\r\n\
                 Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let sent = async {
                writer.write_all(head.as_bytes()).await?;
                tokio::time::sleep(BODY_DELAY).await;
                writer.write_all(body).await
            };
            let sent = sent.await;
            let status =
                tokio::time::timeout(nene_e2e::REQUEST_TIMEOUT, read_response(&mut reader))
                    .await
                    .unwrap_or_else(|_| panic!("round {round}, {content_type}: no answer"));
            assert!(
                sent.is_ok() && status == Some(expected),
                "round {round}, {content_type}: sent {sent:?}, answered {status:?}"
            );
        }
    }
}
