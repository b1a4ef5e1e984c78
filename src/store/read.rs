//! Reading: one stream, or the whole ledger in position order.
//!
//! Positions are gapless and become visible in order (see `append.rs`), so a reader that asks for
//! "everything after N" never skips an event that commits later with a smaller position (I7).

use super::hash::Hash;
use super::{RecordedEvent, Selection, StoreError};
use deadpool_postgres::GenericClient;
use futures_util::Stream;
use std::collections::HashMap;
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::Row;

use super::EVENT_COLUMNS as COLUMNS;

/// Every row of a query, as events.
fn recorded(rows: &[Row]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| RecordedEvent::from_columns(row).map_err(StoreError::from))
        .collect()
}

/// The events of one stream that `also` lets through (an SQL condition of ours, never a caller's
/// text), oldest first, as stored.
async fn stream_events(
    client: &impl GenericClient,
    stream_id: &str,
    also: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1 {also}
              ORDER BY version"
        ))
        .await?;
    let rows = client.query(&statement, &[&stream_id]).await?;
    recorded(&rows)
}

/// Every event of one stream, oldest first.
pub async fn read_stream(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = stream_events(client, stream_id, "").await?;
    // The whole stream, in order: each previous hash is the event before's, no lookup.
    derive_prev_hashes(client, &mut events).await?;
    Ok(events)
}

/// The version of a stream's newest event, 0 when it has none: one step back along the stream
/// index.
pub async fn stream_version(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<i64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT version FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
              ORDER BY version DESC LIMIT 1",
        )
        .await?;
    let row = client.query_opt(&statement, &[&stream_id]).await?;
    Ok(row.map_or(0, |row| row.get(0)))
}

/// The grants of a package's stream (purchase, renewals, upgrades, expansions), oldest first.
///
/// The partial index `events_grants_by_stream` holds only these events, so this reads a handful
/// of rows however much traffic the package has.
pub async fn read_grants(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    stream_events(
        client,
        stream_id,
        "AND event_type IN ('OrderCreated', 'OrderRenewed', 'OrderUpgraded', 'OrderDilated')",
    )
    .await
}

/// A SKU as the event that put a package on it names it (`None` for a field it lacks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuChoice {
    pub sku_id: Option<String>,
    pub name: Option<String>,
    pub currency: Option<String>,
}

/// The SKU the latest purchase or upgrade of a package's stream put it on, through the partial
/// index `events_sku_choices`, without reading the package's traffic; `None` when there is no
/// such event.
pub async fn sku_choice(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Option<SkuChoice>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT payload->>'skuId', payload->>'skuName', payload->>'currency' FROM events
              WHERE stream_id = $1 AND event_type IN ('OrderCreated', 'OrderUpgraded')
              ORDER BY position DESC LIMIT 1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&stream_id])
        .await?
        .map(|row| SkuChoice {
            sku_id: row.get(0),
            name: row.get(1),
            currency: row.get(2),
        }))
}

/// The generation of a package's order credential: the highest among its rotations, 0 when it
/// was never rotated (through the partial index `events_credential_rotations`).
pub async fn credential_generation(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<u32, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT coalesce(max((payload->>'generation')::int8), 0) FROM events
              WHERE stream_id = $1 AND event_type = 'OrderCredentialRotated'",
        )
        .await?;
    let generation: i64 = client.query_one(&statement, &[&stream_id]).await?.get(0);
    Ok(u32::try_from(generation).unwrap_or(u32::MAX))
}

/// Events of a stream fetched per round trip by [`for_each_in_stream_until`]: what one call holds
/// in memory. An event row is about a kilobyte, so a page stays near half a mebibyte, and a stream
/// of a million events is folded in about 2,000 round trips.
pub const STREAM_PAGE_EVENTS: i32 = 512;

/// Calls `each` with the events of one stream up to position `last`, oldest first, fetched through
/// a cursor [`STREAM_PAGE_EVENTS`] at a time, so memory stays bounded however long the stream is.
/// The cursor reads within `tx`: a [`super::snapshot`], for one consistent view.
pub async fn for_each_in_stream_until<E: From<StoreError>>(
    tx: &deadpool_postgres::Transaction<'_>,
    stream_id: &str,
    last: i64,
    mut each: impl FnMut(RecordedEvent) -> Result<(), E>,
) -> Result<u64, E> {
    let statement = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
                AND position <= $2
              ORDER BY version"
        ))
        .await
        .map_err(StoreError::from)?;
    let portal = tx
        .bind(&statement, &[&stream_id, &last])
        .await
        .map_err(StoreError::from)?;
    let mut count = 0;
    loop {
        let rows = tx
            .query_portal(&portal, STREAM_PAGE_EVENTS)
            .await
            .map_err(StoreError::from)?;
        let fetched = rows.len();
        for row in &rows {
            each(RecordedEvent::from_columns(row).map_err(StoreError::from)?)?;
            count += 1;
        }
        // A short page is the last one: the portal would answer the next fetch with nothing.
        if fetched < STREAM_PAGE_EVENTS as usize {
            return Ok(count);
        }
    }
}

/// The `selection` of every event after position `after` up to `last` (`None`: to the head), in
/// position order, streamed with binary COPY (no round trip per event) within `tx` (a
/// [`super::snapshot`]): the audits' read of the whole ledger.
pub async fn copy_after(
    tx: &tokio_postgres::Transaction<'_>,
    after: i64,
    last: Option<i64>,
    selection: Selection,
) -> Result<
    impl Stream<Item = Result<BinaryCopyOutRow, tokio_postgres::Error>>,
    tokio_postgres::Error,
> {
    // COPY takes no parameters; the bounds are numbers, never text from a caller.
    let mut filter = format!("position > {after}");
    if let Some(last) = last {
        filter.push_str(&format!(" AND position <= {last}"));
    }
    let stream = tx
        .copy_out(&format!(
            "COPY (SELECT {} FROM events WHERE {filter} ORDER BY position) \
             TO STDOUT (FORMAT binary)",
            selection.columns
        ))
        .await?;
    Ok(BinaryCopyOutStream::new(stream, selection.types))
}

/// The events at `positions`, in position order, as stored (their previous hash as the row
/// stores it); a position with no event in the database is left out.
pub async fn read_positions(
    client: &impl super::Connection,
    positions: &[i64],
) -> Result<Vec<RecordedEvent>, tokio_postgres::Error> {
    let statement = client
        .prepare(&format!(
            "SELECT {COLUMNS} FROM events WHERE position = ANY($1::bigint[]) ORDER BY position"
        ))
        .await?;
    client
        .connection()
        .query(&statement, &[&positions])
        .await?
        .iter()
        .map(RecordedEvent::from_columns)
        .collect()
}

/// Up to `limit` events with positions above `after`, in position order.
pub async fn read_all_after(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .await?;
    let rows = client.query(&statement, &[&after, &limit]).await?;
    let mut events = recorded(&rows)?;
    derive_prev_hashes(client, &mut events).await?;
    // Every event of the page with its metadata: a row storing none has its predecessor's, which
    // for the page's first rows may be before the page.
    let mut carried: Option<serde_json::Value> = None;
    for event in &mut events {
        match &event.metadata {
            Some(metadata) => carried = Some(metadata.clone()),
            None => {
                if carried.is_none() {
                    let statement = client.prepare_cached(METADATA_AT).await?;
                    carried = client
                        .query_opt(&statement, &[&event.position])
                        .await?
                        .and_then(|row| serde_json::from_str(row.get::<_, &str>(0)).ok());
                }
                event.metadata = carried.clone();
            }
        }
    }
    Ok(events)
}

/// Where one event of a stream is looked up by version: in the ledger, or, when its month was
/// dropped, as the head the drop recorded (the only event of a dropped month a later event of its
/// stream can follow without another dropped one between them). `w(s, v)` names the wanted
/// stream and version.
const HASH_OF_VERSION: &str = "(SELECT hash FROM events e
       WHERE ledger_stream_key(e.stream_id) = ledger_stream_key(w.s) AND e.stream_id = w.s
         AND e.version = w.v LIMIT 1)
     UNION ALL
     (SELECT hash FROM archived_stream_heads a WHERE a.stream_id = w.s AND a.version = w.v LIMIT 1)
     LIMIT 1";

/// Fills in the `prev_hash` of the events (in position order) that store none (rows appended
/// since migration 25): the `hash` of their stream's event before, from `events` themselves
/// when it is among them, otherwise looked up, all in one query.
async fn derive_prev_hashes(
    client: &impl GenericClient,
    events: &mut [RecordedEvent],
) -> Result<(), StoreError> {
    let mut heads = super::PrevHashes::default();
    let mut wanted: Vec<(usize, String, i64)> = Vec::new();
    for (index, event) in events.iter_mut().enumerate() {
        let prev = heads.resolve(
            &event.stream_id,
            event.version,
            event.prev_hash.as_deref(),
            &event.hash,
        );
        match prev {
            Some(prev) => event.prev_hash = Some(prev.to_vec()),
            None => wanted.push((index, event.stream_id.clone(), event.version - 1)),
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(&format!(
            "SELECT w.i, h.hash FROM unnest($1::int8[], $2::text[], $3::int8[]) AS w(i, s, v)
               JOIN LATERAL ({HASH_OF_VERSION}) h ON true"
        ))
        .await?;
    let indexes: Vec<i64> = wanted.iter().map(|w| w.0 as i64).collect();
    let streams: Vec<&str> = wanted.iter().map(|w| w.1.as_str()).collect();
    let versions: Vec<i64> = wanted.iter().map(|w| w.2).collect();
    for row in client
        .query(&statement, &[&indexes, &streams, &versions])
        .await?
    {
        let index: i64 = row.get(0);
        events[index as usize].prev_hash = Some(row.get(1));
    }
    Ok(())
}

/// Each stream's hash before position `after` + 1, for the streams whose events in `(after,
/// until]` include one that stores no `prev_hash` and whose first event there is not their
/// first: what a reader of that range in position order needs to derive every previous hash
/// ([`super::PrevHashes`]). One hash aggregate over the range, then a lookup per such stream.
pub async fn prev_hashes_before(
    client: &impl tokio_postgres::GenericClient,
    after: i64,
    until: i64,
) -> Result<HashMap<String, Hash>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT w.s, h.hash
                   FROM (SELECT stream_id AS s, min(version) - 1 AS v FROM events
                          WHERE position > $1 AND position <= $2
                          GROUP BY stream_id HAVING bool_or(prev_hash IS NULL)) AS w
                   JOIN LATERAL ({HASH_OF_VERSION}) h ON true
                  WHERE w.v >= 1"
            ),
            &[&after, &until],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| Some((row.get(0), row.get::<_, &[u8]>(1).try_into().ok()?)))
        .collect())
}

/// The events carrying any of `keys`, in position order.
///
/// One lookup per key in `idempotency_keys` (by the key's digest), then one per position in the
/// partitions' position indexes, forced by `LATERAL` subqueries with `LIMIT` (the `LIMIT` also
/// stops the planner from turning a lookup into a join, which it may then run as a hash join over
/// the whole ledger, a table that grows without bound). An event that stores its key is returned
/// only when that key is one of `keys`; one that stores none (hash version 4: the key is derived
/// from the event) is returned for the caller to derive it and compare
/// ([`RecordedEvent::answered_key`]).
pub async fn by_idempotency_keys(
    client: &impl GenericClient,
    keys: &[&str],
) -> Result<Vec<RecordedEvent>, StoreError> {
    let digests: Vec<uuid::Uuid> = keys.iter().map(|key| super::key_digest(key)).collect();
    let statement = client
        .prepare_cached(&format!(
            "SELECT e.* FROM unnest($1::uuid[], $2::text[]) AS k(digest, key),
                    LATERAL (SELECT position FROM idempotency_keys
                              WHERE key = k.digest LIMIT 1) AS i,
                    LATERAL (SELECT {COLUMNS} FROM events
                              WHERE position = i.position LIMIT 1) AS e
              WHERE e.idempotency_key IS NULL OR e.idempotency_key = k.key
              ORDER BY e.position"
        ))
        .await?;
    let rows = client.query(&statement, &[&digests, &keys]).await?;
    recorded(&rows)
}

/// The metadata text of the event at `$1`: see [`metadata_at`].
const METADATA_AT: &str = "SELECT metadata::text FROM events
                            WHERE position <= $1 AND metadata IS NOT NULL
                            ORDER BY position DESC LIMIT 1";

/// The metadata text of the event at `position` (`None` before position 1): its own, or, for a
/// row of hash version 4 that stores none, that of the nearest earlier row storing one (in the
/// same append). For readers that start at an arbitrary position ([`super::MetadataRun`]).
pub async fn metadata_at(
    client: &impl tokio_postgres::GenericClient,
    position: i64,
) -> Result<Option<Vec<u8>>, tokio_postgres::Error> {
    let statement = client.prepare(METADATA_AT).await?;
    Ok(client
        .query_opt(&statement, &[&position])
        .await?
        .map(|row| row.get::<_, String>(0).into_bytes()))
}
