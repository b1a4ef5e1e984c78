//! Checks the ledger's tamper evidence (invariant I6) in one streamed pass.
//!
//! Every event must sit at the next position, carry the next version of its stream, point at the
//! previous event's hash and hash to its stored `hash`; the ledger head must name the last event.
//! The first event breaking any of these is reported with what is wrong.

use super::source::{self, Range};
use crate::store::hash::{canonical_json, event_hash, Hash, Hashed, GENESIS};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What is wrong with the first bad event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Its content no longer hashes to its stored hash.
    Altered,
    /// An event before it (in the ledger or in its stream) is gone.
    Missing,
    /// It was not written by an append: it breaks the chain or lies beyond the ledger head.
    OutOfBand,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Missing => "missing",
            ProblemKind::OutOfBand => "inserted out of band",
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub streams: u64,
    pub last_position: i64,
    /// The hash of the last event: kept somewhere else, it lets a later verify prove that nothing
    /// before it was rewritten, even by someone who recomputed every hash after the change.
    pub last_hash: Option<Hash>,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the ledger is not intact: {0}")]
    Broken(Problem),
    #[error("the event at position {0} cannot be read: {1}")]
    Unreadable(i64, String),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// The checks, fed one row at a time in position order.
pub struct Verifier {
    /// Reused buffers for the canonical JSON of payload and metadata.
    payload: Vec<u8>,
    metadata: Vec<u8>,
    /// Per stream: last version, its hash and its position.
    heads: HashMap<String, (i64, Hash, i64)>,
    next_position: i64,
    events: u64,
    last_hash: Option<Hash>,
}

/// One stored event, as read for verification.
pub struct Row<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub payload: &'a serde_json::Value,
    pub metadata: &'a serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            payload: Vec::new(),
            metadata: Vec::new(),
            heads: HashMap::new(),
            next_position: 1,
            events: 0,
            last_hash: None,
        }
    }
}

impl Verifier {
    pub fn check(&mut self, row: &Row<'_>) -> Result<(), Problem> {
        let problem = |kind, detail: String| Problem {
            kind,
            position: row.position,
            stream_id: row.stream_id.to_owned(),
            version: row.version,
            detail,
        };
        if row.position != self.next_position {
            return Err(if row.position > self.next_position {
                problem(
                    ProblemKind::Missing,
                    format!(
                        "the event at position {} is gone (positions jump from {} to {})",
                        self.next_position,
                        self.next_position - 1,
                        row.position
                    ),
                )
            } else {
                problem(
                    ProblemKind::OutOfBand,
                    format!("position {} repeats", row.position),
                )
            });
        }
        let (last_version, last_hash, last_position) = self
            .heads
            .get(row.stream_id)
            .copied()
            .unwrap_or((0, GENESIS, 0));
        if row.version > last_version + 1 {
            return Err(problem(
                ProblemKind::Missing,
                format!(
                    "version {} of the stream is gone (versions jump from {last_version} to {})",
                    last_version + 1,
                    row.version
                ),
            ));
        }
        if row.version <= last_version {
            return Err(problem(
                ProblemKind::OutOfBand,
                format!(
                    "version {} repeats or goes back (the stream is at {last_version})",
                    row.version
                ),
            ));
        }
        self.payload.clear();
        canonical_json(row.payload, &mut self.payload);
        self.metadata.clear();
        canonical_json(row.metadata, &mut self.metadata);
        let recomputed = event_hash(
            &last_hash,
            &Hashed {
                position: row.position,
                stream_id: row.stream_id,
                version: row.version,
                event_type: row.event_type,
                event_version: row.event_version,
                recorded_at: row.recorded_at,
                payload: &self.payload,
                metadata: &self.metadata,
            },
        );
        if row.prev_hash != last_hash {
            return Err(problem(
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
            return Err(problem(
                ProblemKind::Altered,
                "the stored content does not hash to the stored hash".into(),
            ));
        }
        self.heads.insert(
            row.stream_id.to_owned(),
            (row.version, recomputed, row.position),
        );
        self.next_position += 1;
        self.events += 1;
        self.last_hash = Some(recomputed);
        Ok(())
    }

    /// The ledger head must name the last event: events removed from the end, or added beyond
    /// the head, show here.
    pub fn finish(self, head: i64, started: Instant) -> Result<Summary, Problem> {
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
        Ok(Summary {
            events: self.events,
            streams: self.heads.len() as u64,
            last_position,
            last_hash: self.last_hash,
            elapsed: started.elapsed(),
        })
    }
}

/// Streams the whole ledger from one consistent snapshot and checks it; `progress` is called
/// every `progress_every` events with the count so far.
pub async fn verify(
    client: &mut tokio_postgres::Client,
    progress_every: u64,
    mut progress: impl FnMut(u64),
) -> Result<Summary, VerifyError> {
    let started = Instant::now();
    let tx = source::snapshot(client).await?;
    let head: i64 = tx
        .query_one("SELECT position FROM ledger_head", &[])
        .await?
        .get(0);
    let mut verifier = Verifier::default();
    source::for_each(&tx, Range::ALL, |row| {
        let payload: serde_json::Value = serde_json::from_slice(row.payload)
            .map_err(|e| VerifyError::Unreadable(row.position, e.to_string()))?;
        let metadata: serde_json::Value = serde_json::from_slice(row.metadata)
            .map_err(|e| VerifyError::Unreadable(row.position, e.to_string()))?;
        verifier
            .check(&Row {
                position: row.position,
                stream_id: row.stream_id,
                version: row.version,
                event_type: row.event_type,
                event_version: row.event_version,
                payload: &payload,
                metadata: &metadata,
                recorded_at: row.recorded_at,
                prev_hash: row.prev_hash,
                hash: row.hash,
            })
            .map_err(VerifyError::Broken)?;
        if progress_every > 0 && verifier.events % progress_every == 0 {
            progress(verifier.events);
        }
        Ok::<(), VerifyError>(())
    })
    .await?;
    tx.commit().await?;
    verifier.finish(head, started).map_err(VerifyError::Broken)
}
