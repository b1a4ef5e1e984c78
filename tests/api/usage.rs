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
