//! What a package's use says: its runway, the bytes each task drew from it, and those after zero
//! (`GET /v1/orders/{id}` `runway`, `GET /v1/orders/{id}/usage`, and the queries behind them).

use crate::helpers::*;
use chrono::{Duration, Utc};
use dts_ledger::usage;
use projections::ids::{InstanceId, TaskId};

const SKU_1TB: &str = "FW_GOODS-500232-1";

fn id(raw: &str) -> InstanceId {
    InstanceId::parse(raw).unwrap()
}

async fn renew(app: &TestApp, task_id: &str, instance_id: &str) {
    let response = app
        .post_as(
            &format!("/v1/tasks/{task_id}/renew"),
            REPORTER_TOKEN,
            &serde_json::json!({ "instanceId": instance_id }),
        )
        .await;
    assert_eq!(response.status(), 200, "renew {task_id} onto {instance_id}");
}

#[tokio::test]
async fn a_task_moved_onto_a_fresh_package_counts_on_each_package_what_it_drew_there() {
    let app = spawn_app().await;
    app.buy("old", "alice", SMALL_SKU).await;
    app.buy("fresh", "alice", SMALL_SKU).await;
    app.create_task("mover", "old").await;
    app.create_task("stayer", "old").await;
    app.report("mover", "r-1", 6_000).await;
    app.report("stayer", "r-1", 3_000).await;
    // 2,000 more on a package with 1,000 left: 1,000 of them after zero.
    app.report("mover", "r-2", 2_000).await;
    renew(&app, "mover", "fresh").await;
    app.report("mover", "r-3", 500).await;

    let client = app.db.pool.get().await.unwrap();
    let now = Utc::now() + Duration::seconds(1);
    let since = now - Duration::days(30);
    let old = usage::package_tasks(&client, &id("old"), since, now)
        .await
        .unwrap();
    let as_pairs: Vec<(&str, u64, u64)> = old
        .iter()
        .map(|t| (t.task_id.as_str(), t.bytes, t.bytes_after_zero))
        .collect();
    assert_eq!(as_pairs, [("mover", 8_000, 1_000), ("stayer", 3_000, 0)]);
    let fresh = usage::package_tasks(&client, &id("fresh"), since, now)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!((fresh[0].bytes, fresh[0].bytes_after_zero), (500, 0));
    // The task's own total is its lifetime's, over both packages.
    assert_eq!(app.task("mover").await["bytesConsumed"], 8_500);

    let daily = usage::daily_by_task(&client, &id("old"), 30, now)
        .await
        .unwrap();
    let today = now.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    assert_eq!(
        daily,
        [
            (today.date_naive(), TaskId::parse("mover").unwrap(), 8_000),
            (today.date_naive(), TaskId::parse("stayer").unwrap(), 3_000),
        ]
    );
    // A window that starts after the traffic holds none of it.
    let later = now + Duration::days(2);
    assert!(
        usage::package_tasks(&client, &id("old"), later - Duration::days(1), later)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn runways_need_a_day_of_history_and_follow_the_rate_since_the_first_traffic() {
    let app = spawn_app().await;
    app.buy("busy", "alice", SKU_1TB).await;
    app.buy("idle", "alice", SKU_1TB).await;
    app.buy("empty", "alice", SMALL_SKU).await;
    app.create_task("t-busy", "busy").await;
    app.create_task("t-empty", "empty").await;
    let gib: i64 = 1 << 30;
    app.report("t-busy", "r-1", 64 * gib).await;
    app.report("t-empty", "r-1", SMALL_SKU_BYTES).await;
    let ids = [id("busy"), id("idle"), id("empty")];
    let client = app.db.pool.get().await.unwrap();

    // Minutes of history: no runway for anyone.
    let now = Utc::now() + Duration::seconds(1);
    assert!(usage::runways(&client, &ids, now).await.unwrap().is_empty());

    // Two days after the first traffic: 32 GiB a day; 1 TiB − 64 GiB left is 30 days.
    let later = now + Duration::days(2);
    let runways = usage::runways(&client, &ids, later).await.unwrap();
    assert_eq!(runways.len(), 1, "{runways:?}");
    let busy = &runways[&id("busy")];
    // Two days and the few seconds between the report and `now`.
    let per_day: u64 = 32 << 30;
    assert!(
        (per_day - per_day / 1000..=per_day).contains(&busy.rate_bytes_per_day),
        "{busy:?}"
    );
    assert!((29..=31).contains(&busy.days), "{busy:?}");
    assert!(!busy.expires_first);

    // Eight days on, the week holds no traffic: no rate, no runway.
    let idle = now + Duration::days(8);
    assert!(usage::runways(&client, &ids, idle)
        .await
        .unwrap()
        .is_empty());
}

/// Moves the whole ledger's history back by `days`, as if it had been recorded then (the
/// superuser, with the append-only trigger off for the statement): the server's clock cannot be
/// set back, and a runway needs a day of history.
async fn age_ledger(app: &TestApp, days: i64) {
    app.db
        .client()
        .await
        .batch_execute(&format!(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             UPDATE events SET recorded_at = recorded_at - interval '{days} days';
             ALTER TABLE events ENABLE TRIGGER events_append_only;"
        ))
        .await
        .unwrap();
}

async fn get_json(app: &TestApp, path: &str) -> (u16, serde_json::Value) {
    let response = app.get_as(path, ADMIN_TOKEN).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn an_order_shows_its_runway_once_it_has_a_day_of_history() {
    let app = spawn_app().await;
    app.buy("p", "alice", SKU_1TB).await;
    app.create_task("t", "p").await;
    let gib: i64 = 1 << 30;
    app.report("t", "r-1", 100 * gib).await;
    let order = shaped::<dts_ledger::api::orders::OrderResponse>(app.order("p").await);
    assert_eq!(order["runway"], serde_json::Value::Null, "{order}");

    // The report is now four days old: 25 GiB a day, 924 GiB left, about 37 days.
    age_ledger(&app, 4).await;
    let (status, order) = get_json(&app, "/v1/orders/p").await;
    assert_eq!(status, 200);
    let runway = &order["runway"];
    let rate = runway["ratePerDay"].as_u64().unwrap();
    assert!(
        (25 * gib as u64 - (gib as u64)..=25 * gib as u64).contains(&rate),
        "{runway}"
    );
    assert!(
        (36..=38).contains(&runway["days"].as_u64().unwrap()),
        "{runway}"
    );
    assert_eq!(runway["expiresFirst"], false);
    let on = chrono::NaiveDate::parse_from_str(runway["runsOutOn"].as_str().unwrap(), "%Y-%m-%d");
    assert!(on.is_ok(), "{runway}");
}

#[tokio::test]
async fn usage_lists_what_each_task_drew_from_this_package_largest_first() {
    let app = spawn_app().await;
    app.buy("old", "alice", SMALL_SKU).await;
    app.buy("fresh", "alice", SMALL_SKU).await;
    app.create_task("small", "old").await;
    app.create_task("big", "old").await;
    app.report("small", "r-1", 1_000).await;
    app.report("big", "r-1", 8_000).await;
    // Past zero by 1,500: the agent kept sending after its stop.
    app.report("big", "r-2", 2_500).await;
    renew(&app, "big", "fresh").await;
    app.report("big", "r-3", 700).await;

    let (status, usage) = get_json(&app, "/v1/orders/old/usage?days=30").await;
    assert_eq!(status, 200, "{usage}");
    let usage = shaped::<dts_ledger::api::orders::UsageResponse>(usage);
    assert_eq!(usage["days"], 30);
    assert_eq!(usage["bytes"], 11_500);
    assert_eq!(usage["bytesAfterZero"], 1_500);
    let tasks: Vec<(&str, u64, u64)> = usage["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["taskId"].as_str().unwrap(),
                t["bytes"].as_u64().unwrap(),
                t["bytesAfterZero"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tasks, [("big", 10_500, 1_500), ("small", 1_000, 0)]);
    let daily = usage["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 2);
    assert_eq!(daily[0]["taskId"], "big");
    assert_eq!(daily[0]["date"], usage["to"]);

    // The moved task shows on the fresh package only what it drew there.
    let (_, fresh) = get_json(&app, "/v1/orders/fresh/usage").await;
    assert_eq!(fresh["days"], 30);
    assert_eq!(fresh["tasks"][0]["taskId"], "big");
    assert_eq!(fresh["tasks"][0]["bytes"], 700);
    assert_eq!(fresh["bytes"], 700);
    assert_eq!(app.task("big").await["bytesConsumed"], 11_200);
}

#[tokio::test]
async fn usage_windows_are_checked_at_the_edge() {
    let app = spawn_app().await;
    app.buy("p", "alice", SMALL_SKU).await;
    for (query, code) in [
        ("days=0", "invalid_days"),
        ("days=91", "invalid_days"),
        ("days=-3", "invalid_days"),
        ("days=x", "invalid_query"),
        ("window=3", "invalid_query"),
    ] {
        let (status, body) = get_json(&app, &format!("/v1/orders/p/usage?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }
    let (status, body) = get_json(&app, "/v1/orders/p/usage?days=90").await;
    assert_eq!((status, &body["days"]), (200, &serde_json::json!(90)));
    let (status, body) = get_json(&app, "/v1/orders/nobody/usage").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "order_not_found");
    // A reporter reads no package's usage; the package's own credential does.
    let response = app.get_as("/v1/orders/p/usage", REPORTER_TOKEN).await;
    assert_eq!(response.status(), 403);
}
