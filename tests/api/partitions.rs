//! The partitioned ledger (schema/0019): one partition per finance month, each refusing change
//! itself; uniqueness of versions and keys across months; keys that expire only by their rule.

use crate::helpers::{report, spawn_app, TestApp, TestDb};
use chrono::{Duration, Utc};
use dts_ledger::database::Role;
use dts_ledger::ledger::partitions::{self, month_of, month_start, next_month, partition_name};
use dts_ledger::store::{self, NewEvent, StoreError};
use std::sync::Arc;

const SKU_1TB: &str = "FW_GOODS-500232-1";
/// The SQLSTATE the ledger's triggers refuse a change with.
const LEDGER_REFUSED: &str = "LG001";
const INSUFFICIENT_PRIVILEGE: &str = "42501";

async fn refusal(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    match client.batch_execute(sql).await {
        Ok(()) => None,
        Err(error) => Some(
            error
                .code()
                .map_or_else(|| error.to_string(), |c| c.code().to_owned()),
        ),
    }
}

/// Moves the ledger head's time to the start of the month after this one, as the clock does at
/// the turn of the month: every later append is stamped in that month.
async fn turn_the_month(db: &TestDb) -> (i32, u32) {
    let next = next_month(month_of(Utc::now()));
    db.client()
        .await
        .execute(
            "UPDATE ledger_head SET recorded_at = $1",
            &[&month_start(next.0, next.1).unwrap()],
        )
        .await
        .unwrap();
    next
}

async fn traffic_events(app: &TestApp) -> i64 {
    app.db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'TrafficConsumed'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_new_ledger_has_a_partition_per_finance_month_with_its_positions() {
    let app = spawn_app().await;
    let reader = app.db.client_as(Role::Reader).await;
    let listed = partitions::partitions(&reader).await.unwrap();
    let mut month = month_of(Utc::now());
    assert_eq!(listed.len(), 4, "this month and the next three: {listed:?}");
    for partition in &listed {
        assert_eq!(partition.month, month);
        assert_eq!(partition.name, partition_name(month.0, month.1));
        assert_eq!(partition.starts_at, month_start(month.0, month.1).unwrap());
        assert_eq!(partition.first_position, 1);
        assert_eq!(partition.end_position, None);
        month = next_month(month);
    }

    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", 100).await;
    let before_turn: i64 = app
        .db
        .client()
        .await
        .query_one("SELECT position FROM ledger_head", &[])
        .await
        .unwrap()
        .get(0);
    let next = turn_the_month(&app.db).await;
    app.report("task-1", "r-2", 100).await;

    let listed = partitions::partitions(&reader).await.unwrap();
    assert_eq!(listed[0].first_position, 1);
    assert_eq!(listed[0].end_position, Some(before_turn + 1), "closed");
    assert_eq!(listed[0].events, before_turn);
    assert!(listed[0].is_closed());
    assert_eq!(listed[1].month, next);
    assert_eq!(listed[1].first_position, before_turn + 1);
    assert_eq!(listed[1].end_position, None, "the month appends go to");
    assert_eq!(listed[1].events, 1);
    // The events are where their time says, and the month's rows are read from its partition.
    let in_next: i64 = reader
        .query_one(
            &format!("SELECT count(*) FROM {}", partition_name(next.0, next.1)),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_next, 1);
    let (code, out, err) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn every_partition_refuses_update_delete_and_truncate_itself() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    let month = month_of(Utc::now());
    let partition = partition_name(month.0, month.1);
    let owner = app.db.client_as(Role::Owner).await;
    let service = app.db.client_as(Role::Service).await;
    for sql in [
        format!("UPDATE {partition} SET payload = '{{}}'"),
        format!("DELETE FROM {partition}"),
        format!("TRUNCATE {partition}"),
        "TRUNCATE events".to_owned(),
    ] {
        assert_eq!(
            refusal(&owner, &sql).await.as_deref(),
            Some(LEDGER_REFUSED),
            "the owner's {sql}"
        );
        assert_eq!(
            refusal(&service, &sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "the service's {sql}"
        );
    }
    // Detached, a partition loses the row triggers cloned from `events`; its own remain.
    let superuser = app.db.client().await;
    superuser
        .batch_execute(&format!("ALTER TABLE events DETACH PARTITION {partition}"))
        .await
        .unwrap();
    for sql in [
        format!("UPDATE {partition} SET payload = '{{}}'"),
        format!("DELETE FROM {partition}"),
        format!("TRUNCATE {partition}"),
    ] {
        assert_eq!(
            refusal(&owner, &sql).await.as_deref(),
            Some(LEDGER_REFUSED),
            "detached, the owner's {sql}"
        );
    }
    let kept: i64 = superuser
        .query_one(&format!("SELECT count(*) FROM {partition}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(kept > 0);
}

#[tokio::test]
async fn an_append_makes_the_partition_its_month_lacks() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    // Months past those made ahead: the head's time jumps five months on (a clock set wrong,
    // a service stopped for months).
    let mut far = month_of(Utc::now());
    for _ in 0..5 {
        far = next_month(far);
    }
    let superuser = app.db.client().await;
    superuser
        .execute(
            "UPDATE ledger_head SET recorded_at = $1",
            &[&month_start(far.0, far.1).unwrap()],
        )
        .await
        .unwrap();
    let result = app.report("task-1", "r-1", 100).await;
    assert_eq!(result["status"], "accepted", "{result}");
    let listed = partitions::partitions(&superuser).await.unwrap();
    let made: Vec<(i32, u32)> = listed.iter().map(|p| p.month).collect();
    assert!(made.contains(&far), "{made:?}");
    assert!(
        made.contains(&next_month(far)),
        "and the month after: {made:?}"
    );
    // The partition it made refuses change and carries the roles' privileges.
    let owner = app.db.client_as(Role::Owner).await;
    let name = partition_name(far.0, far.1);
    assert_eq!(
        refusal(&owner, &format!("TRUNCATE {name}"))
            .await
            .as_deref(),
        Some(LEDGER_REFUSED)
    );
    let reader = app.db.client_as(Role::Reader).await;
    let read: i64 = reader
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read, 1);
}

#[tokio::test]
async fn a_repeated_report_in_another_month_is_not_charged_again() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let first = app.report("task-1", "r-1", 1_000).await;
    assert_eq!(first["status"], "accepted");
    turn_the_month(&app.db).await;
    // The same report after the month turned: its key is in last month's partition.
    let again = app
        .traffic(serde_json::json!([
            report("task-1", "r-1", 1_000),
            report("task-1", "r-2", 5)
        ]))
        .await;
    assert_eq!(again[0]["status"], "duplicate", "{again:?}");
    assert_eq!(again[1]["status"], "accepted");
    assert_eq!(traffic_events(&app).await, 2);
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 1_005);
}

/// Moves the head's time on to the month after `month`.
async fn next_month_again(db: &TestDb, month: (i32, u32)) {
    let after = next_month(month);
    db.client()
        .await
        .execute(
            "UPDATE ledger_head SET recorded_at = $1",
            &[&month_start(after.0, after.1).unwrap()],
        )
        .await
        .unwrap();
}

fn event(stream_id: &str, n: u32) -> NewEvent {
    NewEvent {
        stream_id: stream_id.to_owned(),
        event_type: "TaskCreated".to_owned(),
        event_version: 1,
        payload: serde_json::json!({ "n": n }),
        metadata: Arc::new(serde_json::json!({ "source": "test" })),
        idempotency_key: None,
    }
}

/// Appends `events` in a transaction of its own, through the store.
async fn append(db: &TestDb, events: Vec<NewEvent>) -> Result<(), StoreError> {
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    store::append_new(&tx, events, Utc::now()).await?;
    tx.commit().await.unwrap();
    Ok(())
}

#[tokio::test]
async fn one_version_per_stream_across_months() {
    let db = TestDb::create().await;
    append(&db, vec![event("task-old", 1)]).await.unwrap();

    // Two appends read the same stream heads; the first commits this month, the second would
    // land in the next month's partition, where no index knows this month's versions.
    let mut slow = db.pool.get().await.unwrap();
    let slow_tx = slow.transaction().await.unwrap();
    let prepared = store::prepare(
        &slow_tx,
        vec![event("task-old", 2), event("task-new", 1)],
        Utc::now(),
    )
    .await
    .unwrap();
    append(&db, vec![event("task-old", 3)]).await.unwrap();
    let next = turn_the_month(&db).await;
    let lost = store::write(&slow_tx, prepared).await.unwrap_err();
    assert!(
        matches!(lost, StoreError::ConcurrentAppend),
        "an existing stream: {lost:?}"
    );
    drop(slow_tx);

    let slow_tx = slow.transaction().await.unwrap();
    let prepared = store::prepare(&slow_tx, vec![event("task-new", 1)], Utc::now())
        .await
        .unwrap();
    append(&db, vec![event("task-new", 2)]).await.unwrap();
    next_month_again(&db, next).await;
    let lost = store::write(&slow_tx, prepared).await.unwrap_err();
    assert!(
        matches!(lost, StoreError::ConcurrentAppend),
        "a new stream: {lost:?}"
    );
    drop(slow_tx);

    let versions: Vec<(String, i64)> = db
        .client()
        .await
        .query(
            "SELECT stream_id, version FROM events ORDER BY stream_id, version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        versions,
        [
            ("task-new".to_owned(), 1),
            ("task-old".to_owned(), 1),
            ("task-old".to_owned(), 2)
        ]
    );
}

#[tokio::test]
async fn one_answer_per_key_across_months() {
    let db = TestDb::create().await;
    let keyed = |n| event("package-x", n).with_idempotency_key("create/1:x".to_owned());
    append(&db, vec![keyed(1)]).await.unwrap();
    turn_the_month(&db).await;
    let refused = append(&db, vec![keyed(2)]).await.unwrap_err();
    assert!(matches!(refused, StoreError::DuplicateKey), "{refused:?}");
    // Looked up, the key names the first answer, in last month's partition.
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let found = store::find_by_idempotency_keys(&tx, &["create/1:x"])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].position, 1);
}

#[tokio::test]
async fn a_report_older_than_the_key_retention_is_refused_not_charged() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    let at = |days: i64| (Utc::now() - Duration::days(days)).to_rfc3339();
    let results = app
        .traffic(serde_json::json!([
            {"taskId": "task-1", "reportId": "old", "bytes": 10, "periodEnd": at(46)},
            {"taskId": "task-1", "reportId": "recent", "bytes": 10, "periodEnd": at(44)},
        ]))
        .await;
    assert_eq!(results[0]["status"], "rejected");
    assert_eq!(results[0]["error"]["code"], "report_too_late");
    assert_eq!(results[1]["status"], "accepted");
    assert_eq!(traffic_events(&app).await, 1);
}

#[tokio::test]
async fn traffic_keys_expire_by_their_rule_and_marketplace_keys_never() {
    let app = spawn_app().await;
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    app.report("task-1", "r-1", 10).await;
    app.report("task-1", "r-2", 10).await;
    let keys = |client: tokio_postgres::Client| async move {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE e.event_type = 'TrafficConsumed'),
                        count(*) FILTER (WHERE e.event_type <> 'TrafficConsumed')
                   FROM idempotency_keys k JOIN events e USING (position)",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, i64>(0), row.get::<_, i64>(1))
    };
    assert_eq!(keys(app.db.client().await).await, (2, 1));
    let mut service = app.db.pool.get().await.unwrap();
    // With 45 days of retention nothing recorded today expires.
    let removed = partitions::expire_traffic_keys(&mut service, Duration::days(45))
        .await
        .unwrap();
    assert_eq!(removed, 0);
    assert_eq!(keys(app.db.client().await).await, (2, 1));
    // A window that ended an hour from now (every event is older than it and its slack).
    let ended = -(partitions::EXPIRY_SLACK + Duration::hours(1));
    let removed = partitions::expire_traffic_keys(&mut service, ended)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        keys(app.db.client().await).await,
        (0, 1),
        "the order's key stays"
    );
    // The events keep their keys' text, which their hashes cover.
    let (code, out, err) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}
