//! The brakes on signing in with the order credential (`instanceId` + `authCode`).
//!
//! A wrong pair is answered after a fixed delay and counted in the database (so every `serve`
//! process sharing it agrees) per client address, per instance, and per address and instance
//! together. The answer never says which half was wrong, and an unknown instance is answered
//! exactly like a wrong credential.
//!
//! The rules, in the order they are applied to an attempt:
//! 1. An address with [`FAILURES_PER_ADDRESS_MAX`] failures in the window is refused, untried;
//!    the attempt counts nowhere else (so an address over its own limit cannot push any
//!    instance towards its limit).
//! 2. An instance with [`FAILURES_PER_INSTANCE_MAX`] failures in the window is locked: an
//!    address that already tried it in the window is refused, untried (its attempt not counted
//!    against the instance); an address that did not gets its try. So whoever hammers a package
//!    locks only themselves out of it, and its owner, from a clean address, still signs in.
//! 3. Otherwise the credential is checked. The attempt was counted before the check (parallel
//!    guesses cannot slip in under a limit); a right pair takes its count back.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// How long every failed sign-in waits before its answer: a person retyping does not notice,
/// a script guessing gets two tries a second per connection (and the limits below stop it).
/// Nothing is held while it waits: no pooled connection, no share of the sign-in gate.
pub const FAILURE_DELAY_MS: u64 = 500;
/// The window failures are counted in; the limits reset when it ends.
pub const FAILURE_WINDOW_S: i64 = 15 * 60;
/// Failures allowed per client address per window: generous for an office behind one NAT
/// address where several people mistype, far too few to guess a 128-bit credential.
pub const FAILURES_PER_ADDRESS_MAX: i32 = 30;
/// Failures per instance per window after which the instance is locked for the addresses that
/// tried it: its owner mistypes a few times at most; more means someone is guessing at that
/// package (from however many addresses, each of which then gets a single try).
pub const FAILURES_PER_INSTANCE_MAX: i32 = 10;
/// Longest `instanceId` and `authCode` looked at, in characters; longer ones are wrong by
/// construction.
pub const FIELD_CHARS_MAX: usize = 128;
/// The share of the database pool that sign-ins may hold at once: one connection in this many
/// (at least one). Sign-ins are the one database work anyone may ask for without a credential,
/// so a flood of them must leave the rest of the pool to traffic, callbacks and readiness.
pub const POOL_SHARE_DIVISOR: usize = 4;

/// How many sign-ins may use the database at once, for a pool of `pool_size`.
pub fn concurrent_max(pool_size: usize) -> usize {
    (pool_size / POOL_SHARE_DIVISOR).max(1)
}

/// One attempt: the keys it is counted under.
#[derive(Debug, Clone)]
pub struct Attempt {
    address: String,
    instance: String,
    pair: String,
}

impl Attempt {
    /// An attempt from `address` (the peer's IP) at `instance_id` (as typed).
    pub fn new(address: &str, instance_id: &str) -> Attempt {
        Attempt {
            address: format!("address:{address}"),
            instance: format!("instance:{instance_id}"),
            // An IP holds no `|`: the first one ends the address.
            pair: format!("pair:{address}|{instance_id}"),
        }
    }
}

/// What the counts say about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credential. The attempt is counted; a right pair takes it back ([`forgive`]).
    Try,
    /// Refused untried: this address is past its own limit (rule 1).
    AddressThrottled,
    /// Refused untried: the instance is locked and this address tried it already (rule 2).
    InstanceLocked,
}

/// Counts `attempt` and says whether it may be tried, atomically: one transaction whose row
/// locks (address, then instance, then the pair: always in that order, so two attempts never
/// wait on each other in a cycle) serialise the attempts that share a key.
pub async fn admit(
    client: &mut deadpool_postgres::Object,
    attempt: &Attempt,
    now: DateTime<Utc>,
) -> Result<Verdict, tokio_postgres::Error> {
    // Rows of ended windows are forgotten first, on their own: a delete inside the transaction
    // could wait on rows another attempt is counting.
    client
        .execute(
            "DELETE FROM console_login_failures
              WHERE window_started_at <= $1::timestamptz - make_interval(secs => $2::float8)",
            &[&now, &(FAILURE_WINDOW_S as f64)],
        )
        .await?;
    let tx = client.transaction().await?;
    if count(&tx, &attempt.address, 1, now).await? > FAILURES_PER_ADDRESS_MAX {
        tx.commit().await?;
        return Ok(Verdict::AddressThrottled);
    }
    let instance = count(&tx, &attempt.instance, 1, now).await?;
    let pair = count(&tx, &attempt.pair, 1, now).await?;
    if instance > FAILURES_PER_INSTANCE_MAX && pair > 1 {
        // Not tried, so counted neither against the instance nor against the address.
        count(&tx, &attempt.instance, -1, now).await?;
        count(&tx, &attempt.address, -1, now).await?;
        count(&tx, &attempt.pair, -1, now).await?;
        tx.commit().await?;
        return Ok(Verdict::InstanceLocked);
    }
    tx.commit().await?;
    Ok(Verdict::Try)
}

/// Adds `by` to the failures of `key` in the current window (a new window when the last one
/// ended) and returns the count.
async fn count(
    client: &impl GenericClient,
    key: &str,
    by: i32,
    now: DateTime<Utc>,
) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO console_login_failures AS f (key, window_started_at, failures)
             VALUES ($1, $2, greatest($4::integer, 0))
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN f.window_started_at
                                    <= $2::timestamptz - make_interval(secs => $3::float8)
                               THEN greatest($4::integer, 0)
                               ELSE greatest(f.failures + $4::integer, 0) END,
               window_started_at = CASE WHEN f.window_started_at
                                    <= $2::timestamptz - make_interval(secs => $3::float8)
                               THEN $2 ELSE f.window_started_at END
             RETURNING failures",
            &[&key, &now, &(FAILURE_WINDOW_S as f64), &by],
        )
        .await?;
    Ok(row.get(0))
}

/// Takes back the count of a right pair's attempt: only failures count.
pub async fn forgive(
    client: &impl GenericClient,
    attempt: &Attempt,
) -> Result<(), tokio_postgres::Error> {
    for key in [&attempt.address, &attempt.instance, &attempt.pair] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_get_a_quarter_of_the_pool_and_never_none() {
        assert_eq!(concurrent_max(16), 4);
        assert_eq!(concurrent_max(8), 2);
        assert_eq!(concurrent_max(3), 1);
        assert_eq!(concurrent_max(1), 1);
    }
}
