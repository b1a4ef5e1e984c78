//! The ledger's head (`ledger_head`: the last position and the ledger-wide hash there) and the
//! chain as stored at one position: what the audits, the checkpointer and the restore check hold
//! a signed hash against.

use super::hash::Hash;
use super::Connection;
use chrono::{DateTime, Utc};

/// A hash column: the schema holds every hash to 32 bytes.
fn hash_of(bytes: &[u8]) -> Hash {
    bytes
        .try_into()
        .expect("the schema holds hashes to 32 bytes")
}

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
        ledger_hash: hash_of(row.get(1)),
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
        ledger_hash: row.get::<_, Option<&[u8]>>(2).map(hash_of),
    }))
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
