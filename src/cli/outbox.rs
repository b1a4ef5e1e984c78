//! `dts-ledger outbox list|retry`: what they print and how they exit (as the audit commands: 0
//! done, 2 cannot run, with the reason on stderr).

use crate::cli::audit::{TableOrJson, Unable};
use crate::outbox::entries::{self, Filter};
use deadpool_postgres::Pool;
use std::io::Write;
use std::process::ExitCode;

/// What `retry` queues again.
#[derive(Debug, Clone, Copy)]
pub enum RetryTarget {
    One(i64),
    AllDead,
}

async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, Unable> {
    pool.get()
        .await
        .map_err(|e| Unable(crate::database::pool_failure(&e)))
}

pub async fn list(
    pool: &Pool,
    dead_only: bool,
    after: i64,
    limit: i64,
    format: TableOrJson,
) -> Result<ExitCode, Unable> {
    if !(1..=entries::LIST_LIMIT_MAX).contains(&limit) {
        return Err(Unable(format!(
            "--limit must be 1 to {}",
            entries::LIST_LIMIT_MAX
        )));
    }
    let filter = if dead_only {
        Filter::Dead
    } else {
        Filter::Undelivered
    };
    let client = client(pool).await?;
    let found = entries::list(&client, filter, after, limit).await?;
    let mut out = std::io::stdout().lock();
    match format {
        TableOrJson::Json => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
        TableOrJson::Table => {
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

pub async fn retry(pool: &Pool, target: RetryTarget) -> Result<ExitCode, Unable> {
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
