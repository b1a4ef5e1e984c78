//! Archives of closed months (invariant I12): one self-verifying file per month, so that the
//! month can leave the database and still be checked as part of the one chain.
//!
//! A file is one zstd frame of JSON lines (docs/audits.md, "Archives of closed months"):
//! a header (the month, its first and last positions, the ledger hash before its first event),
//! one line per event with every stored column the two hashes cover, and a trailer carrying the
//! checkpoint signed at its last event. Anyone can read it with `zstd -d` and `jq`, and recompute
//! both hashes with their encodings (docs/ledger.md, "The hash encodings, byte by byte"): payload
//! and metadata are JSON strings holding the stored text, byte for byte, so no JSON tool can
//! reformat them.
//!
//! zstd and JSON lines rather than Parquet: the hashes cover text exactly as stored, which a line
//! of JSON keeps and a columnar file would re-encode; the file is read once, in position order,
//! never queried by column; and `zstd`/`jq` are on every auditor's machine while Parquet needs a
//! library. zstd (level 3) compresses these repetitive lines about tenfold at hundreds of MB/s.

use super::report::Month;
use crate::store::hash::Hash;
use chrono::FixedOffset;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

mod reader;
mod writer;

pub use reader::{read, ArchivedEvent, Checked, Item, Reader, Segment};
pub use writer::Writer;

/// The header's `format`: a changed layout gets a new one; readers refuse what they do not know.
pub const FORMAT: &str = "dts-ledger/archive/v1";
/// The longest line read: an event's payload is a few hundred bytes; this bounds what a damaged
/// or hostile file can make a reader hold.
pub const LINE_BYTES_MAX: u64 = 1 << 20;
/// zstd's default level: about tenfold on these lines at hundreds of MB/s; higher levels buy a
/// few percent for several times the time.
const ZSTD_LEVEL: i32 = 3;

/// Months are cut in China Standard Time, the finance month.
pub fn finance_zone() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is an offset")
}

/// The file name of a month's archive: `ledger-2026-10.jsonl.zst`.
pub fn file_name(month: Month) -> String {
    format!("ledger-{month}.jsonl.zst")
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub month: String,
    pub utc_offset: String,
    pub first_position: i64,
    pub last_position: i64,
    pub events: i64,
    /// The ledger-wide hash before the first event, hex (64 zeros before position 1).
    pub ledger_hash_before: String,
}

impl Header {
    pub fn month(&self) -> Result<Month, String> {
        self.month.parse()
    }

    pub fn hash_before(&self) -> Option<Hash> {
        hex::decode(&self.ledger_hash_before)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
    }
}

/// The last line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Trailer {
    pub(super) checkpoint: serde_json::Value,
}

/// What is wrong with an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not an archive: no header, a line that is not JSON of the expected shape.
    Malformed,
    /// The file ends early: the compressed frame is cut, or the signed trailer is missing.
    Truncated,
    /// Events are out of position order, or one is missing.
    Reordered,
    /// An event's content does not hash to its hashes, or the chain does not reach the checkpoint.
    Altered,
    /// The checkpoint is signed by no trusted key.
    Unsigned,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Malformed => "malformed",
            Fault::Truncated => "truncated",
            Fault::Reordered => "reordered",
            Fault::Altered => "altered",
            Fault::Unsigned => "not signed by a trusted key",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("archive {file}: {} {}{detail}", .fault.as_str(), .position.map(|p| format!("at position {p}: ")).unwrap_or_default())]
pub struct ArchiveError {
    pub file: String,
    pub fault: Fault,
    pub position: Option<i64>,
    pub detail: String,
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The SHA-256 of the file at `path`: what `archived_months.file_sha256` records.
pub fn file_sha256(path: &Path) -> std::io::Result<Hash> {
    let mut file = std::fs::File::open(path)?;
    let mut digest = Context::new(&SHA256);
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        digest.update(&buffer[..n]);
    }
    Ok(digest
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 has 32 bytes"))
}

/// The archives in `dir` (files named like [`file_name`]), by file name, which is month order.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(month) = name
            .strip_prefix("ledger-")
            .and_then(|rest| rest.strip_suffix(".jsonl.zst"))
        else {
            continue;
        };
        if month.parse::<Month>().is_ok() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_files_are_named_by_month() {
        let month: Month = "2026-10".parse().unwrap();
        assert_eq!(file_name(month), "ledger-2026-10.jsonl.zst");
    }
}
