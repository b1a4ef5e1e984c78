//! What the usage chart and the statement read from the ledger: bounded ranges of one package's
//! stream, never the whole of it.
//!
//! Daily use comes from the package stream's events of the last `days` days. Within a stream,
//! `recorded_at` rises with `version` (appends record them in step), so the range starts after
//! the last event before the window, found by walking the stream index backwards
//! from the stream's end: both steps read only the window's events (≈ 2 × the reports of those
//! days), whatever the stream's age. Grants come from a partial index holding only them.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use projections::events::package_stream;
use projections::ids::InstanceId;
use rust_decimal::Decimal;

/// The chart's windows, in days.
pub const WINDOWS_DAYS: [u32; 2] = [30, 90];
/// Grants listed on one statement: a package is renewed at most monthly, so 1000 covers decades.
pub const GRANTS_SHOWN_MAX: i64 = 1000;

/// One day of one package (China Standard Time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub date: NaiveDate,
    pub bytes: u64,
    /// A task of the package was stopped that day (used up, expired or released).
    pub stopped: bool,
}

/// One grant of bytes: the purchase or a renewal, upgrade or expansion.
#[derive(Debug, Clone)]
pub struct Grant {
    pub kind: String,
    /// The order it answered: its `orderNumber`, or the deprecated `orderId` when it has none.
    pub order_id: String,
    pub at: DateTime<Utc>,
    pub bytes: u64,
    pub amount: Decimal,
    pub currency: String,
}

/// The release of a package: when, and the bytes it forfeited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub at: DateTime<Utc>,
    pub bytes: u64,
}

pub use crate::usage::window_start;

/// The date of an instant in China Standard Time.
pub fn cst_date(at: DateTime<Utc>) -> NaiveDate {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    at.with_timezone(&cst).date_naive()
}

/// Daily consumption of a package over the last `days` days, one entry per day (zeros included).
pub async fn daily(
    client: &impl GenericClient,
    instance_id: &InstanceId,
    days: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Day>, tokio_postgres::Error> {
    let (start, first) = window_start(now, days);
    let statement = client
        .prepare_cached(
            "SELECT ((recorded_at AT TIME ZONE 'UTC') + interval '8 hours')::date AS day,
                    coalesce(sum(traffic_bytes(payload))
                             FILTER (WHERE event_type = 'TrafficConsumed'), 0)::int8,
                    bool_or(event_type IN ('OrderExpired', 'OrderReleased')
                            OR (event_type = 'TrafficConsumed' AND traffic_action(payload) = 'stop'))
               FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
                AND version > coalesce((SELECT version FROM events
                                         WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
                                           AND recorded_at < $2
                                         ORDER BY version DESC LIMIT 1), 0)
                AND event_type IN ('TrafficConsumed', 'OrderExpired', 'OrderReleased')
              GROUP BY 1 ORDER BY 1",
        )
        .await?;
    let stream = package_stream(instance_id);
    let rows = client.query(&statement, &[&stream, &start]).await?;
    let mut out: Vec<Day> = (0..days)
        .map(|i| Day {
            date: first + Duration::days(i64::from(i)),
            bytes: 0,
            stopped: false,
        })
        .collect();
    for row in rows {
        let date: NaiveDate = row.get(0);
        let Ok(index) = usize::try_from((date - first).num_days()) else {
            continue;
        };
        if let Some(day) = out.get_mut(index) {
            day.bytes = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            day.stopped = row.get::<_, Option<bool>>(2).unwrap_or(false);
        }
    }
    Ok(out)
}

/// Every grant of a package, oldest first.
pub async fn grants(
    client: &impl GenericClient,
    instance_id: &InstanceId,
) -> Result<Vec<Grant>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT event_type, coalesce(payload->>'orderNumber', payload->>'orderId'), recorded_at,
                    (payload->>'bytesGranted')::int8, (payload->>'amount')::numeric,
                    payload->>'currency'
               FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1
                AND event_type IN ('OrderCreated', 'OrderRenewed', 'OrderUpgraded', 'OrderDilated')
              ORDER BY version LIMIT $2",
        )
        .await?;
    let stream = package_stream(instance_id);
    let rows = client
        .query(&statement, &[&stream, &GRANTS_SHOWN_MAX])
        .await?;
    Ok(rows
        .iter()
        .map(|row| Grant {
            kind: row.get(0),
            order_id: row.get::<_, Option<String>>(1).unwrap_or_default(),
            at: row.get(2),
            bytes: u64::try_from(row.get::<_, Option<i64>>(3).unwrap_or(0)).unwrap_or(0),
            amount: row.get::<_, Option<Decimal>>(4).unwrap_or_default(),
            currency: row.get::<_, Option<String>>(5).unwrap_or_default(),
        })
        .collect())
}

/// When a released package was released and what it forfeited. A stream holds one release at
/// most, near its end: walked back along the stream index.
pub async fn release(
    client: &impl GenericClient,
    instance_id: &InstanceId,
) -> Result<Option<Release>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT recorded_at, (payload->>'bytesForfeited')::int8 FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1 AND event_type = 'OrderReleased'
              ORDER BY version DESC LIMIT 1",
        )
        .await?;
    let stream = package_stream(instance_id);
    let row = client.query_opt(&statement, &[&stream]).await?;
    Ok(row.map(|row| Release {
        at: row.get(0),
        bytes: u64::try_from(row.get::<_, Option<i64>>(1).unwrap_or(0)).unwrap_or(0),
    }))
}
