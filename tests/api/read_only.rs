//! A server that takes no writes (a standby, or a primary fenced off during a failover) is never
//! written to: the request gets a retryable 503 `database_read_only` with `Retry-After`, never a
//! 500, and the pool lets go of the connections that reached it (docs/operating.md, "Operating
//! PostgreSQL").

use crate::helpers::{report, spawn_app, spawn_app_on, test_config, TestDb, SMALL_SKU};
use dts_ledger::database::build_pool;
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres};
use dts_ledger::database::Role;
use serde_json::Value;
use std::time::Duration;

async fn event_count(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

/// Asserts the retryable read-only fault: 503, the stable code, `Retry-After`.
async fn assert_read_only(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 503, "{what}");
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1"),
        "{what} says when to retry"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["error"]["code"], "database_read_only",
        "{what}: {body}"
    );
}

#[tokio::test]
async fn a_server_that_answers_read_only_gets_no_write_and_the_request_a_retryable_503() {
    let app = spawn_app().await;
    app.buy("ro-1", "pin-ro", SMALL_SKU).await;
    assert_eq!(app.create_task("ro-task", "ro-1").await.0, 201);
    // Every session opened on this database from now on is read-only, as on a standby.
    app.db
        .client()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            app.db.name
        ))
        .await
        .unwrap();
    let fenced = spawn_app_on(
        app.db.clone(),
        build_pool(app.db.config_as(Role::Service), 1),
        test_config(),
    );
    let before = event_count(&app.db).await;

    let traffic = fenced
        .post_as(
            "/v1/traffic",
            crate::helpers::REPORTER_TOKEN,
            &serde_json::json!({"reports": [report("ro-task", "ro-r1", 100)]}),
        )
        .await;
    assert_read_only(traffic, "a traffic report").await;
    let task = fenced
        .post_as(
            "/v1/tasks",
            crate::helpers::REPORTER_TOKEN,
            &serde_json::json!({"taskId": "ro-task-2", "instanceId": "ro-1"}),
        )
        .await;
    assert_read_only(task, "a task command").await;
    assert_read_only(fenced.get("/readyz").await, "readiness").await;
    let callback = fenced
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "pin-ro"),
            ("orderBizId", "ro-2"),
            ("orderId", "order-ro-2"),
            ("serviceCode", "dts"),
            ("skuId", SMALL_SKU),
        ])
        .await;
    assert_eq!(callback.status(), 503, "a marketplace callback is retried");
    assert_eq!(event_count(&app.db).await, before, "nothing was written");

    // Once the server takes writes again, the same report goes through: the pool lent no
    // read-only connection, so it made a new one.
    let admin = app.db.client().await;
    // This session too starts read-only now; a superuser may turn that off for itself.
    admin
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} RESET default_transaction_read_only",
            app.db.name
        ))
        .await
        .unwrap();
    let results = fenced
        .traffic(serde_json::json!([report("ro-task", "ro-r1", 100)]))
        .await;
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(event_count(&app.db).await, before + 1);
}

async fn connect(cluster: &EmbeddedPostgres) -> tokio_postgres::Client {
    let (client, connection) = cluster
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// `ALTER SYSTEM <change>` and a reload, which reaches every open session (each statement on
/// its own: ALTER SYSTEM refuses a transaction block; this session keeps writing).
async fn fence(admin: &tokio_postgres::Client, change: &str) {
    admin
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .unwrap();
    admin
        .batch_execute(&format!("ALTER SYSTEM {change}"))
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

/// The backends of the service's sessions now.
async fn service_backends(client: &tokio_postgres::Client) -> Vec<i32> {
    client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'dts-ledger' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn connections_open_when_the_server_turned_read_only_are_dropped_not_lent_again() {
    // A cluster of its own: the whole server turns read-only under open sessions, as a primary
    // fenced off by its operator does (`ALTER SYSTEM` and a reload reach every session).
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let cluster = EmbeddedPostgres::start(&dir.path().join("cluster"), Durability::Throwaway)
        .expect("the cluster starts");
    let admin = connect(&cluster).await;
    {
        let mut client = connect(&cluster).await;
        dts_ledger::database::migrate::migrate(&mut client)
            .await
            .unwrap();
    }
    let app = spawn_app_on(
        std::sync::Arc::new(TestDb::create().await),
        build_pool(cluster.config("postgres"), 2),
        test_config(),
    );
    app.buy("fence-1", "pin-fence", SMALL_SKU).await;
    assert_eq!(app.create_task("fence-task", "fence-1").await.0, 201);
    let results = app
        .traffic(serde_json::json!([report("fence-task", "fence-r1", 100)]))
        .await;
    assert_eq!(results[0]["status"], "accepted");
    let before = service_backends(&admin).await;
    assert!(!before.is_empty(), "the pool holds connections");

    fence(&admin, "SET default_transaction_read_only = on").await;
    // The reload reaches each session at its next statement.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = app
        .post_as(
            "/v1/traffic",
            crate::helpers::REPORTER_TOKEN,
            &serde_json::json!({"reports": [report("fence-task", "fence-r2", 100)]}),
        )
        .await;
    assert_read_only(refused, "a write on a connection made before").await;

    fence(&admin, "RESET default_transaction_read_only").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let results = app
        .traffic(serde_json::json!([report("fence-task", "fence-r2", 100)]))
        .await;
    assert_eq!(results[0]["status"], "accepted");
    // None of the sessions open at the fault was used again: each was dropped when next taken
    // (the old server would have taken writes again, so only their absence shows it).
    let mut still_open = before.clone();
    for _ in 0..100 {
        assert_eq!(app.get("/readyz").await.status(), 200);
        let now = service_backends(&admin).await;
        still_open.retain(|pid| now.contains(pid));
        if still_open.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let detail: Vec<String> = admin
        .query(
            "SELECT pid::text || ' ' || state || ' ' || query FROM pg_stat_activity \
             WHERE pid = ANY($1)",
            &[&still_open],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        still_open.is_empty(),
        "sessions opened before the fault are still in use: {detail:?}"
    );
}
