//! The `dts-ledger` command line: `serve` and the operator commands.

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
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn database_settings(common: &CommonArgs) -> DatabaseSettings {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => DatabaseSettings::External(Secret::new(url)),
        _ => DatabaseSettings::Embedded(common.data_dir.clone()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.common.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    let database_settings = database_settings(&cli.common);
    match cli.command {
        Command::Serve(args) => serve(args, config, database_settings).await,
        Command::Migrate => {
            let database = Database::open(&database_settings, 1, Durability::Durable).await?;
            database.close().await;
            Ok(())
        }
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
