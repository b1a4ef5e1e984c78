//! Signed checkpoints (invariant I9): an Ed25519 key kept outside the database vouches for the
//! ledger-wide hash at a position. A rewrite of anything before a checkpoint changes that hash, so
//! it is caught even if every hash in the database was recomputed.
//!
//! The signed bytes (README, "Signed checkpoints"):
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

/// Attempts to announce one checkpoint to the webhook receiver. A checkpoint that could not be
/// announced is superseded by the next one (which vouches for everything before it), so a few
/// attempts suffice and nothing is queued.
const ANNOUNCE_ATTEMPTS_MAX: i32 = 5;

/// `serve`'s checkpointer, when a signing key is configured: every `checkpoint_every_s`, signs the
/// head if the ledger moved and announces the checkpoint to the webhook receiver.
pub fn worker(
    pool: &deadpool_postgres::Pool,
    config: &crate::configuration::Config,
) -> Option<impl std::future::Future<Output = ()>> {
    let path = config.audit.signing_key_file.clone()?;
    let (pool, every_s, webhook, public_keys) = (
        pool.clone(),
        config.audit.checkpoint_every_s,
        config.webhook.clone(),
        config.audit.public_keys.clone(),
    );
    Some(async move {
        let key = match load_signing_key(&path) {
            Ok(key) => key,
            Err(error) => {
                tracing::error!(%error, "checkpoints are off: the signing key cannot be read");
                return;
            }
        };
        let keyring = match Keyring::new(&public_keys, Some(&key)) {
            Ok(keyring) => keyring,
            Err(error) => {
                tracing::error!(%error, "checkpoints are off: the public keys cannot be read");
                return;
            }
        };
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(every_s));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Untrusted checkpoints already counted by this process: rows are never removed, so the
        // number only grows, and each is counted once.
        let mut untrusted_counted = 0;
        loop {
            ticks.tick().await;
            let round = match pool.get().await {
                Ok(mut client) => {
                    let round = verify_and_take(&mut client, &key, &keyring).await;
                    // The round gave its session the audits' bounds: it never goes back to the
                    // pool, it is closed here.
                    drop(deadpool_postgres::Object::take(client));
                    round
                }
                Err(error) => {
                    tracing::warn!(%error, "checkpoint: cannot reach the database");
                    metrics::counter!(crate::metrics::CHECKPOINTS, "result" => "failed")
                        .increment(1);
                    continue;
                }
            };
            count_round(round.as_ref().map(|outcome| &outcome.round));
            if let Ok(outcome) = &round {
                count_untrusted(outcome, &mut untrusted_counted);
            }
            match round.map(|outcome| outcome.round) {
                Ok(Round::Signed(checkpoint)) => {
                    tracing::info!(
                        position = checkpoint.position,
                        ledger_hash = %hex::encode(checkpoint.ledger_hash),
                        "checkpoint signed"
                    );
                    if let Some(webhook) = webhook.clone() {
                        tokio::spawn(announce(webhook, checkpoint));
                    }
                }
                Ok(Round::Unmoved) => {}
                Ok(Round::Refused(problem)) => tracing::error!(
                    position = problem.position,
                    %problem,
                    "the ledger fails verification: no checkpoint is signed until it is repaired \
                     (run `dts-ledger verify`)"
                ),
                Err(error) => tracing::warn!(%error, "checkpoint failed"),
            }
        }
    })
}

/// What one round of the checkpointer did, and what it ignored.
#[derive(Debug)]
pub struct Outcome {
    pub round: Round,
    /// Stored checkpoints signed by no trusted key: the round neither started from them nor
    /// took them for its own ([`Keyring::sort`]).
    pub untrusted: usize,
    /// The first of those, each with why it is not trusted.
    pub untrusted_named: Vec<String>,
}

/// What one round of the checkpointer did.
#[derive(Debug)]
pub enum Round {
    /// The events since the newest trusted checkpoint verified, and the head they end at is
    /// signed.
    Signed(Checkpoint),
    /// This key's newest trusted checkpoint is already at the head.
    Unmoved,
    /// The events since the newest trusted checkpoint do not verify: nothing is signed, since a
    /// signature would vouch for the tampering.
    Refused(super::verify::Problem),
}

#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Verify(super::verify::VerifyError),
}

/// Checks the events since the newest stored checkpoint whose signature `keyring` vouches for
/// (the whole ledger without one) and signs the head that check ended at, unless it fails.
/// Checkpoints no trusted key signed are counted and otherwise ignored: a row claiming this key at
/// the head must not stop it from signing, nor one beyond the head make it refuse.
pub async fn verify_and_take(
    client: &mut deadpool_postgres::Object,
    key: &SigningKey,
    keyring: &Keyring,
) -> Result<Outcome, RoundError> {
    use super::verify::{self, Since, VerifyError};
    let head = crate::store::head(&*client)
        .await
        .map_err(CheckpointError::from)?
        .position;
    let sorted = keyring.sort(stored(&*client).await?);
    let newest = sorted
        .newest_of(&key_id(&key.verifying_key()))
        .map(|found| found.position);
    let since = sorted.newest().map(|found| Since {
        position: found.position,
        ledger_hash: found.ledger_hash,
    });
    let outcome = |round| Outcome {
        round,
        untrusted: sorted.untrusted,
        untrusted_named: sorted.named.clone(),
    };
    // An empty ledger has nothing to vouch for.
    if head == 0 || newest == Some(head) {
        return Ok(outcome(Round::Unmoved));
    }
    // The check may stream the whole ledger (the first round of a ledger without checkpoints):
    // the service's statement timeout would end it, and the stall reaper, which ends the
    // service's sessions waiting on their client mid-statement, must leave it alone.
    let audit = &crate::database::SessionBounds::AUDIT;
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}; SET lock_timeout = {}; \
             SET idle_in_transaction_session_timeout = {}; SET application_name = '{}'",
            audit.statement_timeout_ms,
            audit.lock_timeout_ms,
            audit.idle_in_transaction_timeout_ms,
            audit.application_name
        ))
        .await
        .map_err(CheckpointError::from)?;
    let summary = match verify::verify_against(client, Vec::new(), since, 0, |_| {}).await {
        Ok(summary) => summary,
        Err(VerifyError::Broken(problem)) => return Ok(outcome(Round::Refused(problem))),
        Err(error) => return Err(RoundError::Verify(error)),
    };
    if newest == Some(summary.last_position) {
        return Ok(outcome(Round::Unmoved));
    }
    let checkpoint = Checkpoint::sign(key, summary.last_position, summary.last_hash, Utc::now());
    let tx = client.transaction().await.map_err(CheckpointError::from)?;
    store(&tx, &checkpoint).await?;
    record_heads(&tx, &summary.heads).await?;
    tx.commit().await.map_err(CheckpointError::from)?;
    Ok(outcome(Round::Signed(checkpoint)))
}

/// Records the heads a check ended at, the streams' heads at the checkpoint it signs, so that
/// the next check after that checkpoint starts from them (schema/0023_checkpoint_heads.sql). A
/// head only moves forward: a round that started from an older checkpoint leaves newer ones.
pub async fn record_heads(
    client: &impl deadpool_postgres::GenericClient,
    heads: &std::collections::HashMap<String, super::verify::StreamHead>,
) -> Result<(), CheckpointError> {
    let mut streams = Vec::with_capacity(heads.len());
    let mut versions = Vec::with_capacity(heads.len());
    let mut hashes = Vec::with_capacity(heads.len());
    let mut positions = Vec::with_capacity(heads.len());
    for (stream, (version, hash, position)) in heads {
        streams.push(stream.as_str());
        versions.push(*version);
        hashes.push(hash.as_slice());
        positions.push(*position);
    }
    client
        .execute(
            "INSERT INTO checkpoint_heads AS c (stream_id, version, hash, position)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[])
             ON CONFLICT (stream_id) DO UPDATE
                SET version = excluded.version, hash = excluded.hash,
                    position = excluded.position
              WHERE c.version < excluded.version",
            &[&streams, &versions, &hashes, &positions],
        )
        .await?;
    Ok(())
}

/// Counts and logs the untrusted checkpoints a round met that this process had not counted yet
/// (README, "Metrics"); `counted` is how many it had.
fn count_untrusted(outcome: &Outcome, counted: &mut usize) {
    if outcome.untrusted > *counted {
        let new = outcome.untrusted - *counted;
        metrics::counter!(crate::metrics::CHECKPOINTS_UNTRUSTED).increment(new as u64);
        tracing::warn!(
            new,
            stored = outcome.untrusted,
            first = outcome.untrusted_named.first().map(String::as_str),
            "stored checkpoints signed by no trusted key are ignored: someone who can append to \
             the checkpoints table wrote them (run `dts-ledger verify` to list them)"
        );
    }
    // Fewer than counted: the database was restored from before they were written.
    *counted = outcome.untrusted;
}

/// Exports a round's outcome (README, "Metrics").
fn count_round(round: Result<&Round, &RoundError>) {
    use crate::metrics::{CHECKPOINTS, CHECKPOINT_CURRENT, VERIFICATIONS, VERIFY_INTACT};
    let now = Utc::now().timestamp_micros() as f64 / 1e6;
    let (checkpoint, verification) = match round {
        Ok(Round::Signed(_)) => ("signed", Some("intact")),
        Ok(Round::Unmoved) => ("unmoved", None),
        Ok(Round::Refused(_)) => ("refused", Some("broken")),
        Err(RoundError::Verify(_)) => ("failed", Some("error")),
        Err(RoundError::Checkpoint(_)) => ("failed", None),
    };
    metrics::counter!(CHECKPOINTS, "result" => checkpoint).increment(1);
    if matches!(checkpoint, "signed" | "unmoved") {
        metrics::gauge!(CHECKPOINT_CURRENT).set(now);
    }
    if let Some(verification) = verification {
        metrics::counter!(VERIFICATIONS, "result" => verification).increment(1);
        match verification {
            "intact" => metrics::gauge!(VERIFY_INTACT).set(1.0),
            "broken" => metrics::gauge!(VERIFY_INTACT).set(0.0),
            _ => {}
        }
    }
}

/// Sends the checkpoint to the webhook receiver as a CloudEvent of type
/// `dts.ledger.Checkpoint`, signed like every webhook (see `crate::outbox`).
pub async fn announce(webhook: crate::configuration::WebhookConfig, checkpoint: Checkpoint) {
    let body = crate::outbox::document(
        &format!(
            "checkpoint-{}-{}",
            checkpoint.position,
            checkpoint.signed_at.timestamp_micros()
        ),
        "dts.ledger.Checkpoint",
        "ledger",
        checkpoint.signed_at,
        &checkpoint.to_json(),
    );
    let body = bytes::Bytes::from(body.to_string());
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(webhook.timeout_ms))
        .build()
        .expect("an HTTP client builds");
    for attempt in 0..ANNOUNCE_ATTEMPTS_MAX {
        match crate::outbox::post(&http, &webhook, body.clone()).await {
            Ok(()) => return,
            Err(crate::outbox::Undelivered::Refused(status)) => {
                tracing::warn!(%status, "checkpoint announcement refused")
            }
            Err(crate::outbox::Undelivered::Failed(error)) => {
                tracing::warn!(%error, "checkpoint announcement failed")
            }
        }
        tokio::time::sleep(crate::outbox::backoff(&webhook, attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_line_round_trips_and_any_edit_breaks_its_signature() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let keyring = Keyring::new(&[], Some(&key)).unwrap();
        let checkpoint = Checkpoint::sign(&key, 42, [9; 32], Utc::now());
        let line = checkpoint.to_json().to_string();
        let parsed = Checkpoint::parse_line(&line).unwrap();
        assert_eq!(parsed, checkpoint);
        assert_eq!(keyring.check(&parsed), Ok(()));
        let edited =
            Checkpoint::parse_line(&line.replace("\"position\":42", "\"position\":41")).unwrap();
        assert_eq!(keyring.check(&edited), Err(SignatureProblem::BadSignature));
        assert!(Checkpoint::parse_line(&line[..line.len() - 10]).is_err());
        let other = SigningKey::from_bytes(&[8; 32]);
        let foreign = Checkpoint::sign(&other, 42, [9; 32], Utc::now());
        assert!(matches!(
            keyring.check(&foreign),
            Err(SignatureProblem::UnknownKey(_))
        ));
    }

    #[test]
    fn a_version_2_checkpoint_signs_its_snapshot_digest_and_passes_for_no_version_1() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let keyring = Keyring::new(&[], Some(&key)).unwrap();
        let v2 = Checkpoint::sign_with(&key, 42, [9; 32], Utc::now(), Some([5; 32]));
        let line = v2.to_json().to_string();
        assert!(line.contains(&format!("\"snapshotDigest\":\"{}\"", "05".repeat(32))));
        let parsed = Checkpoint::parse_line(&line).unwrap();
        assert_eq!(parsed, v2);
        assert_eq!(keyring.check(&parsed), Ok(()));
        let v1 = Checkpoint::sign(&key, 42, [9; 32], Utc::now());
        assert!(!v1.to_json().to_string().contains("snapshotDigest"));
        for (mut edited, digest) in [(v2.clone(), None), (v2, Some([6; 32])), (v1, Some([5; 32]))] {
            edited.snapshot_digest = digest;
            assert_eq!(keyring.check(&edited), Err(SignatureProblem::BadSignature));
        }
    }

    #[test]
    fn only_checkpoints_a_trusted_key_signed_are_trusted_and_the_others_are_counted() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let stranger = SigningKey::from_bytes(&[8; 32]);
        let keyring = Keyring::new(&[], Some(&key)).unwrap();
        let ours = Checkpoint::sign(&key, 5, [1; 32], Utc::now());
        let mut stored = vec![Ok(ours.clone()), Err("malformed".to_owned())];
        for position in 0..UNTRUSTED_NAMED_MAX as i64 + 3 {
            stored.push(Ok(Checkpoint::sign(
                &stranger,
                position,
                [2; 32],
                Utc::now(),
            )));
        }
        let sorted = keyring.sort(stored.clone());
        assert_eq!(sorted.trusted, std::slice::from_ref(&ours));
        assert_eq!(sorted.untrusted, UNTRUSTED_NAMED_MAX + 4);
        assert_eq!(sorted.named.len(), UNTRUSTED_NAMED_MAX);
        assert_eq!(sorted.named[0], "malformed");
        assert_eq!(sorted.newest_of(&ours.key_id), Some(&ours));
        assert_eq!(sorted.newest_of(&key_id(&stranger.verifying_key())), None);
        // Without any key, nothing is trusted.
        let keyless = Keyring::default().sort(stored);
        assert!(keyless.trusted.is_empty() && keyless.newest().is_none());
        assert_eq!(keyless.untrusted, UNTRUSTED_NAMED_MAX + 5);
    }
}
