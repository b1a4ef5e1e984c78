// Over 600 lines: the partitioned ledger's end-to-end tests, one subject in one file.
//! The partitioned ledger (schema/0019): one partition per finance month, each refusing change
//! itself; uniqueness of versions and keys across months; keys that expire only by their rule.

use crate::helpers::{report, spawn_app, TestApp, TestDb};
use chrono::{Duration, Utc};
use dts_ledger::database::{migrate, Role};
use dts_ledger::store::hash::HashVersion;
use dts_ledger::store::partitions::{self, month_of, month_start, next_month, partition_name};
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
    crate::helpers::append_events(&tx, events, Utc::now()).await?;
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
    let found = store::by_idempotency_keys(&tx, &["create/1:x"])
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
    // The events keep what their hashes cover (the payload, from which the key is derived).
    let (code, out, err) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Copies every table of `from` that `to` has, with `to`'s columns, as the superuser: a ledger
/// and its projections written by the service, into a database whose schema is older.
async fn copy_tables(from: &TestDb, to: &TestDb) {
    let (source, target) = (from.client().await, to.client().await);
    target
        .batch_execute("SET session_replication_role = replica; DELETE FROM ledger_head;")
        .await
        .unwrap();
    let tables = target
        .query(
            "SELECT c.relname::text, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'schema_migrations'
              GROUP BY c.relname",
            &[],
        )
        .await
        .unwrap();
    for row in tables {
        let (table, columns): (String, String) = (row.get(0), row.get(1));
        // COPY's text form keeps every value as stored (the json texts byte for byte).
        use futures_util::{SinkExt, TryStreamExt};
        let out = source
            .copy_out(&format!("COPY (SELECT {columns} FROM {table}) TO STDOUT"))
            .await
            .unwrap();
        let chunks: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
        let sink = target
            .copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))
            .await
            .unwrap();
        futures_util::pin_mut!(sink);
        for chunk in chunks {
            sink.send(chunk).await.unwrap();
        }
        sink.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_ledger_written_before_partitions_moves_to_them_and_still_verifies() {
    // A ledger written by the service, in a database whose schema stops at migration 18: its
    // rows as the binaries of then wrote them (hash version 3).
    let written = spawn_app().await;
    written.buy("biz-1", "pin-a", SKU_1TB).await;
    written.create_task("task-1", "biz-1").await;
    for n in 0..30 {
        written.report("task-1", &format!("r-{n}"), 100).await;
    }
    written.stop().await;
    crate::helpers::rewrite_as_older(&written.db, |_| HashVersion::V3).await;
    let old = TestDb::create_unmigrated().await;
    migrate::migrate_to(&mut old.client_as(Role::Owner).await, 18)
        .await
        .unwrap();
    copy_tables(&written.db, &old).await;
    let unpartitioned: String = old
        .client()
        .await
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unpartitioned, "r");

    // Today's migrations keep it as it is (with stream heads and keys), and the service appends.
    let old = Arc::new(old);
    migrate::migrate(&mut old.client_as(Role::Owner).await)
        .await
        .unwrap();
    let app =
        crate::helpers::spawn_app_on(old.clone(), old.pool.clone(), crate::helpers::test_config());
    assert_eq!(
        app.report("task-1", "r-0", 100).await["status"],
        "duplicate"
    );
    assert_eq!(
        app.report("task-1", "r-30", 100).await["status"],
        "accepted"
    );
    assert!(partitions::partitions(&old.client().await)
        .await
        .unwrap()
        .is_empty());

    // The move, while the service runs.
    let (code, out, err) = old.run_cli(&["migrate-partitions"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("events/s") && out.contains("waited on the lock"),
        "{out}"
    );
    let listed = partitions::partitions(&old.client().await).await.unwrap();
    let month = month_of(Utc::now());
    assert!(listed.iter().any(|p| p.month == month), "{listed:?}");
    let (code, out, err) = old.run_cli(&["migrate-partitions"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("partitioned already"), "{out}");

    // Verify and replay hold; the service appends to the partitions; a repeat stays a repeat.
    assert_eq!(
        app.report("task-1", "r-31", 100).await["status"],
        "accepted"
    );
    assert_eq!(
        app.report("task-1", "r-5", 100).await["status"],
        "duplicate"
    );
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 3_200);
    for command in [&["verify"][..], &["replay"][..]] {
        let (code, out, err) = old.run_cli(command);
        assert_eq!(code, 0, "{command:?}: {out}{err}");
    }
    let owner = old.client_as(Role::Owner).await;
    let name = partition_name(month.0, month.1);
    assert_eq!(
        refusal(&owner, &format!("TRUNCATE {name}"))
            .await
            .as_deref(),
        Some(LEDGER_REFUSED)
    );
    app.stop().await;
}

async fn sizes(client: &tokio_postgres::Client) -> std::collections::BTreeMap<String, i64> {
    partitions::storage(client)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (format!("{} {}", r.kind, r.name), r.bytes))
        .collect()
}

/// Sends `reports` traffic reports (report ids of 36 characters) in requests of 500, taking the
/// tasks in turn; each is accepted.
async fn send_reports(app: &TestApp, tasks: &[String], reports: usize) {
    for batch in 0..reports / 500 {
        let sent: Vec<serde_json::Value> = (0..500)
            .map(|n| {
                report(
                    &tasks[(batch * 500 + n) % tasks.len()],
                    &uuid::Uuid::new_v4().to_string(),
                    1_000 + batch as i64,
                )
            })
            .collect();
        let results = app.traffic(serde_json::Value::Array(sent)).await;
        assert!(results.iter().all(|r| r["status"] == "accepted"));
    }
}

/// Where a traffic event's bytes go: `cargo test --test api what_a_traffic_event -- --nocapture`
/// prints the bytes each relation gained per report over 10,000 reports, requests of 500 (task
/// ids of 16 characters, report ids of 36, 20 tasks on 10 packages: many streams, as in service),
/// the average size of each column of a traffic event as stored, and the two indexes of the
/// month once the owner has rebuilt them. The total must stay within 450 bytes.
#[tokio::test]
async fn what_a_traffic_event_costs_in_bytes() {
    let app = spawn_app().await;
    for p in 0..10 {
        app.buy(&format!("biz-{p}"), "pin-a", SKU_1TB).await;
    }
    let tasks: Vec<String> = (0..20).map(|n| format!("dtstask-{n:08}")).collect();
    for (n, task) in tasks.iter().enumerate() {
        app.create_task(task, &format!("biz-{}", n % 10)).await;
    }
    let superuser = app.db.client().await;
    superuser.batch_execute("CHECKPOINT").await.unwrap();
    let before = sizes(&superuser).await;
    let reports = 10_000;
    send_reports(&app, &tasks, reports).await;
    let after = sizes(&superuser).await;
    // What a relation gained per report, from `before` to `sizes`.
    let per_event = |sizes: &std::collections::BTreeMap<String, i64>, name: &str| {
        (sizes[name] - before.get(name).copied().unwrap_or(0)) as f64 / reports as f64
    };
    let mut total = 0.0;
    for name in after.keys() {
        let grown = per_event(&after, name);
        total += grown;
        println!("{name:<50} {grown:>8.1} bytes per traffic event");
    }
    println!("{:<50} {total:>8.1} bytes per traffic event", "total");
    // Where the heap row's bytes go, column by column (pg_column_size: as stored, compressed or
    // not).
    let columns = superuser
        .query(
            "SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = 'events'::regclass AND a.attnum > 0 ORDER BY a.attnum",
            &[],
        )
        .await
        .unwrap();
    for column in columns {
        let name: String = column.get(0);
        let average: f64 = superuser
            .query_one(
                &format!(
                    "SELECT coalesce(avg(pg_column_size({name})), 0)::float8 FROM events
                      WHERE event_type = 'TrafficConsumed'"
                ),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        println!(
            "{:<50} {average:>8.1} bytes per traffic event",
            format!("column {name}")
        );
    }
    let sample = superuser
        .query_one(
            "SELECT payload::text, metadata::text, idempotency_key, stream_id FROM events
              WHERE event_type = 'TrafficConsumed' ORDER BY position DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    for i in 0..4 {
        let text: Option<String> = sample.get(i);
        println!("{}", text.unwrap_or_default());
    }
    // A month no longer written to, its indexes rebuilt by the owner (the monthly routine): the
    // stream index, whose pages split after a stream's newest entry, is packed a little more; the
    // position index, appended at its end, was packed already.
    let owner = app.db.client_as(Role::Owner).await;
    let months = owner
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'events'::regclass AND pg_relation_size(c.oid) > 0",
            &[],
        )
        .await
        .unwrap();
    for month in &months {
        let name: String = month.get(0);
        owner
            .batch_execute(&format!("REINDEX TABLE CONCURRENTLY {name}"))
            .await
            .unwrap();
    }
    let rebuilt = sizes(&superuser).await;
    for name in ["index events_p*_stream_key", "index events_p*_position"] {
        println!(
            "{:<50} {:>8.1} bytes per traffic event",
            format!("{name}, rebuilt"),
            per_event(&rebuilt, name)
        );
    }
    // The stream key's index splits a stream's full page after its newest entry (migration
    // 26), so a rebuild packs it a little more, and never makes it larger.
    assert!(
        per_event(&rebuilt, "index events_p*_stream_key")
            <= per_event(&after, "index events_p*_stream_key"),
        "{after:?} {rebuilt:?}"
    );
    assert!(
        per_event(&rebuilt, "index events_p*_position")
            <= per_event(&after, "index events_p*_position") + 1.0
    );
    assert!(after.contains_key("heap events"), "{after:?}");
    // Traffic events of version 2 storing no prev_hash: 273.6 heap bytes each here (408.0 in
    // version 1 with it).
    assert!(per_event(&after, "heap events") < 290.0, "{after:?}");
    assert!(after.contains_key("index events_p*_position"), "{after:?}");
    assert!(total <= 450.0, "{total} bytes per traffic event: {after:?}");
    assert!(
        after.contains_key("index idempotency_keys_pkey"),
        "{after:?}"
    );
    assert!(total > 0.0);
}

/// The stream index where every stream's events lie far apart, as in a service with thousands of
/// packages: 400 packages with a task each, 20,000 reports in requests of 500 taking the tasks in
/// turn, so that a package's consecutive events are 400 rows apart, on different heap pages.
/// Beside the month's `(ledger_stream_key(stream_id), version)` index the owner builds the
/// `(stream_id, version)` index the months had before (migration 26), so both see the same
/// appends: `cargo test --test api the_stream_index_with_many -- --nocapture` prints both.
#[tokio::test]
async fn the_stream_index_with_many_streams_far_apart() {
    let app = spawn_app().await;
    let packages = 400;
    let tasks: Vec<String> = (0..packages).map(|n| format!("dtstask-{n:08}")).collect();
    for (n, task) in tasks.iter().enumerate() {
        app.buy(&format!("biz-{n}"), "pin-a", SKU_1TB).await;
        app.create_task(task, &format!("biz-{n}")).await;
    }
    let owner = app.db.client_as(Role::Owner).await;
    let month: String = owner
        .query_one(
            "SELECT 'events_p' || to_char((now() AT TIME ZONE 'UTC') + interval '8 hours', 'YYYY_MM')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    owner
        .batch_execute(&format!(
            "CREATE INDEX {month}_by_stream_text ON {month} (stream_id, version)"
        ))
        .await
        .unwrap();
    let superuser = app.db.client().await;
    superuser.batch_execute("CHECKPOINT").await.unwrap();
    let before = sizes(&superuser).await;
    let reports = 20_000;
    send_reports(&app, &tasks, reports).await;
    let after = sizes(&superuser).await;
    let per_event =
        |name: &str| (after[name] - before.get(name).copied().unwrap_or(0)) as f64 / reports as f64;
    let key = per_event("index events_p*_stream_key");
    let text = per_event("index events_p*_by_stream_text");
    println!(
        "{:<50} {key:>8.1} bytes per traffic event",
        "index events_p*_stream_key"
    );
    println!(
        "{:<50} {text:>8.1} bytes per traffic event",
        "index events_p*_by_stream_text"
    );
    let mut total = 0.0;
    for name in after.keys() {
        println!(
            "{name:<50} {:>8.1} bytes per traffic event",
            per_event(name)
        );
        // `stream_heads` holds one row per stream, whatever its events: what it grows by here is
        // the row versions each append's update leaves until vacuum removes them, more or less
        // of them as the machine is busy, not a cost of the events.
        if !name.ends_with("_by_stream_text") && !name.contains("stream_heads") {
            total += per_event(name);
        }
    }
    println!("{:<50} {total:>8.1} bytes per traffic event", "total");
    assert!(key < text, "{after:?}");
    assert!(total <= 450.0, "{total} bytes per traffic event: {after:?}");
    // A query naming the stream and its key reads through the key's index (PostgreSQL inlines
    // ledger_stream_key on both sides, so the index's expression matches the query's).
    owner
        .batch_execute(&format!(
            "DROP INDEX {month}_by_stream_text; ANALYZE events"
        ))
        .await
        .unwrap();
    let plan: Vec<String> = superuser
        .query(
            "EXPLAIN SELECT version FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
              ORDER BY version DESC LIMIT 1",
            &[&"package-biz-7"],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains(&format!("{month}_stream_key")), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
}

/// A month that held events when migration 26 ran keeps its `(stream_id, version)` index, the
/// months made ahead take the stream key's, and the service reads and appends across both: a
/// package's usage, a task's history, the ledger's pages with their previous hashes, `verify`.
#[tokio::test]
async fn a_month_written_before_the_stream_key_keeps_its_index_and_reads_alike() {
    let db = Arc::new(TestDb::create_unmigrated().await);
    migrate::migrate_to(&mut db.client_as(Role::Owner).await, 25)
        .await
        .unwrap();
    let app =
        crate::helpers::spawn_app_on(db.clone(), db.pool.clone(), crate::helpers::test_config());
    app.buy("biz-1", "pin-a", SKU_1TB).await;
    app.create_task("task-1", "biz-1").await;
    for n in 0..5 {
        app.report("task-1", &format!("r-{n}"), 100).await;
    }
    migrate::migrate(&mut db.client_as(Role::Owner).await)
        .await
        .unwrap();
    let reader = db.client_as(Role::Reader).await;
    let indexes: Vec<(String, String)> = reader
        .query(
            "SELECT c.relname::text, i.relname::text FROM pg_inherits h
               JOIN pg_class c ON c.oid = h.inhrelid
               JOIN pg_index x ON x.indrelid = c.oid
               JOIN pg_class i ON i.oid = x.indexrelid
              WHERE h.inhparent = 'events'::regclass
                AND (i.relname LIKE '%\\_stream\\_version' OR i.relname LIKE '%\\_stream\\_key')
              ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(indexes.len(), 4, "{indexes:?}");
    assert_eq!(indexes[0].1, format!("{}_stream_version", indexes[0].0));
    for (month, index) in &indexes[1..] {
        assert_eq!(index, &format!("{month}_stream_key"));
    }
    // This month, read through its old index, then the next, through the key's.
    app.report("task-1", "r-5", 100).await;
    let usage: serde_json::Value = app
        .get_as("/v1/orders/biz-1/usage?days=1", crate::helpers::ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["bytes"], 600, "{usage}");
    assert_eq!(usage["tasks"][0]["bytes"], 600, "{usage}");
    let next = turn_the_month(&db).await;
    app.report("task-1", "r-6", 100).await;
    assert_eq!(
        app.report("task-1", "r-2", 100).await["status"],
        "duplicate"
    );
    assert_eq!(app.order("biz-1").await["bytesConsumed"], 700);
    let events = app.events().await;
    let traffic: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "TrafficConsumed")
        .collect();
    assert_eq!(traffic.len(), 7);
    for pair in traffic.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"]);
    }
    let in_next: i64 = reader
        .query_one(
            &format!(
                "SELECT count(*) FROM {} WHERE ledger_stream_key(stream_id) = \
                 ledger_stream_key('package-biz-1') AND stream_id = 'package-biz-1'",
                partition_name(next.0, next.1)
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_next, 1);
    let (code, out, err) = db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    app.stop().await;
}
