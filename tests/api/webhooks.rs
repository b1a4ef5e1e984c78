// Over 600 lines: delivery's end-to-end tests with their receiver, one subject in one file.
//! Webhook delivery: CloudEvents, signed, at least once, retried, surviving a restart.

use crate::helpers::{
    cst, spawn_app_with, test_config, TestApp, ADMIN_TOKEN, REPORTER_TOKEN, SMALL_SKU,
    SMALL_SKU_BYTES,
};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use dts_ledger::configuration::{Config, Secret, WebhookConfig};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhook-secret-0123456789";

/// A control plane that fails the first `failures` deliveries, refuses the event types in
/// `refused`, may hang, and records what it accepts (and, in order, every attempt's type).
#[derive(Default)]
struct Receiver {
    failures: AtomicUsize,
    attempts: AtomicUsize,
    received: Mutex<Vec<Value>>,
    /// Event types and subjects answered 500.
    refused: Mutex<HashSet<String>>,
    attempted: Mutex<Vec<String>>,
    /// While true, every delivery waits (counted in `hanging`) instead of answering.
    hang: AtomicBool,
    hanging: AtomicUsize,
}

impl Receiver {
    fn refuse(&self, type_or_subject: &str) {
        self.refused
            .lock()
            .unwrap()
            .insert(type_or_subject.to_owned());
    }

    fn accept_all(&self) {
        self.refused.lock().unwrap().clear();
    }

    fn attempts_of(&self, event_type: &str) -> usize {
        let attempted = self.attempted.lock().unwrap();
        attempted.iter().filter(|t| *t == event_type).count()
    }

    fn received_types(&self) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let timestamp: i64 = header("x-ledger-timestamp").parse().unwrap();
    assert_eq!(
        header("x-ledger-signature"),
        dts_ledger::outbox::signature(SECRET, timestamp, &body),
        "deliveries are signed over timestamp and body"
    );
    assert_eq!(header("content-type"), "application/cloudevents+json");
    let event: Value = serde_json::from_slice(&body).unwrap();
    let event_type = event["type"].as_str().unwrap().to_owned();
    let subject = event["subject"].as_str().unwrap().to_owned();
    receiver.attempted.lock().unwrap().push(event_type.clone());
    if receiver.hang.load(Ordering::SeqCst) {
        receiver.hanging.fetch_add(1, Ordering::SeqCst);
        while receiver.hang.load(Ordering::SeqCst) {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if receiver
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
        || {
            let refused = receiver.refused.lock().unwrap();
            refused.contains(&event_type) || refused.contains(&subject)
        }
    {
        return HttpResponse::InternalServerError().finish();
    }
    receiver.received.lock().unwrap().push(event);
    HttpResponse::NoContent().finish()
}

/// Starts `receiver` on a free port of its own, and answers the port.
fn serve_receiver(receiver: Arc<Receiver>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    start_receiver(receiver, listener);
    port
}

fn start_receiver(receiver: Arc<Receiver>, listener: std::net::TcpListener) {
    let data = web::Data::from(receiver);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
}

/// [`config_for`] with other webhook settings.
fn config_with(port: u16, change: impl FnOnce(&mut WebhookConfig)) -> Config {
    let mut config = config_for(port);
    change(config.webhook.as_mut().unwrap());
    config
}

fn config_for(port: u16) -> Config {
    Config {
        webhook: Some(WebhookConfig {
            retry_ms_base: 50,
            retry_ms_max: 200,
            timeout_ms: 2_000,
            ..WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"), Secret::new(SECRET))
        }),
        ..test_config()
    }
}

async fn wait_for(receiver: &Receiver, count: usize) -> Vec<Value> {
    for _ in 0..400 {
        let received = receiver.received.lock().unwrap().clone();
        if received.len() >= count {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {count} deliveries");
}

#[tokio::test]
async fn stops_are_delivered_after_the_receiver_recovers() {
    let receiver = Arc::new(Receiver {
        failures: AtomicUsize::new(2),
        ..Receiver::default()
    });
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_for(port)).await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", SMALL_SKU_BYTES).await;

    // 80 % and 95 % warnings, and the stop.
    let received = wait_for(&receiver, 3).await;
    assert!(
        receiver.attempts.load(Ordering::SeqCst) >= 5,
        "two attempts failed first"
    );
    let stop = received
        .iter()
        .find(|e| e["type"] == "dts.ledger.TaskStopped")
        .expect("the stop is delivered");
    assert_eq!(stop["specversion"], "1.0");
    assert_eq!(stop["source"], "dts-ledger");
    assert_eq!(stop["subject"], "task-task-1");
    assert_eq!(stop["data"]["reason"], "quota_exhausted");
    assert!(stop["id"].as_str().unwrap().parse::<i64>().is_ok());
    let kinds: Vec<&str> = received
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "dts.ledger.OrderBalanceLow")
            .count(),
        2
    );

    let client = app.db.client().await;
    assert_eq!(settled(&client).await, (3, 0));
    let attempts: i64 = client
        .query_one("SELECT sum(attempts) FROM outbox", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 5);
}

#[tokio::test]
async fn undelivered_events_are_delivered_after_a_restart() {
    // Nothing listens on the receiver's port while the first process runs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let first = spawn_app_with(config_for(port)).await;
    first.buy("biz-1", "pin-a", SMALL_SKU).await;
    first.create_task("task-1", "biz-1").await;
    first
        .callback(&[("action", "expiredInstance"), ("instanceId", "biz-1")])
        .await;
    let client = first.db.client().await;
    for _ in 0..100 {
        let tried: i64 = client
            .query_one("SELECT count(*) FROM outbox WHERE attempts > 0", &[])
            .await
            .unwrap()
            .get(0);
        if tried == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.stop().await;

    let receiver = Arc::new(Receiver::default());
    start_receiver(
        receiver.clone(),
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
    );
    let _second = first.sibling(config_for(port));
    let received = wait_for(&receiver, 2).await;
    let kinds: Vec<&str> = received
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"dts.ledger.OrderExpired"), "{kinds:?}");
    assert!(kinds.contains(&"dts.ledger.TaskStopped"), "{kinds:?}");
    // The receiver answers before the dispatcher records the delivery.
    assert_eq!(settled(&client).await, (2, 0));
}

/// `(entries, undelivered)` once every entry is delivered, or after a few seconds.
async fn settled(client: &tokio_postgres::Client) -> (i64, i64) {
    let mut counts = (0, -1);
    for _ in 0..100 {
        let row = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL) FROM outbox",
                &[],
            )
            .await
            .unwrap();
        counts = (row.get(0), row.get(1));
        if counts.1 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    counts
}

/// Waits until `done` holds, or fails naming `what` after a generous while.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("waited in vain for {what}");
}

/// Empties a 10 KB package: two low-balance warnings (package stream) and a stop (task stream).
async fn empty_package(app: &TestApp) {
    empty(app, "1").await;
}

/// Empties package `biz-<n>` through its task `task-<n>`.
async fn empty(app: &TestApp, n: &str) {
    let (instance, task) = (format!("biz-{n}"), format!("task-{n}"));
    app.buy(&instance, &format!("pin-{n}"), SMALL_SKU).await;
    app.create_task(&task, &instance).await;
    app.report(&task, &format!("r-{n}"), SMALL_SKU_BYTES).await;
}

/// Renews the package to a year ahead: the stopped task resumes.
async fn renew(app: &TestApp, order_id: &str) {
    let expiry = cst(chrono::Utc::now() + chrono::Duration::days(365));
    let response = app
        .callback(&[
            ("action", "renewInstance"),
            ("instanceId", "biz-1"),
            ("orderId", order_id),
            ("expiredOn", expiry.as_str()),
        ])
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_subjects_entries_arrive_in_ledger_order_while_its_head_is_retried() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("dts.ledger.TaskStopped");
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_for(port)).await;
    empty_package(&app).await;

    // The package's warnings are another subject: the refused stop does not hold them back.
    wait_until("both warnings and a refused stop", || {
        receiver.received_types().len() == 2 && receiver.attempts_of("dts.ledger.TaskStopped") >= 1
    })
    .await;
    renew(&app, "order-2").await;
    // The stop keeps failing; the resumption, later in the same stream, waits behind it.
    let tried = receiver.attempts_of("dts.ledger.TaskStopped");
    wait_until("three more attempts of the stop", || {
        receiver.attempts_of("dts.ledger.TaskStopped") >= tried + 3
    })
    .await;
    assert_eq!(receiver.attempts_of("dts.ledger.TaskResumed"), 0);

    receiver.accept_all();
    let received = wait_for(&receiver, 4).await;
    let task_stream: Vec<&str> = received
        .iter()
        .filter(|e| e["subject"] == "task-task-1")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        task_stream,
        ["dts.ledger.TaskStopped", "dts.ledger.TaskResumed"]
    );
    let ids: Vec<i64> = received
        .iter()
        .filter(|e| e["subject"] == "task-task-1")
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids[0] < ids[1], "ledger order: {ids:?}");
}

#[tokio::test]
async fn no_row_is_locked_and_no_transaction_open_while_a_receiver_hangs() {
    let receiver = Arc::new(Receiver::default());
    receiver.hang.store(true, Ordering::SeqCst);
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_with(port, |w| w.timeout_ms = 60_000)).await;
    empty_package(&app).await;
    wait_until("a delivery hanging in the receiver", || {
        receiver.hanging.load(Ordering::SeqCst) >= 1
    })
    .await;

    let mut client = app.db.client().await;
    let tx = client.transaction().await.unwrap();
    let locked = tx
        .query("SELECT position FROM outbox FOR UPDATE NOWAIT", &[])
        .await
        .expect("no outbox row is locked during a delivery");
    assert_eq!(locked.len(), 3);
    tx.rollback().await.unwrap();
    let open: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()
                AND state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "no transaction stays open during a delivery");
    // Ingest goes on meanwhile.
    app.buy("biz-2", "pin-b", SMALL_SKU).await;
    app.create_task("task-2", "biz-2").await;
    let result = app.report("task-2", "r-2", 10).await;
    assert_eq!(result["status"], "accepted", "{result}");

    receiver.hang.store(false, Ordering::SeqCst);
    wait_for(&receiver, 3).await;
    assert_eq!(settled(&client).await, (3, 0));
}

/// `GET /v1/outbox?<query>` as admin: the entries.
async fn outbox(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .get_as(&format!("/v1/outbox?{query}"), ADMIN_TOKEN)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["entries"].as_array().unwrap().clone()
}

async fn wait_for_dead(app: &TestApp, count: usize) -> Vec<Value> {
    for _ in 0..600 {
        let dead = outbox(app, "state=dead").await;
        if dead.len() >= count {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {count} dead letters");
}

async fn retry_as(app: &TestApp, position: i64, token: &str) -> (u16, Value) {
    let response = app
        .post_as(
            &format!("/v1/outbox/{position}/retry"),
            token,
            &serde_json::json!({}),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_dead_letter_holds_back_its_subject_until_an_operator_retries_it() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("task-task-1");
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_with(port, |w| w.attempts_max = 2)).await;
    empty_package(&app).await;

    let dead = wait_for_dead(&app, 1).await;
    assert_eq!(dead.len(), 1);
    let stop = &dead[0];
    assert_eq!(stop["type"], "TaskStopped");
    assert_eq!(stop["subject"], "task-task-1");
    assert_eq!(stop["state"], "dead");
    assert_eq!(stop["attempts"], 2);
    assert!(stop["deadAt"].is_string());
    assert!(
        stop["lastError"].as_str().unwrap().contains("500"),
        "{stop}"
    );
    let stop_position = stop["position"].as_i64().unwrap();

    // The resumption waits behind the dead stop; another package's entries, later in the
    // ledger, go through.
    renew(&app, "order-2").await;
    empty(&app, "2").await;
    let mut undelivered = Vec::new();
    for _ in 0..600 {
        undelivered = outbox(&app, "").await;
        if undelivered.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(undelivered.len(), 2, "{undelivered:?}");
    assert!(receiver
        .received_types()
        .contains(&"dts.ledger.TaskStopped".to_owned()));
    let resumed = &undelivered[1];
    assert_eq!(resumed["type"], "TaskResumed");
    assert_eq!(resumed["state"], "pending");
    assert_eq!(resumed["attempts"], 0);
    assert_eq!(resumed["behind"], stop_position);
    assert_eq!(outbox(&app, "state=pending").await.len(), 1);
    assert_eq!(receiver.attempts_of("dts.ledger.TaskResumed"), 0);

    // Operators only; ids and states are checked.
    assert_eq!(app.get_as("/v1/outbox", REPORTER_TOKEN).await.status(), 403);
    assert_eq!(app.get("/v1/outbox").await.status(), 401);
    assert_eq!(
        app.get_as("/v1/outbox?state=gone", ADMIN_TOKEN)
            .await
            .status(),
        400
    );
    assert_eq!(retry_as(&app, stop_position, REPORTER_TOKEN).await.0, 403);
    let position = resumed["position"].as_i64().unwrap();
    let (status, body) = retry_as(&app, position, ADMIN_TOKEN).await;
    assert_eq!((status, &body["error"]["code"]), (409, &"not_dead".into()));
    let (status, body) = retry_as(&app, 1 << 40, ADMIN_TOKEN).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &"outbox_entry_not_found".into())
    );

    receiver.accept_all();
    let (status, body) = retry_as(&app, stop_position, ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    wait_until("the stop and the resumption", || {
        receiver
            .received_types()
            .iter()
            .any(|t| t == "dts.ledger.TaskResumed")
    })
    .await;
    let received = receiver.received.lock().unwrap().clone();
    let task_stream: Vec<&str> = received
        .iter()
        .filter(|e| e["subject"] == "task-task-1")
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        task_stream,
        ["dts.ledger.TaskStopped", "dts.ledger.TaskResumed"]
    );
    let client = app.db.client().await;
    assert_eq!(settled(&client).await.1, 0);
    let (status, body) = retry_as(&app, stop_position, ADMIN_TOKEN).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &"already_delivered".into())
    );
}

#[tokio::test]
async fn operators_list_and_retry_dead_letters_from_the_command_line() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("task-task-1");
    receiver.refuse("task-task-2");
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_with(port, |w| w.attempts_max = 1)).await;
    empty(&app, "1").await;
    empty(&app, "2").await;
    let dead = wait_for_dead(&app, 2).await;

    let (code, stdout, stderr) = app
        .db
        .run_cli(&["outbox", "list", "--dead", "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let listed: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["position"], dead[0]["position"]);
    assert_eq!(listed[1]["subject"], "task-task-2");
    let (code, stdout, _) = app.db.run_cli(&["outbox", "list"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("dead") && stdout.contains("task-task-1"),
        "{stdout}"
    );

    let (code, _, stderr) = app.db.run_cli(&["outbox", "retry", "999999"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (code, _, _) = app.db.run_cli(&["outbox", "retry"]);
    assert_eq!(code, 2, "a position or --all-dead is required");

    receiver.accept_all();
    let (code, stdout, stderr) = app.db.run_cli(&["outbox", "retry", "--all-dead"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("2 dead letters"), "{stdout}");
    let client = app.db.client().await;
    assert_eq!(settled(&client).await, (6, 0));
    let (_, stdout, _) = app.db.run_cli(&["outbox", "list", "--format", "json"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&stdout).unwrap().len(),
        0
    );
}

#[tokio::test]
async fn an_entry_failing_past_its_age_bound_becomes_a_dead_letter() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("task-task-1");
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_with(port, |w| {
        w.attempts_max = 10_000;
        w.age_s_max = 1;
    }))
    .await;
    empty_package(&app).await;
    let dead = wait_for_dead(&app, 1).await;
    let attempts = dead[0]["attempts"].as_i64().unwrap();
    assert!((1..10_000).contains(&attempts), "{attempts}");
    assert_eq!(dead[0]["type"], "TaskStopped");
}

#[tokio::test]
async fn delivered_entries_are_pruned_after_the_retention_and_dead_letters_kept() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("task-task-1");
    let port = serve_receiver(receiver.clone());
    let app = spawn_app_with(config_with(port, |w| {
        w.attempts_max = 1;
        w.retention_s = 1;
    }))
    .await;
    empty_package(&app).await;
    wait_for(&receiver, 2).await;
    let client = app.db.client().await;
    let mut left = Vec::new();
    for _ in 0..600 {
        left = client
            .query("SELECT position FROM outbox", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, i64>(0))
            .collect::<Vec<_>>();
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = wait_for_dead(&app, 1).await;
    assert_eq!(left, [dead[0]["position"].as_i64().unwrap()]);
    // The ledger keeps the events themselves.
    assert_eq!(app.events_of("OrderBalanceLow").await.len(), 2);
}

#[tokio::test]
async fn two_processes_share_the_deliveries_and_keep_each_subjects_order() {
    let receiver = Arc::new(Receiver::default());
    receiver.refuse("dts.ledger.TaskStopped");
    let port = serve_receiver(receiver.clone());
    let first = spawn_app_with(config_for(port)).await;
    let second = first.sibling(config_for(port));
    let packages = ["1", "2", "3", "4"];
    for n in packages {
        empty(&first, n).await;
    }
    wait_until("every stop refused at least once", || {
        receiver.attempts_of("dts.ledger.TaskStopped") >= packages.len()
    })
    .await;
    for n in packages {
        let expiry = cst(chrono::Utc::now() + chrono::Duration::days(365));
        let response = second
            .callback(&[
                ("action", "renewInstance"),
                ("instanceId", &format!("biz-{n}")),
                ("orderId", &format!("renewal-{n}")),
                ("expiredOn", expiry.as_str()),
            ])
            .await;
        assert_eq!(response.status(), 200);
    }
    receiver.accept_all();
    let client = first.db.client().await;
    // Four packages: two warnings, a stop and a resumption each.
    assert_eq!(settled(&client).await, (16, 0));
    let received = receiver.received.lock().unwrap().clone();
    for n in packages {
        let subject = format!("task-task-{n}");
        let mut seen = HashSet::new();
        // At least once: a duplicate (same id) may come again, never an earlier one after a later.
        let task_stream: Vec<&str> = received
            .iter()
            .filter(|e| e["subject"] == subject.as_str() && seen.insert(e["id"].clone()))
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            task_stream,
            ["dts.ledger.TaskStopped", "dts.ledger.TaskResumed"],
            "{subject}"
        );
    }
}
