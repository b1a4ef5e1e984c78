//! `dts-ledger migrate-partitions`: moves a ledger written before migration 19 to the
//! partitioned layout (schema/0019), as the owner, while the service keeps appending.
//!
//! 1. Makes the partitioned table (`events_partitioned`) with a partition for every month from
//!    the ledger's first event to [`crate::store::partitions::MONTHS_AHEAD`] months from now.
//! 2. Copies the events there in position order, [`COPY_POSITIONS_MAX`] positions per
//!    transaction, without locking out the service (it reads and appends meanwhile).
//! 3. Analyzes both tables and checks that the copy holds as many events as the ledger up to
//!    where it copied, still unlocked (events never change, so a checked prefix stays checked).
//! 4. Then, holding the ledger head and an `EXCLUSIVE` lock on `events` (appends wait; reads go
//!    on), copies what was appended meanwhile, checks that tail's count and that both tables end
//!    in the same hash and ledger-wide hash, drops the old table and puts the new one in its place.
//!
//! Only step 4 holds a lock appends wait for: what was appended during step 2 (a second pass
//! shortens it), the drop of the old table and the grants on the new partitions. Copied rows keep
//! every column as stored, so every hash holds.

use crate::database::migrate::MigrateError;
use crate::database::roles;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// Positions copied per transaction in the unlocked pass: a few seconds of work, so that a
/// failure repeats little and no transaction holds a snapshot for long.
pub const COPY_POSITIONS_MAX: i64 = 200_000;

/// The unlocked passes made at most before the locked one: each copies what the service
/// appended during the one before, so the last leaves little for the lock.
const UNLOCKED_PASSES_MAX: usize = 3;

const COLUMNS: &str = "position, version, recorded_at, event_version, hash_version, stream_id, \
     event_type, payload, metadata, idempotency_key, prev_hash, hash, ledger_hash";

/// What the move did and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// Events copied in all.
    pub events: i64,
    /// Events copied while holding the lock appends wait for.
    pub events_under_lock: i64,
    /// Wall time of the whole move.
    pub elapsed: Duration,
    /// How long appends were locked out (the last pass, the check and the swap).
    pub lock_held: Duration,
}

impl Moved {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Whether `events` is partitioned already (or absent: an unmigrated database).
pub async fn is_partitioned(client: &tokio_postgres::Client) -> Result<bool, MigrateError> {
    let row = client
        .query_one(
            "SELECT coalesce((SELECT relkind = 'p' FROM pg_class
                               WHERE oid = to_regclass('public.events')), false)",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Moves the ledger to partitions; `progress` hears a line per pass. Returns `None` when it is
/// partitioned already. The schema must be at migration 19 or later (`migrate` first).
pub async fn move_to_partitions(
    client: &mut tokio_postgres::Client,
    mut progress: impl FnMut(String),
) -> Result<Option<Moved>, MigrateError> {
    if is_partitioned(client).await? {
        return Ok(None);
    }
    let started = Instant::now();
    // 1. The new table and its months, from the first event's to those made ahead.
    let tx = client.transaction().await?;
    roles::become_owner(&tx).await?;
    tx.batch_execute(
        "DROP TABLE IF EXISTS events_partitioned;
         SELECT ledger_create_partitioned_events_v4('events_partitioned');",
    )
    .await?;
    let first_at: Option<DateTime<Utc>> = tx
        .query_one("SELECT min(recorded_at) FROM events", &[])
        .await?
        .get(0);
    let months = tx
        .query_one(
            "WITH RECURSIVE months(start) AS (
                 SELECT ledger_month_start(coalesce($1, now()))
                 UNION ALL
                 SELECT ledger_month_start(start + interval '40 days') FROM months
                  WHERE start < ledger_month_start(greatest(now(),
                                    (SELECT recorded_at FROM ledger_head)) + $2 * interval '31 days')
             )
             SELECT count(ledger_make_partition('events_partitioned', start)),
                    max(ledger_month_start(start + interval '40 days'))::text
               FROM months",
            &[&first_at, &f64::from(crate::store::partitions::MONTHS_AHEAD)],
        )
        .await?;
    let month_count: i64 = months.get(0);
    let partitions_until: String = months.get(1);
    tx.commit().await?;
    progress(format!("made {month_count} monthly partitions"));

    // 2. Copy while the service goes on.
    let mut copied = 0i64;
    let mut done = 0i64;
    for pass in 1..=UNLOCKED_PASSES_MAX {
        let head: i64 = client
            .query_one("SELECT coalesce(max(position), 0) FROM events", &[])
            .await?
            .get(0);
        if head <= done {
            break;
        }
        let pass_started = Instant::now();
        let before = copied;
        while done < head {
            let until = head.min(done.saturating_add(COPY_POSITIONS_MAX));
            copied += copy_range(client, done, until).await?;
            done = until;
        }
        let seconds = pass_started.elapsed().as_secs_f64().max(1e-9);
        progress(format!(
            "pass {pass}: copied {} events up to position {done} ({:.0} events/s)",
            copied - before,
            (copied - before) as f64 / seconds
        ));
        if copied - before < COPY_POSITIONS_MAX / 10 {
            break;
        }
    }

    // 3. What was copied is checked before the lock (events never change, so a checked prefix stays
    // checked): the lock is then held for the tail alone, not for a count of the ledger. Fresh
    // statistics first, outside the lock: without them the planner may read the tail by scanning
    // whole tables (a freshly loaded ledger, or partitions just filled) while appends wait.
    let tx = client.transaction().await?;
    roles::become_owner(&tx).await?;
    tx.batch_execute("ANALYZE events; ANALYZE events_partitioned;")
        .await?;
    tx.commit().await?;
    let prefix = client
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE position <= $1),
                    (SELECT count(*) FROM events_partitioned)",
            &[&done],
        )
        .await?;
    let (old, new): (i64, i64) = (prefix.get(0), prefix.get(1));
    if old != new || new != copied {
        return Err(MigrateError::PartitionMove(format!(
            "the copy does not match the ledger up to position {done} ({old} events, {new} \
             copied): nothing was changed"
        )));
    }

    // 4. The tail under the lock, its check, the swap.
    let tx = client.transaction().await?;
    roles::become_owner(&tx).await?;
    // The head first, as every append takes it before it writes: no deadlock with one waiting.
    tx.batch_execute(
        "SELECT 1 FROM ledger_head FOR UPDATE;
         LOCK TABLE events IN EXCLUSIVE MODE;",
    )
    .await?;
    let locked_at = Instant::now();
    let under_lock = tx
        .execute(
            &format!(
                "INSERT INTO events_partitioned ({COLUMNS})
                 SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position"
            ),
            &[&done],
        )
        .await? as i64;
    copied += under_lock;
    let check = tx
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE position > $1),
                    (SELECT count(*) FROM events_partitioned WHERE position > $1),
                    (SELECT ledger_hash FROM events ORDER BY position DESC LIMIT 1)
                    IS NOT DISTINCT FROM
                    (SELECT ledger_hash FROM events_partitioned ORDER BY position DESC LIMIT 1),
                    (SELECT hash FROM events ORDER BY position DESC LIMIT 1)
                    IS NOT DISTINCT FROM
                    (SELECT hash FROM events_partitioned ORDER BY position DESC LIMIT 1)",
            &[&done],
        )
        .await?;
    let (old, new, same_chain, same_hash): (i64, i64, bool, bool) =
        (check.get(0), check.get(1), check.get(2), check.get(3));
    if old != new || new != under_lock || !same_chain || !same_hash {
        return Err(MigrateError::PartitionMove(format!(
            "the copy does not match the ledger after position {done} ({old} events, {new} \
             copied): nothing was changed"
        )));
    }
    tx.batch_execute("SELECT ledger_swap_partitioned_events('events_partitioned')")
        .await?;
    tx.execute(
        "UPDATE ledger_head SET partitions_until = $1::text::timestamptz",
        &[&partitions_until],
    )
    .await?;
    roles::grant(&tx).await?;
    tx.commit().await?;
    let lock_held = locked_at.elapsed();
    Ok(Some(Moved {
        events: copied,
        events_under_lock: under_lock,
        elapsed: started.elapsed(),
        lock_held,
    }))
}

/// Copies the events at positions `(after, until]`, in their own transaction.
async fn copy_range(
    client: &mut tokio_postgres::Client,
    after: i64,
    until: i64,
) -> Result<i64, MigrateError> {
    let tx = client.transaction().await?;
    roles::become_owner(&tx).await?;
    let copied = tx
        .execute(
            &format!(
                "INSERT INTO events_partitioned ({COLUMNS})
                 SELECT {COLUMNS} FROM events WHERE position > $1 AND position <= $2
                  ORDER BY position"
            ),
            &[&after, &until],
        )
        .await?;
    tx.commit().await?;
    Ok(copied as i64)
}
