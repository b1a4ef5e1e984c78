//! The hash chains (invariant I6).
//!
//! Per stream: `hash = SHA-256(domain tag ‖ prev_hash ‖ canonical encoding of the row)`, where the
//! canonical encoding lists position, stream, version, type, type version, recording time
//! (microseconds), payload and metadata, and (versions 2 and 3) the idempotency key, each
//! variable-length field prefixed by its length. Position is covered so that moving an event in
//! the global order is detected too. Version 4 leaves the key out: it is a function of the event
//! type and payload (the event catalog derives it), which the hash covers already, so it is no
//! longer stored beside them.
//!
//! Payload and metadata are covered as canonical JSON: object keys in byte order, no whitespace.
//! Versions 1 and 2 were written while the columns were `jsonb`, which keeps no text, so their
//! verification parses the stored JSON and writes it canonically again. Since version 3 the columns
//! are `json`, which keeps the text byte for byte, and the append stores exactly the canonical text
//! it hashed: the hash covers the stored text as it is, and verification reads it without parsing.
//!
//! Ledger-wide: `ledger_hash = SHA-256(ledger tag ‖ ledger_hash of the previous position ‖ hash)`,
//! so the ledger hash at the head commits to every event before it, in order. docs/ledger.md spells
//! both encodings out byte by byte.

use super::StoredEvent;
use chrono::{DateTime, Utc};
use ring::digest::{Context, SHA256};
use serde_json::Value;

pub type Hash = [u8; 32];

/// `prev_hash` of the first event of every stream, and the ledger hash before position 1.
pub const GENESIS: Hash = [0; 32];

/// Separates these encodings from any other use of SHA-256 over similar bytes; a changed encoding
/// gets a new tag (and a new [`HashVersion`]), old rows keep theirs.
const DOMAIN_TAG_V1: &[u8] = b"dts-ledger/event/v1\0";
const DOMAIN_TAG_V2: &[u8] = b"dts-ledger/event/v2\0";
const DOMAIN_TAG_V3: &[u8] = b"dts-ledger/event/v3\0";
const DOMAIN_TAG_V4: &[u8] = b"dts-ledger/event/v4\0";
const LEDGER_TAG: &[u8] = b"dts-ledger/ledger/v1\0";

/// Which encoding an event's `hash` uses (`events.hash_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HashVersion {
    /// The first encoding: does not cover the idempotency key. Only rows written before version 2
    /// existed carry it.
    V1 = 1,
    /// Covers the idempotency key too; payload and metadata are covered as the canonical JSON of
    /// their stored value. Rows written while the columns were `jsonb` carry it.
    V2 = 2,
    /// Version 2 over the stored text of payload and metadata, which the append writes as the
    /// canonical JSON it hashed.
    V3 = 3,
    /// Version 3 without the idempotency key, which the event's type and payload determine: rows
    /// carrying it store no key (`idempotency_key` is NULL), and the ledger-wide hash only on the
    /// last event of each append (docs/performance.md, "Bytes per event"). Every append writes this
    /// one.
    V4 = 4,
}

impl HashVersion {
    pub const CURRENT: HashVersion = HashVersion::V4;

    pub fn from_column(value: i16) -> Option<HashVersion> {
        match value {
            1 => Some(HashVersion::V1),
            2 => Some(HashVersion::V2),
            3 => Some(HashVersion::V3),
            4 => Some(HashVersion::V4),
            _ => None,
        }
    }

    /// Whether the hash covers payload and metadata as stored ([`HashVersion::V3`]) rather than
    /// as the canonical JSON of their parsed value.
    pub fn covers_stored_text(self) -> bool {
        self >= HashVersion::V3
    }

    /// Whether the hash covers the idempotency key ([`HashVersion::V2`] and [`HashVersion::V3`]),
    /// which the row then stores.
    pub fn covers_key(self) -> bool {
        matches!(self, HashVersion::V2 | HashVersion::V3)
    }

    /// Whether every row stores its ledger-wide hash (before [`HashVersion::V4`]), rather than
    /// only the last row of each append.
    pub fn stores_every_ledger_hash(self) -> bool {
        self < HashVersion::V4
    }

    pub fn column(self) -> i16 {
        self as i16
    }
}

/// The fields of an event row that the hash covers, payload and metadata as canonical JSON (for
/// [`HashVersion::V3`], the stored text, which the append wrote canonical): a
/// view over a [`StoredEvent`] ([`StoredEvent::hashed`]) or over an event about to be appended.
pub struct Hashed<'a> {
    pub position: i64,
    pub stream_id: &'a str,
    pub version: i64,
    pub event_type: &'a str,
    pub event_version: i32,
    pub recorded_at: DateTime<Utc>,
    pub payload: &'a [u8],
    pub metadata: &'a [u8],
    /// Covered by [`HashVersion::V2`] and [`HashVersion::V3`] only.
    pub idempotency_key: Option<&'a str>,
}

impl<Text: AsRef<str>, Bytes, Json> StoredEvent<Text, Bytes, Json> {
    /// What the hash covers of this row, given its payload and metadata as canonical JSON.
    pub fn hashed<'a>(&'a self, payload: &'a [u8], metadata: &'a [u8]) -> Hashed<'a> {
        Hashed {
            position: self.position,
            stream_id: self.stream_id.as_ref(),
            version: self.version,
            event_type: self.event_type.as_ref(),
            event_version: self.event_version,
            recorded_at: self.recorded_at,
            payload,
            metadata,
            idempotency_key: self.idempotency_key.as_ref().map(AsRef::as_ref),
        }
    }
}

/// The hash of an event row whose previous event in the stream hashed to `prev_hash`.
pub fn event_hash(version: HashVersion, prev_hash: &Hash, row: &Hashed<'_>) -> Hash {
    let mut digest = Context::new(&SHA256);
    digest.update(match version {
        HashVersion::V1 => DOMAIN_TAG_V1,
        HashVersion::V2 => DOMAIN_TAG_V2,
        HashVersion::V3 => DOMAIN_TAG_V3,
        HashVersion::V4 => DOMAIN_TAG_V4,
    });
    digest.update(prev_hash);
    digest.update(&row.position.to_be_bytes());
    field(&mut digest, row.stream_id.as_bytes());
    digest.update(&row.version.to_be_bytes());
    field(&mut digest, row.event_type.as_bytes());
    digest.update(&row.event_version.to_be_bytes());
    digest.update(&row.recorded_at.timestamp_micros().to_be_bytes());
    field(&mut digest, row.payload);
    field(&mut digest, row.metadata);
    if version.covers_key() {
        // A presence byte keeps "no key" apart from "the empty key".
        match row.idempotency_key {
            None => digest.update(&[0]),
            Some(key) => {
                digest.update(&[1]);
                field(&mut digest, key.as_bytes());
            }
        }
    }
    finish(digest)
}

/// The ledger-wide hash of an event whose own hash is `hash`, after an event whose ledger hash
/// was `prev_ledger_hash` ([`GENESIS`] before position 1).
pub fn ledger_hash(prev_ledger_hash: &Hash, hash: &Hash) -> Hash {
    let mut digest = Context::new(&SHA256);
    digest.update(LEDGER_TAG);
    digest.update(prev_ledger_hash);
    digest.update(hash);
    finish(digest)
}

/// A hash as a `bytea` column stores it (the schema holds hash columns to 32 bytes).
pub(super) fn stored_hash(bytes: &[u8]) -> Hash {
    bytes
        .try_into()
        .expect("the schema holds hashes to 32 bytes")
}

fn finish(digest: Context) -> Hash {
    digest
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 gives 32 bytes")
}

/// The canonical JSON of a value, as a new buffer.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonical_json(value, &mut out);
    out
}

fn field(digest: &mut Context, bytes: &[u8]) {
    // Lengths make the encoding unambiguous: ("ab", "c") and ("a", "bc") hash differently.
    digest.update(&(bytes.len() as u64).to_be_bytes());
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
            idempotency_key: Some("report:t-1:r-9"),
        }
    }

    #[test]
    fn every_covered_field_changes_the_hash() {
        let payload = canonical(&json!({"bytes": 5, "a": [1]}));
        let metadata = canonical(&json!({"source": "test"}));
        let base = event_hash(HashVersion::V2, &GENESIS, &row(&payload, &metadata));
        assert_eq!(
            base,
            event_hash(HashVersion::V2, &GENESIS, &row(&payload, &metadata))
        );
        assert_ne!(
            base,
            event_hash(HashVersion::V2, &[1; 32], &row(&payload, &metadata))
        );
        let altered = canonical(&json!({"bytes": 6, "a": [1]}));
        assert_ne!(
            base,
            event_hash(HashVersion::V2, &GENESIS, &row(&altered, &metadata))
        );
        let mut moved = row(&payload, &metadata);
        moved.position = 8;
        assert_ne!(base, event_hash(HashVersion::V2, &GENESIS, &moved));
        let mut later = row(&payload, &metadata);
        later.recorded_at += chrono::Duration::microseconds(1);
        assert_ne!(base, event_hash(HashVersion::V2, &GENESIS, &later));
        let mut keyless = row(&payload, &metadata);
        keyless.idempotency_key = None;
        assert_ne!(base, event_hash(HashVersion::V2, &GENESIS, &keyless));
        let mut empty_key = row(&payload, &metadata);
        empty_key.idempotency_key = Some("");
        assert_ne!(
            event_hash(HashVersion::V2, &GENESIS, &keyless),
            event_hash(HashVersion::V2, &GENESIS, &empty_key)
        );
        // Version 1 ignores the key, and differs from version 2 by its tag.
        assert_eq!(
            event_hash(HashVersion::V1, &GENESIS, &keyless),
            event_hash(HashVersion::V1, &GENESIS, &row(&payload, &metadata))
        );
        assert_ne!(
            base,
            event_hash(HashVersion::V1, &GENESIS, &row(&payload, &metadata))
        );
        // Version 3 covers the same bytes under its own tag.
        assert_ne!(
            base,
            event_hash(HashVersion::V3, &GENESIS, &row(&payload, &metadata))
        );
        // Version 4 leaves the key out, under its own tag.
        assert_eq!(
            event_hash(HashVersion::V4, &GENESIS, &keyless),
            event_hash(HashVersion::V4, &GENESIS, &row(&payload, &metadata))
        );
        assert_ne!(
            event_hash(HashVersion::V4, &GENESIS, &keyless),
            event_hash(HashVersion::V3, &GENESIS, &keyless)
        );
        // Key order and whitespace do not matter: jsonb reorders keys.
        let reordered: Value = serde_json::from_str(r#"{ "a" : [1], "bytes": 5 }"#).unwrap();
        assert_eq!(
            base,
            event_hash(
                HashVersion::V2,
                &GENESIS,
                &row(&canonical(&reordered), &metadata)
            )
        );
    }
}

#[cfg(test)]
mod ledger_doc_example {
    use super::*;

    /// The worked example in docs/ledger.md, read from that document so the two cannot drift apart.
    fn example() -> HashMap<String, String> {
        let doc = include_str!("../../docs/ledger.md");
        let block = doc
            .split("```text\nhash example\n")
            .nth(1)
            .expect("docs/ledger.md has the worked hash example")
            .split("```")
            .next()
            .unwrap();
        block
            .lines()
            .filter_map(|line| line.split_once(char::is_whitespace))
            .map(|(key, value)| (key.to_owned(), value.trim().to_owned()))
            .collect()
    }

    use std::collections::HashMap;

    fn hash_of(hex_text: &str) -> Hash {
        hex::decode(hex_text).unwrap().try_into().unwrap()
    }

    #[test]
    fn the_ledger_doc_example_hashes_as_published() {
        let example = example();
        let get = |key: &str| example.get(key).unwrap_or_else(|| panic!("{key}")).as_str();
        let row = Hashed {
            position: get("position").parse().unwrap(),
            stream_id: get("stream_id"),
            version: get("version").parse().unwrap(),
            event_type: get("event_type"),
            event_version: get("event_version").parse().unwrap(),
            recorded_at: DateTime::parse_from_rfc3339(get("recorded_at"))
                .unwrap()
                .with_timezone(&Utc),
            payload: get("payload").as_bytes(),
            metadata: get("metadata").as_bytes(),
            idempotency_key: Some(get("idempotency_key")),
        };
        let prev_hash = hash_of(get("prev_hash"));
        let v1 = event_hash(HashVersion::V1, &prev_hash, &row);
        let v2 = event_hash(HashVersion::V2, &prev_hash, &row);
        let v3 = event_hash(HashVersion::V3, &prev_hash, &row);
        assert_eq!(hex::encode(v1), get("hash_v1"));
        assert_eq!(hex::encode(v2), get("hash_v2"));
        assert_eq!(hex::encode(v3), get("hash_v3"));
        let v4 = event_hash(
            HashVersion::V4,
            &prev_hash,
            &Hashed {
                idempotency_key: None,
                ..row
            },
        );
        assert_eq!(hex::encode(v4), get("hash_v4"));
        // The key is not covered by version 4.
        assert_eq!(v4, event_hash(HashVersion::V4, &prev_hash, &row));
        assert_eq!(
            hex::encode(ledger_hash(&hash_of(get("prev_ledger_hash")), &v3)),
            get("ledger_hash")
        );
    }
}
