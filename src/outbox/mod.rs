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
//!
//! Entries of one subject (the event's stream: a task, a package) are delivered one at a time in
//! ledger order. After `attempts_max` failed attempts, or `age_s_max` after its first attempt, an
//! entry becomes a dead letter: it stays, with its last error, and holds back the later entries
//! of its subject until an operator retries it (`dts-ledger outbox retry`, or
//! `POST /v1/outbox/{position}/retry`). Delivering the later ones past it would tell the receiver
//! a history with a hole in it (a resumption without the stop before it); holding them keeps
//! what it hears a prefix of the ledger. Delivered entries are pruned after `retention_s`.

use crate::configuration::WebhookConfig;
use crate::store::RecordedEvent;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::Duration;

mod dispatch;
pub mod entries;

pub use dispatch::dispatch;

/// Longest error text kept per entry, in characters (it is cut on a character boundary).
const ERROR_CHARS_MAX: usize = 500;

/// Queues events for delivery, each `(position, subject)`: its position and its stream, which
/// is the entry's subject (in the transaction that appends them, after the events are written).
pub async fn enqueue(
    tx: &Transaction<'_>,
    entries: &[(i64, &str)],
) -> Result<(), tokio_postgres::Error> {
    let (positions, subjects): (Vec<i64>, Vec<&str>) = entries.iter().copied().unzip();
    let statement = tx
        .prepare_cached(
            "INSERT INTO outbox (position, subject)
             SELECT * FROM unnest($1::bigint[], $2::text[])",
        )
        .await?;
    tx.execute(&statement, &[&positions, &subjects])
        .await
        .map(drop)
}

/// The events of the entries at `positions`, by position (the store reads them: entries name
/// their events by position alone).
async fn events_at(
    client: &impl crate::store::Connection,
    positions: &[i64],
) -> Result<HashMap<i64, RecordedEvent>, tokio_postgres::Error> {
    Ok(crate::store::read_positions(client, positions)
        .await?
        .into_iter()
        .map(|event| (event.position, event))
        .collect())
}

/// The CloudEvents 1.0 document for one ledger event.
pub fn cloud_event(
    position: i64,
    stream_id: &str,
    event_type: &str,
    recorded_at: DateTime<Utc>,
    payload: &Value,
) -> Value {
    document(
        &position.to_string(),
        &format!("dts.ledger.{event_type}"),
        stream_id,
        recorded_at,
        payload,
    )
}

/// A CloudEvents 1.0 document from this ledger: a ledger event's ([`cloud_event`]), or another
/// announcement's (a signed checkpoint).
pub fn document(
    id: &str,
    event_type: &str,
    subject: &str,
    time: DateTime<Utc>,
    data: &Value,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "dts-ledger",
        "type": event_type,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
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
        .retry_ms_base
        .saturating_mul(1u64 << exponent)
        .min(config.retry_ms_max);
    let jittered = rand::thread_rng().gen_range(full / 2..=full);
    Duration::from_millis(jittered)
}

/// Whether an entry that has just failed its `attempts`-th attempt, `age` after its first one,
/// becomes a dead letter.
pub fn gives_up(config: &WebhookConfig, attempts: i32, age: Duration) -> bool {
    i64::from(attempts) >= i64::from(config.attempts_max) || age.as_secs() >= config.age_s_max
}

/// Why a webhook POST did not arrive.
#[derive(Debug)]
pub enum Undelivered {
    /// No answer: the connection, the timeout, the request.
    Failed(reqwest::Error),
    /// The receiver answered, but not with success.
    Refused(reqwest::StatusCode),
}

/// POSTs `body`, a CloudEvent, to the receiver with the headers of this module's documentation
/// (signed at the time of sending); `Ok` once the receiver answered with success.
pub async fn post(
    http: &reqwest::Client,
    config: &WebhookConfig,
    body: bytes::Bytes,
) -> Result<(), Undelivered> {
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
        .map_err(Undelivered::Failed)?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(Undelivered::Refused(response.status()))
    }
}

/// Delivers one entry's document; the error is the text kept with the entry.
async fn deliver(
    http: &reqwest::Client,
    config: &WebhookConfig,
    body: &Value,
) -> Result<(), String> {
    let body = serde_json::to_vec(body).expect("a JSON value serialises");
    post(http, config, body.into())
        .await
        .map_err(|undelivered| match undelivered {
            Undelivered::Failed(error) => format!("request failed: {}", error.without_url()),
            Undelivered::Refused(status) => format!("receiver answered {status}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    fn config() -> WebhookConfig {
        WebhookConfig {
            retry_ms_base: 100,
            retry_ms_max: 1_000,
            timeout_ms: 1_000,
            attempts_max: 5,
            age_s_max: 60,
            ..WebhookConfig::new("http://cp".into(), Secret::new("0123456789abcdef"))
        }
    }

    #[test]
    fn an_entry_is_given_up_on_after_its_attempts_or_its_age() {
        let config = config();
        assert!(!gives_up(&config, 4, Duration::from_secs(59)));
        assert!(gives_up(&config, 5, Duration::ZERO));
        assert!(gives_up(&config, 1, Duration::from_secs(60)));
        assert!(gives_up(&config, i32::MAX, Duration::MAX));
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
