//! An archive written: the header, each event's line, the signed trailer.

use super::{file_name, Header, Trailer, ZSTD_LEVEL};
use crate::audit::checkpoint::Checkpoint;
use crate::store::hash::Hash;
use crate::store::EventRow;
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One event line, written from a borrowed row.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventLineOut<'a> {
    position: i64,
    stream_id: &'a str,
    version: i64,
    event_type: &'a str,
    event_version: i32,
    payload: &'a str,
    metadata: &'a str,
    recorded_at: String,
    idempotency_key: Option<&'a str>,
    prev_hash: String,
    hash: String,
    hash_version: i16,
    ledger_hash: Option<String>,
}

/// Writes an archive: the header first, then each event, then the signed trailer; the file
/// appears under its name only once complete and on disk.
pub struct Writer {
    encoder: zstd::Encoder<'static, BufWriter<std::fs::File>>,
    partial: PathBuf,
    path: PathBuf,
    line: Vec<u8>,
}

impl Writer {
    /// Starts `dir/<file_name(month)>`; refuses to replace an existing archive.
    pub fn create(dir: &Path, header: &Header) -> Result<Writer, String> {
        let month = header.month()?;
        let path = dir.join(file_name(month));
        if path.exists() {
            return Err(format!(
                "{} exists already: an archive is never overwritten",
                path.display()
            ));
        }
        let partial = dir.join(format!(".{}.partial", file_name(month)));
        let file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        let mut encoder = zstd::Encoder::new(BufWriter::with_capacity(1 << 20, file), ZSTD_LEVEL)
            .map_err(|e| e.to_string())?;
        serde_json::to_writer(&mut encoder, header).map_err(|e| e.to_string())?;
        encoder.write_all(b"\n").map_err(|e| e.to_string())?;
        Ok(Writer {
            encoder,
            partial,
            path,
            line: Vec::with_capacity(1024),
        })
    }

    /// Writes `row`'s line, with `prev_hash` its previous hash (the row's own, or for a row
    /// that stores none, its stream's event before's hash) and `metadata` its metadata text
    /// (resolved: a row of hash version 4 that stores none has the text of the append's earlier
    /// event it shares), so that every line can be hashed alone.
    pub fn event(
        &mut self,
        row: &EventRow<'_>,
        prev_hash: &Hash,
        metadata: &[u8],
    ) -> std::io::Result<()> {
        fn text(json: &[u8]) -> std::io::Result<&str> {
            std::str::from_utf8(json)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }
        let line = EventLineOut {
            position: row.position,
            stream_id: row.stream_id,
            version: row.version,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: text(&row.payload)?,
            metadata: text(metadata)?,
            recorded_at: row
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            idempotency_key: row.idempotency_key,
            prev_hash: hex::encode(prev_hash),
            hash: hex::encode(row.hash),
            hash_version: row.hash_version,
            ledger_hash: row.ledger_hash.map(hex::encode),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line)?;
        self.line.push(b'\n');
        self.encoder.write_all(&self.line)
    }

    /// Writes the trailer, flushes the file to disk and gives it its name.
    pub fn finish(mut self, checkpoint: &Checkpoint) -> std::io::Result<PathBuf> {
        let trailer = Trailer {
            checkpoint: checkpoint.to_json(),
        };
        serde_json::to_writer(&mut self.encoder, &trailer)?;
        self.encoder.write_all(b"\n")?;
        let file = self
            .encoder
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The new name is durable once the directory is.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(self.path)
    }
}
