//! `dts-ledger serve`: the service, on its database, once the ledger holds the trusted checkpoint.

use super::{Invocation, Run};
use crate::audit::restore_proof::{self, Standing};
use crate::configuration::{Config, DatabaseSettings};
use crate::database::embedded::Durability;
use crate::database::Database;
use crate::domain::restore::Reason;
use crate::http::startup::{Application, ServerOptions};
use anyhow::Context;
use clap::Args;
use std::process::ExitCode;

/// Serve the HTTP API (marketplace callbacks, tasks, traffic, reads).
#[derive(Debug, Args)]
pub struct Serve {
    /// Address to listen on.
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "LEDGER_WORKERS")]
    workers: Option<usize>,
    /// Serve a ledger that is behind [audit] trusted_checkpoint_file (a restore lost
    /// acknowledged events), for this reason: recorded in the ledger, once per checkpoint.
    #[arg(long, value_name = "REASON", value_parser = Reason::parse)]
    accept_restore_loss: Option<Reason>,
}

impl Run for Serve {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode> {
        let settings = cli.database(&config)?;
        serve(self, config, settings).await?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn serve(args: Serve, config: Config, settings: DatabaseSettings) -> anyhow::Result<()> {
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
    accept: Option<&Reason>,
) -> anyhow::Result<()> {
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
