//! Checks the ledger's tamper evidence (invariants I6, I9) in one streamed pass.
//!
//! Every event must sit at the next position, carry the next version of its stream, point at the
//! previous event's hash, hash to its stored `hash`, extend the ledger-wide chain to its stored
//! `ledger_hash`, and carry a time no earlier than the event before it; the ledger head must name
//! the last event and its ledger hash; every checkpoint must find the ledger hash it signed at its
//! position. The first event breaking any of these is reported with what is wrong.

use super::source::{self, Range, Selection};
use crate::store::archived;
use crate::store::hash::{Hash, HashVersion};
pub use crate::store::StreamHead;
use std::collections::HashMap;
use std::time::{Duration, Instant};

mod checks;

pub use checks::{Resume, Verifier};

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
        after: verifier.last_position(),
        until: source::Until::End,
    };
    let progress = checks::Progress {
        every: progress_every,
        report: progress,
    };
    let (verifier, _) = source::for_each_batch(
        &tx,
        range,
        Selection::ALL,
        (verifier, progress),
        |(verifier, progress), batch| checks::check_batch(verifier, progress, &batch),
    )
    .await?;
    tx.commit().await?;
    verifier
        .finish(head_position, &head_hash, started)
        .map_err(VerifyError::Broken)
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
