//! The dispatcher: claims due entries with a lease, delivers them with no transaction open, then
//! records each result; prunes delivered entries past the retention.
//!
//! Only the head of each subject (its oldest undelivered entry) is ever claimed, so one subject's
//! entries reach the receiver in ledger order, and a head being retried holds back its own
//! subject only. Several processes share the work: a claim skips rows another process is
//! claiming at that instant and entries whose lease has not run out.

use super::{backoff, cloud_event, gives_up, ERROR_CHARS_MAX};
use crate::configuration::WebhookConfig;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Deliveries in flight per process, one per subject at most. Each is a request to the one
/// receiver: enough to keep a backlog of many subjects moving, few enough not to flood it.
const IN_FLIGHT_MAX: usize = 32;
/// How often an idle dispatcher looks for new or due entries.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// A claim lasts the delivery timeout plus this, the time left to record the result. A process
/// that dies holding a claim delays its entry by this much; a shorter one risks a second
/// process delivering an entry whose result is about to be recorded.
const LEASE_MARGIN_MS: u64 = 10_000;
/// Longest pause between two pruning passes; shorter retentions prune as often as they expire.
const PRUNE_EVERY_MAX: Duration = Duration::from_secs(60);
/// Delivered entries deleted per statement: each DELETE stays short and its WAL small.
const PRUNE_BATCH_MAX: i64 = 1_000;
/// Statements per pruning pass, so one pass after a long pause stays bounded too; the rest
/// goes in the next passes.
const PRUNE_BATCHES_PER_PASS_MAX: usize = 100;

/// One claimed entry, with what its delivery needs.
struct Claimed {
    position: i64,
    /// Attempts made before this one.
    attempts: i32,
    /// The claim: the result is recorded only while it is still this one.
    locked_until: DateTime<Utc>,
    /// Time since the first attempt, at the claim.
    age: Duration,
    body: Value,
    subject: String,
}

/// Delivers outbox entries until the task is aborted.
pub async fn dispatch(pool: Pool, config: WebhookConfig) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .expect("an HTTP client builds");
    let prune_every = Duration::from_secs(config.retention_s).min(PRUNE_EVERY_MAX);
    let mut next_prune = Instant::now();
    let mut in_flight = JoinSet::new();
    loop {
        if Instant::now() >= next_prune {
            prune(&pool, &config).await;
            next_prune = Instant::now() + prune_every;
        }
        let free = IN_FLIGHT_MAX - in_flight.len();
        let claimed = if free > 0 {
            match claim(&pool, &config, free).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, "webhook claim failed; the next poll retries");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let full = free > 0 && claimed.len() == free;
        for entry in claimed {
            in_flight.spawn(deliver_and_record(
                pool.clone(),
                config.clone(),
                http.clone(),
                entry,
            ));
        }
        if full {
            // More may be due right now.
            continue;
        }
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a webhook delivery task failed");
                }
            }
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error("cannot reach the database: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", crate::store::describe(.0))]
    Database(#[from] tokio_postgres::Error),
}

/// Takes up to `limit` due subject heads in one statement (its own transaction, over when it
/// returns): the leases it sets, not locks, keep other processes off them.
async fn claim(
    pool: &Pool,
    config: &WebhookConfig,
    limit: usize,
) -> Result<Vec<Claimed>, DispatchError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "WITH heads AS (
                 SELECT o.position
                   FROM outbox o
                  WHERE o.delivered_at IS NULL AND o.dead_at IS NULL
                    AND o.next_attempt_at <= now()
                    AND (o.locked_until IS NULL OR o.locked_until <= now())
                    AND NOT EXISTS (
                          SELECT 1 FROM outbox p
                           WHERE p.subject = o.subject AND p.position < o.position
                             AND p.delivered_at IS NULL)
                  ORDER BY o.position
                  LIMIT $1
                    FOR UPDATE SKIP LOCKED
             )
             UPDATE outbox o
                SET locked_until = now() + make_interval(secs => $2),
                    first_attempt_at = coalesce(o.first_attempt_at, now())
               FROM heads, events e
              WHERE o.position = heads.position AND e.position = o.position
          RETURNING o.position, o.attempts, o.locked_until,
                    extract(epoch FROM now() - o.first_attempt_at)::float8",
        )
        .await?;
    let lease_s = (config.timeout_ms + LEASE_MARGIN_MS) as f64 / 1_000.0;
    let mut rows = client
        .query(&statement, &[&(limit as i64), &lease_s])
        .await?;
    // The claim takes only entries whose event is in the database; what the document says of
    // the event is the store's to read.
    rows.sort_by_key(|row| row.get::<_, i64>(0));
    let positions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut events = super::events_at(&client, &positions).await?;
    Ok(rows
        .iter()
        .filter_map(|row| Some((row, events.remove(&row.get::<_, i64>(0))?)))
        .map(|(row, event)| Claimed {
            position: event.position,
            attempts: row.get(1),
            locked_until: row.get(2),
            age: Duration::from_secs_f64(row.get::<_, f64>(3).max(0.0)),
            body: cloud_event(
                event.position,
                &event.stream_id,
                &event.event_type,
                event.recorded_at,
                &event.payload,
            ),
            subject: event.stream_id,
        })
        .collect())
}

async fn deliver_and_record(
    pool: Pool,
    config: WebhookConfig,
    http: reqwest::Client,
    entry: Claimed,
) {
    let started = Instant::now();
    let result = super::deliver(&http, &config, &entry.body).await;
    let took = started.elapsed();
    metrics::histogram!(crate::metrics::WEBHOOK_DELIVERY_DURATION).record(took.as_secs_f64());
    let outcome = match &result {
        Ok(()) => "delivered",
        Err(_)
            if gives_up(
                &config,
                entry.attempts.saturating_add(1),
                entry.age.saturating_add(took),
            ) =>
        {
            "dead"
        }
        Err(_) => "failed",
    };
    metrics::counter!(crate::metrics::WEBHOOK_DELIVERIES, "result" => outcome).increment(1);
    if let Err(error) = record(&pool, &config, &entry, result, took).await {
        // The lease runs out and the entry is delivered again: at least once.
        tracing::warn!(position = entry.position, %error, "webhook result not recorded");
    }
}

async fn record(
    pool: &Pool,
    config: &WebhookConfig,
    entry: &Claimed,
    result: Result<(), String>,
    took: Duration,
) -> Result<(), DispatchError> {
    let client = pool.get().await?;
    let attempts = entry.attempts.saturating_add(1);
    match result {
        Ok(()) => {
            // Recorded even if the lease ran out meanwhile: the entry did arrive.
            client
                .execute(
                    "UPDATE outbox SET delivered_at = now(), attempts = attempts + 1,
                            locked_until = NULL
                      WHERE position = $1 AND delivered_at IS NULL",
                    &[&entry.position],
                )
                .await?;
        }
        Err(error) => {
            let dead = gives_up(config, attempts, entry.age.saturating_add(took));
            let delay = backoff(config, entry.attempts);
            let error: String = error.chars().take(ERROR_CHARS_MAX).collect();
            if dead {
                tracing::error!(
                    position = entry.position,
                    subject = %entry.subject,
                    attempts,
                    %error,
                    "webhook entry is a dead letter; its subject waits for `dts-ledger outbox retry`"
                );
            } else {
                tracing::warn!(
                    position = entry.position,
                    attempts,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "webhook delivery failed"
                );
            }
            // Only under our own claim: a process whose lease ran out must not overwrite the
            // result of the one that took over.
            client
                .execute(
                    "UPDATE outbox
                        SET attempts = attempts + 1, last_error = $2, locked_until = NULL,
                            next_attempt_at = now() + make_interval(secs => $3),
                            dead_at = CASE WHEN $4 THEN now() END
                      WHERE position = $1 AND locked_until = $5 AND delivered_at IS NULL",
                    &[
                        &entry.position,
                        &error,
                        &delay.as_secs_f64(),
                        &dead,
                        &entry.locked_until,
                    ],
                )
                .await?;
        }
    }
    Ok(())
}

/// Deletes delivered entries older than the retention, in bounded batches.
async fn prune(pool: &Pool, config: &WebhookConfig) {
    let retention_s = config.retention_s as f64;
    let mut pruned = 0u64;
    for _ in 0..PRUNE_BATCHES_PER_PASS_MAX {
        let deleted = match prune_batch(pool, retention_s).await {
            Ok(deleted) => deleted,
            Err(error) => {
                tracing::warn!(%error, "pruning delivered webhook entries failed");
                break;
            }
        };
        pruned += deleted;
        if deleted < PRUNE_BATCH_MAX as u64 {
            break;
        }
    }
    if pruned > 0 {
        tracing::info!(
            pruned,
            "delivered webhook entries past the retention pruned"
        );
    }
}

async fn prune_batch(pool: &Pool, retention_s: f64) -> Result<u64, DispatchError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            // `= ANY(ARRAY(…))` makes the batch a list of primary-key lookups; `IN (SELECT …)`
            // lets the planner hash-join the whole table against it.
            "DELETE FROM outbox WHERE position = ANY(ARRAY(
                 SELECT position FROM outbox
                  WHERE delivered_at < now() - make_interval(secs => $1)
                  ORDER BY delivered_at
                  LIMIT $2))",
            &[&retention_s, &PRUNE_BATCH_MAX],
        )
        .await?)
}
