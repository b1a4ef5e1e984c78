//! The ledger read for audits: one consistent snapshot, streamed in position order with binary
//! COPY (no round trip per event), each row handed over borrowed.

use crate::store::{EventRow, EVENT_COLUMNS, EVENT_COLUMN_TYPES};
use chrono::{DateTime, Utc};
use futures_util::{pin_mut, Stream, TryStreamExt};
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::Transaction;

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
    let rows = rows(tx, range).await?;
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        count += 1;
        each(EventRow::from_columns(&row)?)?;
    }
    Ok(count)
}

/// Events per batch handed over by [`send_batches`]: enough that handing one over costs nothing
/// next to checking it, few enough that a batch of rows of about a kilobyte stays near 4 MiB.
pub const BATCH_EVENTS: usize = 4096;

/// Sends the rows of `range` to `batches`, in position order, [`BATCH_EVENTS`] at a time, for
/// another thread to decode ([`EventRow::from_columns`]) and check while the next batch is read.
/// Stops early, without an error, when the receiver is gone (it found what it looked for).
pub async fn send_batches(
    tx: &Transaction<'_>,
    range: Range,
    batches: tokio::sync::mpsc::Sender<Vec<BinaryCopyOutRow>>,
) -> Result<(), tokio_postgres::Error> {
    let rows = rows(tx, range).await?;
    pin_mut!(rows);
    let mut batch = Vec::with_capacity(BATCH_EVENTS);
    while let Some(row) = rows.try_next().await? {
        batch.push(row);
        if batch.len() == BATCH_EVENTS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_EVENTS));
            if batches.send(full).await.is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        // A receiver that is gone needs nothing more.
        let _ = batches.send(batch).await;
    }
    Ok(())
}

/// The events of `range` in position order, streamed with binary COPY.
async fn rows(
    tx: &Transaction<'_>,
    range: Range,
) -> Result<
    impl Stream<Item = Result<BinaryCopyOutRow, tokio_postgres::Error>>,
    tokio_postgres::Error,
> {
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
    Ok(BinaryCopyOutStream::new(stream, &EVENT_COLUMN_TYPES))
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
