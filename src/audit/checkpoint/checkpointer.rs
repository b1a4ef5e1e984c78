//! `serve`'s checkpointer: every `checkpoint_every_s`, checks the events since the newest trusted
//! checkpoint and signs the head they end at, records the streams' heads there, counts what it
//! did in the metrics and announces the checkpoint to the webhook receiver.

use super::{key_id, load_signing_key, store, stored, Checkpoint, CheckpointError, Keyring};
use crate::audit::verify::{self, Since, StreamHead, VerifyError};
use chrono::Utc;
use ed25519_dalek::SigningKey;

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
    Refused(verify::Problem),
}

#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Verify(VerifyError),
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
    heads: &std::collections::HashMap<String, StreamHead>,
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
/// (docs/operating.md, "Metrics"); `counted` is how many it had.
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

/// Exports a round's outcome (docs/operating.md, "Metrics").
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
