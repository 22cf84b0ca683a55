//! The core's container image (core-service/Containerfile, built by `./nene test` with podman),
//! run the way a deploy runs it: the migration step first, then the service told not to migrate,
//! with the Worker under `wrangler dev` in front. A person signs in, buys points and joins a
//! challenge through the edge; the image's health check passes; `podman stop` ends it cleanly.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use nene_e2e::{
    CoreContainer, Database, Sandbox, Wrangler, client, podman_output, required_env,
    run_core_image, scratch_dir, sign_in,
};
use serde_json::{Value, json};

const FEE: i64 = 10_000;

/// How long `podman stop` lets the core drain before SIGKILL: it stops in well under a second
/// here; a core that needs the whole bound did not handle SIGTERM.
const STOP_SECONDS: u32 = 10;

async fn edge(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method.parse().unwrap_or(reqwest::Method::GET), url);
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn sandbox_post(sandbox: &Sandbox, path: &str, body: &Value) -> Value {
    let response = client()
        .post(format!("{}{path}", sandbox.url))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "sandbox {path}");
    response.json().await.unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_core_image_migrates_as_a_step_then_signs_in_sells_points_and_seats_a_joiner_through_the_worker()
 {
    let dir = scratch_dir("image");
    let sandbox = Sandbox::start(&dir).await;
    let database = Database::create().await;

    // The deploy's migration step, run twice: the second applies nothing.
    let migrate = [("DATABASE_URL", database.url.as_str())];
    let (ok, first) = run_core_image(&["migrate"], &migrate);
    assert!(ok, "{first}");
    assert!(first.contains("applied 0001"), "{first}");
    let (ok, second) = run_core_image(&["migrate"], &migrate);
    assert!(ok, "{second}");
    assert!(second.contains("nothing to apply"), "{second}");

    let mut core = CoreContainer::start(&dir, database, &sandbox.url).await;
    let wrangler = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let response = client()
        .put(format!("{}/sandbox/toss/webhook", sandbox.url))
        .json(&json!({ "url": format!("{}/webhooks/toss", wrangler.url), "retryUnitMs": 20 }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let (healthy, output) = core.healthcheck();
    assert!(healthy, "the image's HEALTHCHECK failed: {output}");
    let (status, health) = edge("GET", &format!("{}/v1/health", wrangler.url), "", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["database"], "ok", "{health}");

    // Sign-in with the Kakao sandbox.
    let session = sign_in(&wrangler.url, "kakao", "jiwoo").await;
    let token = session["access_token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{session}");

    // A purchase: order → the widget pays at Toss → confirm → points credited.
    let (status, order) = edge(
        "POST",
        &format!("{}/v1/payments/orders", wrangler.url),
        token,
        Some(json!({ "amount": FEE })),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["order_id"].as_str().unwrap_or_default();
    let paid = sandbox_post(
        &sandbox,
        "/sandbox/toss/pay",
        &json!({ "orderId": order_id, "amount": FEE }),
    )
    .await;
    let (status, payment) = edge(
        "POST",
        &format!("{}/v1/payments/confirm", wrangler.url),
        token,
        Some(json!({ "payment_key": paid["paymentKey"], "order_id": order_id, "amount": FEE })),
    )
    .await;
    assert_eq!(
        (status, &payment["points"]),
        (200, &json!("credited")),
        "{payment}"
    );
    let wallet = format!("{}/v1/wallet", wrangler.url);
    let (_, balance) = edge("GET", &wallet, token, None).await;
    assert_eq!(balance["balance"], FEE, "{balance}");

    // A join: the points just bought pay the entry fee into the challenge's escrow.
    let (status, challenge) = edge(
        "POST",
        &format!("{}/v1/challenges", wrangler.url),
        token,
        Some(nene_e2e::challenge_body("Read 20 pages a day", FEE, 10)),
    )
    .await;
    assert_eq!(status, 201, "{challenge}");
    let id = challenge["id"].as_str().unwrap_or_default();
    let (status, joined) = edge(
        "POST",
        &format!("{}/v1/challenges/{id}/join", wrangler.url),
        token,
        None,
    )
    .await;
    assert_eq!(status, 201, "{joined}");
    let (_, balance) = edge("GET", &wallet, token, None).await;
    assert_eq!(balance["balance"], 0, "{balance}");
    // The ledger's invariant checker on the container's database.
    let checked = sqlx::PgPool::connect(&core.database.url).await.unwrap();
    let mut conn = checked.acquire().await.unwrap();
    let violations = nene_core::ledger::check_invariants(&mut conn)
        .await
        .unwrap();
    assert!(violations.is_empty(), "the ledger checker: {violations:?}");
    drop(conn);
    checked.close().await;

    // SIGTERM: the core drains and exits 0, well before podman would SIGKILL it (137).
    let code = core.stop(STOP_SECONDS);
    assert_eq!(
        code,
        0,
        "the core did not stop cleanly on SIGTERM:\n{}",
        core.process.log_tail()
    );
}

#[tokio::test]
async fn the_core_image_holds_one_binary_and_a_ca_bundle_and_runs_as_a_non_root_user_with_a_health_check()
 {
    let image = required_env("NENE_CORE_IMAGE");
    let (ok, inspect) = podman_output(&["image", "inspect", &image]);
    assert!(ok, "{inspect}");
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], json!(["/nene-core"]));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .map(|env| env.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env:?}"
    );
    assert_eq!(
        inspect[0]["Healthcheck"]["Test"],
        json!(["CMD", "/nene-core", "healthcheck"]),
        "{inspect}"
    );

    // Its files: the binary and the bundle, nothing else (no shell, no package manager).
    let name = format!("nene-e2e-files-{}", uuid::Uuid::new_v4().simple());
    let (ok, output) = podman_output(&["create", "--pull=never", "--name", &name, &image]);
    assert!(ok, "{output}");
    let tar = scratch_dir("image_files").join("image.tar");
    let tar = tar.to_string_lossy().into_owned();
    let (exported, output) = podman_output(&["export", "--output", &tar, &name]);
    let _ = podman_output(&["rm", "--force", &name]);
    assert!(exported, "{output}");
    let listing = std::process::Command::new("tar")
        .args(["-tf", &tar])
        .output()
        .expect("tar");
    let files: BTreeSet<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| !line.ends_with('/'))
        .map(|line| line.trim_start_matches("./").to_owned())
        .collect();
    // podman adds empty mount points for /etc/hosts, /etc/resolv.conf, /run/.containerenv.
    let ours: BTreeSet<String> = files
        .into_iter()
        .filter(|file| {
            !matches!(
                file.as_str(),
                "etc/hosts" | "etc/resolv.conf" | "etc/hostname" | "run/.containerenv"
            )
        })
        .collect();
    assert_eq!(
        ours,
        BTreeSet::from([
            "etc/ssl/certs/ca-certificates.crt".to_owned(),
            "nene-core".to_owned()
        ])
    );
}
