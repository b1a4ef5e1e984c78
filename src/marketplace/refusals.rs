//! Reconciliation: the callbacks this service refused after their token held, kept until a later
//! call of the same action for the same package succeeds (DESIGN §4).
//!
//! The marketplace retries a refused `createInstance` up to 200 times and then stops for good: a
//! paid order refused for a reason a retry cannot fix (a SKU missing from the catalog, say) must
//! reach an operator long before that. Every refusal is kept here — the action, the package (the
//! `orderBizId` of a purchase), a stable reason code, the first and last time and how many calls —
//! until the same action succeeds for the same package, when it resolves itself.
//!
//! Only callbacks whose token held are kept: a caller without the key cannot write to the
//! database. Refusals before the token (a wrong key, a forged call) are counted in
//! `dts_ledger_marketplace_callbacks_total` and logged. The table is not the ledger: a refusal is
//! not a fact of any account, and its row changes as retries arrive.

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::{Deserialize, Serialize};

/// Bytes of the action or subject kept: an id takes at most this many, and a longer value is cut
/// (it was refused for its length anyway).
const NAME_BYTES_MAX: usize = projections::ids::ID_BYTES_MAX;
/// Bytes of the message kept: a message names a parameter and a short reason.
const MESSAGE_BYTES_MAX: usize = 1024;

/// One unresolved refusal, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"action": "createInstance", "subject": "1001", "reason": "unknown_sku", "status": 422, "message": "skuId FW_GOODS-500232-9 is not in the SKU catalog", "firstAt": "2026-11-26T08:00:00Z", "lastAt": "2026-11-26T08:20:00Z", "calls": 21})))]
pub struct RefusedCallback {
    /// The callback's `action`, as received.
    pub action: String,
    /// The package: `instanceId`, or the `orderBizId` of a `createInstance`; empty when the call
    /// named none.
    pub subject: String,
    /// A stable code: `ambiguous`, `invalid_parameter`, `unknown_action`, `unknown_sku`,
    /// `link_used`, `unknown_instance`,
    /// `released`, `conflict`, `overflow`, `stale_timestamp`, `sign_in_unconfigured`,
    /// `unavailable`, `internal`.
    pub reason: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    pub message: String,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// Calls refused since `firstAt`.
    pub calls: i64,
}

/// `value` as it may be stored and shown: invalid UTF-8 and control characters replaced (it came
/// from outside), cut to `max` bytes on a character boundary.
pub fn printable(value: &[u8], max: usize) -> String {
    let mut text: String = String::from_utf8_lossy(value)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|at| text.is_char_boundary(*at))
            .unwrap_or(0);
        text.truncate(cut);
    }
    text
}

/// Keeps one refusal: a new row, one more call on an unresolved one, or a resolved one reopened.
pub async fn record(
    pool: &Pool,
    action: &[u8],
    subject: &[u8],
    reason: &str,
    status: u16,
    message: &str,
) -> Result<(), Error> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO marketplace_refusals
                 (action, subject, reason, status, message, first_at, last_at, calls)
             VALUES ($1, $2, $3, $4, $5, now(), now(), 1)
             ON CONFLICT (action, subject) DO UPDATE SET
                 reason = excluded.reason, status = excluded.status, message = excluded.message,
                 last_at = excluded.last_at,
                 first_at = CASE WHEN marketplace_refusals.resolved_at IS NULL
                                 THEN marketplace_refusals.first_at ELSE excluded.first_at END,
                 calls = CASE WHEN marketplace_refusals.resolved_at IS NULL
                              THEN marketplace_refusals.calls + 1 ELSE 1 END,
                 resolved_at = NULL",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &printable(action, NAME_BYTES_MAX),
                &printable(subject, NAME_BYTES_MAX),
                &reason,
                &i16::try_from(status).unwrap_or(i16::MAX),
                &printable(message.as_bytes(), MESSAGE_BYTES_MAX),
            ],
        )
        .await?;
    Ok(())
}

/// Resolves the refusal of `action` for `subject`, if one is open: a retry succeeded.
pub async fn resolve(pool: &Pool, action: &str, subject: &[u8]) -> Result<bool, Error> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "UPDATE marketplace_refusals SET resolved_at = now()
              WHERE action = $1 AND subject = $2 AND resolved_at IS NULL",
        )
        .await?;
    let resolved = client
        .execute(&statement, &[&action, &printable(subject, NAME_BYTES_MAX)])
        .await?;
    Ok(resolved > 0)
}

/// The unresolved refusals, oldest first, at most `limit`, and how many there are in all.
pub async fn unresolved(
    client: &impl GenericClient,
    limit: i64,
) -> Result<(Vec<RefusedCallback>, i64), tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT action, subject, reason, status, message, first_at, last_at, calls
               FROM marketplace_refusals
              WHERE resolved_at IS NULL
              ORDER BY first_at, action, subject
              LIMIT $1",
            &[&limit],
        )
        .await?;
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM marketplace_refusals WHERE resolved_at IS NULL",
            &[],
        )
        .await?
        .get(0);
    let refused = rows
        .iter()
        .map(|row| RefusedCallback {
            action: row.get(0),
            subject: row.get(1),
            reason: row.get(2),
            status: u16::try_from(row.get::<_, i16>(3)).unwrap_or(0),
            message: row.get(4),
            first_at: row.get(5),
            last_at: row.get(6),
            calls: row.get(7),
        })
        .collect();
    Ok((refused, total))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_outside_are_made_printable_and_cut() {
        assert_eq!(printable(b"1001", 128), "1001");
        assert_eq!(printable(b"a\nb\xff", 128), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(printable("流量".as_bytes(), 4), "流");
        assert_eq!(printable(&[b'x'; 200], 128).len(), 128);
    }
}
