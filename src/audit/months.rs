//! Closed months leaving the database (invariant I12): `archive --month` writes a month to its
//! archive (the file: [`super::archive`]), `archive --drop` drops its partition once the archive
//! was read back and held against the live chain, the store recording the drop
//! ([`crate::store::archived`]); the audits read dropped months from their archives
//! ([`feed_dropped`]) or say which archive they need ([`needed`]).

use super::archive::{self, ArchiveError, Checked, Header, Writer};
use super::checkpoint::{Checkpoint, Keyring};
use super::hasher::Hasher;
use super::report::Month;
use super::source::{self, Range, Selection, Until};
pub use crate::store::archived::{dropped, live_first, needed, DroppedMonth};
use crate::store::hash::{ledger_hash, Hash, GENESIS};
use crate::store::{EventRow, MetadataRun, PrevHashes};
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_postgres::GenericClient;

/// Why archived events could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError<E> {
    /// An archive the audit needs is absent, or not the file recorded when its month was dropped.
    #[error("{0}")]
    Needed(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// What `each` returned.
    #[error("{0}")]
    Each(E),
}

impl<E> FeedError<E> {
    /// What went wrong with the archives; `each`'s own error is said by its caller.
    pub fn to_string_lossy(&self) -> String {
        match self {
            FeedError::Needed(text) => text.clone(),
            FeedError::Archive(error) => error.to_string(),
            FeedError::Each(_) => "the archived events could not be used".to_owned(),
        }
    }
}

/// [`feed_dropped`] up to what `until` lets through: a position, or a time (the events recorded
/// after it, and every one after the first of them, are left out); the end is the last dropped
/// event. Returns whether `until` lets the ledger go on past them (`false`: a time stopped it).
pub fn feed_dropped_until<E>(
    dir: Option<&Path>,
    dropped: &[DroppedMonth],
    after: i64,
    until: Until,
    mut each: impl FnMut(&EventRow<'_>, &Hash) -> Result<(), E>,
) -> Result<bool, FeedError<E>> {
    let last_dropped = live_first(dropped) - 1;
    let upto = match until {
        Until::Position(last) => last.min(last_dropped),
        _ => last_dropped,
    };
    let mut stopped = false;
    feed_dropped(dir, dropped, after, upto, |row, hash| {
        if stopped || matches!(until, Until::Time(time) if row.recorded_at > time) {
            stopped = true;
            return Ok(());
        }
        each(row, hash)
    })?;
    Ok(!stopped)
}

/// Calls `each` with every dropped event after `after` up to position `upto`, in position order,
/// read from the archives in `dir`; each archive must be the file recorded when its month was
/// dropped (by SHA-256), and whole on its own ([`archive::read`]).
pub fn feed_dropped<E>(
    dir: Option<&Path>,
    dropped: &[DroppedMonth],
    after: i64,
    upto: i64,
    mut each: impl FnMut(&EventRow<'_>, &Hash) -> Result<(), E>,
) -> Result<(), FeedError<E>> {
    let wanted: Vec<&DroppedMonth> = dropped
        .iter()
        .filter(|month| month.last_position > after && month.first_position <= upto)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(dir) = dir else {
        return Err(FeedError::Needed(
            needed(dropped, after).expect("some month is wanted"),
        ));
    };
    for month in wanted {
        let path = dir.join(&month.file_name);
        let digest = archive::file_sha256(&path).map_err(|error| {
            FeedError::Needed(format!(
                "{}: {error}; it holds {}",
                path.display(),
                month.describe()
            ))
        })?;
        if digest != month.file_sha256 {
            return Err(FeedError::Needed(format!(
                "{} is not the archive recorded when month {} was dropped: its sha256 is {}, \
                 the record says {}",
                path.display(),
                month.month,
                hex::encode(digest),
                hex::encode(month.file_sha256)
            )));
        }
        archive::read(&path, None, |row, hash| {
            if row.position > after && row.position <= upto {
                each(row, hash).map_err(FeedError::Each)?;
            }
            Ok::<(), FeedError<E>>(())
        })?;
    }
    Ok(())
}

/// Where a month lies in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub first_position: i64,
    pub last_position: i64,
}

/// The positions of `month`'s events (cut in China Standard Time) in the database, refused
/// unless they are a contiguous stretch of the chain with every earlier event recorded before
/// the month and every later one after it (time runs forward along positions).
pub async fn stretch(client: &impl GenericClient, month: Month) -> Result<Option<Stretch>, String> {
    let (start, end) = month.bounds(archive::finance_zone());
    let Some(recorded) = crate::store::partitions::recorded_between(client, start, end)
        .await
        .map_err(|e| crate::store::describe(&e))?
    else {
        return Ok(None);
    };
    let (first, last) = (recorded.first_position, recorded.last_position);
    if recorded.events != last - first + 1 || recorded.misplaced != 0 {
        return Err(format!(
            "the events of {month} are not one stretch of positions ({} events between \
             positions {first} and {last}, {} outside it on the wrong side of the month): \
             time went backwards along the ledger; run `dts-ledger verify`",
            recorded.events, recorded.misplaced
        ));
    }
    Ok(Some(Stretch {
        first_position: first,
        last_position: last,
    }))
}

/// The ledger-wide hash before `position`: stored on the event before it, or recorded with the
/// dropped month it ended; rows of hash version 1 store none, so then the chain is recomputed
/// from their stored hashes.
async fn hash_before(
    tx: &tokio_postgres::Transaction<'_>,
    dropped: &[DroppedMonth],
    position: i64,
) -> Result<Hash, String> {
    if position == 1 {
        return Ok(GENESIS);
    }
    if let Some(month) = dropped.iter().find(|m| m.last_position == position - 1) {
        return Ok(month.ledger_hash_last);
    }
    let db = |e: tokio_postgres::Error| crate::store::describe(&e);
    let at = crate::store::chain_at(tx, position - 1)
        .await
        .map_err(db)?
        .ok_or_else(|| format!("the event at position {} is gone", position - 1))?;
    if let Some(stored) = at.ledger_hash {
        return Ok(stored);
    }
    let mut chain = GENESIS;
    source::for_each(
        tx,
        Range {
            after: 0,
            until: Until::Position(position - 1),
        },
        Selection::ALL,
        |row| {
            let row = EventRow::from_columns(row)?;
            let hash: Hash = row.hash.try_into().unwrap_or(GENESIS);
            chain = ledger_hash(&chain, &hash);
            Ok::<(), tokio_postgres::Error>(())
        },
    )
    .await
    .map_err(db)?;
    Ok(chain)
}

/// What `archive --month` wrote.
pub struct Written {
    pub path: PathBuf,
    pub header: Header,
    pub bytes: u64,
    pub write_elapsed: Duration,
    pub checked: Checked,
    pub check_elapsed: Duration,
}

/// Writes `month` (closed, never the current or a future month) from one consistent snapshot to
/// its archive in `dir`, checking every event as it goes, signs a checkpoint at its last event,
/// then reads the file back and checks it whole.
pub async fn write(
    client: &mut tokio_postgres::Client,
    month: Month,
    dir: &Path,
    key: &SigningKey,
    keyring: &Keyring,
    now: DateTime<Utc>,
) -> Result<Written, String> {
    let (_, end) = month.bounds(archive::finance_zone());
    if end > now {
        return Err(format!(
            "{month} is not closed yet (it ends at {} China Standard Time): only past months \
             are archived",
            end.with_timezone(&archive::finance_zone())
        ));
    }
    let started = Instant::now();
    let db = |e: tokio_postgres::Error| crate::store::describe(&e);
    let tx = source::snapshot(client).await.map_err(db)?;
    let dropped = dropped(&tx).await.map_err(db)?;
    if let Some(done) = dropped.iter().find(|m| m.month == month.to_string()) {
        return Err(format!(
            "{month} was dropped from the database already; its archive is {}",
            done.describe()
        ));
    }
    let Some(stretch) = stretch(&tx, month).await? else {
        return Err(format!(
            "no event was recorded in {month}: nothing to archive"
        ));
    };
    let before = hash_before(&tx, &dropped, stretch.first_position).await?;
    let header = Header {
        format: archive::FORMAT.to_owned(),
        month: month.to_string(),
        utc_offset: "+08:00".to_owned(),
        first_position: stretch.first_position,
        last_position: stretch.last_position,
        events: stretch.last_position - stretch.first_position + 1,
        ledger_hash_before: hex::encode(before),
    };
    let mut writer = Writer::create(dir, &header)?;
    let mut segment = archive::Segment::new(&header)?;
    let mut hasher = Hasher::default();
    let mut metadata = MetadataRun::default();
    // Rows that store no previous hash (migration 25) get it from their stream's event before:
    // in this month, or the stream's head before it.
    let mut prev_hashes = PrevHashes::starting_with(
        crate::store::prev_hashes_before(&tx, stretch.first_position - 1, stretch.last_position)
            .await
            .map_err(db)?,
    );
    #[derive(Debug, thiserror::Error)]
    enum Failed {
        #[error("{}", crate::store::describe(.0))]
        Database(#[from] tokio_postgres::Error),
        #[error("{0}")]
        Other(String),
    }
    source::for_each(
        &tx,
        Range {
            after: stretch.first_position - 1,
            until: Until::Position(stretch.last_position),
        },
        Selection::ALL,
        |row| {
            let row = EventRow::from_columns(row)?;
            // A month starts with an append, whose first event stores its metadata.
            let Some(metadata) = metadata.resolve(row.metadata.map(|m| m.0)) else {
                return Err(Failed::Other(format!(
                    "the event at position {} stores no metadata and follows none that does: \
                     nothing archived; run `dts-ledger verify`",
                    row.position
                )));
            };
            let Some(prev_hash) =
                prev_hashes.resolve(row.stream_id, row.version, row.prev_hash, row.hash)
            else {
                return Err(Failed::Other(format!(
                    "the event at position {} stores no previous hash and follows no event of its \
                     stream that is known: nothing archived; run `dts-ledger verify`",
                    row.position
                )));
            };
            let hash = hasher
                .hash(&row, &prev_hash, metadata)
                .map_err(Failed::Other)?;
            segment.check(&row, &hash).map_err(|(fault, detail)| {
                Failed::Other(format!(
                    "the ledger is not intact at position {} ({}: {detail}): nothing archived; \
                     run `dts-ledger verify`",
                    row.position,
                    fault.as_str()
                ))
            })?;
            writer
                .event(&row, &prev_hash, metadata)
                .map_err(|e| Failed::Other(format!("cannot write the archive: {e}")))
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(db)?;
    if !segment.complete() {
        return Err("the month's events were not all read".into());
    }
    let checkpoint = Checkpoint::sign_with(key, stretch.last_position, segment.chain, now, None);
    let path = writer
        .finish(&checkpoint)
        .map_err(|e| format!("cannot write the archive: {e}"))?;
    let write_elapsed = started.elapsed();
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    let reading = Instant::now();
    let checked = archive::read(&path, Some(keyring), |_, _| Ok::<(), ArchiveError>(()))
        .map_err(|e| format!("the archive written does not read back whole: {e}"))?;
    Ok(Written {
        path,
        header,
        bytes,
        write_elapsed,
        checked,
        check_elapsed: reading.elapsed(),
    })
}

/// Whether this connection acts as the owner (a member of it, or a superuser).
async fn is_owner(client: &impl GenericClient) -> Result<(bool, String), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_has_role(current_user, $1, 'USAGE')
                    OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    current_user::text",
            &[&crate::database::roles::OWNER],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// What `archive --drop` dropped.
pub struct Dropped {
    pub month: DroppedMonth,
    pub partition: String,
    pub streams: u64,
}

/// Drops `month`'s partition: only as the owner, only the oldest month still in the database,
/// and only once its archive in `dir` was read back whole, its checkpoint signed by a trusted
/// key, and found to be the live chain (the same positions, the hash before its first event and
/// at its last). In one transaction: the drop's record, the stream heads it ends, the detach and
/// the drop; a failure leaves nothing done.
pub async fn drop_month(
    client: &mut tokio_postgres::Client,
    month: Month,
    dir: &Path,
    keyring: &Keyring,
    newest_checkpoint: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Dropped, String> {
    let db = |e: tokio_postgres::Error| crate::store::describe(&e);
    let (owner, user) = is_owner(client).await.map_err(db)?;
    if !owner {
        return Err(format!(
            "archive --drop needs the owner's role ({}); this connection is {user}: run it with \
             LEDGER_MIGRATE_DATABASE_URL (or DATABASE_URL) naming the owner",
            crate::database::roles::OWNER
        ));
    }
    let (_, end) = month.bounds(archive::finance_zone());
    if end > now {
        return Err(format!(
            "{month} is not closed yet: only past months are dropped"
        ));
    }
    if keyring.is_empty() {
        return Err(
            "the archive's checkpoint must be signed by a trusted key: no public key ([audit] \
             public_keys or signing_key_file)"
                .into(),
        );
    }
    let path = dir.join(archive::file_name(month));
    let checked = archive::read(&path, Some(keyring), |_, _| Ok::<(), ArchiveError>(()))
        .map_err(|e| format!("{month} is not dropped: {e}"))?;
    if checked.header.month != month.to_string() {
        return Err(format!(
            "{} holds month {}, not {month}",
            path.display(),
            checked.header.month
        ));
    }
    let tx = client.transaction().await.map_err(db)?;
    let dropped = crate::store::archived::dropped_for_drop(&tx)
        .await
        .map_err(db)?;
    if dropped.iter().any(|m| m.month == month.to_string()) {
        return Err(format!("{month} was dropped already"));
    }
    let refuse = |why: String| format!("{month} is not dropped: {why}");
    let stretch = stretch(&tx, month)
        .await?
        .ok_or_else(|| refuse("no event of it is in the database".into()))?;
    let oldest = crate::store::oldest_position(&tx).await.map_err(db)?;
    if oldest != Some(stretch.first_position) {
        return Err(refuse(format!(
            "the oldest event in the database is at position {}, before this month's first \
             ({}): drop the older months first, so that the database keeps one unbroken end of \
             the chain",
            oldest.unwrap_or(0),
            stretch.first_position
        )));
    }
    let header = &checked.header;
    if (header.first_position, header.last_position)
        != (stretch.first_position, stretch.last_position)
    {
        return Err(refuse(format!(
            "the archive holds positions {}..{}, the database's month is {}..{}",
            header.first_position,
            header.last_position,
            stretch.first_position,
            stretch.last_position
        )));
    }
    let before = hash_before(&tx, &dropped, stretch.first_position).await?;
    let last = crate::store::chain_at(&tx, stretch.last_position)
        .await
        .map_err(db)?
        .and_then(|at| at.ledger_hash);
    if header.hash_before() != Some(before) || last != Some(checked.checkpoint.ledger_hash) {
        return Err(refuse(
            "the archive's chain is not the live chain: its ledger hash before its first event \
             or at its last is not the database's"
                .into(),
        ));
    }
    // The live ledger must stay checkable without any archive: a trusted checkpoint at or after
    // the month's end is where `verify --since-checkpoint` (and `serve`'s checkpointer) start.
    if newest_checkpoint.is_none_or(|position| position < stretch.last_position) {
        return Err(refuse(format!(
            "no stored checkpoint a trusted key signed is at or after its last event (position \
             {}): run `dts-ledger checkpoint --snapshot` first, so that the audits that start \
             from a checkpoint need no archive",
            stretch.last_position
        )));
    }
    let partition = crate::store::partitions::partition_of(&tx, stretch.first_position)
        .await
        .map_err(db)?
        .ok_or_else(|| {
            refuse(format!(
                "the event at position {} is gone",
                stretch.first_position
            ))
        })?;
    if partition == "events" {
        return Err(refuse(
            "events is not partitioned: a month leaves the database with its partition".into(),
        ));
    }
    let held = crate::store::partitions::partition_bounds(&tx, &partition)
        .await
        .map_err(db)?;
    if held
        != (
            Some(stretch.first_position),
            Some(stretch.last_position),
            header.events,
        )
    {
        return Err(refuse(format!(
            "partition {partition} holds other events than the month's (positions {:?}..{:?}, \
             {} events)",
            held.0, held.1, held.2
        )));
    }
    let record = DroppedMonth {
        month: month.to_string(),
        first_position: stretch.first_position,
        last_position: stretch.last_position,
        ledger_hash_before: before,
        ledger_hash_last: checked.checkpoint.ledger_hash,
        last_recorded_at: checked.last_recorded_at,
        last_hash_version: checked.last_hash_version,
        file_name: archive::file_name(month),
        file_sha256: checked.file_sha256,
    };
    let checkpoint_line = checked.checkpoint.to_json().to_string();
    let streams =
        crate::store::archived::drop_partition(&tx, &record, &checkpoint_line, &partition)
            .await
            .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Dropped {
        month: record,
        partition,
        streams,
    })
}
