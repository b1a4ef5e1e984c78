//! `dts-ledger report`: a month's usage and revenue, per package and in total.

use super::DroppedMonths;
use crate::audit::archive;
use crate::audit::months;
use crate::audit::report::{Builder, Month, ReportError};
use crate::audit::source::{self, Range, Selection, Until};
use crate::cli::output::{self, client, CannotRun};
use crate::cli::{Invocation, Run};
use crate::configuration::Config;
use crate::database::Role;
use crate::store::FoldRow;
use chrono::{DateTime, FixedOffset, Utc};
use clap::Args;
use deadpool_postgres::Pool;
use projections::events::Event;
use std::path::Path;
use std::process::ExitCode;

/// The ledger cut at `time` ([`crate::store::POSITION_AT`]), also where months were dropped: a
/// cut among the dropped months is known from their records when it falls between two of them
/// (the months are cut in China Standard Time, so a report in another zone may cut inside one).
async fn cut_at(
    tx: &tokio_postgres::Transaction<'_>,
    dropped: &[months::DroppedMonth],
    time: DateTime<Utc>,
) -> Result<i64, CannotRun> {
    let after_dropped = dropped
        .last()
        .is_none_or(|last| last.last_recorded_at <= time);
    if after_dropped {
        return Ok(source::last_position(tx, Until::Time(time))
            .await?
            .unwrap_or(0));
    }
    let zone = archive::finance_zone();
    let mut before: Option<&months::DroppedMonth> = None;
    for month in dropped {
        let starts = month
            .month
            .parse::<Month>()
            .map_err(CannotRun)?
            .bounds(zone)
            .0;
        if time < starts && before.is_none_or(|b| b.last_recorded_at <= time) {
            return Ok(month.first_position - 1);
        }
        before = Some(month);
    }
    Err(CannotRun(format!(
        "{} falls inside a month dropped from the database, whose archive is cut in China \
         Standard Time: report in +08:00",
        time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

pub async fn report(
    pool: &Pool,
    month: &str,
    format: ReportFormat,
    utc_offset: &str,
    default_currency: &str,
    archives: Option<&Path>,
) -> Result<ExitCode, CannotRun> {
    let month: Month = month.parse().map_err(CannotRun)?;
    let zone: FixedOffset = utc_offset
        .parse()
        .map_err(|_| CannotRun(format!("--utc-offset {utc_offset:?} is not like +08:00")))?;
    let (start, end) = month.bounds(zone);
    let mut client = client(pool).await?;
    let tx = source::snapshot(&mut client).await?;
    let micro = chrono::Duration::microseconds(1);
    let dropped = months::dropped(&tx).await?;
    let opening = cut_at(&tx, &dropped, start - micro).await?;
    let closing = cut_at(&tx, &dropped, end - micro).await?;
    let live_first = months::live_first(&dropped);
    let mut builder = Builder::new(month, opening);
    let mut failure = None;
    let mut push = |row: FoldRow<'_>| {
        let event = Event::decode_json(
            row.event_type,
            row.event_version,
            row.stream_id,
            &row.payload,
        )
        .map_err(|e| CannotRun(format!("event at position {}: {e}", row.position)))?;
        if let Err(error) = builder.push(row.position, &event, row.recorded_at) {
            failure.get_or_insert(error.to_string());
        }
        Ok::<(), CannotRun>(())
    };
    months::feed_dropped(archives, &dropped, 0, closing, |row, _| {
        push(FoldRow {
            position: row.position,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            recorded_at: row.recorded_at,
            stream_id: row.stream_id,
        })
    })
    .map_err(|error| match error {
        months::FeedError::Each(unable) => unable,
        other @ (months::FeedError::Needed(_) | months::FeedError::Archive(_)) => {
            CannotRun(other.to_string_lossy())
        }
    })?;
    if closing >= live_first {
        source::for_each(
            &tx,
            Range {
                after: live_first - 1,
                until: Until::Position(closing),
            },
            Selection::FOLD,
            |row| push(FoldRow::from_columns(row)?),
        )
        .await?;
    }
    tx.commit().await?;
    // Events that do not fold, or a package that does not balance, are a broken ledger (exit 1),
    // as `verify` and `replay` say of theirs; only a report that cannot be made is exit 2.
    if let Some(error) = failure {
        eprintln!("report: BROKEN {error}");
        return Ok(ExitCode::from(output::FAILED));
    }
    let report = match builder.finish(default_currency) {
        Ok(report) => report,
        Err(error @ ReportError::Unbalanced(_)) => {
            eprintln!("report: BROKEN {error}");
            return Ok(ExitCode::from(output::FAILED));
        }
        Err(error) => return Err(error.into()),
    };
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => print!("{}", report.to_csv()),
        ReportFormat::Table => print!("{}", report.to_table()),
    }
    Ok(ExitCode::SUCCESS)
}

/// Monthly usage and revenue, per package and in total.
#[derive(Debug, Args)]
pub struct Report {
    /// The month, YYYY-MM.
    #[arg(long)]
    month: String,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// The time zone months are cut in.
    #[arg(long, default_value = "+08:00")]
    utc_offset: String,
    #[command(flatten)]
    dropped: DroppedMonths,
}

impl Run for Report {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let currency = config
            .catalog
            .iter()
            .next()
            .map_or("CNY".to_owned(), |sku| sku.currency.clone());
        cli.on_database(&cli.database(&config)?, Role::Reader, async |pool| {
            report(
                pool,
                &self.month,
                self.format,
                &self.utc_offset,
                &currency,
                self.dropped.archives.as_deref(),
            )
            .await
        })
        .await
    }
}
