//! The `dts-ledger` command line: `serve` and the operator commands.

use crate::audit::commands::{self, ReportFormat, TableOrJson};
use crate::audit::export::Format as ExportFormat;
use crate::configuration::{Config, DatabaseSettings, Secret};
use crate::database::embedded::Durability;
use crate::database::Database;
use crate::startup::{Application, ServerOptions};
use crate::telemetry::{self, LogFormat};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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

/// Settings shared by every subcommand. `DATABASE_URL` is read from the environment only (it may
/// hold a password, and flags show up in process listings).
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
    /// Apply the database schema and exit.
    Migrate,
    /// Check the ledger's hash chains, versions, positions and checkpoints; name the first bad
    /// event.
    Verify {
        /// Print progress to stderr every this many events (0: never).
        #[arg(long, default_value_t = 1_000_000)]
        progress_every: u64,
        /// Also hold the ledger against this checkpoint line, kept outside the database.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Check only what follows the newest stored checkpoint whose signature holds.
        #[arg(long)]
        since_checkpoint: bool,
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
        /// Fold only what follows the newest snapshot stored at a checkpoint whose signature
        /// holds.
        #[arg(long)]
        since_snapshot: bool,
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
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "LEDGER_WORKERS")]
    workers: Option<usize>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.common.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::from(commands::UNABLE)
        }
    }
}

fn database_settings(common: &CommonArgs) -> DatabaseSettings {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => DatabaseSettings::External(Secret::new(url)),
        _ => DatabaseSettings::Embedded(common.data_dir.clone()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.common.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    let database_settings = database_settings(&cli.common);
    let audit = match cli.command {
        Command::Serve(args) => {
            serve(args, config, database_settings).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Migrate => {
            let database = Database::open(&database_settings, 1, Durability::Durable).await?;
            database.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Keygen { file } => {
            return commands::keygen(&file)
                .map_err(|commands::Unable(message)| anyhow::anyhow!(message));
        }
        Command::Checkpoint { snapshot } => {
            // Appends to `checkpoints`: the service's connection, not the audits' read-only one.
            let database = Database::open(&database_settings, 1, Durability::Durable).await?;
            let outcome = commands::checkpoint(&database.pool, &config.audit, snapshot).await;
            database.close().await;
            return outcome.map_err(|commands::Unable(message)| anyhow::anyhow!(message));
        }
        audit => audit,
    };
    // The audit commands read only (a replica will do) and never migrate.
    let database = Database::open_for_reading(&database_settings).await?;
    let pool = &database.pool;
    let outcome = match audit {
        Command::Verify {
            progress_every,
            checkpoint,
            since_checkpoint,
        } => {
            let options = commands::VerifyOptions {
                progress_every,
                checkpoint_file: checkpoint.as_deref(),
                since_checkpoint,
            };
            commands::verify(pool, &config.audit, options).await
        }
        Command::Replay {
            as_of,
            format,
            scratch_schema,
            since_snapshot,
        } => {
            let since = since_snapshot.then_some(&config.audit);
            commands::replay(
                pool,
                as_of.as_deref(),
                format,
                scratch_schema.as_deref(),
                since,
            )
            .await
        }
        Command::Export {
            format,
            after,
            until,
        } => commands::export(pool, format, after, until.as_deref()).await,
        Command::Report {
            month,
            format,
            utc_offset,
        } => {
            let currency = config
                .catalog
                .iter()
                .next()
                .map_or("CNY".to_owned(), |sku| sku.currency.clone());
            commands::report(pool, &month, format, &utc_offset, &currency).await
        }
        Command::Serve(_)
        | Command::Migrate
        | Command::Keygen { .. }
        | Command::Checkpoint { .. } => {
            unreachable!("handled above")
        }
    };
    database.close().await;
    match outcome {
        Ok(code) => Ok(code),
        Err(commands::Unable(message)) => Err(anyhow::anyhow!(message)),
    }
}

async fn serve(args: ServeArgs, config: Config, settings: DatabaseSettings) -> anyhow::Result<()> {
    log_config(&config);
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    match &settings {
        DatabaseSettings::External(_) => {
            tracing::info!("using the PostgreSQL server of DATABASE_URL")
        }
        DatabaseSettings::Embedded(dir) => {
            tracing::info!(data_dir = %dir.display(), "using the embedded PostgreSQL")
        }
    }
    if let Some(path) = &config.audit.signing_key_file {
        // Refuse to start rather than run without the checkpoints the operator asked for.
        crate::audit::checkpoint::load_signing_key(path)?;
    }
    let database = Database::open(&settings, config.pool_size, Durability::Durable).await?;
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
             marketplace callback will be refused"
        );
    }
}
