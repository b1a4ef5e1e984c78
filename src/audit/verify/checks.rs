//! The checks of [`Verifier`], fed one row at a time in position order, and the batch of rows
//! they are fed from by the streamed pass ([`super::verify_from`]).

use super::{Mark, Problem, ProblemKind, StreamHead, Summary, VerifyError};
use crate::audit::hasher::Hasher;
use crate::audit::source;
use crate::store::hash::{ledger_hash, Hash, HashVersion, GENESIS};
use crate::store::{EventRow, StoredEvent};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyOutRow;

/// What is wrong with a row, and how: the row itself is added by [`Verifier::check`].
type Found = (ProblemKind, String);

/// The checks, fed one row at a time in position order.
pub struct Verifier {
    /// Per stream: last version, its hash and its position.
    heads: HashMap<String, StreamHead>,
    next_position: i64,
    after: i64,
    events: u64,
    /// The ledger-wide hash of the last event checked.
    chain: Hash,
    last_recorded_at: Option<DateTime<Utc>>,
    /// The newest hash version seen: versions never go back along the ledger.
    hash_version: HashVersion,
    /// Checkpoints by position, and the next one to meet.
    marks: Vec<Mark>,
    next_mark: usize,
    /// The last checkpoint that held.
    held: Option<i64>,
    checkpoints_held: u64,
    /// The metadata text of the last row checked, for a next row that stores none.
    metadata: Option<Vec<u8>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new(Vec::new())
    }
}

/// The state a check resumes from, after position `after`.
pub struct Resume {
    pub after: i64,
    pub ledger_hash: Hash,
    pub recorded_at: Option<DateTime<Utc>>,
    pub hash_version: HashVersion,
    /// Per stream touched after `after`: its last version at or before `after`, that event's
    /// hash and position.
    pub heads: HashMap<String, StreamHead>,
}

impl Verifier {
    /// A check of the whole ledger against `marks` (checkpoints, in any order).
    pub fn new(marks: Vec<Mark>) -> Verifier {
        Verifier::resume(
            Resume {
                after: 0,
                ledger_hash: GENESIS,
                recorded_at: None,
                hash_version: HashVersion::V1,
                heads: HashMap::new(),
            },
            marks,
        )
    }

    /// A check of what follows `resume.after`; marks at or before it are not checked.
    pub fn resume(resume: Resume, mut marks: Vec<Mark>) -> Verifier {
        marks.retain(|mark| mark.position > resume.after);
        marks.sort_by_key(|mark| mark.position);
        Verifier {
            heads: resume.heads,
            next_position: resume.after + 1,
            after: resume.after,
            events: 0,
            chain: resume.ledger_hash,
            last_recorded_at: resume.recorded_at,
            hash_version: resume.hash_version,
            marks,
            next_mark: 0,
            held: None,
            checkpoints_held: 0,
            metadata: None,
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// The position of the last event checked (or the one checking started after).
    pub fn last_position(&self) -> i64 {
        self.next_position - 1
    }

    /// One more ledger hash vouched for at a position not checked yet (an archive's signed
    /// checkpoint over events still in the database).
    pub fn add_mark(&mut self, mark: Mark) {
        if mark.position <= self.last_position() {
            return;
        }
        self.marks.push(mark);
        self.marks[self.next_mark..].sort_by_key(|mark| mark.position);
    }

    /// Checks the next row; `recomputed` is its own hash computed from its stored content with its
    /// stored `prev_hash` ([`Hasher::hash`]), which is the hash the chain needs whenever the row
    /// gets as far as that comparison.
    pub fn check(&mut self, row: &EventRow<'_>, recomputed: &Hash) -> Result<(), Problem> {
        self.checked(row, recomputed)
            .map_err(|(kind, detail)| Problem {
                kind,
                position: row.position,
                stream_id: row.stream_id.to_owned(),
                version: row.version,
                detail,
            })
    }

    fn checked(&mut self, row: &EventRow<'_>, recomputed: &Hash) -> Result<(), Found> {
        self.check_position(row)?;
        let head = self.check_version(row)?;
        let hash_version = self.check_hash_version(row)?;
        let chain = self.check_hashes(row, recomputed, hash_version, head)?;
        self.check_time(row)?;
        let head = (row.version, *recomputed, row.position);
        // Streams have many events each: their id is copied once, for the first.
        match self.heads.get_mut(row.stream_id) {
            Some(known) => *known = head,
            None => {
                self.heads.insert(row.stream_id.to_owned(), head);
            }
        }
        self.chain = chain;
        self.hash_version = hash_version;
        self.last_recorded_at = Some(row.recorded_at);
        self.next_position += 1;
        self.events += 1;
        self.check_marks(row.position, chain)
    }

    /// The row must sit at the next position.
    fn check_position(&self, row: &EventRow<'_>) -> Result<(), Found> {
        if row.position != self.next_position {
            return Err(if row.position > self.next_position {
                (
                    ProblemKind::Missing,
                    format!(
                        "the event at position {} is gone (positions jump from {} to {})",
                        self.next_position,
                        self.next_position - 1,
                        row.position
                    ),
                )
            } else {
                (
                    ProblemKind::OutOfBand,
                    format!("position {} repeats", row.position),
                )
            });
        }
        Ok(())
    }

    /// The row must carry the next version of its stream; returns the stream's head before it.
    fn check_version(&self, row: &EventRow<'_>) -> Result<StreamHead, Found> {
        let (last_version, last_hash, last_position) = self
            .heads
            .get(row.stream_id)
            .copied()
            .unwrap_or((0, GENESIS, 0));
        if row.version > last_version + 1 {
            return Err((
                ProblemKind::Missing,
                format!(
                    "version {} of the stream is gone (versions jump from {last_version} to {})",
                    last_version + 1,
                    row.version
                ),
            ));
        }
        if row.version <= last_version {
            return Err((
                ProblemKind::OutOfBand,
                format!(
                    "version {} repeats or goes back (the stream is at {last_version})",
                    row.version
                ),
            ));
        }
        Ok((last_version, last_hash, last_position))
    }

    /// The row's hash version must be known and never older than the one before it.
    fn check_hash_version(&self, row: &EventRow<'_>) -> Result<HashVersion, Found> {
        let Some(hash_version) = HashVersion::from_column(row.hash_version) else {
            return Err((
                ProblemKind::Altered,
                format!("hash_version {} is not a known encoding", row.hash_version),
            ));
        };
        if !hash_version.covers_key()
            && hash_version > HashVersion::V1
            && row.idempotency_key.is_some()
        {
            // The hash does not cover it, and a key that answers another input would be trusted.
            return Err((
                ProblemKind::OutOfBand,
                format!(
                    "a version {} row stores an idempotency key: appends derive it from the \
                     payload and store none",
                    hash_version.column()
                ),
            ));
        }
        if hash_version < self.hash_version {
            return Err((
                ProblemKind::Altered,
                format!(
                    "hash_version {} after an event hashed with version {}: versions never go \
                     back, the row was rewritten with the older encoding",
                    hash_version.column(),
                    self.hash_version.column()
                ),
            ));
        }
        Ok(hash_version)
    }

    /// The row must point at its stream's previous hash, hash to its stored hash and extend the
    /// ledger-wide chain to its stored ledger hash; returns that chain's hash.
    fn check_hashes(
        &self,
        row: &EventRow<'_>,
        recomputed: &Hash,
        hash_version: HashVersion,
        (last_version, last_hash, last_position): StreamHead,
    ) -> Result<Hash, Found> {
        // Rows appended since migration 25 store none: their hash was computed with the chain's.
        if row.prev_hash.is_some_and(|stored| stored != last_hash) {
            return Err((
                ProblemKind::OutOfBand,
                if last_version == 0 {
                    "prev_hash of a stream's first event is not all zeros".to_owned()
                } else {
                    format!(
                        "prev_hash is not the hash of the stream's version {last_version} (position \
                         {last_position}): this event was inserted out of band, or that one was \
                         rewritten together with its hash"
                    )
                },
            ));
        }
        if row.hash != recomputed {
            return Err((
                ProblemKind::Altered,
                "the stored content does not hash to the stored hash".into(),
            ));
        }
        let chain = ledger_hash(&self.chain, recomputed);
        match row.ledger_hash {
            Some(stored) if stored != chain => {
                return Err((
                    ProblemKind::Altered,
                    "the stored ledger_hash is not the ledger-wide chain up to this event: an \
                     event before it was altered, removed or inserted and this one's hashes \
                     recomputed, or this ledger_hash was rewritten"
                        .into(),
                ))
            }
            None if hash_version >= HashVersion::V2 && hash_version.stores_every_ledger_hash() => {
                return Err((
                    ProblemKind::OutOfBand,
                    "a version 2 row without ledger_hash was not written by an append".into(),
                ))
            }
            _ => {}
        }
        Ok(chain)
    }

    /// The row's time must be no earlier than the time of the row before it.
    fn check_time(&self, row: &EventRow<'_>) -> Result<(), Found> {
        if let Some(previous) = self.last_recorded_at {
            if row.recorded_at < previous {
                return Err((
                    ProblemKind::TimeBackwards,
                    format!(
                        "recorded_at {} is earlier than {previous} of the event before it",
                        row.recorded_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every checkpoint at `position` must have signed `chain`, the ledger hash there.
    fn check_marks(&mut self, position: i64, chain: Hash) -> Result<(), Found> {
        while let Some(mark) = self.marks.get(self.next_mark) {
            if mark.position != position {
                break;
            }
            if mark.ledger_hash != chain {
                let since = match self.held {
                    Some(held) => format!(
                        "between position {} and {} (the last checkpoint that holds is at \
                         position {held})",
                        held + 1,
                        position
                    ),
                    None => format!(
                        "between position {} and {} (no earlier checkpoint holds)",
                        self.after + 1,
                        position
                    ),
                };
                return Err((
                    ProblemKind::Rewritten,
                    format!(
                        "{} signed ledger hash {} here, the ledger now hashes to {}: events {since} \
                         were rewritten and their hashes recomputed",
                        mark.label,
                        hex::encode(mark.ledger_hash),
                        hex::encode(chain)
                    ),
                ));
            }
            self.held = Some(position);
            self.checkpoints_held += 1;
            self.next_mark += 1;
        }
        Ok(())
    }

    /// The ledger head must name the last event and its ledger hash: events removed from the
    /// end, or added beyond the head, show here, and so do checkpoints beyond the last event.
    pub fn finish(
        self,
        head: i64,
        head_ledger_hash: &[u8],
        started: Instant,
    ) -> Result<Summary, Problem> {
        let last_position = self.next_position - 1;
        if head != last_position {
            let kind = if head > last_position {
                ProblemKind::Missing
            } else {
                ProblemKind::OutOfBand
            };
            return Err(Problem {
                kind,
                position: last_position.min(head) + 1,
                stream_id: String::new(),
                version: 0,
                detail: format!(
                    "the ledger head is at position {head} but the last event is at {last_position}"
                ),
            });
        }
        if let Some(mark) = self.marks.get(self.next_mark) {
            return Err(Problem {
                kind: ProblemKind::Missing,
                position: last_position + 1,
                stream_id: String::new(),
                version: 0,
                detail: format!(
                    "{} is at position {}, beyond the last event ({last_position}): signed \
                     events were removed from the end of the ledger (or this is another ledger)",
                    mark.label, mark.position
                ),
            });
        }
        if head_ledger_hash != self.chain {
            return Err(Problem {
                kind: ProblemKind::Altered,
                position: head,
                stream_id: String::new(),
                version: 0,
                detail: "the ledger head's ledger_hash is not the ledger-wide hash of the last \
                         event"
                    .into(),
            });
        }
        Ok(Summary {
            events: self.events,
            streams: self.heads.len() as u64,
            after: self.after,
            last_position,
            last_hash: self.chain,
            checkpoints_held: self.checkpoints_held,
            elapsed: started.elapsed(),
            heads: self.heads,
        })
    }
}

/// Calls `report` every `every` events checked (never when `every` is 0).
pub(super) struct Progress<F> {
    pub(super) every: u64,
    pub(super) report: F,
}

/// Checks one batch of rows, in order: their own hashes are recomputed first on every core.
pub(super) fn check_batch(
    verifier: &mut Verifier,
    progress: &mut Progress<impl FnMut(u64)>,
    batch: &[BinaryCopyOutRow],
) -> Result<(), VerifyError> {
    let rows: Vec<_> = batch.iter().map(EventRow::from_columns).collect();
    // Each row's metadata, in order: a row storing none has its predecessor's (carried over
    // from the batch before for the first rows).
    let carried = verifier.metadata.take();
    let mut current: Option<&[u8]> = carried.as_deref();
    let metadata: Vec<Option<&[u8]>> = rows
        .iter()
        .map(|row| {
            if let Ok(StoredEvent {
                metadata: Some(stored),
                ..
            }) = row
            {
                current = Some(stored.0);
            }
            current
        })
        .collect();
    verifier.metadata = current.map(<[u8]>::to_vec);
    // Each row's previous hash ([`crate::store::prev_hash`]), its stream's event before being in
    // this batch or checked already (a row reaching the comparison of hashes follows one whose
    // stored hash held). Genesis stands in where there is none: such a row fails a check before
    // its hash is looked at.
    let mut in_batch: HashMap<&str, &[u8]> = HashMap::new();
    let prev_hashes: Vec<Hash> = rows
        .iter()
        .map(|row| {
            let Ok(row) = row else { return GENESIS };
            let prev = crate::store::prev_hash(row.prev_hash, row.version, || {
                in_batch
                    .get(row.stream_id)
                    .and_then(|hash| (*hash).try_into().ok())
                    .or_else(|| verifier.heads.get(row.stream_id).map(|head| head.1))
            });
            in_batch.insert(row.stream_id, row.hash);
            prev.unwrap_or(GENESIS)
        })
        .collect();
    let both: Vec<_> = rows
        .iter()
        .zip(metadata)
        .zip(prev_hashes)
        .map(|((row, metadata), prev)| (row, metadata, prev))
        .collect();
    let hashes = source::map_in_parallel(&both, |part| {
        let mut hasher = Hasher::default();
        part.iter()
            .map(|(row, metadata, prev)| match row {
                Ok(row) => hasher.hash(row, prev, metadata.unwrap_or_default()),
                // Never looked at: the row's own error is reported first.
                Err(_) => Ok(GENESIS),
            })
            .collect()
    });
    for (row, hash) in rows.into_iter().zip(hashes) {
        let row = row?;
        let hash = hash.map_err(|e| VerifyError::Unreadable(row.position, e))?;
        verifier.check(&row, &hash).map_err(VerifyError::Broken)?;
        if progress.every > 0 && verifier.events % progress.every == 0 {
            (progress.report)(verifier.events);
        }
    }
    Ok(())
}
