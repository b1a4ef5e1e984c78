//! `dts-ledger export`: the raw ledger, one row per event, as CSV or JSON lines.

use super::{parse_point, DroppedMonths};
use crate::audit::export::{self, Format};
use crate::audit::months;
use crate::audit::source::{self, Range, Until};
use crate::cli::output::{client, CannotRun};
use crate::cli::{Invocation, Run};
use crate::configuration::Config;
use crate::database::Role;
use clap::Args;
use deadpool_postgres::Pool;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub async fn export(
    pool: &Pool,
    format: Format,
    after: Option<i64>,
    until: Option<&str>,
    archives: Option<&Path>,
) -> Result<ExitCode, CannotRun> {
    let after = after.unwrap_or(0);
    if after < 0 {
        return Err(CannotRun(format!("--after {after} is negative")));
    }
    let until = until.map(parse_point).transpose()?.unwrap_or(Until::End);
    if let Until::Position(last) = until {
        if last < after {
            return Err(CannotRun(format!(
                "--until {last} is before --after {after}: the range is empty"
            )));
        }
    }
    let mut client = client(pool).await?;
    let tx = source::snapshot(&mut client).await?;
    let dropped = months::dropped(&tx).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    export::write_header(format, &mut out)?;
    let mut count = 0u64;
    let goes_on = months::feed_dropped_until(archives, &dropped, after, until, |row, _| {
        count += 1;
        let metadata = row.metadata.map(|m| m.0);
        // An archive's line always holds its previous hash.
        let prev_hash: Option<crate::store::hash::Hash> =
            row.prev_hash.and_then(|p| p.try_into().ok());
        export::write_row(row, prev_hash.as_ref(), metadata, format, &mut out)
    })
    .map_err(|error| match error {
        months::FeedError::Each(failed) => CannotRun(failed.to_string()),
        other => CannotRun(other.to_string_lossy()),
    })?;
    if goes_on {
        let range = Range {
            after: after.max(months::live_first(&dropped) - 1),
            until,
        };
        count += export::export_rows(&tx, range, format, &mut out).await?;
    }
    out.flush()?;
    tx.commit().await?;
    eprintln!("export: {count} events");
    Ok(ExitCode::SUCCESS)
}

/// Write the raw ledger to stdout, one row per event.
#[derive(Debug, Args)]
pub struct Export {
    #[arg(long, value_enum)]
    format: Format,
    /// Only events after this position.
    #[arg(long)]
    after: Option<i64>,
    /// Only events up to this position or RFC 3339 time.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    dropped: DroppedMonths,
}

impl Run for Export {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        cli.on_database(&cli.database(&config)?, Role::Reader, async |pool| {
            export(
                pool,
                self.format,
                self.after,
                self.until.as_deref(),
                self.dropped.archives.as_deref(),
            )
            .await
        })
        .await
    }
}
