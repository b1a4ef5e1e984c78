//! The operator's view of the outbox: undelivered entries (pending or dead) and the retry of dead
//! letters. Shared by `dts-ledger outbox` and the admin routes `/v1/outbox`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest page of entries: a page is built in memory and printed or sent whole.
pub const LIST_LIMIT_MAX: i64 = 1_000;
/// Dead letters queued again per statement by a retry of all of them: each UPDATE stays short.
const RETRY_BATCH_MAX: i64 = 1_000;

/// Which undelivered entries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Pending and dead.
    Undelivered,
    Pending,
    Dead,
}

impl Filter {
    fn as_str(self) -> &'static str {
        match self {
            Filter::Undelivered => "undelivered",
            Filter::Pending => "pending",
            Filter::Dead => "dead",
        }
    }
}

/// One undelivered entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"position": 4712, "subject": "package-dts-1", "type": "OrderBalanceLow", "recordedAt": "2026-11-26T08:00:00Z", "state": "pending", "attempts": 0, "firstAttemptAt": null, "nextAttemptAt": "2026-11-26T08:00:00Z", "deadAt": null, "lastError": null, "behind": 4711})))]
pub struct Entry {
    /// The ledger position of the event, and the CloudEvent `id`.
    pub position: i64,
    /// The event's stream: entries of one subject are delivered in order.
    pub subject: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    /// `pending` (waiting for its turn or its next attempt) or `dead`.
    pub state: String,
    pub attempts: i32,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub dead_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The earliest undelivered entry of the same subject, which this one waits behind.
    pub behind: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("outbox entry {0} does not exist (or was delivered and pruned)")]
    NotFound(i64),
    #[error("outbox entry {0} was delivered")]
    Delivered(i64),
    #[error("outbox entry {0} is not a dead letter: it is still being delivered")]
    NotDead(i64),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

/// Undelivered entries after `after`, oldest first, at most `limit` (1 to [`LIST_LIMIT_MAX`]).
pub async fn list(
    client: &tokio_postgres::Client,
    filter: Filter,
    after: i64,
    limit: i64,
) -> Result<Vec<Entry>, tokio_postgres::Error> {
    // One more than a page: the route reads it to tell whether another page follows.
    let limit = limit.clamp(1, LIST_LIMIT_MAX + 1);
    // Entries whose event is in the database (a month dropped with an entry left undelivered
    // took its event along); the events' type and time are the store's to read.
    let rows = client
        .query(
            "SELECT o.position, o.subject, o.dead_at IS NOT NULL, o.attempts, o.first_attempt_at,
                    o.next_attempt_at, o.dead_at, o.last_error,
                    (SELECT min(p.position) FROM outbox p
                      WHERE p.subject = o.subject AND p.position < o.position
                        AND p.delivered_at IS NULL)
               FROM outbox o JOIN events e ON e.position = o.position
              WHERE o.delivered_at IS NULL AND o.position > $1
                AND CASE $2::text WHEN 'dead' THEN o.dead_at IS NOT NULL
                                  WHEN 'pending' THEN o.dead_at IS NULL
                                  ELSE true END
              ORDER BY o.position
              LIMIT $3",
            &[&after, &filter.as_str(), &limit],
        )
        .await?;
    let positions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut events = super::events_at(client, &positions).await?;
    Ok(rows
        .iter()
        .filter_map(|row| Some((row, events.remove(&row.get::<_, i64>(0))?)))
        .map(|(row, event)| Entry {
            position: row.get(0),
            subject: row.get(1),
            event_type: event.event_type,
            recorded_at: event.recorded_at,
            state: if row.get(2) { "dead" } else { "pending" }.to_owned(),
            attempts: row.get(3),
            first_attempt_at: row.get(4),
            next_attempt_at: row.get(5),
            dead_at: row.get(6),
            last_error: row.get(7),
            behind: row.get(8),
        })
        .collect())
}

/// Queues the dead letter at `position` for delivery again, with a fresh count of attempts and
/// age; the later entries of its subject follow once it is delivered.
pub async fn retry(client: &tokio_postgres::Client, position: i64) -> Result<(), RetryError> {
    let requeued = client
        .execute(
            "UPDATE outbox
                SET dead_at = NULL, attempts = 0, first_attempt_at = NULL,
                    next_attempt_at = now(), locked_until = NULL
              WHERE position = $1 AND dead_at IS NOT NULL AND delivered_at IS NULL",
            &[&position],
        )
        .await?;
    if requeued == 1 {
        return Ok(());
    }
    let found = client
        .query_opt(
            "SELECT delivered_at IS NOT NULL FROM outbox WHERE position = $1",
            &[&position],
        )
        .await?;
    Err(match found {
        None => RetryError::NotFound(position),
        Some(row) if row.get(0) => RetryError::Delivered(position),
        Some(_) => RetryError::NotDead(position),
    })
}

/// Queues every dead letter for delivery again; returns how many.
pub async fn retry_all_dead(client: &tokio_postgres::Client) -> Result<u64, tokio_postgres::Error> {
    let mut requeued = 0;
    loop {
        let batch = client
            .execute(
                "UPDATE outbox
                    SET dead_at = NULL, attempts = 0, first_attempt_at = NULL,
                        next_attempt_at = now(), locked_until = NULL
                  WHERE position = ANY(ARRAY(
                        SELECT position FROM outbox
                         WHERE dead_at IS NOT NULL AND delivered_at IS NULL
                         ORDER BY position
                         LIMIT $1))",
                &[&RETRY_BATCH_MAX],
            )
            .await?;
        requeued += batch;
        if batch < RETRY_BATCH_MAX as u64 {
            return Ok(requeued);
        }
    }
}
