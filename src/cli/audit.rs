//! The audit subcommands of `dts-ledger`: what they print and how they exit.
//!
//! Exit codes: 0 when the check passes (or the output was written), 1 when it finds the ledger
//! broken or the projections different, 2 when it cannot run (bad arguments, unreachable database).

use crate::audit::archive;
use crate::audit::checkpoint::{self, Checkpoint, Keyring};
use crate::audit::export::{self, Format};
use crate::audit::months;
use crate::audit::replay;
use crate::audit::report::{Builder, Month, ReportError};
use crate::audit::snapshot;
use crate::audit::source::{self, Range, Selection, Until};
use crate::audit::trust::{client, external_checkpoint, keyring};
use crate::audit::verify::{self, Mark, Since, Verifier, VerifyError};
use crate::configuration::AuditConfig;
use crate::store::FoldRow;
use chrono::{DateTime, FixedOffset, Utc};
use deadpool_postgres::Pool;
use projections::events::Event;
use projections::Package;
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The check failed: the ledger is broken or the projections differ.
pub const FAILED: u8 = 1;
/// The command could not run.
pub const UNABLE: u8 = 2;

/// A command that could not run, with what to tell the user.
#[derive(Debug)]
pub struct Unable(pub String);

impl<E: std::fmt::Display> From<E> for Unable {
    fn from(error: E) -> Unable {
        Unable(error.to_string())
    }
}

/// `--until` / `--as-of`: a position, or an RFC 3339 time.
pub fn parse_point(text: &str) -> Result<Until, Unable> {
    crate::store::Point::parse(text)
        .map(Until::from)
        .map_err(|error| Unable(error.to_string()))
}

/// What `verify` holds the ledger against.
pub struct VerifyOptions<'a> {
    pub progress_every: u64,
    /// `--checkpoint FILE`: a checkpoint line kept outside the database.
    pub checkpoint_file: Option<&'a Path>,
    /// `--since-checkpoint`: check only what follows the newest checkpoint whose signature holds.
    pub since_checkpoint: bool,
    /// `--archives DIR`: the archives of closed months, checked with the live ledger as one chain.
    pub archives: Option<&'a Path>,
}

pub async fn verify(
    pool: &Pool,
    audit: &AuditConfig,
    options: VerifyOptions<'_>,
) -> Result<ExitCode, Unable> {
    let keyring = keyring(audit)?;
    let external = options
        .checkpoint_file
        .map(|path| external_checkpoint(path, &keyring).map(|c| (path, c)))
        .transpose()?;
    if options.since_checkpoint && keyring.is_empty() {
        return Err(Unable(
            "--since-checkpoint needs a public key to trust a checkpoint ([audit] public_keys)"
                .into(),
        ));
    }
    let mut client = client(pool).await?;
    let sorted = keyring.sort(checkpoint::stored(&client).await?);
    warn_untrusted(&sorted, keyring.is_empty());
    let mut marks: Vec<Mark> = sorted
        .trusted
        .iter()
        .map(|found| Mark {
            position: found.position,
            ledger_hash: found.ledger_hash,
            label: found.describe(),
        })
        .collect();
    if let Some((path, found)) = &external {
        marks.push(Mark {
            position: found.position,
            ledger_hash: found.ledger_hash,
            label: format!("the checkpoint in {}", path.display()),
        });
    }
    let since = match (options.since_checkpoint, sorted.newest()) {
        (true, Some(newest)) => Some(Since {
            position: newest.position,
            ledger_hash: newest.ledger_hash,
        }),
        (true, None) => {
            eprintln!("verify: no stored checkpoint holds a known signature: checking everything");
            None
        }
        (false, _) => None,
    };
    let dropped = months::dropped(&**client).await?;
    let start = match (since, options.archives) {
        (Some(since), _) => verify::Start::Since(since, marks),
        (None, Some(dir)) => {
            if keyring.is_empty() {
                return Err(Unable(
                    "--archives: an archive's checkpoint is trusted through its signature: no \
                     public key ([audit] public_keys)"
                        .into(),
                ));
            }
            let started = std::time::Instant::now();
            match feed_archives(dir, &dropped, &keyring, Verifier::new(marks))? {
                Ok((verifier, archived)) => {
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!(
                        "verify: archives={} archived_events={archived} seconds={seconds:.2} \
                         events_per_s={:.0}",
                        archive::list(dir)?.len(),
                        archived as f64 / seconds.max(1e-9)
                    );
                    verify::Start::Fed(verifier)
                }
                Err(broken) => {
                    println!("verify: BROKEN {broken}");
                    return Ok(ExitCode::from(FAILED));
                }
            }
        }
        (None, None) => {
            if let Some(needed) = months::needed(&dropped, 0) {
                return Err(Unable(format!(
                    "{needed}; or start from a checkpoint with --since-checkpoint"
                )));
            }
            verify::Start::Fed(Verifier::new(marks))
        }
    };
    let outcome = verify::verify_from(&mut client, start, options.progress_every, |n| {
        eprintln!("verify: {n} events checked");
    })
    .await;
    let summary = match outcome {
        Ok(summary) => summary,
        Err(VerifyError::Broken(problem)) => {
            println!("verify: BROKEN {problem}");
            return Ok(ExitCode::from(FAILED));
        }
        Err(error) => return Err(error.into()),
    };
    // The snapshots of the checkpoints it started from or checked: each must hold its digest.
    let bound = bound(&sorted);
    let (snapshots, findings) = {
        let tx = source::snapshot(&mut client).await?;
        let checked = snapshot::check(&tx, &bound, summary.after).await?;
        tx.commit().await?;
        checked
    };
    if !findings.is_empty() {
        for finding in findings.iter().take(FINDINGS_SHOWN_MAX) {
            println!("verify: BROKEN {finding}");
        }
        if findings.len() > FINDINGS_SHOWN_MAX {
            println!(
                "verify: BROKEN ... and {} more rows of snapshots",
                findings.len() - FINDINGS_SHOWN_MAX
            );
        }
        return Ok(ExitCode::from(FAILED));
    }
    println!(
        "verify: intact events={} streams={} after={} last_position={} last_hash={} \
         checkpoints={} snapshots={snapshots} seconds={:.2}",
        summary.events,
        summary.streams,
        summary.after,
        summary.last_position,
        hex::encode(summary.last_hash),
        summary.checkpoints_held,
        summary.elapsed.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `verify --archives DIR`: every archive in `dir` in position order, each whole on its own and
/// signed by a trusted key, the archived events the database no longer holds fed to `verifier`
/// (so their streams' chains are checked with the rest), and the others held against the live
/// chain through their checkpoints. An archive left out (a gap between archives, or between the
/// last one and the database) is named, from the drop's record when there is one. Returns the
/// verifier, standing before the first event still in the database, and how many archived events
/// it checked; `Err` inside says what is broken.
#[allow(clippy::type_complexity)]
fn feed_archives(
    dir: &Path,
    dropped: &[months::DroppedMonth],
    keyring: &Keyring,
    mut verifier: Verifier,
) -> Result<Result<(Verifier, u64), String>, Unable> {
    let live_first = months::live_first(dropped);
    let left_out = |from: i64, to: i64, after: &str| {
        let named: Vec<String> = dropped
            .iter()
            .filter(|m| m.last_position >= from && m.first_position <= to)
            .map(months::DroppedMonth::describe)
            .collect();
        format!(
            "missing archive: positions {from}..{to} ({after}) are in no archive in {} and no \
             longer in the database{}",
            dir.display(),
            if named.is_empty() {
                String::new()
            } else {
                format!(": {} is left out", named.join(", "))
            }
        )
    };
    let mut expected = 1;
    let mut previous: Option<String> = None;
    let mut archived = 0u64;
    for path in archive::list(dir)? {
        let name = path.display().to_string();
        let header = match archive::Reader::open(&path) {
            Ok(reader) => reader.header,
            Err(error) => return Ok(Err(error.to_string())),
        };
        let after = match &previous {
            Some(previous) => format!("between {previous} and {name}"),
            None => format!("before {name}"),
        };
        if header.first_position > expected && expected < live_first {
            return Ok(Err(left_out(
                expected,
                (header.first_position - 1).min(live_first - 1),
                &after,
            )));
        }
        if header.first_position < expected {
            return Ok(Err(format!(
                "archive {name}: reordered: it starts at position {}, which {} holds already",
                header.first_position,
                previous.as_deref().unwrap_or("the ledger")
            )));
        }
        if let Some(record) = dropped.iter().find(|m| m.month == header.month) {
            let digest = archive::file_sha256(&path)?;
            if digest != record.file_sha256 {
                return Ok(Err(format!(
                    "archive {name}: altered: its sha256 is {}, month {} was dropped with {}",
                    hex::encode(digest),
                    record.month,
                    hex::encode(record.file_sha256)
                )));
            }
        }
        let fed = archive::read(&path, Some(keyring), |row, hash| {
            if row.position < live_first {
                verifier
                    .check(row, hash)
                    .map_err(|problem| Fed::Broken(format!("archive {name}: {problem}")))?;
                archived += 1;
            }
            Ok::<(), Fed>(())
        });
        let checked = match fed {
            Ok(checked) => checked,
            Err(Fed::Broken(broken)) => return Ok(Err(broken)),
            Err(Fed::Archive(error)) => return Ok(Err(error.to_string())),
        };
        if checked.header.last_position >= live_first {
            verifier.add_mark(Mark {
                position: checked.checkpoint.position,
                ledger_hash: checked.checkpoint.ledger_hash,
                label: format!("the checkpoint of archive {name}"),
            });
        }
        expected = expected.max(checked.header.last_position + 1);
        previous = Some(name);
    }
    if expected < live_first {
        let after = match &previous {
            Some(previous) => format!("between {previous} and the database"),
            None => "before the database".to_owned(),
        };
        return Ok(Err(left_out(expected, live_first - 1, &after)));
    }
    Ok(Ok((verifier, archived)))
}

/// What stops feeding archived events to the ledger's check.
enum Fed {
    Broken(String),
    Archive(archive::ArchiveError),
}

impl From<archive::ArchiveError> for Fed {
    fn from(error: archive::ArchiveError) -> Fed {
        Fed::Archive(error)
    }
}

/// Snapshot findings `verify` prints one by one: enough to see what was forged; a snapshot can
/// be given a million extra rows, the rest are counted.
const FINDINGS_SHOWN_MAX: usize = 100;

/// Says which stored checkpoints `verify` ignores: they are signed by no trusted key, so they
/// neither hold nor break the ledger's evidence. Anyone who can append to `checkpoints` can write
/// such rows; a warning, not a failure, or they could fail every later audit.
fn warn_untrusted(sorted: &checkpoint::Sorted, keyless: bool) {
    if sorted.untrusted == 0 {
        return;
    }
    if keyless {
        println!(
            "verify: WARNING {} stored checkpoints are ignored: no public key to check their \
             signatures with ([audit] public_keys)",
            sorted.untrusted
        );
        return;
    }
    for why in &sorted.named {
        println!("verify: WARNING ignored, signed by no trusted key: {why}");
    }
    if sorted.untrusted > sorted.named.len() {
        println!(
            "verify: WARNING ... and {} more stored checkpoints signed by no trusted key are \
             ignored",
            sorted.untrusted - sorted.named.len()
        );
    }
}

/// The trusted checkpoints that sign a snapshot, oldest first.
fn bound(sorted: &checkpoint::Sorted) -> Vec<&Checkpoint> {
    sorted
        .trusted
        .iter()
        .filter(|found| found.snapshot_digest.is_some())
        .collect()
}

/// The stored checkpoints sorted by trust, for a command that uses snapshots: a snapshot is
/// trusted only through its checkpoint's signature, so a key is needed.
async fn sorted_for_snapshots(
    client: &deadpool_postgres::Object,
    audit: &AuditConfig,
) -> Result<checkpoint::Sorted, Unable> {
    let keyring = keyring(audit)?;
    if keyring.is_empty() {
        return Err(Unable(
            "a snapshot is trusted through its checkpoint's signature: no public key \
             ([audit] public_keys)"
                .into(),
        ));
    }
    Ok(keyring.sort(checkpoint::stored(client).await?))
}

/// `keygen FILE`: a new signing key in FILE; its public key (hex) on stdout.
pub fn keygen(path: &Path) -> Result<ExitCode, Unable> {
    let public = checkpoint::keygen(path)?;
    println!("{}", hex::encode(public.as_bytes()));
    eprintln!(
        "keygen: signing key written to {} (key id {}); give the public key above to verifiers \
         as [audit] public_keys",
        path.display(),
        hex::encode(checkpoint::key_id(&public))
    );
    Ok(ExitCode::SUCCESS)
}

/// `checkpoint`: signs the head, stores the checkpoint, prints it as one JSON line. With
/// `snapshot`, also stores the projections folded up to it (from the newest earlier snapshot that
/// holds), and the checkpoint signs their digest.
pub async fn checkpoint(
    pool: &Pool,
    audit: &AuditConfig,
    snapshot: bool,
) -> Result<ExitCode, Unable> {
    let path = audit.signing_key_file.as_deref().ok_or_else(|| {
        Unable("no signing key: set [audit] signing_key_file (LEDGER_SIGNING_KEY_FILE)".into())
    })?;
    let key = checkpoint::load_signing_key(path)?;
    let mut client = client(pool).await?;
    if !snapshot {
        let taken = checkpoint::take(&client, &key).await?;
        println!("{}", taken.to_json());
        return Ok(ExitCode::SUCCESS);
    }
    let sorted = sorted_for_snapshots(&client, audit).await?;
    // One repeatable-read snapshot: the head signed and the events folded are the same.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await?;
    let taken = snapshot::take(&tx, &key, &bound(&sorted)).await?;
    tx.commit().await?;
    for finding in &taken.findings {
        eprintln!("checkpoint: not used, {finding}");
    }
    match taken.folded {
        Some((after, events)) => eprintln!(
            "checkpoint: snapshot at position {} ({events} events folded after position {after})",
            taken.checkpoint.position
        ),
        None => eprintln!(
            "checkpoint: a snapshot that holds is stored at position {} already: the checkpoint \
             signs no new one",
            taken.checkpoint.position
        ),
    }
    println!("{}", taken.checkpoint.to_json());
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableOrJson {
    Table,
    Json,
}

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
    format: TableOrJson,
    scratch_schema: Option<&str>,
    since_snapshot: Option<&AuditConfig>,
    archives: Option<&Path>,
) -> Result<ExitCode, Unable> {
    let mut client = client(pool).await?;
    let until = as_of.map(parse_point).transpose()?;
    if since_snapshot.is_some() && until.is_some() {
        return Err(Unable(
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
                    return Err(Unable(needed));
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
) -> Result<replay::Folded, Unable> {
    if dropped.is_empty() {
        return Ok(replay::fold(tx, until).await?);
    }
    let started = std::time::Instant::now();
    let live_first = months::live_first(dropped);
    let upto = match until {
        Until::Position(last) => last.min(live_first - 1),
        _ => live_first - 1,
    };
    let mut projection = projections::Projection::default();
    let (mut events, mut last_position, mut stopped) = (0u64, 0i64, false);
    months::feed_dropped(archives, dropped, 0, upto, |row, _| {
        if stopped || matches!(until, Until::Time(time) if row.recorded_at > time) {
            stopped = true;
            return Ok(());
        }
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
    if stopped || last_position < live_first - 1 {
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
fn print_balances(folded: &replay::Folded, format: TableOrJson) {
    let packages: Vec<&Package> = folded.projection.packages.values().collect();
    match format {
        TableOrJson::Json => {
            let body = json!({
                "asOfPosition": folded.last_position,
                "packages": packages.iter().map(|p| balance_json(p)).collect::<Vec<_>>(),
            });
            println!("{body}");
        }
        TableOrJson::Table => {
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
    ExitCode::from(FAILED)
}

pub async fn export(
    pool: &Pool,
    format: Format,
    after: Option<i64>,
    until: Option<&str>,
    archives: Option<&Path>,
) -> Result<ExitCode, Unable> {
    let after = after.unwrap_or(0);
    if after < 0 {
        return Err(Unable(format!("--after {after} is negative")));
    }
    let until = until.map(parse_point).transpose()?.unwrap_or(Until::End);
    if let Until::Position(last) = until {
        if last < after {
            return Err(Unable(format!(
                "--until {last} is before --after {after}: the range is empty"
            )));
        }
    }
    let mut client = client(pool).await?;
    let tx = source::snapshot(&mut client).await?;
    let dropped = months::dropped(&tx).await?;
    let live_first = months::live_first(&dropped);
    let upto = match until {
        Until::Position(last) => last.min(live_first - 1),
        _ => live_first - 1,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    export::write_header(format, &mut out)?;
    let (mut count, mut stopped) = (0u64, false);
    months::feed_dropped(archives, &dropped, after, upto, |row, _| {
        if stopped || matches!(until, Until::Time(time) if row.recorded_at > time) {
            stopped = true;
            return Ok(());
        }
        count += 1;
        let metadata = row.metadata.map(|m| m.0);
        // An archive's line always holds its previous hash.
        let prev_hash: Option<crate::store::hash::Hash> =
            row.prev_hash.and_then(|p| p.try_into().ok());
        export::write_row(row, prev_hash.as_ref(), metadata, format, &mut out)
    })
    .map_err(|error| match error {
        months::FeedError::Each(failed) => Unable(failed.to_string()),
        other => Unable(other.to_string_lossy()),
    })?;
    if !stopped {
        let range = Range {
            after: after.max(live_first - 1),
            until,
        };
        count += export::export_rows(&tx, range, format, &mut out).await?;
    }
    out.flush()?;
    tx.commit().await?;
    eprintln!("export: {count} events");
    Ok(ExitCode::SUCCESS)
}

/// The ledger cut at `time` ([`crate::store::POSITION_AT`]), also where months were dropped: a
/// cut among the dropped months is known from their records when it falls between two of them
/// (the months are cut in China Standard Time, so a report in another zone may cut inside one).
async fn cut_at(
    tx: &tokio_postgres::Transaction<'_>,
    dropped: &[months::DroppedMonth],
    time: DateTime<Utc>,
) -> Result<i64, Unable> {
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
        let starts = month.month.parse::<Month>().map_err(Unable)?.bounds(zone).0;
        if time < starts && before.is_none_or(|b| b.last_recorded_at <= time) {
            return Ok(month.first_position - 1);
        }
        before = Some(month);
    }
    Err(Unable(format!(
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
) -> Result<ExitCode, Unable> {
    let month: Month = month.parse().map_err(Unable)?;
    let zone: FixedOffset = utc_offset
        .parse()
        .map_err(|_| Unable(format!("--utc-offset {utc_offset:?} is not like +08:00")))?;
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
        .map_err(|e| Unable(format!("event at position {}: {e}", row.position)))?;
        if let Err(error) = builder.push(row.position, &event, row.recorded_at) {
            failure.get_or_insert(error.to_string());
        }
        Ok::<(), Unable>(())
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
            Unable(other.to_string_lossy())
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
        return Ok(ExitCode::from(FAILED));
    }
    let report = match builder.finish(default_currency) {
        Ok(report) => report,
        Err(error @ ReportError::Unbalanced(_)) => {
            eprintln!("report: BROKEN {error}");
            return Ok(ExitCode::from(FAILED));
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

/// `archive --month M DIR`: the closed month written to its archive in DIR, signed, read back and
/// checked; prints what it wrote and how fast.
pub async fn archive(
    pool: &Pool,
    audit: &AuditConfig,
    month: &str,
    dir: &Path,
) -> Result<ExitCode, Unable> {
    let month: Month = month.parse().map_err(Unable)?;
    let path = audit.signing_key_file.as_deref().ok_or_else(|| {
        Unable(
            "an archive carries a checkpoint signed at its last event: set [audit] \
             signing_key_file (LEDGER_SIGNING_KEY_FILE)"
                .into(),
        )
    })?;
    let key = checkpoint::load_signing_key(path)?;
    let keyring = keyring(audit)?;
    let mut client = client(pool).await?;
    let written = months::write(&mut client, month, dir, &key, &keyring, Utc::now())
        .await
        .map_err(Unable)?;
    let events = written.header.events as f64;
    println!(
        "archive: wrote {} month={} events={} first_position={} last_position={} bytes={} \
         sha256={} ledger_hash={} write_seconds={:.2} write_events_per_s={:.0} \
         check_seconds={:.2} check_events_per_s={:.0}",
        written.path.display(),
        written.header.month,
        written.header.events,
        written.header.first_position,
        written.header.last_position,
        written.bytes,
        hex::encode(written.checked.file_sha256),
        hex::encode(written.checked.checkpoint.ledger_hash),
        written.write_elapsed.as_secs_f64(),
        events / written.write_elapsed.as_secs_f64().max(1e-9),
        written.check_elapsed.as_secs_f64(),
        events / written.check_elapsed.as_secs_f64().max(1e-9),
    );
    Ok(ExitCode::SUCCESS)
}

/// `archive --drop --month M DIR`: the month's partition dropped, once its archive in DIR holds
/// against the live chain; the drop recorded in `archived_months`.
pub async fn drop_month(
    pool: &Pool,
    audit: &AuditConfig,
    month: &str,
    dir: &Path,
) -> Result<ExitCode, Unable> {
    let month: Month = month.parse().map_err(Unable)?;
    let keyring = keyring(audit)?;
    let mut client = client(pool).await?;
    let newest = keyring
        .sort(checkpoint::stored(&client).await?)
        .newest()
        .map(|found| found.position);
    let dropped = months::drop_month(&mut client, month, dir, &keyring, newest, Utc::now())
        .await
        .map_err(Unable)?;
    println!(
        "archive: dropped {} partition={} events={} stream_heads={} archive={}",
        dropped.month.month,
        dropped.partition,
        dropped.month.last_position - dropped.month.first_position + 1,
        dropped.streams,
        dropped.month.describe()
    );
    Ok(ExitCode::SUCCESS)
}
