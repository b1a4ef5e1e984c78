//! The per-stream hash chain (invariant I6).
//!
//! `hash = SHA-256(domain tag ‖ prev_hash ‖ canonical encoding of the row)`, where the canonical
//! encoding lists position, stream, version, type, type version, recording time (microseconds) and
//! the canonical JSON of payload and metadata, each variable-length field prefixed by its length.
//! Canonical JSON has object keys in byte order and no whitespace, so the hash survives the
//! round trip through `jsonb`, which reorders keys. Position is covered so that moving an event
//! in the global order is detected too.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `prev_hash` of the first event of every stream.
pub const GENESIS: Hash = [0; 32];

/// Separates this encoding from any other use of SHA-256 over similar bytes; bump the version if
/// the encoding ever changes.
const DOMAIN_TAG: &[u8] = b"dts-ledger/event/v1\0";

/// The fields of an event row that the hash covers; payload and metadata as canonical JSON.
pub struct Hashed<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub payload: &'a [u8],
    pub metadata: &'a [u8],
}

/// The hash of an event row whose previous event in the stream hashed to `prev_hash`.
pub fn event_hash(prev_hash: &Hash, row: &Hashed<'_>) -> Hash {
    let mut digest = Sha256::new();
    digest.update(DOMAIN_TAG);
    digest.update(prev_hash);
    digest.update(row.position.to_be_bytes());
    field(&mut digest, row.stream_id.as_bytes());
    digest.update(row.version.to_be_bytes());
    field(&mut digest, row.event_type.as_bytes());
    digest.update(row.event_version.to_be_bytes());
    digest.update(row.recorded_at.timestamp_micros().to_be_bytes());
    field(&mut digest, row.payload);
    field(&mut digest, row.metadata);
    digest.finalize().into()
}

/// The canonical JSON of a value, as a new buffer.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonical_json(value, &mut out);
    out
}

fn field(digest: &mut Sha256, bytes: &[u8]) {
    // Lengths make the encoding unambiguous: ("ab", "c") and ("a", "bc") hash differently.
    digest.update((bytes.len() as u64).to_be_bytes());
    digest.update(bytes);
}

/// Compact JSON with object keys sorted by their UTF-8 bytes.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                canonical_json(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let mut out = Vec::new();
        canonical_json(
            &json!({"b": [1, {"z": null, "a": true}], "a": "x\"y", "ä": 1}),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x\"y","b":[1,{"a":true,"z":null}],"ä":1}"#
        );
    }

    fn row<'a>(payload: &'a [u8], metadata: &'a [u8]) -> Hashed<'a> {
        Hashed {
            position: 7,
            stream_id: "package-a",
            version: 2,
            event_type: "OrderRenewed",
            event_version: 1,
            recorded_at: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            payload,
            metadata,
        }
    }

    #[test]
    fn every_covered_field_changes_the_hash() {
        let payload = canonical(&json!({"bytes": 5, "a": [1]}));
        let metadata = canonical(&json!({"source": "test"}));
        let base = event_hash(&GENESIS, &row(&payload, &metadata));
        assert_eq!(base, event_hash(&GENESIS, &row(&payload, &metadata)));
        assert_ne!(base, event_hash(&[1; 32], &row(&payload, &metadata)));
        let altered = canonical(&json!({"bytes": 6, "a": [1]}));
        assert_ne!(base, event_hash(&GENESIS, &row(&altered, &metadata)));
        let mut moved = row(&payload, &metadata);
        moved.position = 8;
        assert_ne!(base, event_hash(&GENESIS, &moved));
        let mut later = row(&payload, &metadata);
        later.recorded_at += chrono::Duration::microseconds(1);
        assert_ne!(base, event_hash(&GENESIS, &later));
        // Key order and whitespace do not matter: jsonb reorders keys.
        let reordered: Value = serde_json::from_str(r#"{ "a" : [1], "bytes": 5 }"#).unwrap();
        assert_eq!(
            base,
            event_hash(&GENESIS, &row(&canonical(&reordered), &metadata))
        );
    }
}
