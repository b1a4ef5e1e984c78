//! Provable history: time runs forward along the ledger, a ledger-wide chain and a hash that
//! covers the idempotency key, checked by `verify` against an insider with the superuser's rights.

use crate::helpers::{spawn_app, TestApp};
use chrono::{DateTime, Duration, Utc};
use dts_ledger::store::hash::{
    canonical, event_hash, ledger_hash, Hash, HashVersion, Hashed, GENESIS,
};
use dts_ledger::store::{self, RecordedEvent};
use std::collections::HashMap;

const SKU_1TB: &str = "FW_GOODS-500232-1";

/// One package, two tasks, a few reports each.
async fn small_ledger(app: &TestApp) {
    app.buy("biz-p", "pin-p", SKU_1TB).await;
    for t in 0..2 {
        app.create_task(&format!("task-{t}"), "biz-p").await;
    }
    for round in 0..3 {
        for t in 0..2 {
            app.report(
                &format!("task-{t}"),
                &format!("r-{round}"),
                5_000 + round * 10,
            )
            .await;
        }
    }
}

async fn all_events(app: &TestApp) -> Vec<RecordedEvent> {
    let client = app.db.pool.get().await.unwrap();
    store::read_all_after(&client, 0, 10_000).await.unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    app.db
        .client()
        .await
        .batch_execute(statement)
        .await
        .unwrap();
}

/// What an insider recomputes after changing rows behind the triggers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recompute {
    /// Only the per-stream hash of the changed rows.
    StreamHashes,
    /// Both chains of every row and the ledger head: a complete, consistent rewrite.
    Everything,
}

/// Recomputes the stored hashes of the ledger with the published encodings, as an insider with
/// the superuser's rights would after changing rows; returns the new ledger hash at the head.
async fn rehash(app: &TestApp, changed: &[i64], how: Recompute) -> Hash {
    let client = app.db.client().await;
    client
        .batch_execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .await
        .unwrap();
    let mut heads: HashMap<String, Hash> = HashMap::new();
    let mut chain = GENESIS;
    for event in all_events(app).await {
        let prev_hash = heads.get(&event.stream_id).copied().unwrap_or(GENESIS);
        let version = HashVersion::from_column(event.hash_version).unwrap();
        let hash = event_hash(
            version,
            &prev_hash,
            &Hashed {
                position: event.position,
                stream_id: &event.stream_id,
                version: event.version,
                event_type: &event.event_type,
                event_version: event.event_version,
                recorded_at: event.recorded_at,
                payload: &canonical(&event.payload),
                metadata: &canonical(&event.metadata),
                idempotency_key: event.idempotency_key.as_deref(),
            },
        );
        chain = ledger_hash(&chain, &hash);
        heads.insert(event.stream_id.clone(), hash);
        let rewrite = match how {
            Recompute::StreamHashes => changed.contains(&event.position),
            Recompute::Everything => true,
        };
        if rewrite {
            let stored_chain = match (how, event.ledger_hash.is_some()) {
                (Recompute::Everything, true) => Some(chain.to_vec()),
                _ => event.ledger_hash.clone(),
            };
            client
                .execute(
                    "UPDATE events SET prev_hash = $2, hash = $3, ledger_hash = $4
                      WHERE position = $1",
                    &[
                        &event.position,
                        &prev_hash.as_slice(),
                        &hash.as_slice(),
                        &stored_chain,
                    ],
                )
                .await
                .unwrap();
        }
    }
    if how == Recompute::Everything {
        client
            .execute(
                "UPDATE ledger_head SET ledger_hash = $1",
                &[&chain.as_slice()],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .await
        .unwrap();
    chain
}

#[tokio::test]
async fn time_never_goes_backwards_along_the_ledger_even_when_a_clock_does() {
    let app = spawn_app().await;
    app.buy("biz-a", "pin-a", SKU_1TB).await;
    // Another process whose clock runs an hour ahead appended last: ours is behind it.
    let ahead: DateTime<Utc> = store::truncate_to_micros(Utc::now() + Duration::hours(1));
    app.db
        .client()
        .await
        .execute("UPDATE ledger_head SET recorded_at = $1", &[&ahead])
        .await
        .unwrap();
    app.create_task("task-a", "biz-a").await;
    app.report("task-a", "r-1", 1_000).await;

    let events = all_events(&app).await;
    assert_eq!(events.len(), 3);
    for pair in events.windows(2) {
        assert!(
            pair[1].recorded_at >= pair[0].recorded_at,
            "position {} goes back in time",
            pair[1].position
        );
    }
    assert_eq!(events[1].recorded_at, ahead, "stamped with the later time");
    // The rows written with the clock's time were folded again with the stamped one.
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn verify_names_an_event_whose_time_goes_backwards() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    let last = all_events(&app).await.last().unwrap().position;
    sql(
        &app,
        &format!(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             UPDATE events SET recorded_at = (SELECT recorded_at - interval '1 second'
                                                FROM events WHERE position = {last} - 1)
              WHERE position = {last};"
        ),
    )
    .await;
    rehash(&app, &[last], Recompute::Everything).await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("time goes backwards at position {last}")),
        "{out}"
    );
}

/// The last `TrafficConsumed` of the package's stream, with its task.
async fn last_traffic_of_package(app: &TestApp) -> RecordedEvent {
    all_events(app)
        .await
        .into_iter()
        .rfind(|e| e.event_type == "TrafficConsumed" && e.stream_id == "package-biz-p")
        .unwrap()
}

/// What the insider of the issue does: 1,000 bytes fewer on the last report of the package's
/// stream, its per-stream hash recomputed with the published encoding, the projections adjusted
/// to match, so that replay passes.
async fn shave_last_report(app: &TestApp) -> i64 {
    let event = last_traffic_of_package(app).await;
    let task = event.payload["taskId"].as_str().unwrap().to_owned();
    sql(
        app,
        &format!(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             UPDATE events SET payload = payload
                    || jsonb_build_object('bytes', (payload->>'bytes')::bigint - 1000,
                                          'bytesRemaining', (payload->>'bytesRemaining')::bigint + 1000)
              WHERE position = {position};
             UPDATE packages SET bytes_consumed = bytes_consumed - 1000,
                                 bytes_remaining = bytes_remaining + 1000
              WHERE instance_id = 'biz-p';
             UPDATE tasks SET bytes_consumed = bytes_consumed - 1000 WHERE task_id = '{task}';",
            position = event.position
        ),
    )
    .await;
    rehash(app, &[event.position], Recompute::StreamHashes).await;
    event.position
}

#[tokio::test]
async fn a_shaved_report_with_its_stream_hash_recomputed_breaks_the_ledger_wide_chain() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    assert_eq!(app.db.run_cli(&["verify"]).0, 0);
    let position = shave_last_report(&app).await;
    let (code, out, err) = app.db.run_cli(&["replay"]);
    assert_eq!(code, 0, "the projections were adjusted: {out}{err}");
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {position}")),
        "{out}"
    );
    assert!(out.contains("ledger_hash"), "{out}");
}

#[tokio::test]
async fn a_nulled_idempotency_key_is_detected() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    let keyed = all_events(&app)
        .await
        .into_iter()
        .find(|e| e.idempotency_key.is_some())
        .unwrap();
    sql(
        &app,
        &format!(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             UPDATE events SET idempotency_key = NULL WHERE position = {};",
            keyed.position
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {}", keyed.position)),
        "{out}"
    );
}

#[tokio::test]
async fn a_ledger_of_version_1_rows_followed_by_version_2_rows_verifies_end_to_end() {
    let app = spawn_app().await;
    small_ledger(&app).await;
    // Rewrite the ledger as a binary before the second encoding wrote it: version 1 hashes, no
    // stored ledger hash; the head keeps the chain over them (as the migration computed it).
    let client = app.db.client().await;
    client
        .batch_execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        .await
        .unwrap();
    let mut heads: HashMap<String, Hash> = HashMap::new();
    let mut chain = GENESIS;
    for event in all_events(&app).await {
        let prev_hash = heads.get(&event.stream_id).copied().unwrap_or(GENESIS);
        let hash = event_hash(
            HashVersion::V1,
            &prev_hash,
            &Hashed {
                position: event.position,
                stream_id: &event.stream_id,
                version: event.version,
                event_type: &event.event_type,
                event_version: event.event_version,
                recorded_at: event.recorded_at,
                payload: &canonical(&event.payload),
                metadata: &canonical(&event.metadata),
                idempotency_key: event.idempotency_key.as_deref(),
            },
        );
        chain = ledger_hash(&chain, &hash);
        heads.insert(event.stream_id.clone(), hash);
        client
            .execute(
                "UPDATE events SET prev_hash = $2, hash = $3, hash_version = 1, ledger_hash = NULL
                  WHERE position = $1",
                &[&event.position, &prev_hash.as_slice(), &hash.as_slice()],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "UPDATE ledger_head SET ledger_hash = $1",
            &[&chain.as_slice()],
        )
        .await
        .unwrap();
    client
        .batch_execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
        .await
        .unwrap();
    let old = all_events(&app).await.len();

    // The service appends with version 2, chained onto the version 1 rows.
    app.report("task-0", "r-after", 700).await;
    let events = all_events(&app).await;
    assert!(events.len() > old);
    assert!(events[..old].iter().all(|e| e.hash_version == 1));
    assert!(events[old..].iter().all(|e| e.hash_version == 2));
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 0, "{out}");

    // A version 2 row passed off as version 1 (to escape the key's coverage) is refused.
    let last = events.last().unwrap().position;
    sql(
        &app,
        &format!(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             UPDATE events SET hash_version = 1 WHERE position = {last};"
        ),
    )
    .await;
    let (code, out, _) = app.db.run_cli(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("altered at position {last}")),
        "{out}"
    );
}
