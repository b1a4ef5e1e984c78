//! Expiry notices the marketplace sent while a package's `expiresAt` was ahead
//! (`OrderExpiryHeld`), and whether each is settled: by the package's expiry or release after it.
//! The partial indexes of migration 13 keep these reads to the few notice, expiry and release
//! events: no traffic is read.

use super::StoreError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// The type of the newest expiry notice held, expiry or release of a stream (through the
/// partial index `events_expiry_notices`): `OrderExpiryHeld` when a held notice is still
/// unsettled.
pub async fn last_expiry_notice(
    client: &impl GenericClient,
    stream_id: &str,
) -> Result<Option<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT event_type FROM events
              WHERE stream_id = $1
                AND event_type IN ('OrderExpiryHeld', 'OrderExpired', 'OrderReleased')
              ORDER BY position DESC LIMIT 1",
        )
        .await?;
    Ok(client
        .query_opt(&statement, &[&stream_id])
        .await?
        .map(|row| row.get(0)))
}

/// `OrderExpiryHeld` events (as `h`) that no expiry or release of their stream follows.
const UNSETTLED: &str = "FROM events h
      WHERE h.event_type = 'OrderExpiryHeld'
        AND NOT EXISTS (SELECT 1 FROM events s
                         WHERE s.stream_id = h.stream_id AND s.position > h.position
                           AND s.event_type IN ('OrderExpired', 'OrderReleased'))";

/// A held notice not settled since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsettled {
    /// The ledger position of its `OrderExpiryHeld`.
    pub position: i64,
    /// Its stream: the package's.
    pub stream_id: String,
    /// When it arrived (and was recorded).
    pub held_at: DateTime<Utc>,
    /// The package's `expiresAt` it was held against.
    pub held_against: DateTime<Utc>,
}

/// The held notices not settled since, after position `after`, oldest first, at most `limit`.
pub async fn unsettled_notices(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Unsettled>, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT h.position, h.stream_id, h.recorded_at,
                    (h.payload->>'expiresAt')::timestamptz
               {UNSETTLED} AND h.position > $1
              ORDER BY h.position LIMIT $2"
        ))
        .await?;
    Ok(client
        .query(&statement, &[&after, &limit])
        .await?
        .iter()
        .map(|row| Unsettled {
            position: row.get(0),
            stream_id: row.get(1),
            held_at: row.get(2),
            held_against: row.get(3),
        })
        .collect())
}

/// How many held notices are not settled since.
pub async fn unsettled_notice_count(
    client: &impl GenericClient,
) -> Result<i64, tokio_postgres::Error> {
    let statement = client
        .prepare_cached(&format!("SELECT count(*) {UNSETTLED}"))
        .await?;
    Ok(client.query_one(&statement, &[]).await?.get(0))
}
