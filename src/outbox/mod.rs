//! Webhooks to the DTS control plane: the outbox is written with the events, and a dispatcher
//! delivers each entry at least once as a CloudEvents 1.0 JSON document, signed with HMAC-SHA256,
//! retrying with exponential backoff and jitter. Delivery runs beside ingestion and never blocks
//! it; entries survive restarts because they are rows.
//!
//! Headers of a delivery:
//! - `content-type: application/cloudevents+json`
//! - `x-ledger-timestamp: <unix seconds>`
//! - `x-ledger-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//!
//! Receivers check the signature and may reject old timestamps; the CloudEvent `id` (the ledger
//! position) lets them drop the duplicates at-least-once delivery brings.

use crate::configuration::WebhookConfig;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

/// Entries taken per round. They are delivered concurrently while their rows stay locked, so a
/// round lasts at most one delivery timeout.
const ROUND_SIZE_MAX: i64 = 32;
/// How often an idle dispatcher looks for new or due entries.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Longest error text kept per entry.
const ERROR_LEN_MAX: usize = 500;

/// Queues the events at `positions` for delivery (in the transaction that appends them).
pub async fn enqueue(tx: &Transaction<'_>, positions: &[i64]) -> Result<(), tokio_postgres::Error> {
    let statement = tx
        .prepare_cached("INSERT INTO outbox (position) SELECT unnest($1::bigint[])")
        .await?;
    tx.execute(&statement, &[&positions]).await.map(drop)
}

/// The CloudEvents 1.0 document for one ledger event.
pub fn cloud_event(
    position: i64,
    stream_id: &str,
    event_type: &str,
    recorded_at: DateTime<Utc>,
    payload: &Value,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": position.to_string(),
        "source": "dts-ledger",
        "type": format!("dts.ledger.{event_type}"),
        "subject": stream_id,
        "time": recorded_at,
        "datacontenttype": "application/json",
        "data": payload,
    })
}

/// `sha256=<hex>` over `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before attempt `attempts + 1`: `base × 2^attempts`, capped, then a random 50–100 %
/// of it so that many failed entries do not retry in lockstep.
pub fn backoff(config: &WebhookConfig, attempts: i32) -> Duration {
    let exponent = attempts.clamp(0, 30) as u32;
    let full = config
        .retry_base_ms
        .saturating_mul(1u64 << exponent)
        .min(config.retry_max_ms);
    let jittered = rand::thread_rng().gen_range(full / 2..=full);
    Duration::from_millis(jittered)
}

/// Delivers outbox entries until the task is aborted.
pub async fn dispatch(pool: Pool, config: WebhookConfig) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .expect("an HTTP client builds");
    loop {
        match round(&pool, &config, &http).await {
            Ok(0) => tokio::time::sleep(POLL_INTERVAL).await,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %crate::store::describe(&error), "webhook round failed");
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    }
}

/// One round: lock due entries (skipping ones another process holds), deliver, record.
async fn round(
    pool: &Pool,
    config: &WebhookConfig,
    http: &reqwest::Client,
) -> Result<usize, tokio_postgres::Error> {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, "webhook dispatcher cannot reach the database");
            tokio::time::sleep(POLL_INTERVAL).await;
            return Ok(0);
        }
    };
    let tx = client.transaction().await?;
    let due = tx
        .prepare_cached(
            "SELECT o.position, o.attempts, e.stream_id, e.event_type, e.recorded_at, e.payload
               FROM outbox o JOIN events e ON e.position = o.position
              WHERE o.delivered_at IS NULL AND o.next_attempt_at <= now()
              ORDER BY o.position
              LIMIT $1
                FOR UPDATE OF o SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&due, &[&ROUND_SIZE_MAX]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let deliveries = rows.iter().map(|row| {
        let position: i64 = row.get(0);
        let body = cloud_event(
            position,
            row.get(2),
            row.get(3),
            row.get(4),
            &row.get::<_, Value>(5),
        );
        async move {
            (
                position,
                row.get::<_, i32>(1),
                deliver(http, config, &body).await,
            )
        }
    });
    let results = futures_util::future::join_all(deliveries).await;
    let mut delivered = Vec::new();
    let (mut failed, mut delays, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for (position, attempts, result) in results {
        match result {
            Ok(()) => delivered.push(position),
            Err(error) => {
                let delay = backoff(config, attempts);
                tracing::warn!(position, attempts = attempts + 1, %error, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed");
                failed.push(position);
                delays.push(delay.as_secs_f64());
                errors.push(error.chars().take(ERROR_LEN_MAX).collect::<String>());
            }
        }
    }
    tx.execute(
        "UPDATE outbox SET delivered_at = now(), attempts = attempts + 1
          WHERE position = ANY($1::bigint[])",
        &[&delivered],
    )
    .await?;
    tx.execute(
        "UPDATE outbox o
            SET attempts = o.attempts + 1,
                next_attempt_at = now() + make_interval(secs => f.delay),
                last_error = f.error
           FROM unnest($1::bigint[], $2::float8[], $3::text[]) AS f(position, delay, error)
          WHERE o.position = f.position",
        &[&failed, &delays, &errors],
    )
    .await?;
    tx.commit().await?;
    Ok(rows.len())
}

async fn deliver(
    http: &reqwest::Client,
    config: &WebhookConfig,
    body: &Value,
) -> Result<(), String> {
    let body = serde_json::to_vec(body).expect("a JSON value serialises");
    let timestamp = Utc::now().timestamp();
    let response = http
        .post(&config.url)
        .header("content-type", "application/cloudevents+json")
        .header("x-ledger-timestamp", timestamp.to_string())
        .header(
            "x-ledger-signature",
            signature(config.secret.expose(), timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered {}", response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    fn config() -> WebhookConfig {
        WebhookConfig {
            url: "http://cp".into(),
            secret: Secret::new("0123456789abcdef"),
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            timeout_ms: 1_000,
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        for attempts in 0..40 {
            let full = (100u64 << attempts.min(30)).min(1_000);
            let delay = backoff(&config(), attempts).as_millis() as u64;
            assert!((full / 2..=full).contains(&delay), "{attempts}: {delay}");
        }
    }

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = signature("s", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("s", 2, b"{}"));
        assert_ne!(a, signature("s", 1, b"{ }"));
        assert_ne!(a, signature("t", 1, b"{}"));
    }
}
