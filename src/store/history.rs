//! A package's history as its statement and its usage chart read it: the traffic and the stops
//! of each day of a window, every grant, and its release. Bounded ranges of the package's stream,
//! never the whole of it.
//!
//! A day's window starts after the stream's last event before it, found by walking the stream
//! index backwards from the stream's end: `recorded_at` rises with `version` within a stream
//! (appends record them in step), so both steps read only the window's events (≈ 2 × the reports
//! of those days), whatever the stream's age. Grants come from a partial index holding only them;
//! a stream holds one release at most, near its end.

use super::stored_bytes;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use rust_decimal::Decimal;

/// One day of a package's stream (China Standard Time) that saw traffic or a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayOfUse {
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

/// The days of stream `stream_id` from `start` on that saw traffic or a stop, in date order.
pub async fn days_of_use(
    client: &impl GenericClient,
    stream_id: &str,
    start: DateTime<Utc>,
) -> Result<Vec<DayOfUse>, tokio_postgres::Error> {
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
    let rows = client.query(&statement, &[&stream_id, &start]).await?;
    Ok(rows
        .iter()
        .map(|row| DayOfUse {
            date: row.get(0),
            bytes: stored_bytes(row.get::<_, Option<i64>>(1).unwrap_or(0)),
            stopped: row.get::<_, Option<bool>>(2).unwrap_or(false),
        })
        .collect())
}

/// Every grant of stream `stream_id`, oldest first, at most `limit`.
pub async fn grants(
    client: &impl GenericClient,
    stream_id: &str,
    limit: i64,
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
    let rows = client.query(&statement, &[&stream_id, &limit]).await?;
    Ok(rows
        .iter()
        .map(|row| Grant {
            kind: row.get(0),
            order_id: row.get::<_, Option<String>>(1).unwrap_or_default(),
            at: row.get(2),
            bytes: stored_bytes(row.get::<_, Option<i64>>(3).unwrap_or(0)),
            amount: row.get::<_, Option<Decimal>>(4).unwrap_or_default(),
            currency: row.get::<_, Option<String>>(5).unwrap_or_default(),
        })
        .collect())
}

/// When stream `stream_id`'s package was released and what it forfeited; `None` before that.
pub async fn release(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Option<Release>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(
            "SELECT recorded_at, (payload->>'bytesForfeited')::int8 FROM events
              WHERE ledger_stream_key(stream_id) = ledger_stream_key($1) AND stream_id = $1 AND event_type = 'OrderReleased'
              ORDER BY version DESC LIMIT 1",
        )
        .await?;
    let row = client.query_opt(&statement, &[&stream_id]).await?;
    Ok(row.map(|row| Release {
        at: row.get(0),
        bytes: stored_bytes(row.get::<_, Option<i64>>(1).unwrap_or(0)),
    }))
}
