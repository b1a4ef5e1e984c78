//! The event store against a real PostgreSQL: immutability, stream versions, idempotency, the
//! hash chain, concurrent appenders and ordered readers.

use crate::helpers::{append_events, TestDb};
use chrono::Utc;
use dts_ledger::audit::verify::{verify, ProblemKind, VerifyError};
use dts_ledger::store::{self, Appended, NewEvent, StoreError};
use serde_json::json;

fn probe(stream: &str, n: i64) -> NewEvent {
    NewEvent {
        stream_id: stream.to_owned(),
        event_type: "Probe".to_owned(),
        event_version: 1,
        payload: json!({"n": n, "text": "流量 ✓", "nested": {"b": 1, "a": [1, 2]}}),
        metadata: std::sync::Arc::new(
            json!({"requestId": "r", "source": "test", "actor": "tester"}),
        ),
        idempotency_key: None,
    }
}

async fn append(db: &TestDb, events: Vec<NewEvent>) -> Result<Appended, StoreError> {
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let appended = append_events(&tx, events, Utc::now()).await?;
    tx.commit().await.unwrap();
    Ok(appended)
}

async fn verify_db(db: &TestDb) -> Result<dts_ledger::audit::verify::Summary, VerifyError> {
    verify(&mut db.client().await, 0, |_| {}).await
}

#[tokio::test]
async fn appended_events_form_a_versioned_hash_chain() {
    let db = TestDb::create().await;
    let Appended {
        first_position,
        last_position,
        ..
    } = append(&db, vec![probe("s-1", 1), probe("s-2", 1), probe("s-1", 2)])
        .await
        .unwrap();
    assert_eq!((first_position, last_position), (1, 3));
    append(&db, vec![probe("s-1", 3)]).await.unwrap();
    let client = db.pool.get().await.unwrap();
    let stream = store::read_stream(&client, "s-1").await.unwrap();
    assert_eq!(
        stream.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        stream.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    // Rows store no previous hash (migration 25); the reader derives it along the stream.
    assert_eq!(stream[0].prev_hash, Some(vec![0; 32]));
    assert_eq!(stream[1].prev_hash.as_ref(), Some(&stream[0].hash));
    assert_eq!(stream[2].prev_hash.as_ref(), Some(&stream[1].hash));
    let stored: i64 = client
        .query_one("SELECT count(prev_hash) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    assert_eq!(stream[2].payload["text"], "流量 ✓");
    assert_eq!(store::head(&client).await.unwrap().position, 4);
    let summary = verify_db(&db).await.unwrap();
    assert_eq!(
        (summary.events, summary.streams, summary.last_position),
        (4, 2, 4)
    );
}

#[tokio::test]
async fn an_idempotency_key_finds_its_event_and_is_refused_a_second_time() {
    let db = TestDb::create().await;
    append(
        &db,
        vec![
            probe("s", 1).with_idempotency_key("order:1".into()),
            probe("s", 2),
        ],
    )
    .await
    .unwrap();
    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    // What a command looks up, under its locks, before it decides anything.
    let found = store::by_idempotency_keys(&tx, &["order:1", "order:2"])
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|event| event.position).collect::<Vec<_>>(),
        [1]
    );
    drop(tx);
    // Appended again all the same (a lookup raced), the key is refused and nothing is written.
    let again = append(
        &db,
        vec![probe("s", 9).with_idempotency_key("order:1".into())],
    )
    .await;
    assert!(matches!(again, Err(StoreError::DuplicateKey)), "{again:?}");
    assert_eq!(store::head(&client).await.unwrap().position, 2);
}

#[tokio::test]
async fn concurrent_appends_with_one_idempotency_key_write_once() {
    let db = TestDb::create().await;
    let attempts = (0..8).map(|i| {
        let pool = db.pool.clone();
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let event = probe(&format!("s-{i}"), 1).with_idempotency_key("same".into());
            let appended = append_events(&tx, vec![event], Utc::now()).await;
            if appended.is_ok() {
                tx.commit().await.unwrap();
            }
            appended
        }
    });
    let results = futures::future::join_all(attempts).await;
    let appended = results.iter().filter(|r| r.is_ok()).count();
    // The losers lose the race on the unique index, whichever order they commit in.
    assert_eq!(appended, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(StoreError::DuplicateKey))));
    verify_db(&db).await.unwrap();
}

#[tokio::test]
async fn the_database_refuses_to_change_or_remove_events() {
    let db = TestDb::create().await;
    append(&db, vec![probe("s", 1)]).await.unwrap();
    let client = db.client().await;
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE ledger_head SET position = 0",
        "DELETE FROM ledger_head",
    ] {
        let error = client.batch_execute(statement).await.unwrap_err();
        let message = error.as_db_error().map(|e| e.message()).unwrap_or_default();
        assert_eq!(
            error.code().map(|c| c.code()),
            Some("LG001"),
            "{statement}: {message}"
        );
        assert!(
            message.contains("refused") || message.contains("forward"),
            "{message}"
        );
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

#[tokio::test]
async fn verification_names_a_row_altered_behind_the_triggers() {
    let db = TestDb::create().await;
    for n in 1..=3 {
        append(&db, vec![probe("s", n), probe("t", n)])
            .await
            .unwrap();
    }
    verify_db(&db).await.unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE events SET payload = jsonb_set(payload::jsonb, '{n}', '99')::json WHERE position = 3;
             SET session_replication_role = origin;",
        )
        .await
        .unwrap();
    match verify_db(&db).await {
        Err(VerifyError::Broken(problem)) => {
            assert_eq!(problem.kind, ProblemKind::Altered);
            assert_eq!(
                (
                    problem.position,
                    problem.stream_id.as_str(),
                    problem.version
                ),
                (3, "s", 2)
            );
        }
        other => panic!("expected the alteration to be found, got {other:?}"),
    }
}

/// Appends `count` events to `stream`, one per transaction, retrying lost races.
async fn append_one_by_one(db_pool: deadpool_postgres::Pool, stream: String, count: i64) -> u32 {
    let mut retries = 0;
    for n in 0..count {
        loop {
            let mut client = db_pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            match append_events(&tx, vec![probe(&stream, n)], Utc::now()).await {
                Ok(_) => {
                    tx.commit().await.unwrap();
                    break;
                }
                Err(e) if e.is_retryable() => retries += 1,
                Err(e) => panic!("append failed: {e}"),
            }
        }
    }
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders_to_one_stream_leave_no_duplicate_or_missing_version() {
    let db = TestDb::create().await;
    let writers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(append_one_by_one(db.pool.clone(), "shared".into(), 25)))
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let client = db.pool.get().await.unwrap();
    let versions: Vec<i64> = store::read_stream(&client, "shared")
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=100).collect::<Vec<_>>());
    let summary = verify_db(&db).await.unwrap();
    assert_eq!(summary.events, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_following_positions_sees_every_event_once_and_in_order() {
    let db = TestDb::create().await;
    let total = 4 * 40;
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(append_one_by_one(db.pool.clone(), format!("w-{w}"), 40)))
        .collect();
    let pool = db.pool.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut after = 0;
        while seen.len() < total {
            let client = pool.get().await.unwrap();
            let batch = store::read_all_after(&client, after, 7).await.unwrap();
            for event in batch {
                seen.push(event.position);
                after = event.position;
            }
        }
        seen
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=total as i64).collect::<Vec<_>>());
}
