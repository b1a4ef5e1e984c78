//! The event store: small and boring. Append (writers serialise themselves with row locks on
//! `stream_heads`, whose heads each append moves only from the version it read), read a stream,
//! read everything after a position. Its SQL lives in `schema/0001_ledger.sql`.
//!
//! Every statement over `events`, its partitions, `stream_heads`, `idempotency_keys` and
//! `ledger_head` is here, one function for each question, but the outbox's: its claim and list
//! join their entries to `events` to take only those whose event is still in the database (a
//! dropped month takes its undelivered entries' events along). By topic: `append.rs`; `read.rs`
//! (streams, positions, the audits' stream of the whole ledger); `as_of.rs` (the ledger as of a
//! point); `head.rs` (the head, the chain at a position, the streams' heads there);
//! `notices.rs` (expiry notices held and settled); `traffic.rs` (a package stream's traffic
//! windows, the last event of task streams); `history.rs` (a package's days of use, grants and
//! release, for its statement); `partitions.rs` and `archived.rs` (the monthly partitions, and
//! the months dropped from the database); `partition_move.rs` (moving a ledger written before
//! the partitions to them).

mod append;
pub mod archived;
mod as_of;
pub mod hash;
mod head;
pub mod history;
mod notices;
pub mod partition_move;
pub mod partitions;
mod read;
mod row;
mod traffic;

pub use append::{prepare, write, Prepared};
pub use as_of::{position_of, read_only, snapshot, Point, PointError, POSITION_AT};
pub use head::{
    age_of, chain_at, head, oldest_position, stream_heads_at, ChainAt, Head, StreamHead,
};
pub use notices::{last_expiry_notice, unsettled_notice_count, unsettled_notices, Unsettled};
pub use read::{
    by_idempotency_keys, copy_after, credential_generation, for_each_in_stream_until, metadata_at,
    prev_hashes_before, read_all_after, read_grants, read_positions, read_stream, sku_choice,
    stream_version, SkuChoice, STREAM_PAGE_EVENTS,
};
pub use row::{
    prev_hash, stored_bytes, Columns, EventRow, FoldRow, JsonText, MetadataRun, PrevHashes,
    RecordedEvent, Selection, StoredEvent, EVENT_COLUMNS, EVENT_COLUMN_TYPES,
};
pub use traffic::last_recorded;

use chrono::{DateTime, Utc};
use projections::events::Event;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// Where a reader's statements run: a connection (the pool's, or one of its own) or a transaction
/// on one. The pool's types wrap the driver's, and each layer has its own `GenericClient`; a
/// statement runs on the connection underneath, within whatever transaction is open on it, so the
/// readers that both the service and the audits call take any of them.
pub trait Connection: Sync {
    fn connection(&self) -> &tokio_postgres::Client;

    /// Prepares `sql`: once per pooled connection (the pool keeps its statements), else each time.
    fn prepare(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<tokio_postgres::Statement, tokio_postgres::Error>> + Send
    {
        self.connection().prepare(sql)
    }
}

impl Connection for tokio_postgres::Client {
    fn connection(&self) -> &tokio_postgres::Client {
        self
    }
}

impl Connection for tokio_postgres::Transaction<'_> {
    fn connection(&self) -> &tokio_postgres::Client {
        self.client()
    }
}

impl Connection for deadpool_postgres::Client {
    fn connection(&self) -> &tokio_postgres::Client {
        self
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        self.prepare_cached(sql).await
    }
}

impl Connection for deadpool_postgres::Transaction<'_> {
    fn connection(&self) -> &tokio_postgres::Client {
        self.client()
    }

    async fn prepare(&self, sql: &str) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        self.prepare_cached(sql).await
    }
}

/// Who and what produced an event; stored in `events.metadata`. Never holds a secret: actors are
/// named by role and index ("reporter#2"), never by token.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub request_id: String,
    pub source: &'static str,
    pub actor: String,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub stream_id: String,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Value,
    /// Shared by the events of one command: encoded once per append.
    pub metadata: Arc<Value>,
    pub idempotency_key: Option<String>,
}

impl Metadata {
    /// An operator's command (`actor`: "operator:cli", "operator:serve"), under a fresh request
    /// id of its own.
    pub fn operator(actor: &str) -> Metadata {
        Metadata {
            request_id: uuid::Uuid::new_v4().to_string(),
            source: "operator",
            actor: actor.to_owned(),
        }
    }

    pub fn to_value(&self) -> Arc<Value> {
        Arc::new(serde_json::to_value(self).expect("metadata always serialises"))
    }
}

impl NewEvent {
    /// `metadata` is [`Metadata::to_value`], computed once per command rather than per event.
    pub fn new(event: &Event, metadata: &Arc<Value>) -> NewEvent {
        NewEvent {
            stream_id: event.stream_id(),
            event_type: event.event_type().to_owned(),
            event_version: event.event_version(),
            payload: event.payload(),
            metadata: metadata.clone(),
            idempotency_key: None,
        }
    }

    pub fn with_idempotency_key(mut self, key: String) -> NewEvent {
        self.idempotency_key = Some(key);
        self
    }
}

/// Positions given to an append, first to last inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_position: i64,
    pub last_position: i64,
    /// The time the events carry: the caller's clock, or the previous append's time if that is
    /// later (time never goes backwards along the ledger).
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another transaction appended to one of these streams first")]
    ConcurrentAppend,
    #[error("an idempotency key of this append was used by a concurrent transaction")]
    DuplicateKey,
    #[error("nothing to append")]
    Empty,
    #[error("{}", describe(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// A database error with its SQLSTATE, message and detail (the driver's own text is only
/// "db error" for errors the server reported).
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("database error {}: {}", db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => match std::error::Error::source(error) {
            Some(source) => format!("database: {error}: {source}"),
            None => format!("database: {error}"),
        },
    }
}

impl StoreError {
    /// Whether retrying the whole transaction may succeed: a lost race on a stream or key (also a
    /// projection row another transaction inserted first, such as the same task created on two
    /// packages at once), or a deadlock / serialisation failure the database resolved by aborting
    /// us. The retry reads the winner's rows and answers accordingly.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::ConcurrentAppend | StoreError::DuplicateKey => true,
            StoreError::Database(error) => matches!(
                error.code().map(|c| c.code()),
                Some("40P01" | "40001" | "23505")
            ),
            _ => false,
        }
    }

    /// Whether the server reached takes no writes (a standby, or a primary fenced off): answered
    /// 503 `database_read_only`, and the pool has already let go of that server's connections.
    pub fn is_read_only(&self) -> bool {
        match self {
            StoreError::Database(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
            }
            StoreError::Pool(e) => crate::database::primary::is_read_only_pool_error(e),
            _ => false,
        }
    }

    /// Whether the database was unreachable (answered 503).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => crate::database::is_unavailable(e),
            StoreError::Pool(_) => true,
            _ => false,
        }
    }
}

/// The error worth reporting from statements pipelined in one transaction. Once one of them fails,
/// every later one reports only "current transaction is aborted" (SQLSTATE 25P02), and which
/// future sees its answer first is up to the scheduler: the cause (a unique violation to retry on,
/// say) is the error that is not that echo.
pub fn first_cause(errors: impl IntoIterator<Item = StoreError>) -> Option<StoreError> {
    let is_echo = |error: &StoreError| {
        matches!(error, StoreError::Database(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION))
    };
    let mut echo = None;
    for error in errors {
        if !is_echo(&error) {
            return Some(error);
        }
        echo.get_or_insert(error);
    }
    echo
}

/// The fixed-width form of an idempotency key in `idempotency_keys`: the first 16 bytes of
/// SHA-256 over its UTF-8 text (schema/0019 computes the same in SQL). Two keys meeting on 128
/// bits is far less likely than a hardware fault; were it to happen, the later input would be
/// refused as a conflict, never charged twice.
pub fn key_digest(key: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes)
}

/// Times are stored with microsecond precision; truncating before hashing makes the hash of a
/// stored row recomputable.
pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).expect("a valid time stays valid")
}
