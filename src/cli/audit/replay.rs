//! `dts-ledger replay`: the ledger folded from scratch (or from a snapshot a trusted checkpoint
//! signed) and compared with the live projections, or every balance as of a point.

use super::{bound, parse_point, sorted_for_snapshots, DroppedMonths};
use crate::audit::months;
use crate::audit::replay;
use crate::audit::snapshot;
use crate::audit::source::{self, Until};
use crate::cli::output::{self, client, CannotRun, ListFormat};
use crate::cli::{Invocation, Run};
use crate::configuration::{AuditConfig, Config};
use crate::database::Role;
use clap::Args;
use deadpool_postgres::Pool;
use projections::events::Event;
use projections::Package;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn balance_json(p: &Package) -> serde_json::Value {
    json!({
        "instanceId": p.instance_id,
        "status": p.status.as_str(),
        "bytesGranted": p.bytes_granted.get(),
        "bytesConsumed": p.bytes_consumed.get(),
        "bytesRemaining": p.bytes_remaining.get(),
        "bytesOverage": p.bytes_overage.get(),
        "bytesForfeited": p.bytes_forfeited.get(),
        "expiresAt": p.expires_at,
    })
}

/// `dts-ledger replay`: fold (from scratch or a trusted snapshot) in one snapshot of the database,
/// then say the balances or the differences. One idea, a little over the usual length: the
/// snapshot's reads stay together in one transaction.
pub async fn replay(
    pool: &Pool,
    as_of: Option<&str>,
    format: ListFormat,
    scratch_schema: Option<&str>,
    since_snapshot: Option<&AuditConfig>,
    archives: Option<&Path>,
) -> Result<ExitCode, CannotRun> {
    let mut client = client(pool).await?;
    let until = as_of.map(parse_point).transpose()?;
    if since_snapshot.is_some() && until.is_some() {
        return Err(CannotRun(
            "--since-snapshot compares with the live tables; it does not go with --as-of".into(),
        ));
    }
    let sorted = match since_snapshot {
        Some(audit) => Some(sorted_for_snapshots(&client, audit).await?),
        None => None,
    };
    let bound = sorted.as_ref().map(bound);
    let (folded, live, findings) = {
        let tx = source::snapshot(&mut client).await?;
        let start = match &bound {
            Some(bound) => Some(snapshot::start(&tx, bound).await?),
            None => None,
        };
        match start.as_ref().map(|start| start.snapshot) {
            Some(Some(position)) => {
                eprintln!("replay: starting from the snapshot at position {position}")
            }
            Some(None) => eprintln!(
                "replay: no snapshot signed by a trusted checkpoint holds: folding everything"
            ),
            None => {}
        }
        let dropped = months::dropped(&tx).await?;
        let (folded, findings) = match start {
            None => (
                fold_with_archives(&tx, archives, &dropped, until.unwrap_or(Until::End)).await?,
                Vec::new(),
            ),
            Some(start) => {
                if let Some(needed) = months::needed(&dropped, start.position) {
                    return Err(CannotRun(needed));
                }
                let mut folded =
                    replay::fold_from(&tx, start.projection, start.position, Until::End).await?;
                // Those folded to name what was wrong with newer snapshots count too.
                folded.events += start.events;
                (folded, start.findings)
            }
        };
        let live = match until {
            None => Some(replay::live(&tx).await?),
            Some(_) => None,
        };
        tx.commit().await?;
        (folded, live, findings)
    };
    if let Some(name) = scratch_schema {
        replay::write_schema(&mut client, name, &folded.projection).await?;
        eprintln!("replay: replayed projections written to schema {name}");
    }
    match live {
        // --as-of: the balances at that point.
        None => {
            print_balances(&folded, format);
            Ok(ExitCode::SUCCESS)
        }
        Some(live) => Ok(compared(&live, &folded, &findings)),
    }
}

/// Folds the ledger up to `until`: the dropped months from their archives in `archives`, then
/// the events in the database.
async fn fold_with_archives(
    tx: &tokio_postgres::Transaction<'_>,
    archives: Option<&Path>,
    dropped: &[months::DroppedMonth],
    until: Until,
) -> Result<replay::Folded, CannotRun> {
    if dropped.is_empty() {
        return Ok(replay::fold(tx, until).await?);
    }
    let started = std::time::Instant::now();
    let mut projection = projections::Projection::default();
    let (mut events, mut last_position) = (0u64, 0i64);
    let goes_on = months::feed_dropped_until(archives, dropped, 0, until, |row, _| {
        let event = Event::decode_json(
            row.event_type,
            row.event_version,
            row.stream_id,
            &row.payload,
        )
        .map_err(|e| format!("event at position {}: {e}", row.position))?;
        projection
            .apply(&event, row.recorded_at)
            .map_err(|e| format!("event at position {}: {e}", row.position))?;
        events += 1;
        last_position = row.position;
        Ok::<(), String>(())
    })?;
    if !goes_on || last_position < months::live_first(dropped) - 1 {
        return Ok(replay::Folded {
            projection,
            events,
            last_position,
            elapsed: started.elapsed(),
        });
    }
    let mut folded = replay::fold_from(tx, projection, last_position, until).await?;
    folded.events += events;
    folded.elapsed = started.elapsed();
    Ok(folded)
}

/// `replay --as-of`: every package's balance at that point.
fn print_balances(folded: &replay::Folded, format: ListFormat) {
    let packages: Vec<&Package> = folded.projection.packages.values().collect();
    match format {
        ListFormat::Json => {
            let body = json!({
                "asOfPosition": folded.last_position,
                "packages": packages.iter().map(|p| balance_json(p)).collect::<Vec<_>>(),
            });
            println!("{body}");
        }
        ListFormat::Table => {
            println!("as of position {}", folded.last_position);
            println!(
                "{:<32} {:>9} {:>20} {:>20} {:>20} {:>20}",
                "instanceId", "status", "granted", "consumed", "remaining", "overage"
            );
            for p in packages {
                println!(
                    "{:<32} {:>9} {:>20} {:>20} {:>20} {:>20}",
                    p.instance_id.as_str(),
                    p.status.as_str(),
                    p.bytes_granted,
                    p.bytes_consumed,
                    p.bytes_remaining,
                    p.bytes_overage
                );
            }
        }
    }
}

/// `replay`: the replayed projections held against the live tables, said line by line, after
/// what is wrong with the snapshots it did not start from.
fn compared(
    live: &projections::Projection,
    folded: &replay::Folded,
    findings: &[snapshot::Finding],
) -> ExitCode {
    let differences = replay::compare(live, &folded.projection);
    let seconds = folded.elapsed.as_secs_f64();
    if differences.is_empty() && findings.is_empty() {
        println!(
            "replay: identical events={} last_position={} packages={} tasks={} seconds={seconds:.2}",
            folded.events,
            folded.last_position,
            folded.projection.packages.len(),
            folded.projection.tasks.len()
        );
        return ExitCode::SUCCESS;
    }
    for finding in findings {
        println!("replay: DIFFERENT {finding}");
    }
    for difference in &differences {
        println!("replay: DIFFERENT {difference}");
    }
    println!(
        "replay: {} differences after {} events (last position {})",
        differences.len() + findings.len(),
        folded.events,
        folded.last_position
    );
    ExitCode::from(output::FAILED)
}

/// Fold the ledger from scratch and compare with the live projections; or, with --as-of, print
/// every package's balance at that point.
#[derive(Debug, Args)]
pub struct Replay {
    /// A position, or an RFC 3339 time: print balances as of then instead of comparing.
    #[arg(long)]
    as_of: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ListFormat,
    /// Also write the replayed projections into this new schema, for SQL inspection.
    #[arg(long)]
    scratch_schema: Option<String>,
    /// Fold only what follows the newest snapshot whose rows hash to the digest a trusted
    /// checkpoint signed.
    #[arg(long)]
    since_snapshot: bool,
    #[command(flatten)]
    dropped: DroppedMonths,
}

impl Run for Replay {
    /// Reads only, but for a scratch schema, which needs CREATE on the database (the owner's).
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let role = match self.scratch_schema {
            Some(_) => Role::Owner,
            None => Role::Reader,
        };
        let since = self.since_snapshot.then_some(&config.audit);
        cli.on_database(&cli.database(&config)?, role, async |pool| {
            replay(
                pool,
                self.as_of.as_deref(),
                self.format,
                self.scratch_schema.as_deref(),
                since,
                self.dropped.archives.as_deref(),
            )
            .await
        })
        .await
    }
}
