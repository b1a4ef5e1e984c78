//! The command-line edge: `dts-ledger serve` and the operator commands, above the core they call.
//!
//! - this file: the commands and their flags (clap), and which database role each one needs;
//! - [`audit`]: verify, replay, export, report, checkpoint, archive, keygen; [`outbox`]: the
//!   webhook entries; [`reconciliation`]: refused callbacks and held expiry notices;
//!   [`marketplace`]: callbacks signed as the marketplace signs them; [`init`]: a ready
//!   configuration.

pub mod audit;
pub mod init;
pub mod marketplace;
pub mod outbox;
pub mod reconciliation;

use crate::audit::export::Format as ExportFormat;
use crate::configuration::{Config, DatabaseSettings, Secret};
use crate::database::embedded::Durability;
use crate::database::{Database, Role};
use crate::http::startup::{Application, ServerOptions};
use crate::telemetry::{self, LogFormat};
use anyhow::Context;
use audit::{ReportFormat, TableOrJson};
use clap::{Args, Parser, Subcommand};
use outbox::RetryTarget;
use projections::events::ExpiryReason;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "dts-ledger",
    version,
    about = "Billing ledger for DTS traffic packages"
)]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Settings shared by every subcommand. `DATABASE_URL` and `LEDGER_MIGRATE_DATABASE_URL` are read
/// from the environment only (they may hold a password, and flags show up in process listings).
#[derive(Debug, Args)]
struct CommonArgs {
    /// TOML configuration file (marketplace key, SKU catalog, ...).
    #[arg(long, env = "LEDGER_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory of the embedded PostgreSQL cluster, used when DATABASE_URL is not set.
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Log format on stderr.
    #[arg(
        long,
        env = "LEDGER_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (marketplace callbacks, tasks, traffic, reads).
    Serve(ServeArgs),
    /// Write a ready configuration (fresh secrets, the built-in catalog) and say what to run next.
    Init {
        /// The directory to write dts-ledger.toml in (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Sign a marketplace callback as the marketplace does (with the configured key), send it to a
    /// running service and print the reply; `verify` prints a console sign-in link instead;
    /// `refused` lists the callbacks refused and not resolved since.
    Marketplace(MarketplaceArgs),
    /// Packages the marketplace said expired while their expiresAt was ahead: list the held
    /// notices, or apply one.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// Apply the database schema as its owner (LEDGER_MIGRATE_DATABASE_URL, else DATABASE_URL)
    /// and exit.
    Migrate,
    /// Move a ledger written before the monthly partitions to them, as the schema's owner (the
    /// credentials of `migrate`), while the service goes on; print what it cost.
    MigratePartitions,
    /// Where the ledger's bytes are: heap, TOAST and every index of `events` (all partitions),
    /// `stream_heads` and `idempotency_keys`, in bytes and per event.
    Stats,
    /// Check the ledger's hash chains, versions, positions, checkpoints and snapshots; name the
    /// first bad event.
    Verify {
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
    },
    /// Write a closed month (China Standard Time) to DIR/ledger-YYYY-MM.jsonl.zst, signed and
    /// checked; with --drop, drop the month's partition once that archive holds against the live
    /// chain (as the owner).
    Archive {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// Drop the month's partition (its archive must be in DIR).
        #[arg(long)]
        drop: bool,
        /// The directory of the archives.
        dir: PathBuf,
    },
    /// Write a new Ed25519 signing key to FILE (mode 0600, never overwritten); print its public
    /// key.
    Keygen { file: PathBuf },
    /// Sign the ledger head with [audit] signing_key_file, store the checkpoint, print it as one
    /// JSON line.
    Checkpoint {
        /// Also store the projections at the checkpoint, for `replay --since-snapshot`.
        #[arg(long)]
        snapshot: bool,
    },
    /// Fold the ledger from scratch and compare with the live projections; or, with --as-of,
    /// print every package's balance at that point.
    Replay {
        /// A position, or an RFC 3339 time: print balances as of then instead of comparing.
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: TableOrJson,
        /// Also write the replayed projections into this new schema, for SQL inspection.
        #[arg(long)]
        scratch_schema: Option<String>,
        /// Fold only what follows the newest snapshot whose rows hash to the digest a trusted
        /// checkpoint signed.
        #[arg(long)]
        since_snapshot: bool,
        /// The archives of the months dropped from the database.
        #[arg(long, value_name = "DIR")]
        archives: Option<PathBuf>,
    },
    /// Write the raw ledger to stdout, one row per event.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only events after this position.
        #[arg(long)]
        after: Option<i64>,
        /// Only events up to this position or RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// The archives of the months dropped from the database.
        #[arg(long, value_name = "DIR")]
        archives: Option<PathBuf>,
    },
    /// Monthly usage and revenue, per package and in total.
    Report {
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
        /// The time zone months are cut in.
        #[arg(long, default_value = "+08:00")]
        utc_offset: String,
        /// The archives of the months dropped from the database.
        #[arg(long, value_name = "DIR")]
        archives: Option<PathBuf>,
    },
    /// Take an online base backup of the embedded cluster into DIR (new or empty), with the WAL
    /// it needs, while `serve` runs or not; then verify it.
    Backup {
        /// Where the backup goes: a new or empty directory.
        dir: PathBuf,
    },
    /// Make the data directory (--data-dir, missing or empty) from a backup DIR, never over an
    /// existing one; with --to, replay the WAL archive up to that time.
    Restore {
        /// A directory `dts-ledger backup` wrote.
        backup: PathBuf,
        /// An RFC 3339 time: recover up to it from [database] wal_archive_dir.
        #[arg(long, value_parser = parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Webhook entries not yet delivered: list them, or queue dead letters again.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
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
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: TableOrJson,
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

#[derive(Debug, Subcommand)]
enum OrdersCommand {
    /// Expiry notices held while a package's expiresAt was ahead (after a refund, or a stale
    /// notice), not settled since by an expiry or a release; oldest first.
    Held {
        /// Only notices after this ledger position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: TableOrJson,
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

fn parse_time(value: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|time| time.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{value:?} is not an RFC 3339 time (2026-12-01T08:00:00Z)"))
}

fn parse_reason(value: &str) -> Result<crate::domain::restore::Reason, String> {
    crate::domain::restore::Reason::parse(value)
}

fn parse_expiry_reason(value: &str) -> Result<ExpiryReason, String> {
    ExpiryReason::parse(value).ok_or_else(|| format!("{value:?} is not a reason: use refund"))
}

#[derive(Debug, Subcommand)]
enum MarketplaceList {
    /// Callbacks refused after their token held and not resolved by a later success (a paid
    /// order not provisioned yet, say), oldest first.
    Refused {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: TableOrJson,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct MarketplaceArgs {
    #[command(subcommand)]
    list: Option<MarketplaceList>,
    /// createInstance, renewInstance, upgradeInstance, dilateInstance, expiredInstance,
    /// releaseInstance or verify.
    #[arg(required = true)]
    action: Option<String>,
    /// A callback parameter, e.g. --param skuId=FW_GOODS-500232-1 (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Shorthand for --param instanceId=ID.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// The running service.
    #[arg(long, env = "LEDGER_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "LEDGER_WORKERS")]
    workers: Option<usize>,
    /// Serve a ledger that is behind [audit] trusted_checkpoint_file (a restore lost
    /// acknowledged events), for this reason: recorded in the ledger, once per checkpoint.
    #[arg(long, value_name = "REASON", value_parser = parse_reason)]
    accept_restore_loss: Option<crate::domain::restore::Reason>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.common.log_format;
    telemetry::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            // Once: a log line for JSON logs (collected with the rest), plain text otherwise.
            match log_format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Human => eprintln!("error: {error:#}"),
            }
            ExitCode::from(audit::UNABLE)
        }
    }
}

/// The database a command works on: `DATABASE_URL`'s server, or the embedded cluster under
/// `--data-dir` when it is unset. `LEDGER_MIGRATE_DATABASE_URL` alone names a server too: `migrate`
/// migrates it, and every other command refuses rather than silently use the embedded cluster
/// instead of the server the operator named.
fn database_settings(
    common: &CommonArgs,
    config: &Config,
    migrating: bool,
) -> anyhow::Result<DatabaseSettings> {
    let set = |name| std::env::var(name).ok().filter(|url| !url.is_empty());
    let migrate_url = set("LEDGER_MIGRATE_DATABASE_URL").map(Secret::new);
    Ok(match (set("DATABASE_URL"), migrate_url) {
        (Some(url), migrate_url) => DatabaseSettings::External {
            url: Secret::new(url),
            migrate_url,
        },
        (None, Some(owner)) if migrating => DatabaseSettings::External {
            url: owner.clone(),
            migrate_url: Some(owner),
        },
        (None, Some(_)) => anyhow::bail!(
            "LEDGER_MIGRATE_DATABASE_URL is set but DATABASE_URL is not: this command would use \
             the embedded cluster under {}, not the server you named. Set DATABASE_URL to that \
             server (as the role this command needs, README \"Database roles\"), or unset \
             LEDGER_MIGRATE_DATABASE_URL to use the embedded cluster",
            common.data_dir.display()
        ),
        (None, None) => DatabaseSettings::Embedded {
            dir: common.data_dir.clone(),
            wal_archive_dir: config.wal_archive_dir.clone(),
        },
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `init` writes the configuration the other commands read, so it cannot need one.
    if let Command::Init { dir } = &cli.command {
        let written = init::write_config(dir)?;
        print!("{}", init::next_steps(&written, &dir.join("data")));
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(cli.common.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    let migrating = matches!(cli.command, Command::Migrate | Command::MigratePartitions);
    let common = &cli.common;
    let settings = || database_settings(common, &config, migrating);
    match cli.command {
        Command::Serve(args) => {
            let settings = settings()?;
            serve(args, config, settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Marketplace(MarketplaceArgs {
            list: Some(list), ..
        }) => {
            let database = Database::open_as(&settings()?, Role::Reader).await?;
            let MarketplaceList::Refused { limit, format } = list;
            let outcome = reconciliation::refused(&database.pool, limit, format).await;
            database.close().await;
            outcome.map_err(|audit::Unable(message)| anyhow::anyhow!(message))
        }
        Command::Marketplace(args) => marketplace(args, &config).await,
        Command::Migrate => {
            let applied = Database::migrate(&settings()?).await?;
            tracing::info!(?applied, "the database schema is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::MigratePartitions => {
            let moved = Database::as_owner(&settings()?, |mut client| async move {
                let progress = |line| eprintln!("{line}");
                Ok(crate::store::partition_move::move_to_partitions(&mut client, progress).await?)
            })
            .await?;
            match moved {
                None => println!("the ledger is partitioned already: nothing to move"),
                Some(moved) => println!(
                    "moved {} events to monthly partitions in {:.1} s ({:.0} events/s); appends \
                     waited on the lock for {:.0} ms ({} events copied under it)",
                    moved.events,
                    moved.elapsed.as_secs_f64(),
                    moved.events_per_s(),
                    moved.lock_held.as_secs_f64() * 1000.0,
                    moved.events_under_lock
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { dir } => backup(&settings()?, &dir),
        Command::Restore { backup, to } => restore(&settings()?, &backup, to).await,
        Command::Keygen { file } => {
            audit::keygen(&file).map_err(|audit::Unable(message)| anyhow::anyhow!(message))
        }
        command => on_database(command, &config, &settings()?).await,
    }
}

/// The commands that work on a running or stopped database without serving: each connects with
/// the least role it needs, beside a running `serve` too, and never migrates.
async fn on_database(
    command: Command,
    config: &Config,
    settings: &DatabaseSettings,
) -> anyhow::Result<ExitCode> {
    // The audits read only (a replica will do); a scratch schema needs CREATE on the database;
    // `checkpoint` appends to `checkpoints` and `outbox` writes only its own table, with the
    // service's rights.
    let role = match &command {
        Command::Replay {
            scratch_schema: Some(_),
            ..
        }
        | Command::Archive { drop: true, .. } => Role::Owner,
        Command::Checkpoint { .. }
        | Command::Outbox { .. }
        | Command::Orders {
            command: OrdersCommand::Expire { .. } | OrdersCommand::RotateCredential { .. },
        } => Role::Service,
        _ => Role::Reader,
    };
    // Dropping a month is the owner's: the owner's URL when one is set apart for migrations.
    let owner_settings;
    let settings = match (&command, settings) {
        (
            Command::Archive { drop: true, .. },
            DatabaseSettings::External {
                migrate_url: Some(owner),
                ..
            },
        ) => {
            owner_settings = DatabaseSettings::External {
                url: owner.clone(),
                migrate_url: Some(owner.clone()),
            };
            &owner_settings
        }
        _ => settings,
    };
    let database = Database::open_as(settings, role).await?;
    let outcome = database_command(command, &database.pool, config).await;
    database.close().await;
    outcome.map_err(|audit::Unable(message)| anyhow::anyhow!(message))
}

/// `dts-ledger stats`: one line per relation, its bytes and bytes per event, then the total.
async fn stats(pool: &deadpool_postgres::Pool) -> Result<ExitCode, audit::Unable> {
    let unable = |error: tokio_postgres::Error| {
        audit::Unable(format!("stats: {}", crate::store::describe(&error)))
    };
    let client = pool
        .get()
        .await
        .map_err(|error| audit::Unable(crate::database::pool_failure(&error)))?;
    let client: &tokio_postgres::Client = &client;
    let events = crate::store::partitions::events(client)
        .await
        .map_err(unable)?;
    let relations = crate::store::partitions::storage(client)
        .await
        .map_err(unable)?;
    let per_event = |bytes: i64| bytes as f64 / events.max(1) as f64;
    println!("events {events}");
    let mut total = 0;
    for relation in &relations {
        total += relation.bytes;
        println!(
            "{:<5} {:<40} {:>14} bytes {:>8.1} per event",
            relation.kind,
            relation.name,
            relation.bytes,
            per_event(relation.bytes)
        );
    }
    println!(
        "total {:<40} {:>14} bytes {:>8.1} per event",
        "",
        total,
        per_event(total)
    );
    Ok(ExitCode::SUCCESS)
}

/// One dispatch over the commands that read or write through `pool`: one arm per command.
async fn database_command(
    command: Command,
    pool: &deadpool_postgres::Pool,
    config: &Config,
) -> Result<ExitCode, audit::Unable> {
    match command {
        Command::Checkpoint { snapshot } => audit::checkpoint(pool, &config.audit, snapshot).await,
        Command::Archive {
            month,
            drop: false,
            dir,
        } => audit::archive(pool, &config.audit, &month, &dir).await,
        Command::Archive {
            month,
            drop: true,
            dir,
        } => audit::drop_month(pool, &config.audit, &month, &dir).await,
        Command::Verify {
            progress_every,
            checkpoint,
            since_checkpoint,
            archives,
        } => {
            let options = audit::VerifyOptions {
                progress_every,
                checkpoint_file: checkpoint.as_deref(),
                since_checkpoint,
                archives: archives.as_deref(),
            };
            audit::verify(pool, &config.audit, options).await
        }
        Command::Replay {
            as_of,
            format,
            scratch_schema,
            since_snapshot,
            archives,
        } => {
            let since = since_snapshot.then_some(&config.audit);
            audit::replay(
                pool,
                as_of.as_deref(),
                format,
                scratch_schema.as_deref(),
                since,
                archives.as_deref(),
            )
            .await
        }
        Command::Export {
            format,
            after,
            until,
            archives,
        } => audit::export(pool, format, after, until.as_deref(), archives.as_deref()).await,
        Command::Report {
            month,
            format,
            utc_offset,
            archives,
        } => {
            let currency = config
                .catalog
                .iter()
                .next()
                .map_or("CNY".to_owned(), |sku| sku.currency.clone());
            audit::report(
                pool,
                &month,
                format,
                &utc_offset,
                &currency,
                archives.as_deref(),
            )
            .await
        }
        Command::Stats => stats(pool).await,
        Command::Orders { command } => match command {
            OrdersCommand::Held {
                after,
                limit,
                format,
            } => reconciliation::held(pool, after, limit, format).await,
            OrdersCommand::Expire { instance, reason } => {
                let ledger = crate::ledger::Ledger {
                    pool: pool.clone(),
                    outbox: config.webhook.is_some(),
                };
                reconciliation::expire(&ledger, &instance, reason).await
            }
            OrdersCommand::RotateCredential { instance } => {
                let ledger = crate::ledger::Ledger {
                    pool: pool.clone(),
                    outbox: config.webhook.is_some(),
                };
                reconciliation::rotate_credential(&ledger, config, &instance).await
            }
        },
        Command::Outbox { command } => match command {
            OutboxCommand::List {
                dead,
                after,
                limit,
                format,
            } => outbox::list(pool, dead, after, limit, format).await,
            OutboxCommand::Retry {
                position: Some(position),
                ..
            } => outbox::retry(pool, RetryTarget::One(position)).await,
            OutboxCommand::Retry { position: None, .. } => {
                outbox::retry(pool, RetryTarget::AllDead).await
            }
        },
        other => unreachable!("{other:?} is run elsewhere"),
    }
}

async fn serve(args: ServeArgs, config: Config, settings: DatabaseSettings) -> anyhow::Result<()> {
    log_config(&config);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    match &settings {
        DatabaseSettings::External { .. } => {
            tracing::info!("using the PostgreSQL server of DATABASE_URL")
        }
        DatabaseSettings::Embedded { dir, .. } => {
            tracing::info!(data_dir = %dir.display(), "using the embedded PostgreSQL")
        }
    }
    if let Some(path) = &config.audit.signing_key_file {
        // Refuse to start rather than run without the checkpoints the operator asked for.
        crate::audit::checkpoint::load_signing_key(path)?;
    }
    let database = Database::open(&settings, config.pool_size, Durability::Durable).await?;
    if let Err(error) = prove_restore(&database, &config, args.accept_restore_loss.as_ref()).await {
        database.close().await;
        return Err(error);
    }
    let app = Application::build(
        ServerOptions {
            listener,
            workers: args.workers,
            handle_signals: true,
        },
        database.pool.clone(),
        config,
    );
    let app = match app {
        Ok(app) => app,
        Err(error) => {
            database.close().await;
            return Err(error).context("cannot start the HTTP server");
        }
    };
    tracing::info!(address = %args.listen, port = app.port(), "serving");
    let served = app.run_until_stopped().await;
    tracing::info!("HTTP server stopped; closing the database");
    database.close().await;
    served.context("the HTTP server failed")
}

/// Holds the ledger against `[audit] trusted_checkpoint_file` before it takes any traffic (see
/// [`crate::audit::restore_proof`]): a ledger behind it is refused, unless the operator accepts
/// the loss, which is recorded once.
async fn prove_restore(
    database: &Database,
    config: &Config,
    accept: Option<&crate::domain::restore::Reason>,
) -> anyhow::Result<()> {
    use crate::audit::restore_proof::{self, Standing};
    let standing = restore_proof::check(&database.pool, &config.audit).await?;
    match standing {
        Standing::Unchecked => {
            if accept.is_some() {
                tracing::warn!(
                    "--accept-restore-loss given without [audit] trusted_checkpoint_file: there \
                    is nothing to accept"
                );
            }
        }
        Standing::Holds { position } => {
            tracing::info!(
                position,
                "the ledger holds the trusted checkpoint kept outside the database"
            );
            if accept.is_some() {
                tracing::warn!(
                    "--accept-restore-loss given, but the ledger holds the trusted checkpoint: \
                    nothing was lost, nothing is recorded"
                );
            }
        }
        Standing::Accepted { loss, position } => tracing::warn!(
            accepted_at_position = position,
            "serving a ledger behind the trusted checkpoint, as an operator accepted: {loss}"
        ),
        Standing::Behind(loss) => {
            let Some(reason) = accept else {
                anyhow::bail!(
                    "refusing to serve: {loss}. Recover the missing events (a later backup, the \
                    WAL archive replayed further) or, to serve this ledger anyway, start once \
                    with --accept-restore-loss \"<why>\", which records the decision in the \
                    ledger"
                );
            };
            let position = restore_proof::accept(&database.pool, config, &loss, reason).await?;
            tracing::warn!(
                position,
                reason = reason.as_str(),
                "recorded LedgerRestoreAccepted: serving a ledger behind the trusted \
                checkpoint: {loss}"
            );
        }
    }
    Ok(())
}

/// `dts-ledger backup DIR`: the embedded cluster only; a server of one's own is backed up with
/// pgBackRest (docs/pgbackrest).
fn backup(settings: &DatabaseSettings, dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let DatabaseSettings::Embedded {
        dir: root,
        wal_archive_dir,
    } = settings
    else {
        anyhow::bail!(
            "backup works on the embedded cluster; with DATABASE_URL, back the server up with \
             its own tools (pgBackRest: see docs/pgbackrest/ and the README, \"Backups and \
             restore\")"
        );
    };
    let done = crate::database::backup::backup(root, wal_archive_dir.as_deref(), dir)?;
    println!(
        "backup: verified dir={} bytes={} seconds={:.2}",
        done.dir.display(),
        done.bytes,
        done.seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// `dts-ledger restore DIR [--to TIME]` into `--data-dir`.
async fn restore(
    settings: &DatabaseSettings,
    from: &std::path::Path,
    to: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<ExitCode> {
    let DatabaseSettings::Embedded {
        dir: root,
        wal_archive_dir,
    } = settings
    else {
        anyhow::bail!(
            "restore makes an embedded cluster's data directory; with DATABASE_URL, restore the \
             server with its own tools (pgBackRest: see docs/pgbackrest/)"
        );
    };
    let read_head = async |client: &tokio_postgres::Client| {
        let head = crate::store::head(client).await?;
        Ok((head.position, head.recorded_at))
    };
    let done =
        crate::database::backup::restore(from, root, to, wal_archive_dir.as_deref(), read_head)
            .await?;
    println!(
        "restore: done data_dir={} last_position={} last_recorded_at={} seconds={:.2}",
        done.data_dir.display(),
        done.head_position,
        done.head_recorded_at.map_or_else(
            || "none".to_owned(),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        done.seconds
    );
    Ok(ExitCode::SUCCESS)
}

/// `dts-ledger marketplace`: exit 0 when the service did it, 1 when it refused, 2 when it could not
/// be asked.
async fn marketplace(args: MarketplaceArgs, config: &Config) -> anyhow::Result<ExitCode> {
    use crate::cli::marketplace::{self as client, Callback};
    let key = config.marketplace_key.as_ref().context(
        "no marketplace key to sign with: set [marketplace] key in the --config file (or \
         LEDGER_MARKETPLACE_KEY); `dts-ledger init` writes a configuration with one",
    )?;
    let action = args.action.context("a marketplace action is required")?;
    if action == "verify" {
        let instance = args
            .instance
            .as_deref()
            .context("verify needs --instance ID")?;
        let link = Callback::sign_in(instance, chrono::Utc::now()).url(&args.url, key);
        println!("{link}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut callback = Callback::parse(&action, &args.params)?;
    if let Some(instance) = &args.instance {
        callback.set("instanceId", instance)?;
    }
    // The error names the service, never the signed URL (see `client::send`).
    let reply = client::send(&callback, &args.url, key)
        .await
        .with_context(|| format!("cannot reach the service at {}", args.url))?;
    eprintln!("{} answered {}", callback.action(), reply.status);
    println!("{}", reply.body);
    Ok(if reply.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(audit::FAILED)
    })
}

fn log_config(config: &Config) {
    if config.catalog_is_built_in {
        tracing::info!("no [[sku]] configured: using the built-in catalog");
    }
    for sku in config.catalog.iter() {
        tracing::info!(
            sku = %sku.id,
            name = %sku.name,
            bytes = sku.bytes.get(),
            price = %sku.price,
            currency = %sku.currency,
            "catalog"
        );
    }
    if config.marketplace_key.is_none() {
        tracing::error!(
            "NO MARKETPLACE KEY CONFIGURED ([marketplace] key or LEDGER_MARKETPLACE_KEY): every \
             marketplace callback will be refused. To try the service, run `dts-ledger init` and \
             start again with `--config dts-ledger.toml`"
        );
    }
}
