//! The ledger's monthly partitions (schema/0019): listing them with their bounds, which one holds
//! a position and what a span of time holds, the service's maintenance (partitions made ahead,
//! expired traffic keys removed) and what an event costs in bytes.
//!
//! `events` is range-partitioned by `recorded_at`, one partition per finance month (China
//! Standard Time, UTC+8), named `events_pYYYY_MM`. Time never goes backwards along positions, so
//! each partition also holds one contiguous stretch of positions: [`partitions`] gives both.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use tokio_postgres::GenericClient;

/// The offset of the finance month (China Standard Time, no daylight saving).
pub const FINANCE_UTC_OFFSET_HOURS: i64 = 8;

/// Months of partitions the maintenance keeps made ahead of the current one: two, so that a
/// service stopped for weeks still finds its month's partition on start.
pub const MONTHS_AHEAD: i32 = 2;

/// How often the maintenance runs in each `serve` process. Partitions are made weeks ahead and
/// keys expire after weeks, so an hour is plenty; it runs at start as well.
pub const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Positions whose traffic keys one maintenance transaction removes: a few thousand rows, well
/// within the service's statement timeout.
pub const EXPIRY_POSITIONS_MAX: i64 = 10_000;

/// The slack added to the retention window before a traffic key is removed: the hour a report's
/// `periodEnd` may lie ahead of the clock (the ingest pipeline's `PERIOD_END_SKEW_MAX`, which a
/// test there holds below this slack) and a day for clocks of several processes that disagree. A
/// key is removed only when every retry of its report is refused as `report_too_late`
/// (docs/ledger.md, "Idempotency keys and their retention").
pub const EXPIRY_SLACK: Duration = Duration::hours(25);

/// One monthly partition of `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// `events_pYYYY_MM`.
    pub name: String,
    /// The finance month it holds: (year, month 1–12).
    pub month: (i32, u32),
    /// The month's bounds in time, `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The first position it holds; for a partition holding no event, the position its first
    /// event would take (one past the events before it).
    pub first_position: i64,
    /// One past its last position, once the month is closed: the ledger head's time has passed
    /// `ends_at`, so no append can land in it any more. `None` while it may still grow.
    pub end_position: Option<i64>,
    /// Events it holds.
    pub events: i64,
}

impl Partition {
    /// Whether the month is closed (see [`Partition::end_position`]).
    pub fn is_closed(&self) -> bool {
        self.end_position.is_some()
    }
}

/// The name of the partition holding finance month `(year, month)`.
pub fn partition_name(year: i32, month: u32) -> String {
    format!("events_p{year:04}_{month:02}")
}

/// The start of finance month `(year, month)` in UTC.
pub fn month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    let midnight = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()?;
    Some(midnight - Duration::hours(FINANCE_UTC_OFFSET_HOURS))
}

/// The finance month `at` falls in.
pub fn month_of(at: DateTime<Utc>) -> (i32, u32) {
    let local = at + Duration::hours(FINANCE_UTC_OFFSET_HOURS);
    (local.year(), local.month())
}

/// The month after `(year, month)`.
pub fn next_month((year, month): (i32, u32)) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn parse_name(name: &str) -> Option<(i32, u32)> {
    let rest = name.strip_prefix("events_p")?;
    let (year, month) = rest.split_once('_')?;
    let (year, month) = (year.parse().ok()?, month.parse().ok()?);
    (1..=12).contains(&month).then_some((year, month))
}

/// Every partition of `events`, oldest month first, with its bounds in time and positions. Empty
/// when the ledger is not partitioned (not moved yet with `dts-ledger migrate-partitions`). Reads
/// only the catalog, the ledger head and each partition's position index (its first and last
/// entries), so it costs the same however large the months are. Works as any role that reads
/// `events`.
pub async fn partitions(
    client: &impl GenericClient,
) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let names = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'public.events'::regclass ORDER BY c.relname",
            &[],
        )
        .await?;
    let head = client
        .query_one("SELECT position, recorded_at FROM ledger_head", &[])
        .await?;
    let (head_position, head_at): (i64, DateTime<Utc>) = (head.get(0), head.get(1));
    let mut found = Vec::new();
    for row in names {
        let name: String = row.get(0);
        let Some(month) = parse_name(&name) else {
            continue;
        };
        let (Some(starts_at), Some(ends_at)) = (
            month_start(month.0, month.1),
            month_start(next_month(month).0, next_month(month).1),
        ) else {
            continue;
        };
        // The name comes from the catalog and matched events_pYYYY_MM: safe to quote as is.
        let (first, last, events) = partition_bounds(client, &format!("\"{name}\"")).await?;
        found.push((name, month, starts_at, ends_at, first, last, events));
    }
    found.sort_by_key(|p| p.1);
    // An empty month starts where the next events start (positions are gapless), or after the
    // head when no event follows it.
    let mut next_first = head_position + 1;
    let mut listed = Vec::with_capacity(found.len());
    for (name, month, starts_at, ends_at, first, last, events) in found.into_iter().rev() {
        let first_position = first.unwrap_or(next_first);
        let end = last.map_or(first_position, |last| last + 1);
        listed.push(Partition {
            name,
            month,
            starts_at,
            ends_at,
            first_position,
            end_position: (head_at >= ends_at).then_some(end),
            events,
        });
        next_first = first_position;
    }
    listed.reverse();
    Ok(listed)
}

/// The first and last positions one partition holds, and how many events: read from its
/// position index's first and last entries and its rows. `partition` is a name from the catalog,
/// quoted as it must be ([`partition_of`] gives it so).
pub async fn partition_bounds(
    client: &impl GenericClient,
    partition: &str,
) -> Result<(Option<i64>, Option<i64>, i64), tokio_postgres::Error> {
    let bounds = client
        .query_one(
            &format!("SELECT min(position), max(position), count(*) FROM {partition}"),
            &[],
        )
        .await?;
    Ok((bounds.get(0), bounds.get(1), bounds.get(2)))
}

/// The name of the partition holding the event at `position`, as the catalog writes it (`events`
/// itself while the ledger is not partitioned); `None` when no event is there.
pub async fn partition_of(
    client: &impl GenericClient,
    position: i64,
) -> Result<Option<String>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT tableoid::regclass::text FROM events WHERE position = $1",
            &[&position],
        )
        .await?
        .map(|row| row.get(0)))
}

/// The events recorded in a span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub first_position: i64,
    pub last_position: i64,
    pub events: i64,
    /// Events outside `first_position..=last_position` recorded on the wrong side of the span
    /// (before it at a later position, or after it at an earlier one): none while time runs
    /// forward along positions.
    pub misplaced: i64,
}

/// The events recorded in `[start, end)`; `None` when there are none.
pub async fn recorded_between(
    client: &impl GenericClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Option<Recorded>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT min(position), max(position), count(*) FROM events
              WHERE recorded_at >= $1 AND recorded_at < $2",
            &[&start, &end],
        )
        .await?;
    let (Some(first), Some(last)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
    else {
        return Ok(None);
    };
    let misplaced = client
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE position < $1 AND recorded_at >= $3)
                  + (SELECT count(*) FROM events WHERE position > $2 AND recorded_at < $4)",
            &[&first, &last, &start, &end],
        )
        .await?
        .get(0);
    Ok(Some(Recorded {
        first_position: first,
        last_position: last,
        events: row.get(2),
        misplaced,
    }))
}

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintained {
    /// Whether partitions had to be made.
    pub partitions_made: bool,
    /// Traffic keys removed.
    pub keys_expired: u64,
}

/// One maintenance run, as the service: makes the partitions of this month and the
/// [`MONTHS_AHEAD`] following ones when they are missing (through the owner's
/// `ledger_ensure_partitions`), and removes the traffic keys of events older than
/// `retention` + [`EXPIRY_SLACK`].
pub async fn maintain(
    client: &mut deadpool_postgres::Object,
    retention: Duration,
) -> Result<Maintained, tokio_postgres::Error> {
    let mut done = Maintained::default();
    let ahead = Utc::now() + Duration::days(31 * i64::from(MONTHS_AHEAD));
    let missing: bool = client
        .query_one(
            "SELECT partitions_until <> 'infinity' AND partitions_until < $1 FROM ledger_head",
            &[&ahead],
        )
        .await?
        .get(0);
    if missing {
        let tx = client.transaction().await?;
        tx.query_one(
            "SELECT ledger_ensure_partitions(now(), $1)::text",
            &[&MONTHS_AHEAD],
        )
        .await?;
        tx.commit().await?;
        done.partitions_made = true;
    }
    done.keys_expired = expire_traffic_keys(client, retention).await?;
    Ok(done)
}

/// Removes the idempotency keys of traffic events recorded before `now − retention −`
/// [`EXPIRY_SLACK`], [`EXPIRY_POSITIONS_MAX`] positions per transaction, and moves
/// `idempotency_expiry` past them. Marketplace keys are never removed.
pub async fn expire_traffic_keys(
    client: &mut deadpool_postgres::Object,
    retention: Duration,
) -> Result<u64, tokio_postgres::Error> {
    let cut_at = Utc::now() - retention - EXPIRY_SLACK;
    let mut removed = 0;
    loop {
        let tx = client.transaction().await?;
        let done: i64 = tx
            .query_one("SELECT position FROM idempotency_expiry FOR UPDATE", &[])
            .await?
            .get(0);
        let cut: i64 = tx
            .query_one(crate::store::POSITION_AT, &[&cut_at])
            .await?
            .get(0);
        if cut <= done {
            return Ok(removed);
        }
        let until = cut.min(done.saturating_add(EXPIRY_POSITIONS_MAX));
        let (keys, positions) = traffic_keys(&tx, done, until).await?;
        removed += tx
            .execute(
                "DELETE FROM idempotency_keys k USING unnest($1::uuid[], $2::int8[]) AS d(key, position)
                  WHERE k.key = d.key AND k.position = d.position",
                &[&keys, &positions],
            )
            .await?;
        tx.execute("UPDATE idempotency_expiry SET position = $1", &[&until])
            .await?;
        tx.commit().await?;
    }
}

/// The digests of the keys of the traffic events after position `after` up to `until`, with
/// their positions: the key a row stores (before hash version 4), or the one the event catalog
/// derives from its payload.
async fn traffic_keys(
    tx: &deadpool_postgres::Transaction<'_>,
    after: i64,
    until: i64,
) -> Result<(Vec<uuid::Uuid>, Vec<i64>), tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT {} FROM events
                  WHERE position > $1 AND position <= $2 AND event_type = 'TrafficConsumed'",
                super::EVENT_COLUMNS
            ),
            &[&after, &until],
        )
        .await?;
    let mut found = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for row in rows {
        let recorded = super::RecordedEvent::from_columns(&row)?;
        // A payload that does not decode has no key to remove: verify names such a row.
        if let Some(key) = recorded.answered_key(None) {
            found.0.push(crate::store::key_digest(&key));
            found.1.push(recorded.position);
        }
    }
    Ok(found)
}

/// Runs [`maintain`] at start and every [`MAINTENANCE_EVERY`], logging failures (the next run
/// tries again; an append makes its own partition if it must).
pub async fn maintain_forever(pool: deadpool_postgres::Pool, retention: Duration) {
    let mut ticks = tokio::time::interval(MAINTENANCE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = match pool.get().await {
            Ok(mut client) => maintain(&mut client, retention)
                .await
                .map_err(|e| crate::store::describe(&e)),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok(done) if done.partitions_made || done.keys_expired > 0 => {
                tracing::info!(
                    partitions_made = done.partitions_made,
                    keys_expired = done.keys_expired,
                    "ledger maintenance"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "ledger maintenance failed; trying again later"),
        }
    }
}

/// Events in the database (every partition): what `dts-ledger stats` divides the bytes by.
pub async fn events(client: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0))
}

/// The bytes of one relation of the append path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationBytes {
    /// `events` (all partitions), `stream_heads` or `idempotency_keys`, or an index; the
    /// per-partition indexes are summed under `events_pYYYY_MM_<name>` as `events_p*_<name>`.
    pub name: String,
    /// `heap`, `toast` or `index`.
    pub kind: &'static str,
    pub bytes: i64,
}

/// Where the append path's bytes are: the heap, TOAST and every index of `events` (summed over
/// its partitions), `stream_heads` and `idempotency_keys`, as `pg_relation_size` counts them
/// (every fork, whole pages). `dts-ledger stats` prints it per event.
pub async fn storage(
    client: &impl GenericClient,
) -> Result<Vec<RelationBytes>, tokio_postgres::Error> {
    let rows = client
        .query(
            "WITH tables AS (
                 SELECT relid AS oid, 'events' AS label FROM pg_partition_tree('public.events')
                  WHERE isleaf
                 UNION ALL
                 SELECT c.oid, c.relname::text FROM pg_class c
                  WHERE c.oid IN (to_regclass('public.stream_heads'),
                                  to_regclass('public.idempotency_keys'))
             ), sizes AS (
                 SELECT t.label AS name, 'heap' AS kind,
                        pg_relation_size(t.oid, 'main') + pg_relation_size(t.oid, 'fsm')
                        + pg_relation_size(t.oid, 'vm') AS bytes
                   FROM tables t
                 UNION ALL
                 SELECT t.label, 'toast', pg_total_relation_size(c.reltoastrelid)
                   FROM tables t JOIN pg_class c ON c.oid = t.oid WHERE c.reltoastrelid <> 0
                 UNION ALL
                 SELECT regexp_replace(
                            coalesce(pg_partition_root(i.indexrelid), i.indexrelid)::regclass::text,
                            '^events_p[0-9]{4}_[0-9]{2}_', 'events_p*_'),
                        'index', pg_total_relation_size(i.indexrelid)
                   FROM tables t JOIN pg_index i ON i.indrelid = t.oid
             )
             SELECT name, kind, sum(bytes)::int8 FROM sizes GROUP BY name, kind
              ORDER BY kind = 'index', name",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| RelationBytes {
            name: row.get(0),
            kind: match row.get::<_, &str>(1) {
                "heap" => "heap",
                "toast" => "toast",
                _ => "index",
            },
            bytes: row.get(2),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finance_month_starts_at_midnight_in_china() {
        let start = month_start(2026, 12).unwrap();
        assert_eq!(start.to_rfc3339(), "2026-11-30T16:00:00+00:00");
        assert_eq!(month_of(start), (2026, 12));
        assert_eq!(month_of(start - Duration::microseconds(1)), (2026, 11));
        assert_eq!(next_month((2026, 12)), (2027, 1));
    }

    #[test]
    fn names_carry_their_month() {
        assert_eq!(partition_name(2026, 3), "events_p2026_03");
        assert_eq!(parse_name("events_p2026_03"), Some((2026, 3)));
        assert_eq!(parse_name("events_p2026_13"), None);
        assert_eq!(parse_name("events_partitioned"), None);
    }
}
