//! The ledger read for audits: one consistent snapshot, streamed in position order with binary
//! COPY (no round trip per event), each row handed over borrowed ([`for_each`]), or batches of
//! rows handed to another thread while the next batch is read ([`for_each_batch`]). A pass reads
//! only the columns it needs ([`Selection`]) and decodes the rows itself
//! ([`crate::store::EventRow::from_columns`], [`crate::store::FoldRow::from_columns`]).

use crate::store::{EVENT_COLUMNS, EVENT_COLUMN_TYPES, FOLD_COLUMNS, FOLD_COLUMN_TYPES};
use chrono::{DateTime, Utc};
use futures_util::{pin_mut, Stream, TryStreamExt};
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

/// Which columns of `events` a pass reads, and their types.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub columns: &'static str,
    pub types: &'static [Type],
}

impl Selection {
    /// Every column: what verify checks and export shows ([`crate::store::EventRow`]).
    pub const ALL: Selection = Selection {
        columns: EVENT_COLUMNS,
        types: &EVENT_COLUMN_TYPES,
    };
    /// What a fold reads ([`crate::store::FoldRow`]).
    pub const FOLD: Selection = Selection {
        columns: FOLD_COLUMNS,
        types: &FOLD_COLUMN_TYPES,
    };
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
    // physical order too. No JIT: the audits' reads are index walks and lookups whose estimated
    // cost at a ledger's size makes PostgreSQL compile them, which costs more than it saves
    // (measured on 2 million events over three months: `verify --since-checkpoint` 0.85 s with
    // it, 0.42 s without; the whole `verify` no slower).
    tx.batch_execute("SET LOCAL enable_sort = off; SET LOCAL jit = off")
        .await?;
    Ok(tx)
}

/// Calls `each` with the `selection` of every event of `range`, in position order; returns how
/// many were read.
pub async fn for_each<E>(
    tx: &Transaction<'_>,
    range: Range,
    selection: Selection,
    mut each: impl FnMut(&BinaryCopyOutRow) -> Result<(), E>,
) -> Result<u64, E>
where
    E: From<tokio_postgres::Error>,
{
    let rows = rows(tx, range, selection).await?;
    pin_mut!(rows);
    let mut count = 0;
    while let Some(row) = rows.try_next().await? {
        count += 1;
        each(&row)?;
    }
    Ok(count)
}

/// Events per batch handed over by [`send_batches`]: enough that handing one over costs nothing
/// next to checking it, few enough that a batch of rows of about a kilobyte stays near 4 MiB.
pub const BATCH_EVENTS: usize = 4096;

/// Sends the rows of `range` to `batches`, in position order, [`BATCH_EVENTS`] at a time, for
/// another thread to decode and check while the next batch is read. Stops early, without an error,
/// when the receiver is gone (it found what it looked for).
async fn send_batches(
    tx: &Transaction<'_>,
    range: Range,
    selection: Selection,
    batches: tokio::sync::mpsc::Sender<Vec<BinaryCopyOutRow>>,
) -> Result<(), tokio_postgres::Error> {
    let rows = rows(tx, range, selection).await?;
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

/// Batches read ahead of their handling: two keep the reader busy while the handler works, more
/// only hold memory (a batch is a few MiB).
const BATCHES_IN_FLIGHT: usize = 2;

/// Reads the events of `range` on this task, [`BATCH_EVENTS`] at a time, while `each_batch`
/// handles the batches in order on a blocking thread, so that reading and handling overlap on two
/// cores. `each_batch` updates `state`, returned when the batches end; its first error stops the
/// reading and is returned (it covers every row read before a failed read, so it comes first).
pub async fn for_each_batch<S, E>(
    tx: &Transaction<'_>,
    range: Range,
    selection: Selection,
    state: S,
    mut each_batch: impl FnMut(&mut S, Vec<BinaryCopyOutRow>) -> Result<(), E> + Send + 'static,
) -> Result<S, E>
where
    S: Send + 'static,
    E: From<tokio_postgres::Error> + Send + 'static,
{
    let (batches, mut received) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    let handler = tokio::task::spawn_blocking(move || {
        let mut state = state;
        while let Some(batch) = received.blocking_recv() {
            each_batch(&mut state, batch)?;
        }
        Ok::<S, E>(state)
    });
    let read = send_batches(tx, range, selection, batches).await;
    let state = match handler.await {
        Ok(handled) => handled?,
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    };
    read?;
    Ok(state)
}

/// Threads [`map_in_parallel`] uses: one per core, and no more than this many, since the reader
/// and the ordered part of the handling each want a core too.
const MAP_THREADS_MAX: usize = 8;

/// `map_part` over `items` cut into one part per core, the results in the order of `items`: for
/// the work on a batch of rows that needs nothing from the rows before (parsing, hashing).
///
/// Scoped threads from `std`, one set per batch, rather than a thread-pool crate: the results come
/// back in order by construction, and starting a few threads per batch of thousands of events
/// costs nothing measurable.
pub fn map_in_parallel<T: Sync, R: Send>(
    items: &[T],
    map_part: impl Fn(&[T]) -> Vec<R> + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAP_THREADS_MAX);
    let part_items = items.len().div_ceil(threads).max(1);
    let map_part = &map_part;
    std::thread::scope(|scope| {
        let mut parts = items.chunks(part_items);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| scope.spawn(move || map_part(part)))
            .collect();
        let mut mapped = map_part(first);
        for other in others {
            match other.join() {
                Ok(part) => mapped.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        mapped
    })
}

/// The `selection` of the events of `range` in position order, streamed with binary COPY.
async fn rows(
    tx: &Transaction<'_>,
    range: Range,
    selection: Selection,
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
            "COPY (SELECT {} FROM events WHERE {filter} ORDER BY position) \
             TO STDOUT (FORMAT binary)",
            selection.columns
        ))
        .await?;
    Ok(BinaryCopyOutStream::new(stream, selection.types))
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
