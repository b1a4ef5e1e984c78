//! `/healthz`, `/readyz`, error shapes, and riding out a database that goes away.

use crate::helpers::{spawn_app, spawn_app_on, test_config, TestDb};
use dts_ledger::database::build_pool;
use dts_ledger::database::embedded::{Durability, EmbeddedPostgres};
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness_answer_ok() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let schema: Option<i32> = app
        .db
        .client()
        .await
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(body["schemaVersion"], schema.unwrap());

    app.stop().await;
    assert!(
        app.http
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .is_err(),
        "a stopped server no longer answers"
    );
}

#[tokio::test]
async fn unknown_routes_answer_a_json_error() {
    let app = spawn_app().await;
    let response = app.get("/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn readiness_follows_the_database_going_away_and_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let root = dir.path().join("cluster");
    let mut cluster = EmbeddedPostgres::start(&root, Durability::Throwaway).unwrap();
    {
        let mut client = connect(&cluster).await;
        dts_ledger::database::migrate::migrate(&mut client)
            .await
            .unwrap();
    }
    let pool = build_pool(cluster.config("postgres"), 2);
    let app = spawn_app_on(
        std::sync::Arc::new(TestDb::create().await),
        pool,
        test_config(),
    );
    assert_eq!(app.get("/readyz").await.status(), 200);

    cluster.stop().unwrap();
    let down = app.get("/readyz").await;
    assert_eq!(down.status(), 503);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    assert_eq!(app.get("/healthz").await.status(), 200);

    drop(cluster);
    let _cluster = EmbeddedPostgres::start(&root, Durability::Throwaway).unwrap();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the service reconnects once the database is back");
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

/// Polls `/readyz` until it answers `status` (bounded), and returns the last body.
async fn wait_readiness(app: &crate::helpers::TestApp, status: u16) -> Value {
    for _ in 0..300 {
        let response = app.get("/readyz").await;
        if response.status() == status {
            return response.json().await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("/readyz never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_named_by_readiness_and_restarted() {
    use dts_ledger::configuration::{Secret, WebhookConfig};
    use dts_ledger::http::startup::{EXPIRY_SWEEPER, WEBHOOK_DISPATCHER};
    let config = dts_ledger::configuration::Config {
        // One lane: all traffic goes through the lane that dies.
        pipelines: 1,
        // Nobody listens there; the dispatcher only has to run.
        webhook: Some(WebhookConfig {
            retry_ms_base: 50,
            retry_ms_max: 200,
            timeout_ms: 2_000,
            ..WebhookConfig::new(
                "http://127.0.0.1:9/hook".into(),
                Secret::new("webhook-secret-0123456789"),
            )
        }),
        ..test_config()
    };
    let app = crate::helpers::spawn_app_with(config).await;
    app.buy("biz-1", "pin-a", "FW_GOODS-500232-1").await;
    app.create_task("task-1", "biz-1").await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    // No input makes a worker die (each one that did was a bug, and is fixed), so the panic is
    // injected: it unwinds the worker's own task as a bug would.
    let lane = "ingest-lane-0";
    for (n, worker) in [lane, EXPIRY_SWEEPER, WEBHOOK_DISPATCHER]
        .into_iter()
        .enumerate()
    {
        assert!(app.supervisor.inject_panic(worker), "{worker} runs");
        let down = wait_readiness(&app, 503).await;
        assert_eq!(down["error"]["code"], "worker_down", "{down}");
        let message = down["error"]["message"].as_str().unwrap();
        assert!(message.contains(worker), "{message}");
        assert!(message.contains("panicked"), "{message}");

        // Traffic sent while the lane is down waits for it and is charged once it is back.
        let report_id = format!("r-{n}");
        let (charged, ready) = tokio::join!(
            app.report("task-1", &report_id, 1_000),
            wait_readiness(&app, 200)
        );
        assert_eq!(charged["status"], "accepted", "{charged}");
        assert_eq!(ready["status"], "ready");
        assert_eq!(app.supervisor.restarts(worker), Some(1), "{worker}");
    }
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 3_000);
    assert!(app.supervisor.down().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_dies_mid_batch_answers_503_and_the_retry_is_charged_once() {
    let config = dts_ledger::configuration::Config {
        pipelines: 1,
        ..test_config()
    };
    let app = crate::helpers::spawn_app_with(config).await;
    app.buy("biz-1", "pin-a", "FW_GOODS-500232-1").await;
    app.create_task("task-1", "biz-1").await;
    let body = serde_json::json!({"reports": [crate::helpers::report("task-1", "r-1", 1_000)]});

    // The lane is in the middle of its batch, waiting for the ledger head, when it dies.
    let mut holder = app.db.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT position FROM ledger_head FOR UPDATE", &[])
        .await
        .unwrap();
    let watcher = app.db.client().await;
    let send = app.post_as("/v1/traffic", crate::helpers::REPORTER_TOKEN, &body);
    let kill = async {
        for _ in 0..250 {
            let waiting = crate::helpers::sessions_waiting_on_locks(&watcher).await;
            if waiting > 0 {
                assert!(app.supervisor.inject_panic("ingest-lane-0"));
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the batch never waited for the ledger head");
    };
    let (answer, ()) = tokio::join!(send, kill);
    assert_eq!(answer.status(), 503);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "batch_failed", "{error}");
    hold.commit().await.unwrap();

    // The agent retries; the restarted lane charges the report once.
    let mut charged = None;
    for _ in 0..100 {
        let retry = app
            .post_as("/v1/traffic", crate::helpers::REPORTER_TOKEN, &body)
            .await;
        if retry.status() == 200 {
            charged = Some(retry.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let charged = charged.expect("the retry is answered once the lane is back");
    assert_eq!(charged["results"][0]["status"], "accepted", "{charged}");
    let again = app.report("task-1", "r-1", 1_000).await;
    assert_eq!(again["status"], "duplicate");
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 1_000);
    assert_eq!(app.events_of("TrafficConsumed").await.len(), 1);
    assert_eq!(app.supervisor.restarts("ingest-lane-0"), Some(1));
}
