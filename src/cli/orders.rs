//! `dts-ledger orders`: the operator's side of the packages' orders (as the audit commands: exit 0
//! done, 2 cannot run, with the reason on stderr):
//!
//! - `held`: expiry notices held while a package's `expiresAt` was ahead;
//! - `expire ID --reason refund`: apply one (the package expires now);
//! - `rotate-credential ID`: replace a package's order credential.
//!
//! The same as `GET /v1/expiry-notices`, `POST /v1/orders/{instanceId}/expire` and
//! `POST /v1/orders/{instanceId}/credential`.

use super::output::{client, CannotRun, ListFormat, Listing};
use super::{Invocation, Run};
use crate::configuration::Config;
use crate::credentials::Credentials;
use crate::database::Role;
use crate::domain::orders::{Outcome, Refusal};
use crate::ledger::orders::{self as ledger_orders, LIST_LIMIT_MAX};
use crate::ledger::{CommandError, Ledger};
use crate::store::Metadata;
use clap::{Args, Subcommand};
use deadpool_postgres::Pool;
use projections::events::{Event, ExpiryReason};
use projections::ids::InstanceId;
use std::io::Write;
use std::process::ExitCode;

/// Packages the marketplace said expired while their expiresAt was ahead: list the held notices,
/// or apply one.
#[derive(Debug, Args)]
pub struct Orders {
    #[command(subcommand)]
    command: OrdersCommand,
}

#[derive(Debug, Subcommand)]
enum OrdersCommand {
    /// Expiry notices held while a package's expiresAt was ahead (after a refund, or a stale
    /// notice), not settled since by an expiry or a release; oldest first.
    Held {
        /// Only notices after this ledger position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[command(flatten)]
        listing: Listing,
    },
    /// Replace a package's order credential: the old authCode stops working at once and the
    /// console sessions it opened end; prints the new one (nothing stores it).
    RotateCredential {
        /// The package's instanceId.
        instance: String,
    },
    /// Apply a package's held expiry notice: it expires now and its running tasks stop.
    Expire {
        /// The package's instanceId.
        instance: String,
        /// Why: `refund` (the notice followed a refund).
        #[arg(long, value_parser = parse_expiry_reason)]
        reason: ExpiryReason,
    },
}

fn parse_expiry_reason(value: &str) -> Result<ExpiryReason, String> {
    ExpiryReason::parse(value).ok_or_else(|| format!("{value:?} is not a reason: use refund"))
}

impl Run for Orders {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let settings = cli.database(&config)?;
        match self.command {
            OrdersCommand::Held { after, listing } => {
                cli.on_database(&settings, Role::Reader, async |pool| {
                    held(pool, after, listing).await
                })
                .await
            }
            // Both append to the ledger: the service's rights.
            OrdersCommand::Expire { instance, reason } => {
                cli.on_database(&settings, Role::Service, async |pool| {
                    expire(&Ledger::new(pool.clone(), &config), &instance, reason).await
                })
                .await
            }
            OrdersCommand::RotateCredential { instance } => {
                cli.on_database(&settings, Role::Service, async |pool| {
                    let ledger = Ledger::new(pool.clone(), &config);
                    rotate_credential(&ledger, &config, &instance).await
                })
                .await
            }
        }
    }
}

/// `dts-ledger orders held`.
pub async fn held(pool: &Pool, after: i64, listing: Listing) -> Result<ExitCode, CannotRun> {
    let limit = listing.limit(LIST_LIMIT_MAX)?;
    let client = client(pool).await?;
    let notices = ledger_orders::held_notices(&client, after, limit).await?;
    let mut out = std::io::stdout().lock();
    match listing.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&notices)?)?,
        ListFormat::Table => {
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
) -> Result<ExitCode, CannotRun> {
    let instance_id =
        InstanceId::parse(instance).map_err(|e| CannotRun(format!("instance id {e}")))?;
    let metadata = Metadata::operator("operator:cli");
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
        Err(CommandError::Refused(refusal @ Refusal::NoHeldNotice(_))) => Err(CannotRun(format!(
            "{refusal}: `dts-ledger orders held` lists the notices held"
        ))),
        Err(CommandError::Refused(refusal)) => Err(CannotRun(refusal.to_string())),
        Err(CommandError::Failed(error)) => Err(CannotRun(format!("nothing recorded: {error}"))),
    }
}

/// `dts-ledger orders rotate-credential ID`: prints the new credential, for the operator to hand
/// to the customer (it is derived, so nothing else holds it).
pub async fn rotate_credential(
    ledger: &Ledger,
    config: &Config,
    instance: &str,
) -> Result<ExitCode, CannotRun> {
    let instance_id =
        InstanceId::parse(instance).map_err(|e| CannotRun(format!("instance id {e}")))?;
    let credentials = Credentials::from_config(config).ok_or_else(|| {
        CannotRun(
            "no [console] secret or [marketplace] key to derive credentials from: pass the \
             service's --config"
                .to_owned(),
        )
    })?;
    let metadata = Metadata::operator("operator:cli");
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
        Err(CommandError::Refused(refusal)) => Err(CannotRun(refusal.to_string())),
        Err(CommandError::Failed(error)) => Err(CannotRun(format!("nothing recorded: {error}"))),
    }
}
