//! `dts-ledger verify`: the ledger's hash chains, versions and positions checked, against the
//! checkpoints a trusted key signed, a checkpoint line kept outside, and the archives of dropped
//! months; the first bad event named.

use super::bound;
use crate::audit::archive;
use crate::audit::checkpoint::{self, Keyring};
use crate::audit::months;
use crate::audit::snapshot;
use crate::audit::source::{self};
use crate::audit::trust::{external_checkpoint, keyring};
use crate::audit::verify::{self, Mark, Since, Verifier, VerifyError};
use crate::cli::output::{self, client, CannotRun};
use crate::cli::{Invocation, Run};
use crate::configuration::{AuditConfig, Config};
use crate::database::Role;
use clap::Args;
use deadpool_postgres::Pool;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `dts-ledger verify`, holding the ledger against what `options` names.
pub async fn verify(
    pool: &Pool,
    audit: &AuditConfig,
    options: &Verify,
) -> Result<ExitCode, CannotRun> {
    let keyring = keyring(audit)?;
    let external = options
        .checkpoint
        .as_deref()
        .map(|path| external_checkpoint(path, &keyring).map(|c| (path, c)))
        .transpose()?;
    if options.since_checkpoint && keyring.is_empty() {
        return Err(CannotRun(
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
    let start = match (since, options.archives.as_deref()) {
        (Some(since), _) => verify::Start::Since(since, marks),
        (None, Some(dir)) => {
            if keyring.is_empty() {
                return Err(CannotRun(
                    "--archives: an archive's checkpoint is trusted through its signature: no \
                     public key ([audit] public_keys)"
                        .into(),
                ));
            }
            let started = std::time::Instant::now();
            match feed_archives(dir, &dropped, &keyring, Verifier::new(marks))? {
                Archives::Whole {
                    verifier,
                    archives,
                    archived,
                } => {
                    let seconds = started.elapsed().as_secs_f64();
                    eprintln!(
                        "verify: archives={archives} archived_events={archived} \
                         seconds={seconds:.2} events_per_s={:.0}",
                        archived as f64 / seconds.max(1e-9)
                    );
                    verify::Start::Fed(verifier)
                }
                Archives::Broken(broken) => {
                    println!("verify: BROKEN {broken}");
                    return Ok(ExitCode::from(output::FAILED));
                }
            }
        }
        (None, None) => {
            if let Some(needed) = months::needed(&dropped, 0) {
                return Err(CannotRun(format!(
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
            return Ok(ExitCode::from(output::FAILED));
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
        return Ok(ExitCode::from(output::FAILED));
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
/// verifier, standing before the first event still in the database, how many archives and how
/// many archived events it checked, or what is broken.
fn feed_archives(
    dir: &Path,
    dropped: &[months::DroppedMonth],
    keyring: &Keyring,
    mut verifier: Verifier,
) -> Result<Archives, CannotRun> {
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
    let paths = archive::list(dir)?;
    let archives = paths.len();
    for path in paths {
        let name = path.display().to_string();
        let header = match archive::Reader::open(&path) {
            Ok(reader) => reader.header,
            Err(error) => return Ok(Archives::Broken(error.to_string())),
        };
        let after = match &previous {
            Some(previous) => format!("between {previous} and {name}"),
            None => format!("before {name}"),
        };
        if header.first_position > expected && expected < live_first {
            return Ok(Archives::Broken(left_out(
                expected,
                (header.first_position - 1).min(live_first - 1),
                &after,
            )));
        }
        if header.first_position < expected {
            return Ok(Archives::Broken(format!(
                "archive {name}: reordered: it starts at position {}, which {} holds already",
                header.first_position,
                previous.as_deref().unwrap_or("the ledger")
            )));
        }
        if let Some(record) = dropped.iter().find(|m| m.month == header.month) {
            let digest = archive::file_sha256(&path)?;
            if digest != record.file_sha256 {
                return Ok(Archives::Broken(format!(
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
            Err(Fed::Broken(broken)) => return Ok(Archives::Broken(broken)),
            Err(Fed::Archive(error)) => return Ok(Archives::Broken(error.to_string())),
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
        return Ok(Archives::Broken(left_out(expected, live_first - 1, &after)));
    }
    Ok(Archives::Whole {
        verifier,
        archives,
        archived,
    })
}

/// What the archives given to `verify --archives` hold up to the database.
enum Archives {
    /// Each whole, signed, in its place: the verifier standing after them, how many archives it
    /// read and how many archived events it checked.
    Whole {
        verifier: Verifier,
        archives: usize,
        archived: u64,
    },
    /// What is broken or left out.
    Broken(String),
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

/// Check the ledger's hash chains, versions, positions, checkpoints and snapshots; name the first
/// bad event.
#[derive(Debug, Args)]
pub struct Verify {
    /// Print progress to stderr every this many events (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    progress_every: u64,
    /// Also hold the ledger against this checkpoint line, kept outside the database.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Check only what follows the newest stored checkpoint a trusted key signed.
    #[arg(long)]
    since_checkpoint: bool,
    /// The archives of closed months: checked with the live ledger as one chain.
    #[arg(long, value_name = "DIR", conflicts_with = "since_checkpoint")]
    archives: Option<PathBuf>,
}

impl Run for Verify {
    /// Reads only: a replica will do.
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        cli.on_database(&cli.database(&config)?, Role::Reader, async |pool| {
            verify(pool, &config.audit, &self).await
        })
        .await
    }
}
