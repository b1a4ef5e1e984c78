//! The ledger read for audits: one consistent snapshot, streamed in position order with binary
//! COPY (no round trip per event), each row handed over borrowed.

use crate::store::{EVENT_COLUMNS, EVENT_COLUMN_TYPES};
use chrono::{DateTime, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::binary_copy::BinaryCopyOutStream;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Transaction;

/// JSON text of a `jsonb` column, borrowed from the row (the binary format is a version byte, 1,
/// then the text).
pub struct JsonText<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        match raw.split_first() {
            Some((1, text)) => Ok(JsonText(text)),
            _ => Err("unsupported jsonb format version".into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
}

/// One stored event.
pub struct EventRow<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub payload: &'a [u8],
    pub metadata: &'a [u8],
    pub recorded_at: DateTime<Utc>,
    pub idempotency_key: Option<&'a str>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    pub hash_version: i16,
    /// `None` on rows written before the ledger-wide chain was stored.
    pub ledger_hash: Option<&'a [u8]>,
}

/// The last event to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    End,
    Position(i64),
    /// Events recorded at or before this time.
    Time(DateTime<Utc>),
}

/// Which events to read: positions after `after`, up to `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub after: i64,
    pub until: Until,
}

impl Range {
    pub const ALL: Range = Range {
        after: 0,
        until: Until::End,
    };
}

/// Starts the snapshot every audit reads from: repeatable read, read only, so the ledger and the
/// projections are seen as of one instant even while the service appends.
pub async fn snapshot(
    client: &mut tokio_postgres::Client,
) -> Result<Transaction<'_>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    // Walk the primary key in order instead of sorting the whole ledger: appends made it the
    // physical order too.
    tx.batch_execute("SET LOCAL enable_sort = off").await?;
    Ok(tx)
}

/// Calls `each` for every event of `range`, in position order; returns how many were read.
pub async fn for_each<E>(
    tx: &Transaction<'_>,
    range: Range,
    mut each: impl FnMut(EventRow<'_>) -> Result<(), E>,
) -> Result<u64, E>
where
    E: From<tokio_postgres::Error>,
{
    // COPY takes no parameters; the bounds are numbers, never text from a caller.
    let mut filter = format!("position > {}", range.after);
    if let Some(last) = last_position(tx, range.until).await? {
        filter.push_str(&format!(" AND position <= {last}"));
    }
    let stream = tx
        .copy_out(&format!(
            "COPY (SELECT {EVENT_COLUMNS} FROM events WHERE {filter} ORDER BY position) \
             TO STDOUT (FORMAT binary)"
        ))
        .await?;
    let rows = BinaryCopyOutStream::new(stream, &EVENT_COLUMN_TYPES);
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        let payload: JsonText<'_> = row.try_get(5)?;
        let metadata: JsonText<'_> = row.try_get(6)?;
        count += 1;
        each(EventRow {
            position: row.try_get(0)?,
            stream_id: row.try_get(1)?,
            version: row.try_get(2)?,
            event_type: row.try_get(3)?,
            event_version: row.try_get(4)?,
            payload: payload.0,
            metadata: metadata.0,
            recorded_at: row.try_get(7)?,
            idempotency_key: row.try_get(8)?,
            prev_hash: row.try_get(9)?,
            hash: row.try_get(10)?,
            hash_version: row.try_get(11)?,
            ledger_hash: row.try_get(12)?,
        })?;
    }
    Ok(count)
}

/// The last position `until` lets through (`None`: no bound).
///
/// A time bound ends the ledger just before the first event recorded after that time: the ledger
/// is read as a prefix, in position order, so that every fold sees every event before the cut
/// (recording times of concurrent appends from several processes may interleave by microseconds).
pub async fn last_position(
    tx: &Transaction<'_>,
    until: Until,
) -> Result<Option<i64>, tokio_postgres::Error> {
    match until {
        Until::End => Ok(None),
        Until::Position(last) => Ok(Some(last)),
        Until::Time(time) => Ok(Some(
            tx.query_one(crate::store::POSITION_AT, &[&time])
                .await?
                .get(0),
        )),
    }
}
