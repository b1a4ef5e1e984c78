//! What a package's use says: its runway, the bytes each task drew from it, and those after zero
//! (`GET /v1/orders/{id}` `runway`, `GET /v1/orders/{id}/usage`, and the queries behind them).

use crate::helpers::*;
use chrono::{Duration, Utc};
use dts_ledger::database::Role;
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
        .move_events_back(&format!("{days} days"), "true", "")
        .await;
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
    let order = shaped::<dts_ledger::http::api::orders::OrderResponse>(app.order("p").await);
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
    let usage = shaped::<dts_ledger::http::api::orders::UsageResponse>(usage);
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

/// Announcements recorded so far (their payloads), oldest first, with how many were queued for
/// the webhook.
async fn runway_announcements(app: &TestApp) -> (Vec<serde_json::Value>, i64) {
    let client = app.db.client().await;
    let rows = client
        .query(
            "SELECT payload::text FROM events WHERE event_type = 'OrderRunwayShort'
              ORDER BY position",
            &[],
        )
        .await
        .unwrap();
    let queued: i64 = client
        .query_one(
            "SELECT count(*) FROM outbox o JOIN events e ON e.position = o.position
              WHERE e.event_type = 'OrderRunwayShort'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let payloads = rows
        .iter()
        .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
        .collect();
    (payloads, queued)
}

async fn wait_for_announcements(app: &TestApp, count: usize) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let (found, _) = runway_announcements(app).await;
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("expected {count} runway announcements");
}

#[tokio::test]
async fn a_short_runway_is_announced_once_across_processes_and_again_after_a_grant() {
    let config = dts_ledger::configuration::Config {
        runway_thresholds_days: vec![1, 10],
        runway_check_s: 1,
        // Nobody listens there: entries stay queued, which is what this test looks at.
        webhook: Some(dts_ledger::configuration::WebhookConfig::new(
            "http://127.0.0.1:9/hook".into(),
            dts_ledger::configuration::Secret::new("webhook-secret-0123456789"),
        )),
        ..test_config()
    };
    let app = spawn_app_with(config.clone()).await;
    let other = app.sibling(config);
    app.buy("p", "alice", SMALL_SKU).await;
    app.create_task("t", "p").await;
    app.report("t", "r-1", 6_000).await;
    // Three days of history: 2,000 bytes a day, 4,000 left: two days, inside 10 but not 1.
    age_ledger(&app, 3).await;

    let found = wait_for_announcements(&app, 1).await;
    assert_eq!(found[0]["instanceId"], "p");
    assert_eq!(found[0]["thresholdDays"], 10);
    assert_eq!(found[0]["bytesRemaining"], 4_000);
    assert_eq!(found[0]["bytesGranted"], SMALL_SKU_BYTES);
    let rate = found[0]["ratePerDay"].as_u64().unwrap();
    assert!((1_990..=2_000).contains(&rate), "{}", found[0]);
    // Both processes keep checking every second: still one, queued once for the webhook.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (found, queued) = runway_announcements(&app).await;
    assert_eq!((found.len(), queued), (1, 1), "{found:?}");

    // An expansion grants 10,000 more: seven days left, inside 10 again, a new generation.
    let response = app
        .callback(&[
            ("action", "dilateInstance"),
            ("instanceId", "p"),
            ("orderId", "o-2"),
            ("accountNum", "1"),
        ])
        .await;
    assert_eq!(response.status(), 200);
    let found = wait_for_announcements(&app, 2).await;
    assert_eq!(found[1]["thresholdDays"], 10);
    assert_eq!(found[1]["bytesRemaining"], 14_000);
    assert_eq!(found[1]["bytesGranted"], 2 * SMALL_SKU_BYTES);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (found, queued) = runway_announcements(&app).await;
    assert_eq!((found.len(), queued), (2, 2), "{found:?}");
    other.stop().await;
}

#[tokio::test]
async fn bytes_after_a_stop_are_measured_and_a_task_reporting_long_after_it_is_counted() {
    let app = spawn_app().await;
    app.buy("p", "alice", SMALL_SKU).await;
    app.create_task("t", "p").await;
    let histogram = |text: &str, suffix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(&format!("dts_ledger_bytes_after_stop_bytes_{suffix} ")))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let scrape = || async {
        app.get_as("/metrics", ADMIN_TOKEN)
            .await
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    let answer = app.report("t", "r-1", SMALL_SKU_BYTES).await;
    assert_eq!(answer["action"], "stop");
    app.report("t", "r-2", 700).await;
    let after = scrape().await;
    // The recorder is the process's: other tests count too, so at least this test's report.
    assert!(
        histogram(&after, "count") >= histogram(&before, "count") + 1.0,
        "{after}"
    );
    assert!(histogram(&after, "sum") >= histogram(&before, "sum") + 700.0);
    assert!(after.contains("dts_ledger_tasks_reporting_after_stop"));

    let pool = &app.db.pool;
    let count = |bound_s| async move {
        let client = pool.get().await.unwrap();
        dts_ledger::metrics::refresh::tasks_reporting_after_stop(&client, bound_s)
            .await
            .unwrap()
    };
    // Reported right after its stop: in-flight bytes, not a task that keeps going.
    assert_eq!(count(600).await, 0);
    // The stop was 20 minutes ago (its stream moved back): the report came long after it.
    app.db
        .move_events_back("20 minutes", "stream_id = 'task-t'", "")
        .await;
    app.report("t", "r-3", 300).await;
    assert_eq!(count(600).await, 1);
    // With a bound longer than the gap, it is not counted.
    assert_eq!(count(3600).await, 0);
}

/// The runways of an overview's 50 packages in one statement, each with 10 tasks and 20 reports per
/// task over the last 3 days (10,000 traffic events): prints the median and slowest of 20 reads
/// (`cargo test --test api runways_of_50 -- --nocapture`); docs/performance.md, "The console".
#[tokio::test]
async fn runways_of_50_packages_are_read_in_one_statement() {
    const PACKAGES: usize = 50;
    const TASKS: usize = 10;
    const REPORTS: usize = 20;
    const RUNS: usize = 20;
    let app = spawn_app().await;
    for p in 0..PACKAGES {
        app.buy(&format!("big-{p:02}"), "alice", SKU_1TB).await;
        for t in 0..TASKS {
            app.create_task(&format!("t-{p:02}-{t}"), &format!("big-{p:02}"))
                .await;
        }
    }
    for r in 0..REPORTS {
        let reports: Vec<serde_json::Value> = (0..PACKAGES)
            .flat_map(|p| {
                (0..TASKS)
                    .map(move |t| report(&format!("t-{p:02}-{t}"), &format!("r-{r}"), 1 << 30))
            })
            .collect();
        app.traffic(serde_json::Value::Array(reports)).await;
    }
    age_ledger(&app, 3).await;
    let ids: Vec<InstanceId> = (0..PACKAGES).map(|p| id(&format!("big-{p:02}"))).collect();
    let client = app.db.pool.get().await.unwrap();
    let mut times_ms = Vec::new();
    for _ in 0..RUNS {
        let started = std::time::Instant::now();
        let runways = usage::runways(&client, &ids, Utc::now()).await.unwrap();
        times_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(runways.len(), PACKAGES);
    }
    times_ms.sort_by(f64::total_cmp);
    println!(
        "runways of {PACKAGES} packages ({} traffic events in their week): median {:.1} ms, slowest {:.1} ms of {RUNS}",
        PACKAGES * TASKS * REPORTS,
        times_ms[RUNS / 2],
        times_ms[RUNS - 1]
    );
}

/// The SQL functions finance reads a traffic event's fields with (docs/ledger.md) read both
/// versions alike, with version 2's absent defaults, and as the auditors' role; its query
/// adds up what each task drew.
#[tokio::test]
async fn traffic_fields_read_the_same_from_either_version_in_sql() {
    let app = spawn_app().await;
    app.buy("biz-f", "alice", SKU_1TB).await;
    app.create_task("t-f", "biz-f").await;
    app.create_task("t-g", "biz-f").await;
    app.report("t-f", "r-1", 700).await;
    app.report("t-f", "r-2", 300).await;
    app.report("t-g", "r-1", 50).await;
    let reader = app.db.client_as(Role::Reader).await;
    let fields = "SELECT traffic_task_id(p), traffic_report_id(p), traffic_bytes(p),
                         traffic_bytes_remaining(p), traffic_bytes_overage(p), traffic_action(p)
                    FROM (SELECT $1::text::json AS p) x";
    let read = |row: tokio_postgres::Row| {
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3),
            row.get::<_, i64>(4),
            row.get::<_, String>(5),
        )
    };
    let stop = (
        "t-1".to_owned(),
        "r-1".to_owned(),
        10,
        0,
        3,
        "stop".to_owned(),
    );
    for payload in [
        r#"{"action":"stop","bytes":10,"bytesOverage":3,"bytesRemaining":0,"instanceId":"biz-1","periodEnd":"2027-01-15T08:00:00Z","reason":"quota_exhausted","reportId":"r-1","taskId":"t-1"}"#,
        r#"{"a":"stop","b":10,"e":"2027-01-15T08:00:00Z","l":0,"o":3,"r":"r-1","t":"t-1","w":"quota_exhausted"}"#,
    ] {
        assert_eq!(
            read(reader.query_one(fields, &[&payload]).await.unwrap()),
            stop
        );
    }
    let plain = r#"{"b":10,"e":"2027-01-15T08:00:00Z","l":90,"r":"r-1","t":"t-1"}"#;
    assert_eq!(
        read(reader.query_one(fields, &[&plain]).await.unwrap()),
        (
            "t-1".to_owned(),
            "r-1".to_owned(),
            10,
            90,
            0,
            "continue".to_owned()
        )
    );
    let drawn = reader
        .query(
            "SELECT traffic_task_id(payload) AS task, sum(traffic_bytes(payload))::int8 AS bytes
               FROM events
              WHERE event_type = 'TrafficConsumed' AND recorded_at >= now() - interval '1 day'
              GROUP BY 1 ORDER BY 2 DESC",
            &[],
        )
        .await
        .unwrap();
    let drawn: Vec<(String, i64)> = drawn.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(drawn, [("t-f".to_owned(), 1_000), ("t-g".to_owned(), 50)]);
}
