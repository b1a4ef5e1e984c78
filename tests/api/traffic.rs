// Over 600 lines: the metering's end-to-end tests, one subject in one file.
//! Traffic metering over HTTP: exactly-once charging, stop at zero in the crossing transaction,
//! overage, renewals, late reports, bad input, and two processes on one database.

use crate::helpers::{
    report, spawn_app, test_config, TestApp, REPORTER_TOKEN, SMALL_SKU, SMALL_SKU_BYTES,
};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

const SKU_1TB: &str = "FW_GOODS-500232-1";

/// `(position, event type, inserting transaction)` of every event.
async fn transactions(app: &TestApp) -> Vec<(i64, String, String, Value)> {
    app.db
        .client()
        .await
        .query(
            "SELECT position, event_type, xmin::text, payload FROM events ORDER BY position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reports_empty_a_package_and_its_tasks_stop_in_the_crossing_transaction() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    for t in 0..4 {
        app.create_task(&format!("task-{t}"), "biz-1").await;
    }
    let sends = (0..4).flat_map(|t| {
        (0..10).map(move |r| (format!("task-{t}"), format!("r-{r}"), 300 + t as i64))
    });
    let calls = sends.map(|(task, id, bytes)| {
        let app = &app;
        async move { app.report(&task, &id, bytes).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(
        results.iter().all(|r| r["status"] == "accepted"),
        "{results:?}"
    );
    let total: i64 = (0..4).map(|t| 10 * (300 + t)).sum();

    let order = app.order("biz-1").await;
    assert_eq!(order["bytesConsumed"], total);
    assert_eq!(order["bytesRemaining"], 0);
    assert_eq!(order["bytesOverage"], total - SMALL_SKU_BYTES);
    let tasks_total: i64 = order["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["state"], "stopped");
            assert_eq!(t["stopReason"], "quota_exhausted");
            t["bytesConsumed"].as_i64().unwrap()
        })
        .collect::<Vec<_>>()
        .iter()
        .sum();
    assert_eq!(tasks_total, total);

    let events = transactions(&app).await;
    let crossing = events
        .iter()
        .find(|(_, kind, _, payload)| kind == "TrafficConsumed" && payload["l"] == 0)
        .expect("a report crossed zero");
    let stops: Vec<_> = events
        .iter()
        .filter(|(_, kind, _, _)| kind == "TaskStopped")
        .collect();
    assert_eq!(stops.len(), 4);
    for (position, _, xid, payload) in stops {
        assert_eq!(
            xid, &crossing.2,
            "stop at {position} committed with the crossing report"
        );
        assert_eq!(payload["reason"], "quota_exhausted");
        assert!(*position > crossing.0);
    }
    let stopped_answers = results.iter().filter(|r| r["action"] == "stop").count();
    assert!(stopped_answers >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_sent_many_times_at_once_is_charged_once() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let calls = (0..20).map(|_| app.report("task-1", "r-same", 1_000));
    let results = futures::future::join_all(calls).await;
    let accepted = results.iter().filter(|r| r["status"] == "accepted").count();
    let duplicates = results
        .iter()
        .filter(|r| r["status"] == "duplicate")
        .count();
    assert_eq!((accepted, duplicates), (1, 19), "{results:?}");
    assert!(results
        .iter()
        .all(|r| r["bytesRemaining"] == (1i64 << 40) - 1_000 && r["action"] == "continue"));
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 1_000);
    assert_eq!(app.events_of("TrafficConsumed").await.len(), 1);

    // Twice in one request: the second is a duplicate of the first.
    let results = app
        .traffic(json!([
            report("task-1", "r-pair", 7),
            report("task-1", "r-pair", 7)
        ]))
        .await;
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "duplicate");
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 1_007);
}

#[tokio::test]
async fn a_marketplace_renewal_covers_the_overage_and_resumes_the_tasks() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    app.create_task("task-1", "biz-1").await;
    app.create_task("task-2", "biz-1").await;
    app.report("task-1", "r-1", SMALL_SKU_BYTES + 2_500).await;
    assert_eq!(app.order("biz-1").await["bytesOverage"], 2_500);
    let later = crate::helpers::cst(Utc::now() + Duration::days(30));
    let renewed = app
        .callback(&[
            ("action", "renewInstance"),
            ("instanceId", "biz-1"),
            ("orderId", "order-2"),
            ("expiredOn", &later),
        ])
        .await;
    assert_eq!(renewed.status(), 200);
    let order = app.order("biz-1").await;
    assert_eq!(order["bytesOverage"], 0);
    assert_eq!(order["bytesRemaining"], SMALL_SKU_BYTES - 2_500);
    assert_eq!(order["bytesGranted"], 2 * SMALL_SKU_BYTES);
    for task in order["tasks"].as_array().unwrap() {
        assert_eq!(task["state"], "running");
    }
    assert_eq!(app.events_of("TaskResumed").await.len(), 2);
    assert_eq!(app.report("task-2", "r-2", 1).await["action"], "continue");
}

#[tokio::test]
async fn late_reports_after_destruction_are_judged_by_their_period_end() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let before = (Utc::now() - Duration::seconds(1)).to_rfc3339();
    let destroyed = app
        .http
        .delete(format!("{}/v1/tasks/task-1", app.address))
        .bearer_auth(REPORTER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(destroyed.status(), 200);
    let after = (Utc::now() + Duration::seconds(30)).to_rfc3339();
    let results = app
        .traffic(json!([
            {"taskId": "task-1", "reportId": "in-flight", "bytes": 500, "periodEnd": before},
            {"taskId": "task-1", "reportId": "too-late", "bytes": 500, "periodEnd": after},
        ]))
        .await;
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[0]["action"], "stop");
    assert_eq!(results[0]["reason"], "task_destroyed");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["error"]["code"], "task_destroyed");
    assert_eq!(app.task("task-1").await["bytesConsumed"], 500);
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 500);
}

#[tokio::test]
async fn low_balance_is_announced_once_per_crossing() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SMALL_SKU).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", 8_100).await;
    app.report("task-1", "r-2", 100).await;
    let warnings = app.events_of("OrderBalanceLow").await;
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0]["data"]["thresholdPercent"], 80);
    app.report("task-1", "r-3", 1_400).await;
    let warnings = app.events_of("OrderBalanceLow").await;
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[1]["data"]["thresholdPercent"], 95);
}

#[tokio::test]
async fn each_bad_report_is_rejected_on_its_own() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let now = Utc::now().to_rfc3339();
    let results = app
        .traffic(json!([
            {"taskId": "task-1", "reportId": "ok", "bytes": 10, "periodEnd": now},
            {"taskId": "task-1", "reportId": "neg", "bytes": -1, "periodEnd": now},
            {"taskId": "task-1", "reportId": "frac", "bytes": 2.5, "periodEnd": now},
            {"taskId": "task-1", "reportId": "huge", "bytes": 1u64 << 41, "periodEnd": now},
            {"taskId": "", "reportId": "empty", "bytes": 1, "periodEnd": now},
            {"taskId": "task-1", "reportId": "x".repeat(129), "bytes": 1, "periodEnd": now},
            {"taskId": "nobody", "reportId": "who", "bytes": 1, "periodEnd": now},
            {"taskId": "task-1", "reportId": "when", "bytes": 1, "periodEnd": "noon"},
            "not an object",
        ]))
        .await;
    let codes: Vec<Value> = results.iter().map(|r| r["error"]["code"].clone()).collect();
    assert_eq!(
        codes,
        [
            Value::Null,
            json!("invalid_bytes"),
            json!("invalid_bytes"),
            json!("bytes_too_large"),
            json!("invalid_task_id"),
            json!("invalid_report_id"),
            json!("unknown_task"),
            json!("invalid_period"),
            json!("invalid_report"),
        ]
    );
    assert_eq!(results[0]["status"], "accepted");
    assert!(results[1..].iter().all(|r| r["status"] == "rejected"));
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 10);
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused_whole() {
    let app = spawn_app().await;
    let url = format!("{}/v1/traffic", app.address);
    let malformed = app
        .http
        .post(&url)
        .bearer_auth(REPORTER_TOKEN)
        .header("content-type", "application/json")
        .body("{\"reports\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");

    let many: Vec<Value> = (0..10_001)
        .map(|n| json!({"taskId": "t", "reportId": n.to_string()}))
        .collect();
    let too_many = app
        .post_as("/v1/traffic", REPORTER_TOKEN, &json!({ "reports": many }))
        .await;
    assert_eq!(too_many.status(), 413);
    let body: Value = too_many.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_reports");

    let huge = format!("{{\"reports\": [\"{}\"]}}", "x".repeat(9 * 1024 * 1024));
    let too_big = app
        .http
        .post(&url)
        .bearer_auth(REPORTER_TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    assert!(app.events().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_end_with_exact_balances() {
    let first = spawn_app().await;
    let second = first.sibling(test_config());
    for p in 0..3 {
        first.buy(&format!("biz-{p}"), "pin-a", SMALL_SKU).await;
        for t in 0..3 {
            first
                .create_task(&format!("task-{p}-{t}"), &format!("biz-{p}"))
                .await;
        }
    }
    // Both processes charge the same tasks at once, with some reports sent to both.
    let sends = (0..3).flat_map(|p| (0..3).flat_map(move |t| (0..12).map(move |r| (p, t, r))));
    let calls = sends.map(|(p, t, r)| {
        let (first, second) = (&first, &second);
        async move {
            let task = format!("task-{p}-{t}");
            let id = format!("r-{r}");
            let app = if r % 2 == 0 { first } else { second };
            let result = app.report(&task, &id, 400 + r).await;
            if r % 3 == 0 {
                let again = if r % 2 == 0 { second } else { first };
                let repeat = again.report(&task, &id, 400 + r).await;
                assert_eq!(repeat["status"], "duplicate", "{repeat}");
            }
            result
        }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r["status"] == "accepted"));
    let per_package: i64 = 3 * (0..12).map(|r| 400 + r).sum::<i64>();
    for p in 0..3 {
        let order = second.order(&format!("biz-{p}")).await;
        assert_eq!(order["bytesConsumed"], per_package);
        assert_eq!(order["bytesOverage"], per_package - SMALL_SKU_BYTES);
        assert!(order["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "stopped"));
    }
    assert_eq!(first.events_of("TrafficConsumed").await.len(), 3 * 3 * 12);
    dts_ledger::audit::verify::verify(&mut first.db.client().await, 0, |_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn a_batch_that_cannot_commit_answers_503_and_records_nothing() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let broken = app.sibling_without_database();
    let response = broken
        .post_as(
            "/v1/traffic",
            REPORTER_TOKEN,
            &json!({ "reports": [report("task-1", "r-1", 100)] }),
        )
        .await;
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable");
    assert!(app.events_of("TrafficConsumed").await.is_empty());
    // The retry, once the database is there, is charged once.
    assert_eq!(app.report("task-1", "r-1", 100).await["status"], "accepted");
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 100);
}

#[tokio::test]
async fn a_package_expiring_under_a_report_stops_all_its_tasks() {
    let app = crate::helpers::spawn_app_with(dts_ledger::configuration::Config {
        // The sweeper stays out of it: the report is the first to notice the expiry.
        expiry_sweep_s: 3600,
        ..test_config()
    })
    .await;
    // Whole seconds, as the marketplace writes them; far enough ahead to set the tasks up first.
    let expiry = Utc::now() + Duration::seconds(3);
    let soon = crate::helpers::cst(expiry);
    let response = app
        .callback(&[
            ("action", "createInstance"),
            ("jdPin", "pin-a"),
            ("orderBizId", "biz-1"),
            ("orderId", "order-1"),
            ("serviceCode", "dts"),
            ("skuId", SKU_1TB),
            ("expiredOn", &soon),
        ])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.create_task("task-a", "biz-1").await.0, 201);
    assert_eq!(app.create_task("task-b", "biz-1").await.0, 201);
    while Utc::now() <= expiry {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let result = app.report("task-a", "r-1", 10).await;
    assert_eq!(
        (result["action"].clone(), result["reason"].clone()),
        (json!("stop"), json!("order_expired"))
    );
    for task in ["task-a", "task-b"] {
        let task = app.task(task).await;
        assert_eq!(task["state"], "stopped", "{task}");
        assert_eq!(task["stopReason"], "order_expired");
    }
}

#[tokio::test]
async fn a_report_resent_after_its_task_was_destroyed_is_a_duplicate() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let later = (Utc::now() + Duration::minutes(30)).to_rfc3339();
    let late = json!([{"taskId": "task-1", "reportId": "r-1", "bytes": 10, "periodEnd": later}]);
    assert_eq!(app.traffic(late.clone()).await[0]["status"], "accepted");
    app.http
        .delete(format!("{}/v1/tasks/task-1", app.address))
        .bearer_auth(REPORTER_TOKEN)
        .send()
        .await
        .unwrap();
    let again = app.traffic(late).await;
    assert_eq!(again[0]["status"], "duplicate", "{again:?}");
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 10);
}

#[tokio::test]
async fn the_traffic_route_answers_other_methods_in_json() {
    let app = spawn_app().await;
    let response = app.get("/v1/traffic").await;
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

/// A gzip body of a few KiB that inflates to more than `inflated_bytes` of valid JSON.
fn gzip_bomb(inflated_bytes: usize) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(br#"{"reports": [], "pad": ""#).unwrap();
    let spaces = vec![b' '; 64 * 1024];
    let mut left = inflated_bytes;
    while left > 0 {
        let n = left.min(spaces.len());
        encoder.write_all(&spaces[..n]).unwrap();
        left -= n;
    }
    encoder.write_all(br#""}"#).unwrap();
    encoder.finish().unwrap()
}

fn gzip(body: &Value) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body.to_string().as_bytes()).unwrap();
    encoder.finish().unwrap()
}

async fn post_gzip(app: &TestApp, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the request is sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_unread_without_a_token_and_by_inflated_size_with_one() {
    let app = spawn_app().await;
    let bomb = gzip_bomb(16 * 1024 * 1024);
    assert!(bomb.len() < 64 * 1024, "{} bytes on the wire", bomb.len());

    let (status, body) = post_gzip(&app, "/v1/traffic", None, bomb.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) = post_gzip(&app, "/v1/traffic", Some("not-a-token"), bomb.clone()).await;
    assert_eq!(status, 401, "{body}");

    // A reporter may gzip, but the limit counts what the body inflates to.
    let (status, body) = post_gzip(&app, "/v1/traffic", Some(REPORTER_TOKEN), bomb).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    app.buy("biz-gz", "pin-a", SKU_1TB).await;
    app.create_task("task-gz", "biz-gz").await;
    let batch = json!({"reports": [report("task-gz", "r-1", 700)]});
    let (status, body) = post_gzip(&app, "/v1/traffic", Some(REPORTER_TOKEN), gzip(&batch)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "accepted");
}

#[tokio::test]
async fn task_routes_take_no_compressed_bodies() {
    let app = spawn_app().await;
    app.buy("biz-gz", "pin-a", SKU_1TB).await;
    let task = json!({"taskId": "task-gz", "instanceId": "biz-gz"});
    let (status, body) = post_gzip(&app, "/v1/tasks", Some(REPORTER_TOKEN), gzip(&task)).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["error"]["code"], "unsupported_encoding");
    let (status, body) = post_gzip(&app, "/v1/tasks", None, gzip(&task)).await;
    assert_eq!(status, 401, "{body}");
    let missing = app.get_as("/v1/tasks/task-gz", REPORTER_TOKEN).await;
    assert_eq!(missing.status(), 404, "nothing was created");
}

/// Sends the head of a request and a first slice of its body, never the rest, and returns the
/// status line the server answers with. A server that reads the body first never answers: the
/// bound only keeps such a failure from hanging the test run.
async fn answer_to_an_unfinished_body(app: &TestApp, path: &str, length_bytes: usize) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
         content-length: {length_bytes}\r\n\r\n{{\"reports\": ["
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; 1024]).await.unwrap();
    stream.flush().await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        reader.read_line(&mut status_line),
    )
    .await;
    match read {
        Ok(result) => {
            result.unwrap();
            status_line.trim_end().to_owned()
        }
        Err(_) => panic!("{path}: no answer while the body was unfinished"),
    }
}

#[tokio::test]
async fn requests_without_a_token_are_refused_before_their_body_is_read() {
    let app = spawn_app().await;
    let status = answer_to_an_unfinished_body(&app, "/v1/traffic", 4 * 1024 * 1024).await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let status = answer_to_an_unfinished_body(&app, "/v1/tasks", 32 * 1024).await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    let status = answer_to_an_unfinished_body(&app, "/v1/tasks/task-1/renew", 32 * 1024).await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unchargeable_report_fails_alone_and_its_batch_goes_on() {
    let mut config = test_config();
    // One lane, so that every queued request lands in the same batch.
    config.pipelines = 1;
    config.report_bytes_max = projections::ids::Bytes::MAX;
    let app = crate::helpers::spawn_app_with(config).await;
    app.buy("biz-huge", "pin-a", SMALL_SKU).await;
    app.create_task("task-huge", "biz-huge").await;
    for n in 0..6 {
        app.buy(&format!("biz-{n}"), "pin-b", SKU_1TB).await;
        app.create_task(&format!("task-{n}"), &format!("biz-{n}"))
            .await;
    }
    // The package's consumption reaches the largest count a byte figure can hold: one more byte
    // overflows the fold.
    let full = app.report("task-huge", "r-full", i64::MAX).await;
    assert_eq!(full["status"], "accepted", "{full}");

    // Hold the ledger head, so that the lane waits in its first batch while the other requests
    // queue behind it; they are gathered into the next batch together.
    let mut holder = app.db.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT position FROM ledger_head FOR UPDATE", &[])
        .await
        .unwrap();
    let first = {
        let app = &app;
        async move { app.report("task-0", "r-first", 100).await }
    };
    let watcher = app.db.client().await;
    let lane_waits = async {
        // The first batch is waiting for the head before the others are sent.
        for _ in 0..200 {
            let waiting = crate::helpers::sessions_waiting_on_locks(&watcher).await;
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the first batch never waited for the ledger head");
    };
    let lane_waits = futures::future::FutureExt::shared(Box::pin(lane_waits));
    let queued = (0..6).map(|n| {
        let app = &app;
        let lane_waits = lane_waits.clone();
        async move {
            lane_waits.await;
            if n == 3 {
                // The bad report shares its request with a good one.
                app.traffic(json!([
                    report("task-huge", "r-overflow", 1),
                    report("task-3", "r-1", 1_003)
                ]))
                .await
            } else {
                app.traffic(json!([report(&format!("task-{n}"), "r-1", 1_000 + n)]))
                    .await
            }
        }
    });
    let release = async {
        lane_waits.clone().await;
        // Time for every request to reach the lane's queue; a slower machine only splits the
        // requests over more batches, which the assertions below notice.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        hold.commit().await.unwrap();
    };
    let (first, results, ()) = tokio::join!(first, futures::future::join_all(queued), release);
    assert_eq!(first["status"], "accepted", "{first}");
    for (n, results) in results.iter().enumerate() {
        let result = &results[0];
        if n == 3 {
            assert_eq!(result["status"], "rejected", "{result}");
            assert_eq!(result["error"]["code"], "unchargeable", "{result}");
            assert_eq!(results[1]["status"], "accepted", "{results:?}");
        } else {
            assert_eq!(result["status"], "accepted", "{result}");
        }
        {
            let order = app.order(&format!("biz-{n}")).await;
            let expected = 1_000 + n as i64 + if n == 0 { 100 } else { 0 };
            assert_eq!(order["bytesConsumed"], expected, "{order}");
        }
    }
    let huge = app.order("biz-huge").await;
    assert_eq!(
        huge["bytesConsumed"],
        i64::MAX,
        "nothing of the bad report was charged"
    );

    // The good reports were really gathered into one batch with the bad one.
    let events = transactions(&app).await;
    let batch: std::collections::HashSet<&String> = events
        .iter()
        .filter(|(_, kind, _, payload)| kind == "TrafficConsumed" && payload["r"] == "r-1")
        .map(|(_, _, xid, _)| xid)
        .collect();
    assert_eq!(batch.len(), 1, "the queued reports committed together");
    assert_eq!(
        events
            .iter()
            .filter(|(_, kind, _, payload)| kind == "TrafficConsumed" && payload["r"] == "r-1")
            .count(),
        6
    );
    assert!(!events
        .iter()
        .any(|(_, _, _, payload)| payload["r"] == "r-overflow"));
}

#[tokio::test]
async fn reports_of_one_package_in_one_request_are_charged_in_request_order_after_a_restart() {
    let before = spawn_app().await;
    before.buy("biz-order", "pin-order", SKU_1TB).await;
    let pairs = 20;
    for i in 0..pairs {
        for task in [format!("a-{i}"), format!("b-{i}")] {
            assert_eq!(before.create_task(&task, "biz-order").await.0, 201);
        }
    }
    // A process started afresh knows none of these tasks' packages: each request names two of
    // them, first `a`, then `b`, and both draw from one package.
    let restarted = before.sibling(test_config());
    for i in 0..pairs {
        let results = restarted
            .traffic(json!([
                report(&format!("a-{i}"), "r", 1000),
                report(&format!("b-{i}"), "r", 1000),
            ]))
            .await;
        let remaining: Vec<i64> = results
            .iter()
            .map(|r| r["bytesRemaining"].as_i64().unwrap())
            .collect();
        assert!(remaining[0] > remaining[1], "request {i}: {results:?}");
    }
    let charged: Vec<String> = restarted
        .events_of("TrafficConsumed")
        .await
        .iter()
        .map(|e| e["data"]["t"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..pairs)
        .flat_map(|i| [format!("a-{i}"), format!("b-{i}")])
        .collect();
    assert_eq!(
        charged, expected,
        "charged in the order the reports were sent"
    );
}
