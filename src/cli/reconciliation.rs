//! The operator's reconciliation with the marketplace on the command line (as the audit
//! commands: exit 0 done, 2 cannot run, with the reason on stderr):
//!
//! - `dts-ledger marketplace refused`: callbacks refused after their token held, not resolved;
//! - `dts-ledger orders held`: expiry notices held while a package's `expiresAt` was ahead;
//! - `dts-ledger orders expire ID --reason refund`: apply one (the package expires now);
//! - `dts-ledger orders rotate-credential ID`: replace a package's order credential.
//!
//! The same as `GET /v1/marketplace/refused`, `GET /v1/expiry-notices` and
//! `POST /v1/orders/{instanceId}/expire`.

use crate::cli::audit::{TableOrJson, Unable};
use crate::domain::orders::{Outcome, Refusal};
use crate::ledger::orders::{self as ledger_orders, LIST_LIMIT_MAX};
use crate::ledger::{CommandError, Ledger};
use crate::marketplace::refusals;
use crate::store::Metadata;
use deadpool_postgres::Pool;
use projections::events::{Event, ExpiryReason};
use projections::ids::InstanceId;
use std::io::Write;
use std::process::ExitCode;

fn checked_limit(limit: i64) -> Result<i64, Unable> {
    if (1..=LIST_LIMIT_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(Unable(format!("--limit must be 1 to {LIST_LIMIT_MAX}")))
    }
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, Unable> {
    pool.get()
        .await
        .map_err(|e| Unable(crate::database::pool_failure(&e)))
}

/// `dts-ledger marketplace refused`.
pub async fn refused(pool: &Pool, limit: i64, format: TableOrJson) -> Result<ExitCode, Unable> {
    let limit = checked_limit(limit)?;
    let client = client(pool).await?;
    let (refused, total) = refusals::unresolved(&client, limit).await?;
    let mut out = std::io::stdout().lock();
    match format {
        TableOrJson::Json => {
            let page = crate::http::api::orders::RefusedPage { refused, total };
            writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?;
        }
        TableOrJson::Table => {
            writeln!(
                out,
                "{:<16}  {:<24}  {:<18}  {:>6}  {:>6}  {:<20}  {:<20}  message",
                "action", "subject", "reason", "status", "calls", "first", "last"
            )?;
            for r in &refused {
                writeln!(
                    out,
                    "{:<16}  {:<24}  {:<18}  {:>6}  {:>6}  {:<20}  {:<20}  {}",
                    r.action,
                    r.subject,
                    r.reason,
                    r.status,
                    r.calls,
                    r.first_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.last_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    r.message,
                )?;
            }
            if total > refused.len() as i64 {
                writeln!(out, "... {} more (--limit)", total - refused.len() as i64)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dts-ledger orders held`.
pub async fn held(
    pool: &Pool,
    after: i64,
    limit: i64,
    format: TableOrJson,
) -> Result<ExitCode, Unable> {
    let limit = checked_limit(limit)?;
    let client = client(pool).await?;
    let notices = ledger_orders::held_notices(&client, after, limit).await?;
    let mut out = std::io::stdout().lock();
    match format {
        TableOrJson::Json => writeln!(out, "{}", serde_json::to_string_pretty(&notices)?)?,
        TableOrJson::Table => {
            writeln!(
                out,
                "{:>10}  {:<24}  {:<16}  {:<20}  {:<20}  expiresAt now",
                "position", "instanceId", "jdPin", "held at", "held against"
            )?;
            let time = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%SZ");
            for n in &notices {
                writeln!(
                    out,
                    "{:>10}  {:<24}  {:<16}  {:<20}  {:<20}  {}",
                    n.position,
                    n.instance_id,
                    n.jd_pin,
                    time(n.held_at),
                    time(n.held_against),
                    n.expires_at
                        .map_or("never".to_owned(), |at| time(at).to_string()),
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dts-ledger orders expire ID --reason refund`.
pub async fn expire(
    ledger: &Ledger,
    instance: &str,
    reason: ExpiryReason,
) -> Result<ExitCode, Unable> {
    let instance_id =
        InstanceId::parse(instance).map_err(|e| Unable(format!("instance id {e}")))?;
    let metadata = Metadata {
        request_id: uuid::Uuid::new_v4().to_string(),
        source: "operator",
        actor: "operator:cli".to_owned(),
    };
    match ledger_orders::apply_held_expiry(ledger, &instance_id, reason, &metadata).await {
        Ok(Outcome::Recorded(Event::OrderExpired(_))) => {
            println!(
                "{instance_id} expired ({}): its running tasks are stopped",
                reason.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            println!("{instance_id} had expired already: nothing recorded");
            Ok(ExitCode::SUCCESS)
        }
        Err(CommandError::Refused(refusal @ Refusal::NoHeldNotice(_))) => Err(Unable(format!(
            "{refusal}: `dts-ledger orders held` lists the notices held"
        ))),
        Err(CommandError::Refused(refusal)) => Err(Unable(refusal.to_string())),
        Err(CommandError::Failed(error)) => Err(Unable(format!("nothing recorded: {error}"))),
    }
}

/// `dts-ledger orders rotate-credential ID`: prints the new credential, for the operator to hand
/// to the customer (it is derived, so nothing else holds it).
pub async fn rotate_credential(
    ledger: &Ledger,
    config: &crate::configuration::Config,
    instance: &str,
) -> Result<ExitCode, Unable> {
    let instance_id =
        InstanceId::parse(instance).map_err(|e| Unable(format!("instance id {e}")))?;
    let credentials = crate::credentials::Credentials::new(
        config.console_secret.as_ref(),
        config.marketplace_key.as_ref(),
    )
    .ok_or_else(|| {
        Unable(
            "no [console] secret or [marketplace] key to derive credentials from: pass the \
             service's --config"
                .to_owned(),
        )
    })?;
    let metadata = Metadata {
        request_id: uuid::Uuid::new_v4().to_string(),
        source: "operator",
        actor: "operator:cli".to_owned(),
    };
    match ledger_orders::rotate_credential(ledger, &instance_id, None, &metadata).await {
        Ok(rotated) => {
            eprintln!(
                "{instance_id}: order credential replaced (generation {}); {} console sessions \
                 it had opened were ended. The new authCode:",
                rotated.generation, rotated.sessions_ended
            );
            println!(
                "{}",
                credentials.auth_code_at(&instance_id, rotated.generation)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(CommandError::Refused(refusal)) => Err(Unable(refusal.to_string())),
        Err(CommandError::Failed(error)) => Err(Unable(format!("nothing recorded: {error}"))),
    }
}
