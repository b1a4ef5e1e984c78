//! Appending: expected versions, the hash chain, gapless positions, idempotency keys.

use super::hash::{Hash, Hashed, Hasher, GENESIS};
use super::{
    truncate_to_micros, AppendOutcome, Appended, ExpectedVersion, NewEvent, RecordedEvent,
    StoreError,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

/// Appends `events` in the caller's transaction unless one of their idempotency keys was used
/// before, in which case nothing is written and the earlier positions are returned.
///
/// The caller commits. Until then the events are invisible and `ledger_head` stays locked, which
/// is what keeps positions gapless and commit-ordered: take locks and do other work *before*
/// appending, and commit right after.
pub async fn append(
    tx: &Transaction<'_>,
    events: Vec<NewEvent>,
    expected: &[(String, ExpectedVersion)],
    recorded_at: DateTime<Utc>,
) -> Result<AppendOutcome, StoreError> {
    let keys: Vec<&str> = events
        .iter()
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect();
    if !keys.is_empty() {
        let found = find_by_idempotency_keys(tx, &keys).await?;
        if !found.is_empty() {
            let mut positions: Vec<i64> = found.iter().map(|event| event.position).collect();
            positions.sort_unstable();
            return Ok(AppendOutcome::Duplicate { positions });
        }
    }
    match append_new(tx, events, expected, recorded_at).await {
        Ok(appended) => Ok(AppendOutcome::Appended(appended)),
        Err(error) => Err(error),
    }
}

/// The events carrying any of `keys`.
pub async fn find_by_idempotency_keys(
    tx: &Transaction<'_>,
    keys: &[&str],
) -> Result<Vec<RecordedEvent>, StoreError> {
    super::read::by_idempotency_keys(tx, keys).await
}

/// Appends without looking up idempotency keys first: for callers that looked them up under their
/// own locks. A key used concurrently still fails the append ([`StoreError::DuplicateKey`]) thanks
/// to the unique index.
pub async fn append_new(
    tx: &Transaction<'_>,
    events: Vec<NewEvent>,
    expected: &[(String, ExpectedVersion)],
    recorded_at: DateTime<Utc>,
) -> Result<Appended, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Empty);
    }
    let recorded_at = truncate_to_micros(recorded_at);

    // Stream heads are read before the ledger head is locked, to keep the serialised section
    // short. A concurrent writer to the same stream is caught by UNIQUE (stream_id, version).
    let mut streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    streams.extend(expected.iter().map(|(s, _)| s.as_str()));
    streams.sort_unstable();
    streams.dedup();
    let mut heads = stream_heads(tx, &streams).await?;
    for (stream_id, expectation) in expected {
        let actual = heads
            .get(stream_id.as_str())
            .map_or(0, |(version, _)| *version);
        let ok = match expectation {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(version) => actual == *version,
        };
        if !ok {
            return Err(StoreError::WrongExpectedVersion {
                stream_id: stream_id.clone(),
                expected: *expectation,
                actual,
            });
        }
    }

    let count = events.len() as i64;
    let take_positions = tx
        .prepare_cached("UPDATE ledger_head SET position = position + $1 RETURNING position")
        .await?;
    let last_position: i64 = tx.query_one(&take_positions, &[&count]).await?.get(0);
    let first_position = last_position - count + 1;

    let mut hasher = Hasher::default();
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in events.into_iter().enumerate() {
        let head = heads.entry(event.stream_id.clone()).or_insert((0, GENESIS));
        let position = first_position + offset as i64;
        let version = head.0 + 1;
        let prev_hash = head.1;
        let hash = hasher.hash(
            &prev_hash,
            &Hashed {
                position,
                stream_id: &event.stream_id,
                version,
                event_type: &event.event_type,
                event_version: event.event_version,
                recorded_at,
                payload: &event.payload,
                metadata: &event.metadata,
            },
        );
        *head = (version, hash);
        rows.push((position, version, prev_hash, hash, event));
    }

    let copy = tx
        .prepare_cached(
            "COPY events (position, stream_id, version, event_type, event_version, payload, \
             metadata, recorded_at, idempotency_key, prev_hash, hash) FROM STDIN (FORMAT binary)",
        )
        .await?;
    let sink = tx.copy_in(&copy).await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::INT4,
            Type::JSONB,
            Type::JSONB,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::BYTEA,
            Type::BYTEA,
        ],
    );
    pin_mut!(writer);
    let written: Result<(), tokio_postgres::Error> = async {
        for (position, version, prev_hash, hash, event) in &rows {
            let values: [&(dyn ToSql + Sync); 11] = [
                position,
                &event.stream_id,
                version,
                &event.event_type,
                &event.event_version,
                &event.payload,
                &event.metadata,
                &recorded_at,
                &event.idempotency_key,
                &prev_hash.as_slice(),
                &hash.as_slice(),
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.as_mut().finish().await.map(drop)
    }
    .await;
    written.map_err(classify)?;
    Ok(Appended {
        first_position,
        last_position,
    })
}

/// The last version and hash of each stream (absent streams are left out).
async fn stream_heads(
    tx: &Transaction<'_>,
    streams: &[&str],
) -> Result<HashMap<String, (i64, Hash)>, StoreError> {
    let statement = tx
        .prepare_cached(
            "SELECT s.stream_id, h.version, h.hash
               FROM unnest($1::text[]) AS s(stream_id)
               JOIN LATERAL (
                    SELECT version, hash FROM events e
                     WHERE e.stream_id = s.stream_id
                     ORDER BY version DESC LIMIT 1
               ) h ON true",
        )
        .await?;
    let rows = tx.query(&statement, &[&streams]).await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for row in rows {
        let hash: &[u8] = row.get(2);
        let hash: Hash = hash
            .try_into()
            .expect("the schema holds hashes to 32 bytes");
        heads.insert(row.get::<_, String>(0), (row.get::<_, i64>(1), hash));
    }
    Ok(heads)
}

fn classify(error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let constraint = error
            .as_db_error()
            .and_then(|db| db.constraint())
            .unwrap_or_default();
        if constraint == "events_stream_id_version_key" {
            return StoreError::ConcurrentAppend;
        }
        if constraint == "events_idempotency_key_key" {
            return StoreError::DuplicateKey;
        }
    }
    StoreError::Database(error)
}
