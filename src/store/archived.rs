//! Months archived and dropped from the database (invariant I12, schema/0021_archived_months.sql):
//! their record (`archived_months`), which says where the chain stood and which archive holds
//! them, so that the audits know what the database no longer holds and which file to ask for;
//! and the drop itself, with the stream heads it ends (`archived_stream_heads`).

use super::hash::{stored_hash, Hash};
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// A month dropped from the database, as `archived_months` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedMonth {
    pub month: String,
    pub first_position: i64,
    pub last_position: i64,
    pub ledger_hash_before: Hash,
    pub ledger_hash_last: Hash,
    pub last_recorded_at: DateTime<Utc>,
    pub last_hash_version: i16,
    pub file_name: String,
    pub file_sha256: Hash,
}

impl DroppedMonth {
    pub fn describe(&self) -> String {
        format!(
            "{} (month {}, positions {}..{}, sha256 {})",
            self.file_name,
            self.month,
            self.first_position,
            self.last_position,
            hex::encode(self.file_sha256)
        )
    }
}

/// The dropped months, oldest first.
pub async fn dropped(
    client: &impl GenericClient,
) -> Result<Vec<DroppedMonth>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT month, first_position, last_position, ledger_hash_before, ledger_hash_last,
                    last_recorded_at, last_hash_version, file_name, file_sha256
               FROM archived_months ORDER BY first_position",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| DroppedMonth {
            month: row.get(0),
            first_position: row.get(1),
            last_position: row.get(2),
            ledger_hash_before: stored_hash(row.get(3)),
            ledger_hash_last: stored_hash(row.get(4)),
            last_recorded_at: row.get(5),
            last_hash_version: row.get(6),
            file_name: row.get(7),
            file_sha256: stored_hash(row.get(8)),
        })
        .collect())
}

/// The dropped months, read under a lock that keeps out any other drop until `tx` ends: one drop
/// at a time, each starting from the record of the one before.
pub async fn dropped_for_drop(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<Vec<DroppedMonth>, tokio_postgres::Error> {
    tx.batch_execute("LOCK TABLE archived_months IN EXCLUSIVE MODE")
        .await?;
    dropped(tx).await
}

/// The first position still in the database: after the last dropped month (1 when none was).
pub fn live_first(dropped: &[DroppedMonth]) -> i64 {
    dropped.last().map_or(1, |last| last.last_position + 1)
}

/// What an audit reading positions after `after` needs from the archives, said as an error: the
/// files, by name and digest.
pub fn needed(dropped: &[DroppedMonth], after: i64) -> Option<String> {
    let files: Vec<String> = dropped
        .iter()
        .filter(|month| month.last_position > after)
        .map(DroppedMonth::describe)
        .collect();
    if files.is_empty() {
        return None;
    }
    Some(format!(
        "positions {}..{} were archived and dropped from the database: pass --archives DIR, a \
         directory holding {}",
        after + 1,
        live_first(dropped) - 1,
        files.join(", ")
    ))
}

/// Drops `partition`, which holds exactly the events of `month` (the caller checked it against
/// the month's archive), in `tx`: records the drop in `archived_months` with the archive's
/// signed `checkpoint` line, records the stream heads the month ends in `archived_stream_heads`,
/// then detaches and drops the partition. Returns how many stream heads were recorded.
pub async fn drop_partition(
    tx: &tokio_postgres::Transaction<'_>,
    month: &DroppedMonth,
    checkpoint: &str,
    partition: &str,
) -> Result<u64, tokio_postgres::Error> {
    let events = month.last_position - month.first_position + 1;
    tx.execute(
        "INSERT INTO archived_months (month, first_position, last_position, events,
                ledger_hash_before, ledger_hash_last, last_recorded_at, last_hash_version,
                file_name, file_sha256, checkpoint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &month.month,
            &month.first_position,
            &month.last_position,
            &events,
            &month.ledger_hash_before.as_slice(),
            &month.ledger_hash_last.as_slice(),
            &month.last_recorded_at,
            &month.last_hash_version,
            &month.file_name,
            &month.file_sha256.as_slice(),
            &checkpoint,
        ],
    )
    .await?;
    let streams = tx
        .execute(
            "INSERT INTO archived_stream_heads (month, stream_id, version, hash, position)
             SELECT DISTINCT ON (stream_id) $1, stream_id, version, hash, position
               FROM events WHERE position BETWEEN $2 AND $3
              ORDER BY stream_id, version DESC",
            &[&month.month, &month.first_position, &month.last_position],
        )
        .await?;
    // The name comes from the catalog (`super::partitions::partition_of`): safe to write as is.
    tx.batch_execute(&format!(
        "ALTER TABLE events DETACH PARTITION {partition}; DROP TABLE {partition};"
    ))
    .await?;
    Ok(streams)
}
