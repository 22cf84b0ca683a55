//! The public API under fuzzing: schemathesis (pinned in `tools/python/requirements.txt`, installed
//! by `scripts/setup.sh`) generates requests for every operation of `edge/openapi.json` and sends
//! them to the Worker under `wrangler dev`, in front of the real core and the sandbox. It must find
//! no 5xx, no answer the document does not allow (its status, its content type, its body's schema,
//! an error code the operation does not list), and no answer slower than 5 seconds.
//!
//! A fixed seed and a bounded number of examples per operation keep a run reproducible and under
//! five minutes on a 2-core machine. Requests carry the access token of a user who signed in
//! through the sandbox's Kakao. The operations that change the whole session run last, each alone:
//! the dev clock (it moves every component's "now"), then logout (it revokes the token's family).

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use nene_e2e::{
    Core, E2E_REDIRECT_URI, Sandbox, Wrangler, free_port, required_env, scratch_dir,
};
use serde_json::{Value, json};

/// The seed of every run: the same requests each time (given the same answers).
const SEED: u64 = 20_241_214;
/// Examples per operation and phase: enough to reach every documented status of most operations,
/// few enough for the whole suite to stay under five minutes here.
const EXAMPLES_PER_OPERATION: u32 = 40;
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

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(nene_e2e::REQUEST_TIMEOUT)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(query).unwrap_or_else(|e| panic!("{e}"));
    params
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {name} in {url}"))
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs `who` in through the sandbox's Kakao, as a browser and an app would: the user exists
/// afterwards, and the answer carries a valid access token.
async fn sign_in(edge: &str, who: &str) -> Value {
    let redirect_uri = serde_urlencoded::to_string([("redirect_uri", E2E_REDIRECT_URI)])
        .unwrap_or_else(|e| panic!("{e}"));
    let start = browser()
        .get(format!("{edge}/v1/auth/kakao/start?{redirect_uri}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(start.status().as_u16(), 302, "start");
    let approved = browser()
        .get(format!("{}&sandbox_user={who}", location(&start)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = location(&approved);
    let body = json!({ "code": query_param(&back, "code"), "state": query_param(&back, "state") });
    let response = browser()
        .post(format!("{edge}/v1/auth/kakao/callback"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200, "callback");
    response.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// What one schemathesis run did.
struct Run {
    requests: u64,
    findings: bool,
    output: String,
}

/// Runs schemathesis against `edge` with the access token, on the operations `selection` picks
/// (`--include-path …` / `--exclude-path …`), its output and reports in `dir`.
async fn schemathesis(dir: &Path, name: &str, edge: &str, token: &str, selection: &[String]) -> Run {
    let root = required_env("NENE_ROOT");
    let har = dir.join(format!("{name}.har"));
    let mut command = tokio::process::Command::new(required_env("NENE_SCHEMATHESIS"));
    command
        .current_dir(dir)
        .env("NO_COLOR", "1")
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
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start schemathesis: {e}"));
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
    let text = std::fs::read_to_string(har)
        .unwrap_or_else(|e| panic!("{}: {e}", har.display()));
    let har: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
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
    let session = sign_in(&edge.url, "fuzzer").await;
    let token = session["access_token"].as_str().unwrap_or_default();

    let began = Instant::now();
    let mut runs = Vec::new();
    let main: Vec<String> = SESSION_WIDE
        .iter()
        .flat_map(|path| ["--exclude-path".to_owned(), (*path).to_owned()])
        .collect();
    runs.push(("main", schemathesis(&dir, "main", &edge.url, token, &main).await));
    for path in SESSION_WIDE {
        let name = path.trim_start_matches('/').replace('/', "-");
        let only = ["--include-path".to_owned(), path.to_owned()];
        let run = schemathesis(&dir, &name, &edge.url, token, &only).await;
        runs.push((path, run));
    }
    let requests: u64 = runs.iter().map(|(_, run)| run.requests).sum();
    println!(
        "schemathesis sent {requests} requests in {:.0?} ({}): {}",
        began.elapsed(),
        runs.iter()
            .map(|(name, run)| format!("{name} {}", run.requests))
            .collect::<Vec<_>>()
            .join(", "),
        dir.display()
    );
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
