//! The stored event row: its columns, and the one type that holds it, owned by the store's readers
//! ([`RecordedEvent`]) or borrowed from a binary COPY buffer by the audits ([`EventRow`]). A new
//! column is added here: the column list, its type, a field and the line that reads it.

use super::hash::{Hash, GENESIS};
use chrono::{DateTime, Utc};
use projections::events::Event;
use serde_json::Value;
use std::collections::HashMap;
use tokio_postgres::binary_copy::BinaryCopyOutRow;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

/// Every column of `events`, in the order this crate reads and writes them.
pub const EVENT_COLUMNS: &str = "position, stream_id, version, event_type, event_version, \
     payload, metadata, recorded_at, idempotency_key, prev_hash, hash, hash_version, ledger_hash";

/// Bytes as a `bigint` column holds them: never negative (the schema's checks and the folds keep
/// them so), and a negative value would read as 0.
pub fn stored_bytes(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

/// The types of [`EVENT_COLUMNS`], for binary COPY in and out.
pub const EVENT_COLUMN_TYPES: [Type; 13] = [
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::INT4,
    Type::JSON,
    Type::JSON,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT2,
    Type::BYTEA,
];

/// The columns a fold reads (replay, the monthly report): a fold needs neither the hashes nor the
/// metadata, and PostgreSQL sending fewer columns is most of what reading the ledger costs it.
/// `stream_id` because a traffic event of version 2 takes its package from it.
pub const FOLD_COLUMNS: &str =
    "position, event_type, event_version, payload, recorded_at, stream_id";

/// The types of [`FOLD_COLUMNS`].
pub const FOLD_COLUMN_TYPES: [Type; 6] = [
    Type::INT8,
    Type::TEXT,
    Type::INT4,
    Type::JSON,
    Type::TIMESTAMPTZ,
    Type::TEXT,
];

/// Which columns of `events` a pass over the ledger reads, and their types.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub columns: &'static str,
    pub types: &'static [Type],
}

impl Selection {
    /// Every column: what verify checks and export shows ([`EventRow`]).
    pub const ALL: Selection = Selection {
        columns: EVENT_COLUMNS,
        types: &EVENT_COLUMN_TYPES,
    };
    /// What a fold reads ([`FoldRow`]).
    pub const FOLD: Selection = Selection {
        columns: FOLD_COLUMNS,
        types: &FOLD_COLUMN_TYPES,
    };
}

/// A row selected as [`FOLD_COLUMNS`], borrowed from the buffer it was read into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldRow<'a> {
    pub position: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub payload: JsonText<'a>,
    pub recorded_at: DateTime<Utc>,
    pub stream_id: &'a str,
}

impl<'a> FoldRow<'a> {
    pub fn from_columns(row: &'a impl Columns) -> Result<Self, tokio_postgres::Error> {
        Ok(FoldRow {
            position: row.column(0)?,
            event_type: row.column(1)?,
            event_version: row.column(2)?,
            payload: row.column(3)?,
            recorded_at: row.column(4)?,
            stream_id: row.column(5)?,
        })
    }
}

/// One row of `events`, in the order of [`EVENT_COLUMNS`]. `Text`, `Bytes` and `Json` say how its
/// text, byte and JSON columns are held: owned, or borrowed from the buffer the row was read into.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent<Text, Bytes, Json> {
    pub position: i64,
    pub stream_id: Text,
    pub version: i64,
    pub event_type: Text,
    pub event_version: i32,
    pub payload: Json,
    /// `None` on a row of hash version 4 whose metadata is the event's before it in the same
    /// append (the nearest earlier row storing one holds it): [`MetadataRun`] resolves it.
    pub metadata: Option<Json>,
    pub recorded_at: DateTime<Utc>,
    pub idempotency_key: Option<Text>,
    /// The `hash` of the stream's event before (32 zero bytes for its first). `None` on rows
    /// appended since migration 25, which store none: [`PrevHashes`] derives it for readers in
    /// position order; of the store's readers, [`super::read_stream`] and
    /// [`super::read_all_after`] (the ledger API's pages) return it derived, the others, whose
    /// callers only decode the events, as stored.
    pub prev_hash: Option<Bytes>,
    pub hash: Bytes,
    /// `events.hash_version`: which encoding `hash` uses.
    pub hash_version: i16,
    /// `None` on rows written before the ledger-wide chain was stored.
    pub ledger_hash: Option<Bytes>,
}

/// An event as stored, owned: what the store's readers return.
pub type RecordedEvent = StoredEvent<String, Vec<u8>, Value>;

/// An event as stored, borrowed from the row it was read from, JSON as the stored text: what the
/// audits stream, without an allocation per event.
pub type EventRow<'a> = StoredEvent<&'a str, &'a [u8], JsonText<'a>>;

/// A row just read from `events`: a query's row or a binary COPY row.
pub trait Columns {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, tokio_postgres::Error>;
}

impl Columns for tokio_postgres::Row {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, tokio_postgres::Error> {
        self.try_get(index)
    }
}

impl Columns for BinaryCopyOutRow {
    fn column<'a, T: FromSql<'a>>(&'a self, index: usize) -> Result<T, tokio_postgres::Error> {
        self.try_get(index)
    }
}

impl<'a, Text, Bytes, Json> StoredEvent<Text, Bytes, Json>
where
    Text: FromSql<'a>,
    Bytes: FromSql<'a>,
    Json: FromSql<'a>,
{
    /// Reads a row selected as [`EVENT_COLUMNS`].
    pub fn from_columns(row: &'a impl Columns) -> Result<Self, tokio_postgres::Error> {
        Ok(StoredEvent {
            position: row.column(0)?,
            stream_id: row.column(1)?,
            version: row.column(2)?,
            event_type: row.column(3)?,
            event_version: row.column(4)?,
            payload: row.column(5)?,
            metadata: row.column(6)?,
            recorded_at: row.column(7)?,
            idempotency_key: row.column(8)?,
            prev_hash: row.column(9)?,
            hash: row.column(10)?,
            hash_version: row.column(11)?,
            ledger_hash: row.column(12)?,
        })
    }
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<Event, projections::events::DecodeError> {
        Event::decode(
            &self.event_type,
            self.event_version,
            &self.stream_id,
            self.payload.clone(),
        )
    }

    /// The idempotency key this event answers: before hash version 4, the key the row stores
    /// (which its hash covers); since, the rows store none, and it is the key the event catalog
    /// derives from the event. `decoded` is this row's event when the caller has decoded it
    /// already; otherwise it is decoded here when needed, and a row that does not decode answers
    /// no key. A row found by a key's digest answers that key only if this says so.
    pub fn answered_key(&self, decoded: Option<&Event>) -> Option<String> {
        if self.hash_version < super::hash::HashVersion::V4.column() {
            return self.idempotency_key.clone();
        }
        match decoded {
            Some(event) => event.idempotency_key(),
            None => self.decode().ok()?.idempotency_key(),
        }
    }
}

/// JSON text of a `json` column as stored (its binary format is the text itself), borrowed from
/// the row; also written as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonText<'a>(pub &'a [u8]);

impl std::ops::Deref for JsonText<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.0
    }
}

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(JsonText(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }
}

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // The json binary format is the text itself: PostgreSQL checks it is JSON and keeps it
        // byte for byte.
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The metadata of rows read in position order: a row that stores none (hash version 4) has the
/// metadata of the nearest earlier row that does, which is in the same append (the first event of
/// every append stores it). Carried across the batches a reader reads.
#[derive(Debug, Default, Clone)]
pub struct MetadataRun {
    text: Option<Vec<u8>>,
}

impl MetadataRun {
    /// The metadata text of `row`, the next row in position order; `None` when the row stores
    /// none and no earlier row was seen (a range that starts inside an append, which readers
    /// starting at an append's first event never meet).
    pub fn resolve<'a>(&'a mut self, stored: Option<&[u8]>) -> Option<&'a [u8]> {
        if let Some(stored) = stored {
            match &mut self.text {
                Some(text) if text.as_slice() == stored => {}
                Some(text) => {
                    text.clear();
                    text.extend_from_slice(stored);
                }
                None => self.text = Some(stored.to_vec()),
            }
        }
        self.text.as_deref()
    }

    /// Starts the run with the metadata of the row before the first one read.
    pub fn starting_with(text: Option<Vec<u8>>) -> MetadataRun {
        MetadataRun { text }
    }
}

/// The previous hash of a row, by the one rule every reader in position order follows: the one it
/// stores; for a row appended since migration 25, which stores none, 32 zero bytes when it is its
/// stream's first event, else the hash of its stream's event before, `stream_last` (`None`: not
/// known to the reader). `None` too when the stored one is not 32 bytes.
pub fn prev_hash(
    stored: Option<&[u8]>,
    version: i64,
    stream_last: impl FnOnce() -> Option<Hash>,
) -> Option<Hash> {
    match stored {
        Some(stored) => stored.try_into().ok(),
        None if version == 1 => Some(GENESIS),
        None => stream_last(),
    }
}

/// The previous hash of rows read in position order ([`prev_hash`]), each stream's event before
/// being the last row of that stream seen, or, for a reader that starts after position 1, the
/// head it was started with ([`super::prev_hashes_before`]).
#[derive(Debug, Default, Clone)]
pub struct PrevHashes {
    heads: HashMap<String, Hash>,
}

impl PrevHashes {
    /// Starts with each stream's hash before the first row to be read.
    pub fn starting_with(heads: HashMap<String, Hash>) -> PrevHashes {
        PrevHashes { heads }
    }

    /// The previous hash of the next row in position order: version `version` of `stream_id`,
    /// storing `stored` and hashing to `hash`. `None` when the row stores none, follows an event
    /// of its stream, and that stream's head is not known (a range read without its heads), or
    /// when the stored one is not 32 bytes.
    pub fn resolve(
        &mut self,
        stream_id: &str,
        version: i64,
        stored: Option<&[u8]>,
        hash: &[u8],
    ) -> Option<Hash> {
        let prev = prev_hash(stored, version, || self.heads.get(stream_id).copied());
        if let Ok(hash) = Hash::try_from(hash) {
            match self.heads.get_mut(stream_id) {
                Some(head) => *head = hash,
                None => {
                    self.heads.insert(stream_id.to_owned(), hash);
                }
            }
        }
        prev
    }
}
