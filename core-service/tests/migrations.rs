//! Migrations as a deploy step: `nene-core migrate` applies what is missing and exits, a second run
//! is a no-op, and a service told not to migrate refuses a database that is behind instead of
//! running new code on an old schema. Each test gets a fresh, empty database (no migrations).

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Stdio, time::Duration};

use nene_core::ledger;
use nene_core::schema::{self, MIGRATOR, MigrationName, SchemaCurrent, SchemaError};
use sqlx::{PgPool, migrate::MigrateError};
use tokio::process::Command;

const CORE: &str = env!("CARGO_BIN_EXE_nene-core");

/// Bounds a run of the binary that is expected to end (a migration, a refusal, a probe): its
/// work takes well under a second here; the bound turns a hang into a failure.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// [`schema::apply`] on a connection of the test's pool.
async fn apply(db: &PgPool) -> Result<Vec<MigrationName>, MigrateError> {
    let mut connection = db.acquire().await?;
    schema::apply(&mut connection).await
}

/// [`schema::check_current`] on a connection of the test's pool.
async fn check_current(db: &PgPool) -> Result<SchemaCurrent, SchemaError> {
    let mut connection = db.acquire().await?;
    schema::check_current(&mut connection).await
}

/// Everything a migration can change, one line per object, sorted: two equal snapshots mean two
/// equal schemas. The bookkeeping rows are included with their install times, so a second run
/// that re-applied anything would show.
async fn snapshot(db: &PgPool) -> String {
    sqlx::query_scalar(
        r"SELECT coalesce(string_agg(line, E'\n' ORDER BY line), '') FROM (
            SELECT format('column %s.%s %s %s %s', table_name, column_name, data_type,
                          is_nullable, column_default) AS line
              FROM information_schema.columns WHERE table_schema = 'public'
            UNION ALL
            SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL
            SELECT format('function %s', pg_get_functiondef(oid))
              FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind IN ('f', 'p')
            UNION ALL
            SELECT format('trigger %s', pg_get_triggerdef(oid)) FROM pg_trigger WHERE NOT tgisinternal
            UNION ALL
            SELECT format('applied %s %s %s', version, installed_on, success) FROM _sqlx_migrations
          ) lines",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// The URL of the test's own database on the server of `DATABASE_URL`.
async fn url_of(db: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(db)
        .await
        .unwrap();
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    nene_domain::settings::with_database(&server, &name)
}

/// The service's environment outside dev mode, on `url`, listening on `bind`.
fn service(url: &str, bind: &str) -> Command {
    let mut command = Command::new(CORE);
    command
        .env_clear()
        .env("DATABASE_URL", url)
        .env(
            "CORE_SIGNING_SECRET",
            "migrations-test-signing-secret-0123456789",
        )
        .env("CORE_BIND", bind)
        // Toss at its default address: these services hold no payment, so they never call it.
        .env("TOSS_SECRET_KEY", "test_sk_unused")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end: (success, stdout and stderr together).
async fn run(mut command: Command) -> (bool, String) {
    let child = command.spawn().unwrap_or_else(|e| panic!("{CORE}: {e}"));
    let output = tokio::time::timeout(EXIT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{CORE} did not exit within {EXIT_TIMEOUT:?}"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn migrate_command(url: &str) -> Command {
    let mut command = Command::new(CORE);
    command
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

fn free_bind() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    addr.to_string()
}

#[sqlx::test(migrations = false)]
async fn migrating_twice_applies_every_migration_once_and_then_changes_nothing(db: PgPool) {
    let first = apply(&db).await.unwrap();
    let versions: Vec<i64> = first.iter().map(|m| m.version).collect();
    let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(versions, all, "the first run applies all of them, in order");
    let after_first = snapshot(&db).await;

    let second = apply(&db).await.unwrap();
    assert_eq!(second, Vec::new(), "the second run applies nothing");
    assert_eq!(
        snapshot(&db).await,
        after_first,
        "the second run changes no schema"
    );
    assert_eq!(
        check_current(&db).await.map(|c| c.ahead).ok(),
        Some(Vec::new())
    );
}

#[sqlx::test(migrations = false)]
async fn the_migrate_command_prints_what_it_applied_and_a_second_run_says_nothing_was_left(
    db: PgPool,
) {
    let url = url_of(&db).await;
    let (ok, first) = run(migrate_command(&url)).await;
    assert!(ok, "{first}");
    for migration in MIGRATOR.iter() {
        assert!(
            first.contains(&format!(
                "applied {:04} {}",
                migration.version, migration.description
            )),
            "{first}"
        );
    }
    let after_first = snapshot(&db).await;

    let (ok, second) = run(migrate_command(&url)).await;
    assert!(ok, "{second}");
    assert!(!second.contains("applied 0"), "{second}");
    assert!(second.contains("nothing to apply"), "{second}");
    assert_eq!(snapshot(&db).await, after_first);
}

#[sqlx::test(migrations = false)]
async fn a_service_told_not_to_migrate_refuses_an_empty_database_and_names_the_step(db: PgPool) {
    let url = url_of(&db).await;
    let mut command = service(&url, &free_bind());
    command.env("CORE_MIGRATE_ON_START", "false");
    let (ok, output) = run(command).await;
    assert!(!ok, "it must not start: {output}");
    assert!(output.contains("behind this build"), "{output}");
    assert!(output.contains("nene-core migrate"), "{output}");
    // It did not migrate on its own either: not even sqlx's bookkeeping table is there.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(tables, 0);
}

#[sqlx::test(migrations = false)]
async fn outside_dev_mode_a_service_refuses_a_database_missing_the_newest_migration(db: PgPool) {
    apply(&db).await.unwrap();
    let newest = schema::latest_version();
    // As if this build's newest migration had not been deployed yet.
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&db)
        .await
        .unwrap();
    match check_current(&db).await {
        Err(SchemaError::Behind { missing, latest }) => {
            assert_eq!(
                missing.iter().map(|m| m.version).collect::<Vec<_>>(),
                [newest]
            );
            assert_eq!(latest, newest);
        }
        other => panic!("expected Behind, got {other:?}"),
    }
    // No CORE_MIGRATE_ON_START and no NENE_ENV: production's default is to check, not migrate.
    let (ok, output) = run(service(&url_of(&db).await, &free_bind())).await;
    assert!(!ok, "it must not start: {output}");
    assert!(output.contains(&format!("{newest:04}")), "{output}");
}

#[sqlx::test(migrations = false)]
async fn a_migration_that_differs_or_failed_part_way_is_named_and_refused(db: PgPool) {
    apply(&db).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 2")
        .execute(&db)
        .await
        .unwrap();
    assert!(matches!(
        check_current(&db).await,
        Err(SchemaError::Changed(2))
    ));
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = 3")
        .execute(&db)
        .await
        .unwrap();
    assert!(matches!(
        check_current(&db).await,
        Err(SchemaError::Dirty(3))
    ));
}

#[sqlx::test(migrations = false)]
async fn a_database_a_newer_release_migrated_is_accepted_and_what_it_has_beyond_is_named(
    db: PgPool,
) {
    apply(&db).await.unwrap();
    let future = schema::latest_version() + 1_000;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, 'from a newer release', true, '\\x00', 0)",
    )
    .bind(future)
    .execute(&db)
    .await
    .unwrap();
    let current = check_current(&db).await.unwrap();
    assert_eq!(current.ahead, [future]);
    // But this older build must not migrate it.
    assert!(apply(&db).await.is_err());
}

#[sqlx::test(migrations = false)]
async fn a_service_told_not_to_migrate_serves_a_migrated_database_and_its_health_probe_passes(
    db: PgPool,
) {
    let url = url_of(&db).await;
    let (ok, output) = run(migrate_command(&url)).await;
    assert!(ok, "{output}");
    let bind = free_bind();
    let probe = || {
        let mut command = Command::new(CORE);
        command
            .arg("healthcheck")
            .env_clear()
            .env("CORE_BIND", &bind)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let (ok, output) = run(probe()).await;
    assert!(!ok, "nothing listens yet, the probe must fail: {output}");

    let mut command = service(&url, &bind);
    command.env("CORE_MIGRATE_ON_START", "false");
    let mut core = command.spawn().unwrap();
    let mut healthy = false;
    for _ in 0..(EXIT_TIMEOUT.as_millis() / 100) {
        if let Ok(Some(status)) = core.try_wait() {
            panic!("the core exited with {status}");
        }
        if run(probe()).await.0 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the probe never passed");
    core.kill().await.unwrap();
    let (ok, output) = run(probe()).await;
    assert!(!ok, "the core is gone, the probe must fail: {output}");
}

/// A signed call to the core at `base`, as the edge makes it: `(status, JSON body)`.
async fn signed(base: &str, method: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    use nene_domain::signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedParts, SigningSecret};
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let signature = SigningSecret::parse(SIGNING_SECRET)
        .unwrap()
        .sign(&SignedParts {
            method,
            path_and_query: path,
            timestamp_unix_seconds: now,
            user: "",
            body: &bytes,
        });
    let response = reqwest::Client::new()
        .request(
            method.parse().unwrap_or(reqwest::Method::GET),
            format!("{base}{path}"),
        )
        .header(HEADER_TIMESTAMP, now.to_string())
        .header(HEADER_SIGNATURE, signature)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Two roles and a database of their own, as docs/deploy.md sets them up; dropped with it.
struct RoleSplit {
    admin: PgPool,
    admin_url: String,
    database: String,
    owner: String,
    app: String,
    password: String,
}

impl RoleSplit {
    async fn create(admin: PgPool) -> RoleSplit {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let split = RoleSplit {
            admin,
            admin_url: std::env::var("DATABASE_URL").expect("DATABASE_URL"),
            database: format!("nene_roles_{suffix}"),
            owner: format!("nene_owner_{suffix}"),
            app: format!("nene_app_{suffix}"),
            password: format!("pw-{suffix}"),
        };
        for statement in [
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                split.owner, split.password
            ),
            format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                split.app, split.password
            ),
            format!("CREATE DATABASE {} OWNER {}", split.database, split.owner),
        ] {
            sqlx::query(&statement)
                .execute(&split.admin)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        split
    }

    /// `postgres://ROLE:PASSWORD@host:port/DATABASE` on the server of `DATABASE_URL`.
    fn url(&self, role: &str) -> String {
        let server = std::env::var("DATABASE_URL").expect("DATABASE_URL");
        let options: sqlx::postgres::PgConnectOptions = server.parse().unwrap();
        format!(
            "postgres://{role}:{}@{}:{}/{}",
            self.password,
            options.get_host(),
            options.get_port(),
            self.database
        )
    }
}

impl Drop for RoleSplit {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let statements = [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
            format!("DROP ROLE IF EXISTS {}", self.app),
            format!("DROP ROLE IF EXISTS {}", self.owner),
        ];
        // Drop runs outside the test's runtime: a short-lived one of its own does it.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                // A connection of its own: the test's pool belongs to the test's runtime.
                runtime.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                        for statement in statements {
                            let _ = sqlx::query(&statement).execute(&mut admin).await;
                        }
                    }
                });
            }
        })
        .join();
    }
}

const SIGNING_SECRET: &str = "migrations-test-signing-secret-0123456789";

#[sqlx::test(migrations = false)]
async fn a_service_role_that_cannot_change_tables_serves_a_schema_its_owner_migrated(db: PgPool) {
    let split = RoleSplit::create(db).await;
    // docs/deploy.md, section 1: as the owner, before the first migration.
    let owner = PgPool::connect(&split.url(&split.owner)).await.unwrap();
    for statement in [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        format!("GRANT USAGE ON SCHEMA public TO {}", split.app),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}",
            split.owner, split.app
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public \
             GRANT USAGE, SELECT ON SEQUENCES TO {}",
            split.owner, split.app
        ),
    ] {
        sqlx::query(&statement)
            .execute(&owner)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    owner.close().await;
    let (ok, output) = run(migrate_command(&split.url(&split.owner))).await;
    assert!(ok, "{output}");

    // The service's role cannot change the schema…
    let app = PgPool::connect(&split.url(&split.app)).await.unwrap();
    assert!(
        sqlx::query("CREATE TABLE intruder (id int)")
            .execute(&app)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("ALTER TABLE ledger_accounts ADD COLUMN intruder int")
            .execute(&app)
            .await
            .is_err()
    );
    app.close().await;

    // …and serves: a wallet, a credit through the ledger's functions and triggers, a clean check.
    let bind = free_bind();
    let base = format!("http://{bind}");
    let mut command = service(&split.url(&split.app), &bind);
    command.env("CORE_SIGNING_SECRET", SIGNING_SECRET);
    let mut core = command.spawn().unwrap();
    let mut up = false;
    for _ in 0..(EXIT_TIMEOUT.as_millis() / 100) {
        if let Ok(Some(status)) = core.try_wait() {
            let output = core.wait_with_output().await.map(|o| o.stdout);
            panic!("the core exited with {status}: {output:?}");
        }
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the core never answered");
    // Its signed health report reads the database as the service's role.
    let (status, health) = signed(
        &base,
        "GET",
        "/internal/v1/health",
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{health}");

    // The ledger's writes (its functions and triggers) work under the service's role: a wallet,
    // a credit, and a clean invariant check, through the core's own operations.
    let app = PgPool::connect(&split.url(&split.app)).await.unwrap();
    let wallet = {
        let mut conn = app.acquire().await.unwrap();
        ledger::ensure_wallet_in_tx(&mut conn, "role-split-user")
            .await
            .unwrap()
    };
    ledger::credit(
        &app,
        &ledger::Credit {
            key: ledger::IdempotencyKey::parse("charge:role-split-user").unwrap(),
            wallet,
            from: ledger::system_account(ledger::SystemAccount::PaymentClearing),
            amount: nene_domain::Points::new(10_000).unwrap(),
            source: ledger::LotSource::Charge,
        },
    )
    .await
    .unwrap();
    let mut conn = app.acquire().await.unwrap();
    let violations = ledger::check_invariants(&mut conn).await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    drop(conn);
    app.close().await;
    core.kill().await.unwrap();
}
