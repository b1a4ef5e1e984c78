//! The ledger's head (`ledger_head`: the last position and the ledger-wide hash there) and the
//! chain as stored at one position: what the audits, the checkpointer and the restore check hold
//! a signed hash against.

use super::hash::{stored_hash, Hash};
use super::Connection;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The ledger head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last position handed out and committed (0 on an empty ledger).
    pub position: i64,
    /// The ledger-wide hash there (32 zero bytes on an empty ledger).
    pub ledger_hash: Hash,
    /// When the event at the head was recorded; `None` on an empty ledger.
    pub recorded_at: Option<DateTime<Utc>>,
}

/// The ledger head. Its position and ledger hash change together in each append's transaction,
/// so one read sees a consistent pair.
pub async fn head(client: &impl Connection) -> Result<Head, tokio_postgres::Error> {
    let row = client
        .connection()
        .query_one(
            "SELECT h.position, h.ledger_hash,
                    (SELECT recorded_at FROM events WHERE position = h.position)
               FROM ledger_head h",
            &[],
        )
        .await?;
    Ok(Head {
        position: row.get(0),
        ledger_hash: stored_hash(row.get(1)),
        recorded_at: row.get(2),
    })
}

/// The chain as the event at one position stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainAt {
    pub recorded_at: DateTime<Utc>,
    /// `events.hash_version`.
    pub hash_version: i16,
    /// The ledger-wide hash up to this event; `None` where the row stores none (rows of hash
    /// version 1, older than the chain, and rows of version 4 other than the last of their
    /// append): the chain is then recomputed from the hashes before it.
    pub ledger_hash: Option<Hash>,
}

/// The chain at `position`; `None` when no event is there (none was appended yet, or its month
/// was dropped from the database).
pub async fn chain_at(
    client: &impl Connection,
    position: i64,
) -> Result<Option<ChainAt>, tokio_postgres::Error> {
    let row = client
        .connection()
        .query_opt(
            "SELECT recorded_at, hash_version, ledger_hash FROM events WHERE position = $1",
            &[&position],
        )
        .await?;
    Ok(row.map(|row| ChainAt {
        recorded_at: row.get(0),
        hash_version: row.get(1),
        ledger_hash: row.get::<_, Option<&[u8]>>(2).map(stored_hash),
    }))
}

/// Seconds since the event at `position` was recorded, by the database's clock (the clock that
/// recorded it); `None` when no event is there.
pub async fn age_of(
    client: &impl Connection,
    position: i64,
) -> Result<Option<f64>, tokio_postgres::Error> {
    let statement = client
        .prepare(
            "SELECT extract(epoch FROM now() - recorded_at)::float8
               FROM events WHERE position = $1",
        )
        .await?;
    Ok(client
        .connection()
        .query_opt(&statement, &[&position])
        .await?
        .map(|row| row.get(0)))
}

/// The oldest position still in the database (later than the months dropped from it); `None`
/// when it holds no event.
pub async fn oldest_position(
    client: &impl Connection,
) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(client
        .connection()
        .query_one("SELECT min(position) FROM events", &[])
        .await?
        .get(0))
}

/// A stream's head: its last version, that event's hash and its position.
pub type StreamHead = (i64, Hash, i64);

/// The head at `position` of every stream with events after it: what a check that starts after
/// `position` (a signed checkpoint) links each stream's next event to. One lookup per such
/// stream, in `checkpoint_heads` when the checkpointer recorded its head there (else one indexed
/// search per monthly partition): the cost follows what is new.
pub async fn stream_heads_at(
    client: &impl Connection,
    position: i64,
) -> Result<HashMap<String, StreamHead>, tokio_postgres::Error> {
    let rows = client
        .connection()
        .query(
            // A stream's head at the checkpoint is the event its first event after it follows:
            // its lowest version there (a stream whose versions do not rise along the positions
            // is named by the check that follows). The checkpointer recorded it in
            // `checkpoint_heads` when it signed (one lookup in a small table) unless the stream
            // has moved past a later checkpoint since; otherwise it is the stream's last event at
            // or before the checkpoint still in the database, or, when that was dropped, the head
            // its month's drop recorded: the newer of the two. The second search runs only when
            // the first finds nothing.
            "SELECT m.stream_id, h.version, h.hash, h.position
               FROM (SELECT stream_id, min(version) AS version
                       FROM events WHERE position > $1 GROUP BY stream_id) AS m
               JOIN LATERAL (
                    (SELECT version, hash, position FROM checkpoint_heads c
                      WHERE c.stream_id = m.stream_id AND c.version = m.version - 1
                        AND c.position <= $1)
                    UNION ALL
                    (SELECT version, hash, position FROM (
                        (SELECT version, hash, position FROM events e
                          WHERE ledger_stream_key(e.stream_id) = ledger_stream_key(m.stream_id)
                            AND e.stream_id = m.stream_id AND e.position <= $1
                          ORDER BY version DESC LIMIT 1)
                        UNION ALL
                        (SELECT version, hash, position FROM archived_stream_heads a
                          WHERE a.stream_id = m.stream_id AND a.position <= $1
                          ORDER BY version DESC LIMIT 1)
                    ) AS candidates ORDER BY version DESC LIMIT 1)
                    LIMIT 1
               ) h ON true",
            &[&position],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.get(0),
                (row.get(1), stored_hash(row.get(2)), row.get(3)),
            )
        })
        .collect())
}
