//! Events' own hashes, recomputed from their stored content: what verify, the archives and
//! their checks compare with the stored hashes.

use crate::store::hash::{canonical_json, event_hash, Hash, HashVersion};
use crate::store::EventRow;

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
    /// `Verifier::check` (in `verify`) compares a stored `prev_hash` with the stream's previous
    /// hash, and the hash version with the known ones, before it uses this hash: a row that passes
    /// both is hashed here exactly as the chain requires, and for one that does not, the
    /// stand-ins (genesis for a malformed `prev_hash`, the current version for an unknown one)
    /// are never looked at.
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
