//! An archive read back line by line ([`Reader`]), and checked on its own ([`Segment`],
//! [`read`]).

use super::{display, file_sha256, ArchiveError, Fault, Header, Trailer, FORMAT, LINE_BYTES_MAX};
use crate::audit::checkpoint::{Checkpoint, Keyring};
use crate::audit::hasher::Hasher;
use crate::store::hash::{ledger_hash, Hash, HashVersion, GENESIS};
use crate::store::{EventRow, JsonText, StoredEvent};
use chrono::{DateTime, FixedOffset, Utc};
use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One event line as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventLineIn {
    position: i64,
    stream_id: String,
    version: i64,
    event_type: String,
    event_version: i32,
    payload: String,
    metadata: String,
    recorded_at: String,
    idempotency_key: Option<String>,
    prev_hash: String,
    hash: String,
    hash_version: i16,
    ledger_hash: Option<String>,
}

/// An event read from an archive, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedEvent {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub event_version: i32,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub hash_version: i16,
    pub ledger_hash: Option<Vec<u8>>,
}

impl ArchivedEvent {
    /// The row as the audits see a row of `events`.
    pub fn row(&self) -> EventRow<'_> {
        StoredEvent {
            position: self.position,
            stream_id: &self.stream_id,
            version: self.version,
            event_type: &self.event_type,
            event_version: self.event_version,
            payload: JsonText(&self.payload),
            metadata: Some(JsonText(&self.metadata)),
            recorded_at: self.recorded_at,
            idempotency_key: self.idempotency_key.as_deref(),
            prev_hash: Some(&self.prev_hash),
            hash: &self.hash,
            hash_version: self.hash_version,
            ledger_hash: self.ledger_hash.as_deref(),
        }
    }
}

/// An archive file read line by line.
pub struct Reader {
    file: String,
    lines: BufReader<zstd::Decoder<'static, BufReader<std::fs::File>>>,
    line: Vec<u8>,
    pub header: Header,
    /// The position of the last event read, for messages.
    last: Option<i64>,
}

/// The next item of an archive.
pub enum Item {
    Event(Box<ArchivedEvent>),
    /// The trailer's checkpoint: the end of the file.
    End(Checkpoint),
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, ArchiveError> {
        let file = display(path);
        let fail = |fault, detail: String| ArchiveError {
            file: file.clone(),
            fault,
            position: None,
            detail,
        };
        let opened =
            std::fs::File::open(path).map_err(|e| fail(Fault::Malformed, e.to_string()))?;
        let decoder = zstd::Decoder::new(opened)
            .map_err(|e| fail(Fault::Malformed, format!("not a zstd file: {e}")))?;
        let mut reader = Reader {
            file: file.clone(),
            lines: BufReader::new(decoder),
            line: Vec::new(),
            header: Header {
                format: String::new(),
                month: String::new(),
                utc_offset: String::new(),
                first_position: 0,
                last_position: 0,
                events: 0,
                ledger_hash_before: String::new(),
            },
            last: None,
        };
        if !reader.read_line()? {
            return Err(fail(Fault::Truncated, "the file holds no header".into()));
        }
        let header: Header = serde_json::from_slice(&reader.line).map_err(|e| {
            fail(
                Fault::Malformed,
                format!("the first line is not a header: {e}"),
            )
        })?;
        if header.format != FORMAT {
            return Err(fail(
                Fault::Malformed,
                format!("format {:?} is not {FORMAT:?}", header.format),
            ));
        }
        if header.month().is_err()
            || header.hash_before().is_none()
            || header.first_position < 1
            || header.last_position < header.first_position
            || header.events != header.last_position - header.first_position + 1
        {
            return Err(fail(
                Fault::Malformed,
                "the header's month, positions, count or ledger hash do not make sense".into(),
            ));
        }
        reader.header = header;
        Ok(reader)
    }

    fn fail(&self, fault: Fault, detail: impl Into<String>) -> ArchiveError {
        ArchiveError {
            file: self.file.clone(),
            fault,
            position: None,
            detail: detail.into(),
        }
    }

    fn after_last(&self) -> String {
        match self.last {
            Some(position) => format!("after position {position}"),
            None => "after the header".to_owned(),
        }
    }

    /// Reads the next line into `self.line`, without its line break; false at the end.
    fn read_line(&mut self) -> Result<bool, ArchiveError> {
        self.line.clear();
        let read = (&mut self.lines)
            .take(LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut self.line);
        match read {
            Ok(0) => Ok(false),
            Ok(_) if self.line.last() == Some(&b'\n') => {
                self.line.pop();
                Ok(true)
            }
            Ok(n) if n as u64 > LINE_BYTES_MAX => Err(self.fail(
                Fault::Malformed,
                format!(
                    "a line {} is longer than {LINE_BYTES_MAX} bytes",
                    self.after_last()
                ),
            )),
            Ok(_) => Err(self.fail(
                Fault::Truncated,
                format!(
                    "the file ends in the middle of a line {}",
                    self.after_last()
                ),
            )),
            Err(e) => Err(self.fail(
                Fault::Truncated,
                format!(
                    "the compressed data is cut or damaged {}: {e}",
                    self.after_last()
                ),
            )),
        }
    }

    /// The next event, or the end (the trailer, then nothing more in the file).
    pub fn next_item(&mut self) -> Result<Item, ArchiveError> {
        if !self.read_line()? {
            return Err(self.fail(
                Fault::Truncated,
                format!(
                    "the file ends {} without its signed checkpoint",
                    self.after_last()
                ),
            ));
        }
        if self.line.starts_with(b"{\"checkpoint\"") {
            let trailer: Trailer = serde_json::from_slice(&self.line)
                .map_err(|e| self.fail(Fault::Malformed, format!("the trailer: {e}")))?;
            let checkpoint = Checkpoint::parse_line(&trailer.checkpoint.to_string())
                .map_err(|e| self.fail(Fault::Malformed, format!("the trailer: {e}")))?;
            if self.read_line()? {
                return Err(self.fail(
                    Fault::Malformed,
                    "lines follow the signed checkpoint".to_owned(),
                ));
            }
            return Ok(Item::End(checkpoint));
        }
        let line: EventLineIn = serde_json::from_slice(&self.line).map_err(|e| {
            self.fail(
                Fault::Malformed,
                format!("the line {} is not an event: {e}", self.after_last()),
            )
        })?;
        let event = self.decode(line)?;
        self.last = Some(event.position);
        Ok(Item::Event(Box::new(event)))
    }

    fn decode(&self, line: EventLineIn) -> Result<ArchivedEvent, ArchiveError> {
        let bad = |what: &str| ArchiveError {
            file: self.file.clone(),
            fault: Fault::Malformed,
            position: Some(line.position),
            detail: format!("{what} is not what the ledger stores"),
        };
        let bytes = |text: &str, what: &str| hex::decode(text).map_err(|_| bad(what));
        Ok(ArchivedEvent {
            position: line.position,
            version: line.version,
            event_version: line.event_version,
            recorded_at: DateTime::parse_from_rfc3339(&line.recorded_at)
                .map_err(|_| bad("recordedAt"))?
                .with_timezone(&Utc),
            prev_hash: bytes(&line.prev_hash, "prevHash")?,
            hash: bytes(&line.hash, "hash")?,
            hash_version: line.hash_version,
            ledger_hash: line
                .ledger_hash
                .as_deref()
                .map(|text| bytes(text, "ledgerHash"))
                .transpose()?,
            stream_id: line.stream_id,
            event_type: line.event_type,
            payload: line.payload.into_bytes(),
            metadata: line.metadata.into_bytes(),
            idempotency_key: line.idempotency_key,
        })
    }
}

/// The checks an archive's events must pass on their own: positions in order from the header's
/// first, every hash recomputed, the ledger-wide chain from the header's hash before, times in
/// the month and never going back. What needs the rest of the ledger (each stream's chain,
/// versions) is checked by `verify --archives`, which feeds the same rows to the ledger's check.
pub struct Segment {
    next_position: i64,
    last_position: i64,
    pub chain: Hash,
    month_start: DateTime<Utc>,
    month_end: DateTime<Utc>,
    pub last_recorded_at: Option<DateTime<Utc>>,
    pub last_hash_version: i16,
}

impl Segment {
    pub fn new(header: &Header) -> Result<Segment, String> {
        let month = header.month()?;
        let zone: FixedOffset = header
            .utc_offset
            .parse()
            .map_err(|_| format!("utcOffset {:?} is not like +08:00", header.utc_offset))?;
        let (month_start, month_end) = month.bounds(zone);
        Ok(Segment {
            next_position: header.first_position,
            last_position: header.last_position,
            chain: header
                .hash_before()
                .ok_or("ledgerHashBefore is not 64 hex")?,
            month_start,
            month_end,
            last_recorded_at: None,
            last_hash_version: 0,
        })
    }

    /// Checks the next row; `recomputed` is its hash recomputed from its content.
    pub fn check(&mut self, row: &EventRow<'_>, recomputed: &Hash) -> Result<(), (Fault, String)> {
        if row.position != self.next_position {
            return Err((
                Fault::Reordered,
                format!(
                    "position {} where {} was expected: events are out of order or missing",
                    row.position, self.next_position
                ),
            ));
        }
        if row.position > self.last_position {
            return Err((
                Fault::Altered,
                format!(
                    "the header ends the month at position {}",
                    self.last_position
                ),
            ));
        }
        if HashVersion::from_column(row.hash_version).is_none() {
            return Err((
                Fault::Altered,
                format!("hash_version {} is not a known encoding", row.hash_version),
            ));
        }
        if row.hash != recomputed {
            return Err((
                Fault::Altered,
                "the content does not hash to the stored hash".into(),
            ));
        }
        let chain = ledger_hash(&self.chain, recomputed);
        if let Some(stored) = row.ledger_hash {
            if stored != chain {
                return Err((
                    Fault::Altered,
                    "the stored ledgerHash is not the chain from ledgerHashBefore: an event \
                     before it was altered, removed or moved"
                        .into(),
                ));
            }
        }
        if row.recorded_at < self.month_start || row.recorded_at >= self.month_end {
            return Err((
                Fault::Altered,
                "recordedAt is outside the header's month".into(),
            ));
        }
        if self
            .last_recorded_at
            .is_some_and(|last| row.recorded_at < last)
        {
            return Err((Fault::Reordered, "recordedAt goes backwards".into()));
        }
        self.chain = chain;
        self.last_recorded_at = Some(row.recorded_at);
        self.last_hash_version = row.hash_version;
        self.next_position += 1;
        Ok(())
    }

    /// Whether every event of the header was seen.
    pub fn complete(&self) -> bool {
        self.next_position == self.last_position + 1
    }
}

/// An archive read to its end and found whole.
#[derive(Debug, Clone)]
pub struct Checked {
    pub header: Header,
    pub checkpoint: Checkpoint,
    pub file_sha256: Hash,
    pub last_recorded_at: DateTime<Utc>,
    pub last_hash_version: i16,
}

/// Reads the archive at `path` to its end, checking it on its own ([`Segment`]) and its
/// checkpoint against `keyring` (when one is given); `each` sees every event with its recomputed
/// hash, in order, once it passed.
pub fn read<E: From<ArchiveError>>(
    path: &Path,
    keyring: Option<&Keyring>,
    mut each: impl FnMut(&EventRow<'_>, &Hash) -> Result<(), E>,
) -> Result<Checked, E> {
    let mut reader = Reader::open(path)?;
    let file = display(path);
    let fail = |fault, position, detail: String| ArchiveError {
        file: file.clone(),
        fault,
        position,
        detail,
    };
    let mut segment = Segment::new(&reader.header).map_err(|e| fail(Fault::Malformed, None, e))?;
    let mut hasher = Hasher::default();
    loop {
        match reader.next_item()? {
            Item::Event(event) => {
                let row = event.row();
                // Every line holds its previous hash (derived by the writer where the row stores
                // none); one that is not 32 bytes was refused when the line was read.
                let prev: Hash = event.prev_hash.as_slice().try_into().unwrap_or(GENESIS);
                let hash = hasher
                    .hash(&row, &prev, &event.metadata)
                    .map_err(|e| fail(Fault::Altered, Some(row.position), e))?;
                segment
                    .check(&row, &hash)
                    .map_err(|(fault, detail)| fail(fault, Some(row.position), detail))?;
                each(&row, &hash)?;
            }
            Item::End(checkpoint) => {
                if !segment.complete() {
                    return Err(fail(
                        Fault::Truncated,
                        None,
                        format!(
                            "the events end before position {}, the header's last",
                            reader.header.last_position
                        ),
                    )
                    .into());
                }
                if checkpoint.position != reader.header.last_position
                    || checkpoint.ledger_hash != segment.chain
                {
                    return Err(fail(
                        Fault::Altered,
                        Some(reader.header.last_position),
                        format!(
                            "the events chain to ledger hash {} at position {}, the signed \
                             checkpoint says {} at position {}",
                            hex::encode(segment.chain),
                            reader.header.last_position,
                            hex::encode(checkpoint.ledger_hash),
                            checkpoint.position
                        ),
                    )
                    .into());
                }
                if let Some(keyring) = keyring {
                    keyring.check(&checkpoint).map_err(|problem| {
                        fail(Fault::Unsigned, None, format!("its checkpoint: {problem}"))
                    })?;
                }
                let file_sha256 =
                    file_sha256(path).map_err(|e| fail(Fault::Truncated, None, e.to_string()))?;
                return Ok(Checked {
                    header: reader.header,
                    checkpoint,
                    file_sha256,
                    last_recorded_at: segment
                        .last_recorded_at
                        .expect("a complete archive has events"),
                    last_hash_version: segment.last_hash_version,
                });
            }
        }
    }
}
