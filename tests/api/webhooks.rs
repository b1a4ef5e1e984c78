//! Webhook delivery: CloudEvents, signed, at least once, retried, surviving a restart.

use crate::helpers::{spawn_app_with, test_config, SMALL_SKU, SMALL_SKU_BYTES};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use dts_ledger::configuration::{Config, Secret, WebhookConfig};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "webhook-secret-0123456789";

/// A control plane that fails the first `failures` deliveries, then records what it gets.
#[derive(Default)]
struct Receiver {
    failures: AtomicUsize,
    attempts: AtomicUsize,
    received: Mutex<Vec<Value>>,
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
    if receiver
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return HttpResponse::InternalServerError().finish();
    }
    receiver
        .received
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    HttpResponse::NoContent().finish()
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

fn config_for(port: u16) -> Config {
    Config {
        webhook: Some(WebhookConfig {
            url: format!("http://127.0.0.1:{port}/hook"),
            secret: Secret::new(SECRET),
            retry_base_ms: 50,
            retry_max_ms: 200,
            timeout_ms: 2_000,
        }),
        ..test_config()
    }
}

async fn wait_for(receiver: &Receiver, count: usize) -> Vec<Value> {
    for _ in 0..200 {
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = Arc::new(Receiver {
        failures: AtomicUsize::new(2),
        ..Receiver::default()
    });
    start_receiver(receiver.clone(), listener);
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
