//! Sign-in with the order credential (`instanceId` + `authCode`), and its brakes.
//!
//! A wrong pair is answered after a fixed delay and counted per client address and per instance
//! in the database (so every `serve` process sharing it agrees). The answer never says which half
//! was wrong, and an unknown instance is answered exactly like a wrong credential.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// How long every failed sign-in waits before its answer: a person retyping does not notice,
/// a script guessing gets two tries a second per connection (and the limits below stop it).
pub const FAILURE_DELAY_MS: u64 = 500;
/// The window failures are counted in; the limits reset when it ends.
pub const FAILURE_WINDOW_S: i64 = 15 * 60;
/// Failures allowed per client address per window: generous for an office behind one NAT
/// address where several people mistype, far too few to guess a 128-bit credential.
pub const FAILURES_PER_ADDRESS_MAX: i32 = 30;
/// Failures allowed per instance per window: its owner mistypes a few times at most; more means
/// someone is guessing at that package (from however many addresses).
pub const FAILURES_PER_INSTANCE_MAX: i32 = 10;
/// Longest `instanceId` and `authCode` looked at, in characters; longer ones are wrong by
/// construction.
pub const FIELD_CHARS_MAX: usize = 128;

pub fn address_key(address: &str) -> String {
    format!("address:{address}")
}

pub fn instance_key(instance_id: &str) -> String {
    format!("instance:{instance_id}")
}

/// Counts an attempt against each key, atomically (a new window when the last one ended), and
/// says whether any key is now past its limit. Attempts are counted before the credential is
/// checked, so parallel guesses cannot all slip in under the limit; a right pair is forgiven.
pub async fn count_attempt(
    client: &impl GenericClient,
    limits: &[(String, i32)],
    now: DateTime<Utc>,
) -> Result<bool, tokio_postgres::Error> {
    let window = FAILURE_WINDOW_S as f64;
    client
        .execute(
            "DELETE FROM console_login_failures
              WHERE window_started_at <= $1::timestamptz - make_interval(secs => $2::float8)",
            &[&now, &window],
        )
        .await?;
    let mut throttled = false;
    for (key, max) in limits {
        let row = client
            .query_one(
                "INSERT INTO console_login_failures AS f (key, window_started_at, failures)
                 VALUES ($1, $2, 1)
                 ON CONFLICT (key) DO UPDATE SET
                   failures = CASE WHEN f.window_started_at
                                        <= $2::timestamptz - make_interval(secs => $3::float8)
                                   THEN 1 ELSE f.failures + 1 END,
                   window_started_at = CASE WHEN f.window_started_at
                                        <= $2::timestamptz - make_interval(secs => $3::float8)
                                   THEN $2 ELSE f.window_started_at END
                 RETURNING failures",
                &[key, &now, &window],
            )
            .await?;
        throttled |= row.get::<_, i32>(0) > *max;
    }
    Ok(throttled)
}

/// Takes back the attempt of a right pair: only failures count.
pub async fn forgive(
    client: &impl GenericClient,
    limits: &[(String, i32)],
) -> Result<(), tokio_postgres::Error> {
    for (key, _) in limits {
        client
            .execute(
                "UPDATE console_login_failures SET failures = greatest(failures - 1, 0)
                  WHERE key = $1",
                &[key],
            )
            .await?;
    }
    Ok(())
}
