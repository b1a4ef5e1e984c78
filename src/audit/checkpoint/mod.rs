//! Signed checkpoints (invariant I9): an Ed25519 key kept outside the database vouches for the
//! ledger-wide hash at a position. A rewrite of anything before a checkpoint changes that hash, so
//! it is caught even if every hash in the database was recomputed.
//!
//! The signed bytes (docs/ledger.md, "Signed checkpoints"):
//! `"dts-ledger/checkpoint/v1" 0x00 ‖ position (8) ‖ ledger_hash (32) ‖ signed_at µs (8) ‖ key id (8)`,
//! integers big-endian; version 2, for a checkpoint stored with a projection snapshot, has the tag
//! `"dts-ledger/checkpoint/v2" 0x00` and ends with the snapshot's digest (32,
//! [`super::snapshot::digest`]). The key file holds the 32-byte secret key as 64 hex digits.
//!
//! Only a checkpoint whose signature a trusted key vouches for counts ([`Keyring::sort`]): anyone
//! who can append to `checkpoints` can append rows, and a row no trusted key signed proves
//! nothing either way, so it is reported and ignored, never allowed to fail or steer an audit.

use crate::store::hash::Hash;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

mod checkpointer;
#[cfg(test)]
mod tests;

pub use checkpointer::{
    announce, record_heads, verify_and_take, worker, Outcome, Round, RoundError,
};

const DOMAIN_TAG_V1: &[u8] = b"dts-ledger/checkpoint/v1\0";
/// Version 2 also signs the digest of the snapshot stored with the checkpoint.
const DOMAIN_TAG_V2: &[u8] = b"dts-ledger/checkpoint/v2\0";

/// Checkpoints signed by no trusted key that an audit describes one by one; the rest are counted.
/// Anyone who can append to `checkpoints` can append many: ten say what they are like.
pub const UNTRUSTED_NAMED_MAX: usize = 10;

/// The longest checkpoint line accepted: a real one is about 330 bytes; this bounds what a bad
/// file can make us parse.
pub const LINE_LEN_MAX: usize = 4_096;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("not a checkpoint line: {0}")]
    Malformed(String),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// Which key signed: the first 8 bytes of SHA-256 of its public key.
pub fn key_id(public: &VerifyingKey) -> [u8; 8] {
    let digest = Sha256::digest(public.as_bytes());
    digest[..8].try_into().expect("SHA-256 has 32 bytes")
}

/// Writes a new signing key to `path` (mode 0600, never over an existing file) and returns its
/// public key.
pub fn keygen(path: &Path) -> Result<VerifyingKey, CheckpointError> {
    let fail = |message: String| CheckpointError::KeyFile {
        path: path.display().to_string(),
        message,
    };
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|error| {
        fail(if error.kind() == std::io::ErrorKind::AlreadyExists {
            "exists already; a signing key is never overwritten".to_owned()
        } else {
            error.to_string()
        })
    })?;
    file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| fail(error.to_string()))?;
    Ok(key.verifying_key())
}

/// Reads a signing key written by [`keygen`]. The error never quotes the file's content.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, CheckpointError> {
    let fail = |message: &str| CheckpointError::KeyFile {
        path: path.display().to_string(),
        message: message.to_owned(),
    };
    let text = std::fs::read_to_string(path).map_err(|error| fail(&error.to_string()))?;
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| fail("is not a signing key (64 hex digits)"))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: i64,
    pub ledger_hash: Hash,
    pub signed_at: DateTime<Utc>,
    pub key_id: [u8; 8],
    pub signature: [u8; 64],
    /// The digest of the projection snapshot stored with it (signature version 2), if any.
    pub snapshot_digest: Option<Hash>,
}

/// The JSON line form, as `checkpoint` prints it and the webhook announces it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Line {
    position: i64,
    ledger_hash: String,
    signed_at: String,
    key_id: String,
    signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_digest: Option<String>,
}

impl Checkpoint {
    /// The bytes the signature covers: version 1 without a snapshot, version 2 with one. The
    /// tags differ, so neither can be passed off as the other.
    pub fn signed_bytes(
        position: i64,
        ledger_hash: &Hash,
        signed_at: DateTime<Utc>,
        key_id: &[u8; 8],
        snapshot_digest: Option<&Hash>,
    ) -> Vec<u8> {
        let tag = match snapshot_digest {
            None => DOMAIN_TAG_V1,
            Some(_) => DOMAIN_TAG_V2,
        };
        let mut bytes = Vec::with_capacity(tag.len() + 88);
        bytes.extend_from_slice(tag);
        bytes.extend_from_slice(&position.to_be_bytes());
        bytes.extend_from_slice(ledger_hash);
        bytes.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(key_id);
        if let Some(digest) = snapshot_digest {
            bytes.extend_from_slice(digest);
        }
        bytes
    }

    /// A version 1 checkpoint: the ledger hash at `position`.
    pub fn sign(
        key: &SigningKey,
        position: i64,
        ledger_hash: Hash,
        signed_at: DateTime<Utc>,
    ) -> Checkpoint {
        Checkpoint::sign_with(key, position, ledger_hash, signed_at, None)
    }

    /// A checkpoint of version 1, or of version 2 when it vouches for a snapshot's digest too.
    pub fn sign_with(
        key: &SigningKey,
        position: i64,
        ledger_hash: Hash,
        signed_at: DateTime<Utc>,
        snapshot_digest: Option<Hash>,
    ) -> Checkpoint {
        let signed_at = crate::store::truncate_to_micros(signed_at);
        let key_id = key_id(&key.verifying_key());
        let signature = key.sign(&Checkpoint::signed_bytes(
            position,
            &ledger_hash,
            signed_at,
            &key_id,
            snapshot_digest.as_ref(),
        ));
        Checkpoint {
            position,
            ledger_hash,
            signed_at,
            key_id,
            signature: signature.to_bytes(),
            snapshot_digest,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(Line {
            position: self.position,
            ledger_hash: hex::encode(self.ledger_hash),
            signed_at: self
                .signed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            key_id: hex::encode(self.key_id),
            signature: hex::encode(self.signature),
            snapshot_digest: self.snapshot_digest.map(hex::encode),
        })
        .expect("a checkpoint serialises")
    }

    /// Parses a line printed by `checkpoint`: every field present, nothing else, exact lengths.
    pub fn parse_line(text: &str) -> Result<Checkpoint, CheckpointError> {
        let malformed = |what: &str| CheckpointError::Malformed(what.to_owned());
        let text = text.trim();
        if text.len() > LINE_LEN_MAX {
            return Err(malformed("longer than any checkpoint line"));
        }
        let line: Line = serde_json::from_str(text)
            .map_err(|error| CheckpointError::Malformed(format!("{error}")))?;
        fn fixed<const N: usize>(text: &str, field: &str) -> Result<[u8; N], CheckpointError> {
            hex::decode(text)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    CheckpointError::Malformed(format!("{field} is not {} hex digits", N * 2))
                })
        }
        if line.position < 0 {
            return Err(malformed("position is negative"));
        }
        Ok(Checkpoint {
            position: line.position,
            ledger_hash: fixed(&line.ledger_hash, "ledgerHash")?,
            signed_at: DateTime::parse_from_rfc3339(&line.signed_at)
                .map_err(|_| malformed("signedAt is not an RFC 3339 time"))?
                .with_timezone(&Utc),
            key_id: fixed(&line.key_id, "keyId")?,
            signature: fixed(&line.signature, "signature")?,
            snapshot_digest: line
                .snapshot_digest
                .as_deref()
                .map(|digest| fixed(digest, "snapshotDigest"))
                .transpose()?,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "the checkpoint at position {} signed {} by key {}",
            self.position,
            self.signed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            hex::encode(self.key_id)
        )
    }
}

/// The public keys whose checkpoints are trusted, by key id.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    keys: BTreeMap<[u8; 8], VerifyingKey>,
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    #[error("it is signed by key {0}, which is not among the known public keys")]
    UnknownKey(String),
    #[error("its signature does not hold: the checkpoint was edited, or signed by another key")]
    BadSignature,
}

impl Keyring {
    /// The configured public keys, and the signing key's own.
    pub fn new(
        public_keys: &[[u8; 32]],
        signing: Option<&SigningKey>,
    ) -> Result<Keyring, CheckpointError> {
        let mut keyring = Keyring::default();
        for bytes in public_keys {
            let key = VerifyingKey::from_bytes(bytes).map_err(|_| {
                CheckpointError::Malformed(format!(
                    "audit.public_keys: {} is not an Ed25519 public key",
                    hex::encode(bytes)
                ))
            })?;
            keyring.keys.insert(key_id(&key), key);
        }
        if let Some(signing) = signing {
            let key = signing.verifying_key();
            keyring.keys.insert(key_id(&key), key);
        }
        Ok(keyring)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn check(&self, checkpoint: &Checkpoint) -> Result<(), SignatureProblem> {
        let key = self
            .keys
            .get(&checkpoint.key_id)
            .ok_or_else(|| SignatureProblem::UnknownKey(hex::encode(checkpoint.key_id)))?;
        let bytes = Checkpoint::signed_bytes(
            checkpoint.position,
            &checkpoint.ledger_hash,
            checkpoint.signed_at,
            &checkpoint.key_id,
            checkpoint.snapshot_digest.as_ref(),
        );
        key.verify(&bytes, &Signature::from_bytes(&checkpoint.signature))
            .map_err(|_| SignatureProblem::BadSignature)
    }

    /// Splits stored checkpoints ([`stored`]) into those a trusted key signed, oldest position
    /// first, and the rest, which prove nothing and are only reported. Without any key, no
    /// checkpoint is trusted.
    pub fn sort(&self, stored: Vec<Result<Checkpoint, String>>) -> Sorted {
        let mut sorted = Sorted::default();
        for found in stored {
            let why = match found {
                Ok(found) if self.is_empty() => {
                    format!(
                        "{}: no public key to check its signature with",
                        found.describe()
                    )
                }
                Ok(found) => match self.check(&found) {
                    Ok(()) => {
                        sorted.trusted.push(found);
                        continue;
                    }
                    Err(problem) => format!("{}: {problem}", found.describe()),
                },
                Err(malformed) => malformed,
            };
            sorted.untrusted += 1;
            if sorted.named.len() < UNTRUSTED_NAMED_MAX {
                sorted.named.push(why);
            }
        }
        sorted
    }
}

/// Stored checkpoints sorted by trust ([`Keyring::sort`]).
#[derive(Debug, Default)]
pub struct Sorted {
    /// Signed by a trusted key, in [`stored`]'s order (oldest position first).
    pub trusted: Vec<Checkpoint>,
    /// How many are signed by no trusted key (or cannot be read as a checkpoint).
    pub untrusted: usize,
    /// The first [`UNTRUSTED_NAMED_MAX`] of those, each with why it is not trusted.
    pub named: Vec<String>,
}

impl Sorted {
    /// The newest trusted checkpoint signed by `key_id`.
    pub fn newest_of(&self, key_id: &[u8; 8]) -> Option<&Checkpoint> {
        self.trusted
            .iter()
            .filter(|found| found.key_id == *key_id)
            .max_by_key(|found| found.position)
    }

    /// The newest trusted checkpoint.
    pub fn newest(&self) -> Option<&Checkpoint> {
        self.trusted.iter().max_by_key(|found| found.position)
    }
}

/// Signs the current ledger head and appends the checkpoint.
pub async fn take(
    client: &(impl deadpool_postgres::GenericClient + crate::store::Connection),
    key: &SigningKey,
) -> Result<Checkpoint, CheckpointError> {
    let head = crate::store::head(client).await?;
    let checkpoint = Checkpoint::sign(key, head.position, head.ledger_hash, Utc::now());
    store(client, &checkpoint).await?;
    Ok(checkpoint)
}

/// Appends a signed checkpoint.
pub async fn store(
    client: &impl deadpool_postgres::GenericClient,
    checkpoint: &Checkpoint,
) -> Result<(), CheckpointError> {
    let id = hex::encode(checkpoint.key_id);
    client
        .execute(
            "INSERT INTO checkpoints
                    (position, ledger_hash, signed_at, key_id, signature, snapshot_digest)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &checkpoint.position,
                &checkpoint.ledger_hash.as_slice(),
                &checkpoint.signed_at,
                &id,
                &checkpoint.signature.as_slice(),
                &checkpoint.snapshot_digest.as_ref().map(|d| d.as_slice()),
            ],
        )
        .await?;
    Ok(())
}

/// Every stored checkpoint, oldest position first; a row that cannot be one is reported as text.
pub async fn stored(
    client: &impl deadpool_postgres::GenericClient,
) -> Result<Vec<Result<Checkpoint, String>>, CheckpointError> {
    let rows = client
        .query(
            "SELECT position, ledger_hash, signed_at, key_id, signature, snapshot_digest
               FROM checkpoints
              ORDER BY position, signed_at",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let position: i64 = row.get(0);
            let bad = || format!("the stored checkpoint at position {position} is malformed");
            Ok(Checkpoint {
                position,
                ledger_hash: row.get::<_, &[u8]>(1).try_into().map_err(|_| bad())?,
                signed_at: row.get(2),
                key_id: hex::decode(row.get::<_, &str>(3))
                    .ok()
                    .and_then(|bytes| bytes.try_into().ok())
                    .ok_or_else(bad)?,
                signature: row.get::<_, &[u8]>(4).try_into().map_err(|_| bad())?,
                snapshot_digest: row
                    .get::<_, Option<&[u8]>>(5)
                    .map(|digest| digest.try_into().map_err(|_| bad()))
                    .transpose()?,
            })
        })
        .collect())
}
