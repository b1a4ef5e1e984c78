//! Checks the ledger's tamper evidence (invariants I6, I9) in one streamed pass.
//!
//! Every event must sit at the next position, carry the next version of its stream, point at the
//! previous event's hash, hash to its stored `hash`, extend the ledger-wide chain to its stored
//! `ledger_hash`, and carry a time no earlier than the event before it; the ledger head must name
//! the last event and its ledger hash; every checkpoint must find the ledger hash it signed at its
//! position. The first event breaking any of these is reported with what is wrong.

use super::source::{self, Range, Selection};
use crate::store::hash::{canonical_json, event_hash, ledger_hash, Hash, HashVersion, GENESIS};
pub use crate::store::StreamHead;
use crate::store::{archived, EventRow, StoredEvent};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_postgres::binary_copy::BinaryCopyOutRow;

/// What is wrong with the first bad event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Its content no longer hashes to its stored hash.
    Altered,
    /// An event before it (in the ledger or in its stream) is gone.
    Missing,
    /// It was not written by an append: it breaks the chain or lies beyond the ledger head.
    OutOfBand,
    /// Its `recorded_at` is earlier than that of the event before it.
    TimeBackwards,
    /// Every hash reproduces, but a signed checkpoint does not hold: the ledger was rewritten
    /// with all its hashes recomputed.
    Rewritten,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Missing => "missing",
            ProblemKind::OutOfBand => "inserted out of band",
            ProblemKind::TimeBackwards => "time goes backwards",
            ProblemKind::Rewritten => "rewritten",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The event where the problem shows; for a missing event, the one right after the gap.
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at position {} (stream {}, version {}): {}",
            self.kind.as_str(),
            self.position,
            self.stream_id,
            self.version,
            self.detail
        )
    }
}

/// A ledger hash some trusted party vouched for at a position: a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub position: i64,
    pub ledger_hash: Hash,
    /// How to name it in a report ("checkpoint 3", "the checkpoint in FILE").
    pub label: String,
}

/// Where an incremental check starts: after a checkpoint whose signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub position: i64,
    pub ledger_hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub streams: u64,
    /// The position the check started after (0 for a full check).
    pub after: i64,
    pub last_position: i64,
    /// The ledger-wide hash at the head: it commits to every event before it, so a copy kept
    /// elsewhere (a signed checkpoint) proves later that nothing before it was rewritten, even by
    /// someone who recomputed every hash after the change.
    pub last_hash: Hash,
    /// Checkpoints whose ledger hash the ledger reproduced.
    pub checkpoints_held: u64,
    pub elapsed: Duration,
    /// Each stream the check followed (every stream for a whole check, those that moved for one
    /// after a checkpoint): its version, hash and position at `last_position`.
    pub heads: HashMap<String, StreamHead>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the ledger is not intact: {0}")]
    Broken(Problem),
    #[error("the event at position {0} cannot be read: {1}")]
    Unreadable(i64, String),
    /// The events it needs were archived and dropped: which archives to give it.
    #[error("{0}")]
    Archived(String),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

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

/// Streams the whole ledger from one consistent snapshot and checks it; `progress` is called
/// every `progress_every` events with the count so far.
pub async fn verify(
    client: &mut tokio_postgres::Client,
    progress_every: u64,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<Summary, VerifyError> {
    verify_against(client, Vec::new(), None, progress_every, progress).await
}

/// [`verify`] against checkpoints (`marks`), of the whole ledger or (`since`) only of what follows
/// a checkpoint whose signature the caller checked.
///
/// A pipeline, so that every core works: this task reads the COPY stream into batches of rows
/// while another thread checks the batch before ([`source::for_each_batch`]).
pub async fn verify_against(
    client: &mut tokio_postgres::Client,
    marks: Vec<Mark>,
    since: Option<Since>,
    progress_every: u64,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<Summary, VerifyError> {
    let start = match since {
        None => Start::Fed(Verifier::new(marks)),
        Some(since) => Start::Since(since, marks),
    };
    verify_from(client, start, progress_every, progress).await
}

/// Where [`verify_from`] starts.
pub enum Start {
    /// After a trusted checkpoint, against these marks.
    Since(Since, Vec<Mark>),
    /// Where this verifier stands: from the first event, or after the archived events it was fed.
    Fed(Verifier),
}

/// Checks the events in the database after where `start` stands, to the head.
pub async fn verify_from(
    client: &mut tokio_postgres::Client,
    start: Start,
    progress_every: u64,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<Summary, VerifyError> {
    let started = Instant::now();
    let tx = source::snapshot(client).await?;
    let head = crate::store::head(&tx).await?;
    let (head_position, head_hash) = (head.position, head.ledger_hash);
    let verifier = match start {
        Start::Fed(verifier) => {
            // Positions dropped from the database are checked from their archives first: a check
            // that would start before them names the archives instead of calling them missing.
            let dropped = archived::dropped(&tx).await?;
            if let Some(needed) = archived::needed(&dropped, verifier.last_position()) {
                return Err(VerifyError::Archived(needed));
            }
            verifier
        }
        Start::Since(since, marks) => {
            Verifier::resume(resume_after(&tx, &since, head_position).await?, marks)
        }
    };
    let range = Range {
        after: verifier.after,
        until: source::Until::End,
    };
    let progress = Progress {
        every: progress_every,
        report: progress,
    };
    let (verifier, _) = source::for_each_batch(
        &tx,
        range,
        Selection::ALL,
        (verifier, progress),
        |(verifier, progress), batch| check_batch(verifier, progress, &batch),
    )
    .await?;
    tx.commit().await?;
    verifier
        .finish(head_position, &head_hash, started)
        .map_err(VerifyError::Broken)
}

/// Calls `report` every `every` events checked (never when `every` is 0).
struct Progress<F> {
    every: u64,
    report: F,
}

/// Checks one batch of rows, in order: their own hashes are recomputed first on every core.
fn check_batch(
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

/// Recomputes events' own hashes, reusing its buffers for the canonical JSON.
#[derive(Default)]
pub struct Hasher {
    payload: Vec<u8>,
    /// The events of one command share their metadata: the last metadata text seen, and its
    /// canonical JSON, computed once per run of equal text.
    metadata_text: Option<Vec<u8>>,
    metadata: Vec<u8>,
}

impl Hasher {
    /// The row's own hash from its stored content, chained to `prev_hash`: the one the row stores,
    /// or for a row that stores none, the hash of its stream's event before; an error says why its
    /// JSON cannot be read.
    ///
    /// [`Verifier::check`] compares a stored `prev_hash` with the stream's previous hash, and the
    /// hash version with the known ones, before it uses this hash: a row that passes both is
    /// hashed here exactly as the chain requires, and for one that does not, the stand-ins
    /// (genesis for a malformed `prev_hash`, the current version for an unknown one) are never
    /// looked at.
    ///
    /// `metadata` is the row's metadata text: its own, or for a row of version 4 that stores
    /// none, that of the nearest earlier row storing one ([`crate::store::MetadataRun`]).
    pub fn hash(
        &mut self,
        row: &EventRow<'_>,
        prev_hash: &Hash,
        metadata: &[u8],
    ) -> Result<Hash, String> {
        let version = HashVersion::from_column(row.hash_version).unwrap_or(HashVersion::CURRENT);
        if version.covers_stored_text() {
            // The stored text is what was hashed: nothing to parse.
            return Ok(event_hash(
                version,
                prev_hash,
                &row.hashed(&row.payload, metadata),
            ));
        }
        let payload: serde_json::Value =
            serde_json::from_slice(&row.payload).map_err(|e| e.to_string())?;
        self.payload.clear();
        canonical_json(&payload, &mut self.payload);
        if self.metadata_text.as_deref() != Some(metadata) {
            let parsed: serde_json::Value =
                serde_json::from_slice(metadata).map_err(|e| e.to_string())?;
            self.metadata.clear();
            canonical_json(&parsed, &mut self.metadata);
            self.metadata_text = Some(metadata.to_vec());
        }
        Ok(event_hash(
            version,
            prev_hash,
            &row.hashed(&self.payload, &self.metadata),
        ))
    }
}

/// The state after a checkpoint, read in the snapshot: the checkpointed event (its stored ledger
/// hash must be the signed one) and, for every stream that moved after it, its head at that
/// point ([`crate::store::stream_heads_at`]: the cost follows what is new).
async fn resume_after(
    tx: &tokio_postgres::Transaction<'_>,
    since: &Since,
    head: i64,
) -> Result<Resume, VerifyError> {
    let broken = |position: i64, kind, detail: String| {
        VerifyError::Broken(Problem {
            kind,
            position,
            stream_id: String::new(),
            version: 0,
            detail,
        })
    };
    if since.position > head {
        return Err(broken(
            head + 1,
            ProblemKind::Missing,
            format!(
                "the checkpoint is at position {}, beyond the last event ({head}): signed events \
                 were removed from the end of the ledger (or this is another ledger)",
                since.position
            ),
        ));
    }
    let mut resume = Resume {
        after: since.position,
        ledger_hash: since.ledger_hash,
        recorded_at: None,
        hash_version: HashVersion::V1,
        heads: HashMap::new(),
    };
    if since.position == 0 {
        return Ok(resume);
    }
    let dropped = archived::dropped(tx).await?;
    let live_first = archived::live_first(&dropped);
    if since.position < live_first - 1 {
        return Err(VerifyError::Archived(
            archived::needed(&dropped, since.position).expect("a month is dropped"),
        ));
    }
    // The checkpoint is at the last event of a dropped month: its record says where it stood.
    let at_drop = dropped.last().filter(|m| m.last_position == since.position);
    if let Some(month) = at_drop {
        if month.ledger_hash_last != since.ledger_hash {
            return Err(broken(
                since.position,
                ProblemKind::Rewritten,
                format!(
                    "month {} was dropped with ledger hash {} at its last event, not the {} the \
                     checkpoint signed",
                    month.month,
                    hex::encode(month.ledger_hash_last),
                    hex::encode(since.ledger_hash)
                ),
            ));
        }
        resume.recorded_at = Some(month.last_recorded_at);
        resume.hash_version =
            HashVersion::from_column(month.last_hash_version).unwrap_or(HashVersion::V2);
    }
    let at = if at_drop.is_some() {
        None
    } else {
        crate::store::chain_at(tx, since.position).await?
    };
    if let Some(at) = at {
        resume.recorded_at = Some(at.recorded_at);
        resume.hash_version = HashVersion::from_column(at.hash_version).unwrap_or(HashVersion::V2);
        if let Some(stored) = at.ledger_hash {
            if stored != since.ledger_hash {
                return Err(broken(
                    since.position,
                    ProblemKind::Rewritten,
                    format!(
                        "the stored ledger_hash {} is not the {} the checkpoint signed: the \
                         ledger was rewritten at or before this position",
                        hex::encode(stored),
                        hex::encode(since.ledger_hash)
                    ),
                ));
            }
        }
    } else if at_drop.is_none() {
        return Err(broken(
            since.position,
            ProblemKind::Missing,
            "the checkpointed event is gone".into(),
        ));
    }
    resume.heads = crate::store::stream_heads_at(tx, since.position).await?;
    Ok(resume)
}
