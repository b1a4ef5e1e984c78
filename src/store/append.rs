//! Appending: the hash chain, gapless positions, idempotency keys.
//!
//! An append is two halves in the caller's transaction: [`prepare`] (the stream heads read, the
//! JSON encoded) and [`write`](fn@write) (positions and time taken, rows copied in). The caller
//! looks its idempotency keys up first, under its own locks ([`super::by_idempotency_keys`]); a
//! key used concurrently still fails the write ([`StoreError::DuplicateKey`]) on the unique index.
//! The caller commits, right after: until then the events are invisible and `ledger_head` stays
//! locked, which is what keeps positions gapless and commit-ordered.

use super::hash::{
    canonical, event_hash, ledger_hash, stored_hash, Hash, HashVersion, Hashed, GENESIS,
};
use super::{
    truncate_to_micros, Appended, JsonText, NewEvent, StoreError, EVENT_COLUMNS, EVENT_COLUMN_TYPES,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use futures_util::pin_mut;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// An append ready to be written: stream heads read, JSON encoded.
pub struct Prepared {
    events: Vec<(NewEvent, Vec<u8>, Arc<Vec<u8>>)>,
    heads: HashMap<String, (i64, Hash)>,
    recorded_at: DateTime<Utc>,
}

/// The first half of an append: everything that does not need positions. It only reads, so
/// it may run alongside the caller's other statements (pipelined on the connection).
pub async fn prepare(
    tx: &Transaction<'_>,
    events: Vec<NewEvent>,
    recorded_at: DateTime<Utc>,
) -> Result<Prepared, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Empty);
    }
    let recorded_at = truncate_to_micros(recorded_at);

    // Stream heads are read before the ledger head is locked, to keep the serialised section
    // short. A concurrent writer to the same stream is caught when the heads are moved.
    let mut streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
    streams.sort_unstable();
    streams.dedup();
    let heads = stream_heads(tx, &streams).await?;

    // The canonical JSON is hashed and stored as the json text, byte for byte; metadata is encoded
    // once per command, not once per event.
    let mut encoded = Vec::with_capacity(events.len());
    let mut metadata_json: Option<(Arc<serde_json::Value>, Arc<Vec<u8>>)> = None;
    for event in events {
        let metadata = match &metadata_json {
            Some((value, bytes)) if Arc::ptr_eq(value, &event.metadata) => bytes.clone(),
            _ => {
                let bytes = Arc::new(canonical(&event.metadata));
                metadata_json = Some((event.metadata.clone(), bytes.clone()));
                bytes
            }
        };
        let payload = canonical(&event.payload);
        encoded.push((event, payload, metadata));
    }
    Ok(Prepared {
        events: encoded,
        heads,
        recorded_at,
    })
}

/// The second half of an append: takes positions and the time (locking the ledger head until
/// the caller commits), chains the hashes and writes the rows.
pub async fn write(tx: &Transaction<'_>, prepared: Prepared) -> Result<Appended, StoreError> {
    let Prepared {
        events,
        heads,
        recorded_at: now,
    } = prepared;
    let count = events.len() as i64;
    let head = take_head(tx, count, now).await?;
    if head.past_partitions {
        ensure_partitions(tx, head.recorded_at).await?;
    }
    let (rows, chain) = chain_rows(events, &heads, &head);
    let appended = Appended {
        first_position: head.last_position - count + 1,
        last_position: head.last_position,
        recorded_at: head.recorded_at,
    };
    // Sent together with the rows (pipelined): keeping the head's ledger hash, the stream heads
    // and the keys costs no round trip of its own.
    let set_head = async {
        let statement = tx
            .prepare_cached("UPDATE ledger_head SET ledger_hash = $1")
            .await?;
        tx.execute(&statement, &[&chain.as_slice()])
            .await
            .map_err(StoreError::from)
    };
    let rows_written = async {
        if rows.len() <= INSERT_ROWS_MAX {
            insert_rows(tx, &rows, head.recorded_at).await
        } else {
            copy_rows(tx, &rows, head.recorded_at).await
        }
    };
    let (head_set, written, streams_moved, keys_kept) = tokio::join!(
        set_head,
        rows_written,
        move_stream_heads(tx, &heads, &rows),
        insert_keys(tx, &rows)
    );
    // The rows' error comes first: once they fail, the others only report the aborted
    // transaction (and the other way round).
    let failed = [
        written.err(),
        keys_kept.err(),
        streams_moved.err(),
        head_set.err(),
    ];
    match super::first_cause(failed.into_iter().flatten()) {
        Some(error) => Err(error),
        None => Ok(appended),
    }
}

/// What the ledger head hands an append under its lock.
struct Head {
    last_position: i64,
    recorded_at: DateTime<Utc>,
    /// The ledger-wide hash of the event before this append's first.
    chain: Hash,
    /// Whether this append's time is past the months the ledger has partitions for.
    past_partitions: bool,
}

/// Months of partitions an append makes when it finds its own missing (the service's
/// maintenance normally made them long before): its month and the next.
const APPEND_MONTHS_AHEAD: i32 = 1;

/// Makes the partitions for `at` through the owner's `ledger_ensure_partitions` (the service
/// may not run DDL), under the ledger head lock this append holds: once a month at most, when
/// the maintenance did not run in time, so that an append never fails for want of a partition.
async fn ensure_partitions(tx: &Transaction<'_>, at: DateTime<Utc>) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached("SELECT ledger_ensure_partitions($1, $2)::text")
        .await?;
    tx.query_one(&statement, &[&at, &APPEND_MONTHS_AHEAD])
        .await?;
    Ok(())
}

/// Takes `count` positions and the time. Positions, the time and the ledger-wide chain all come
/// from the head row, under its lock: events get their time in position order, so it never goes
/// backwards along the ledger even when lanes or processes read their clocks in another order (or
/// their clocks disagree).
async fn take_head(
    tx: &Transaction<'_>,
    count: i64,
    now: DateTime<Utc>,
) -> Result<Head, StoreError> {
    let take_head = tx
        .prepare_cached(
            "UPDATE ledger_head SET position = position + $1,
                    recorded_at = greatest(recorded_at, $2)
              RETURNING position, recorded_at, ledger_hash, recorded_at >= partitions_until",
        )
        .await?;
    let head = tx.query_one(&take_head, &[&count, &now]).await?;
    Ok(Head {
        last_position: head.get(0),
        recorded_at: head.get(1),
        chain: stored_hash(head.get(2)),
        past_partitions: head.get(3),
    })
}

/// The rows of `events` with their positions, versions and both chains; and the ledger-wide hash
/// of the last one.
fn chain_rows(
    events: Vec<(NewEvent, Vec<u8>, Arc<Vec<u8>>)>,
    heads: &HashMap<String, (i64, Hash)>,
    head: &Head,
) -> (Vec<Row>, Hash) {
    let mut heads = heads.clone();
    let first_position = head.last_position - events.len() as i64 + 1;
    let mut chain = head.chain;
    let mut rows: Vec<Row> = Vec::with_capacity(events.len());
    for (offset, (event, payload, metadata)) in events.into_iter().enumerate() {
        // Version 4 stores metadata where it differs from the previous row's in this append
        // (the events of one command share it, encoded once: the same buffer).
        let stores_metadata = rows
            .last()
            .is_none_or(|previous| !Arc::ptr_eq(&previous.metadata, &metadata));
        let stream = heads.entry(event.stream_id.clone()).or_insert((0, GENESIS));
        let position = first_position + offset as i64;
        let version = stream.0 + 1;
        let prev_hash = stream.1;
        let hash = event_hash(
            HashVersion::CURRENT,
            &prev_hash,
            &Hashed {
                position,
                stream_id: &event.stream_id,
                version,
                event_type: &event.event_type,
                event_version: event.event_version,
                recorded_at: head.recorded_at,
                payload: &payload,
                metadata: &metadata,
                // Version 4 does not cover the key: the payload determines it.
                idempotency_key: None,
            },
        );
        chain = ledger_hash(&chain, &hash);
        *stream = (version, hash);
        rows.push(Row {
            position,
            version,
            hash,
            ledger_hash: None,
            event,
            payload,
            metadata,
            stores_metadata,
        });
    }
    // Version 4 stores the ledger-wide hash at the end of the append only: every point it is
    // looked up at (the head, checkpoints, snapshots, a month's start) is one.
    if let Some(last) = rows.last_mut() {
        last.ledger_hash = Some(chain);
    }
    (rows, chain)
}

/// A few rows: one multi-row `INSERT` over column arrays.
async fn insert_rows(
    tx: &Transaction<'_>,
    rows: &[Row],
    recorded_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let statement = tx
        .prepare_cached(&format!(
            "INSERT INTO events ({EVENT_COLUMNS})
             SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], \
             $5::int4[], $6::json[], $7::json[], $8::timestamptz[], $9::text[], \
             $10::bytea[], $11::bytea[], $12::int2[], $13::bytea[])"
        ))
        .await?;
    let positions: Vec<i64> = rows.iter().map(|r| r.position).collect();
    let streams: Vec<&str> = rows.iter().map(|r| r.event.stream_id.as_str()).collect();
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let types: Vec<&str> = rows.iter().map(|r| r.event.event_type.as_str()).collect();
    let type_versions: Vec<i32> = rows.iter().map(|r| r.event.event_version).collect();
    let payloads: Vec<JsonText<'_>> = rows.iter().map(|r| JsonText(&r.payload)).collect();
    let metadata: Vec<Option<JsonText<'_>>> = rows.iter().map(Row::stored_metadata).collect();
    let times: Vec<DateTime<Utc>> = vec![recorded_at; rows.len()];
    // Version 4 rows store no key (`idempotency_keys` holds its digest).
    let keys: Vec<Option<&str>> = vec![None; rows.len()];
    // Rows store no previous hash (migration 25): it is their stream's event before's `hash`.
    let prev_hashes: Vec<Option<&[u8]>> = vec![None; rows.len()];
    let hashes: Vec<&[u8]> = rows.iter().map(|r| r.hash.as_slice()).collect();
    let hash_versions: Vec<i16> = vec![HashVersion::CURRENT.column(); rows.len()];
    let ledger_hashes: Vec<Option<&[u8]>> = rows
        .iter()
        .map(|r| r.ledger_hash.as_ref().map(|h| h.as_slice()))
        .collect();
    tx.execute(
        &statement,
        &[
            &positions,
            &streams,
            &versions,
            &types,
            &type_versions,
            &payloads,
            &metadata,
            &times,
            &keys,
            &prev_hashes,
            &hashes,
            &hash_versions,
            &ledger_hashes,
        ],
    )
    .await
    .map(drop)
    .map_err(classify)
}

/// Many rows: one binary `COPY`.
async fn copy_rows(
    tx: &Transaction<'_>,
    rows: &[Row],
    recorded_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let copy = tx
        .prepare_cached(&format!(
            "COPY events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let hash_version = HashVersion::CURRENT.column();
    let no_key: Option<&str> = None;
    let no_prev_hash: Option<&[u8]> = None;
    let written = async {
        let sink = tx.copy_in(&copy).await?;
        let writer = BinaryCopyInWriter::new(sink, &EVENT_COLUMN_TYPES);
        pin_mut!(writer);
        for row in rows {
            let (payload, metadata) = (JsonText(&row.payload), row.stored_metadata());
            let ledger_hash = row.ledger_hash.as_ref().map(|h| h.as_slice());
            let values: [&(dyn ToSql + Sync); 13] = [
                &row.position,
                &row.event.stream_id,
                &row.version,
                &row.event.event_type,
                &row.event.event_version,
                &payload,
                &metadata,
                &recorded_at,
                &no_key,
                &no_prev_hash,
                &row.hash.as_slice(),
                &hash_version,
                &ledger_hash,
            ];
            writer.as_mut().write(&values).await?;
        }
        writer.as_mut().finish().await.map(drop)
    };
    written.await.map_err(classify)
}

/// One event with everything its row needs.
struct Row {
    position: i64,
    version: i64,
    hash: Hash,
    /// Stored on the append's last row only.
    ledger_hash: Option<Hash>,
    event: NewEvent,
    payload: Vec<u8>,
    metadata: Arc<Vec<u8>>,
    /// Whether the row stores its metadata: the first row of the append, and every row whose
    /// metadata is not its predecessor's.
    stores_metadata: bool,
}

impl Row {
    fn stored_metadata(&self) -> Option<JsonText<'_>> {
        self.stores_metadata
            .then(|| JsonText(self.metadata.as_slice()))
    }
}

/// Appends of at most this many events go in as one multi-row INSERT (one round trip); larger
/// ones stream through binary COPY, which needs two round trips but is cheaper per row.
const INSERT_ROWS_MAX: usize = 128;

/// The last version and hash of each stream (absent streams are left out), from `stream_heads`,
/// which every append moves in its own transaction (schema/0019).
async fn stream_heads(
    tx: &Transaction<'_>,
    streams: &[&str],
) -> Result<HashMap<String, (i64, Hash)>, StoreError> {
    let statement = tx
        .prepare_cached(
            "SELECT stream_id, version, hash FROM stream_heads WHERE stream_id = ANY($1::text[])",
        )
        .await?;
    let rows = tx.query(&statement, &[&streams]).await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for row in rows {
        heads.insert(
            row.get::<_, String>(0),
            (row.get::<_, i64>(1), stored_hash(row.get(2))),
        );
    }
    Ok(heads)
}

/// Moves the heads of the streams this append wrote: an existing head only from the version
/// [`prepare`] read (zero rows moved means a concurrent append won:
/// [`StoreError::ConcurrentAppend`]), a new stream's head by insert (a concurrent first append
/// fails on the primary key). Appends reach this under the ledger head lock, so they never wait
/// here for each other.
async fn move_stream_heads(
    tx: &Transaction<'_>,
    read: &HashMap<String, (i64, Hash)>,
    rows: &[Row],
) -> Result<(), StoreError> {
    let mut last: HashMap<&str, &Row> = HashMap::new();
    for row in rows {
        last.insert(row.event.stream_id.as_str(), row);
    }
    let (mut moved, mut started) = (Vec::new(), Vec::new());
    for (stream, row) in &last {
        match read.get(*stream) {
            Some((version, _)) => moved.push((*stream, *version, row.version, row.hash)),
            None => started.push((*stream, row.version, row.hash)),
        }
    }
    let update = async {
        if moved.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "UPDATE stream_heads h SET version = n.version, hash = n.hash
                   FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bytea[])
                        AS n(stream_id, read_version, version, hash)
                  WHERE h.stream_id = n.stream_id AND h.version = n.read_version",
            )
            .await?;
        let streams: Vec<&str> = moved.iter().map(|m| m.0).collect();
        let read_versions: Vec<i64> = moved.iter().map(|m| m.1).collect();
        let versions: Vec<i64> = moved.iter().map(|m| m.2).collect();
        let hashes: Vec<&[u8]> = moved.iter().map(|m| m.3.as_slice()).collect();
        let count = tx
            .execute(&statement, &[&streams, &read_versions, &versions, &hashes])
            .await
            .map_err(classify)?;
        if count != moved.len() as u64 {
            return Err(StoreError::ConcurrentAppend);
        }
        Ok(())
    };
    let insert = async {
        if started.is_empty() {
            return Ok(());
        }
        let statement = tx
            .prepare_cached(
                "INSERT INTO stream_heads (stream_id, version, hash)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])",
            )
            .await?;
        let streams: Vec<&str> = started.iter().map(|m| m.0).collect();
        let versions: Vec<i64> = started.iter().map(|m| m.1).collect();
        let hashes: Vec<&[u8]> = started.iter().map(|m| m.2.as_slice()).collect();
        tx.execute(&statement, &[&streams, &versions, &hashes])
            .await
            .map(drop)
            .map_err(classify)
    };
    let (updated, inserted) = tokio::join!(update, insert);
    match super::first_cause([updated.err(), inserted.err()].into_iter().flatten()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Records the idempotency keys of this append with the positions that answer them; a key
/// recorded before (by a concurrent transaction, or one the caller did not look up) fails on the
/// primary key ([`StoreError::DuplicateKey`]).
async fn insert_keys(tx: &Transaction<'_>, rows: &[Row]) -> Result<(), StoreError> {
    let (keys, positions): (Vec<uuid::Uuid>, Vec<i64>) = rows
        .iter()
        .filter_map(|row| {
            let key = row.event.idempotency_key.as_deref()?;
            Some((super::key_digest(key), row.position))
        })
        .unzip();
    if keys.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys (key, position)
             SELECT * FROM unnest($1::uuid[], $2::int8[])",
        )
        .await?;
    tx.execute(&statement, &[&keys, &positions])
        .await
        .map(drop)
        .map_err(classify)
}

fn classify(error: tokio_postgres::Error) -> StoreError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        let constraint = error
            .as_db_error()
            .and_then(|db| db.constraint())
            .unwrap_or_default();
        // The first names the constraint of a ledger not moved to partitions yet, the last the
        // unique stream index of a month made before migration 26.
        if constraint == "events_stream_id_version_key"
            || constraint == "stream_heads_pkey"
            || constraint.ends_with("_stream_version")
        {
            return StoreError::ConcurrentAppend;
        }
        if constraint == "events_idempotency_key_key" || constraint == "idempotency_keys_pkey" {
            return StoreError::DuplicateKey;
        }
    }
    StoreError::Database(error)
}
