//! The ledger read for audits: one consistent snapshot ([`crate::store::snapshot`]), streamed in
//! position order ([`crate::store::copy_after`]), each row handed over borrowed ([`for_each`]), or
//! batches of rows handed to another thread while the next batch is read ([`for_each_batch`]). A
//! pass reads only the columns it needs ([`Selection`]) and decodes the rows itself
//! ([`crate::store::EventRow::from_columns`], [`crate::store::FoldRow::from_columns`]).

use crate::store::Point;
pub use crate::store::{snapshot, Selection};
use chrono::{DateTime, Utc};
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::binary_copy::BinaryCopyOutRow;
use tokio_postgres::Transaction;

/// The last event to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    End,
    Position(i64),
    /// Events recorded at or before this time.
    Time(DateTime<Utc>),
}

impl Until {
    /// The point it stops at; `None` at the head.
    pub fn point(self) -> Option<Point> {
        match self {
            Until::End => None,
            Until::Position(position) => Some(Point::Position(position)),
            Until::Time(time) => Some(Point::Time(time)),
        }
    }
}

impl From<Point> for Until {
    fn from(point: Point) -> Until {
        match point {
            Point::Position(position) => Until::Position(position),
            Point::Time(time) => Until::Time(time),
        }
    }
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
    let last = last_position(tx, range.until).await?;
    let rows = crate::store::copy_after(tx, range.after, last, selection).await?;
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
    let last = last_position(tx, range.until).await?;
    let rows = crate::store::copy_after(tx, range.after, last, selection).await?;
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

/// The last position `until` lets through (`None`: no bound): [`crate::store::position_of`].
pub async fn last_position(
    tx: &Transaction<'_>,
    until: Until,
) -> Result<Option<i64>, tokio_postgres::Error> {
    match until.point() {
        None => Ok(None),
        Some(point) => Ok(Some(crate::store::position_of(tx, point).await?)),
    }
}
