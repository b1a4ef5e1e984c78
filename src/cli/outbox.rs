//! `dts-ledger outbox list|retry`: what they print and how they exit (as the audit commands: 0
//! done, 2 cannot run, with the reason on stderr).

use super::output::{client, CannotRun, ListFormat, Listing};
use super::{Invocation, Run};
use crate::configuration::Config;
use crate::database::Role;
use crate::outbox::entries::{self, Filter};
use clap::{Args, Subcommand};
use deadpool_postgres::Pool;
use std::io::Write;
use std::process::ExitCode;

/// Webhook entries not yet delivered: list them, or queue dead letters again.
#[derive(Debug, Args)]
pub struct Outbox {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// List undelivered entries (pending and dead), oldest first.
    List {
        /// Only dead letters.
        #[arg(long)]
        dead: bool,
        /// Only entries after this position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[command(flatten)]
        listing: Listing,
    },
    /// Queue a dead letter (or all of them) for delivery again; the later entries of its
    /// subject follow it.
    Retry {
        /// The entry's position.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        position: Option<i64>,
        /// Every dead letter.
        #[arg(long)]
        all_dead: bool,
    },
}

impl Run for Outbox {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let settings = cli.database(&config)?;
        // The outbox's own table only, with the service's rights.
        cli.on_database(&settings, Role::Service, async |pool| match self.command {
            OutboxCommand::List {
                dead,
                after,
                listing,
            } => list(pool, dead, after, listing).await,
            OutboxCommand::Retry {
                position: Some(position),
                ..
            } => retry(pool, RetryTarget::One(position)).await,
            OutboxCommand::Retry { position: None, .. } => retry(pool, RetryTarget::AllDead).await,
        })
        .await
    }
}

/// What `retry` queues again.
#[derive(Debug, Clone, Copy)]
enum RetryTarget {
    One(i64),
    AllDead,
}

async fn list(
    pool: &Pool,
    dead_only: bool,
    after: i64,
    listing: Listing,
) -> Result<ExitCode, CannotRun> {
    let limit = listing.limit(entries::LIST_LIMIT_MAX)?;
    let filter = if dead_only {
        Filter::Dead
    } else {
        Filter::Undelivered
    };
    let client = client(pool).await?;
    let found = entries::list(&client, filter, after, limit).await?;
    let mut out = std::io::stdout().lock();
    match listing.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
        ListFormat::Table => {
            writeln!(
                out,
                "{:>10}  {:<7}  {:>8}  {:<24}  {:<32}  {:>10}  last error",
                "position", "state", "attempts", "type", "subject", "behind"
            )?;
            for entry in &found {
                writeln!(
                    out,
                    "{:>10}  {:<7}  {:>8}  {:<24}  {:<32}  {:>10}  {}",
                    entry.position,
                    entry.state,
                    entry.attempts,
                    entry.event_type,
                    entry.subject,
                    entry.behind.map_or(String::new(), |p| p.to_string()),
                    entry.last_error.as_deref().unwrap_or(""),
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn retry(pool: &Pool, target: RetryTarget) -> Result<ExitCode, CannotRun> {
    let client = client(pool).await?;
    match target {
        RetryTarget::One(position) => {
            entries::retry(&client, position).await?;
            println!("outbox entry {position} queued for delivery again");
        }
        RetryTarget::AllDead => {
            let requeued = entries::retry_all_dead(&client).await?;
            println!("{requeued} dead letters queued for delivery again");
        }
    }
    Ok(ExitCode::SUCCESS)
}
