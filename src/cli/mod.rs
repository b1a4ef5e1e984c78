//! The command-line edge: `dts-ledger serve` and the operator commands, above the core they call.
//!
//! Every subcommand is one type, in the file beside the code it calls: its fields are its flags
//! (clap), its doc comment its help, and [`Run::run`] what it does, down to the database role it
//! connects as. `commands!` below lists them, in the order `--help` shows them: adding a
//! command is writing its type and adding its line there.
//!
//! - [`serve`]: the service; [`init`]: a ready configuration;
//! - [`database`]: `migrate`, `migrate-partitions`, `stats`, `backup`, `restore`;
//! - [`audit`]: `verify`, `archive`, `keygen`, `checkpoint`, `replay`, `export`, `report`;
//! - [`marketplace`]: callbacks signed as the marketplace signs them, and the refused ones;
//!   [`orders`]: held expiry notices and credentials; [`outbox`]: the webhook entries;
//! - [`output`]: exit codes and listing formats, shared by all.

pub mod audit;
pub mod database;
pub mod init;
pub mod marketplace;
pub mod orders;
pub mod outbox;
pub mod output;
pub mod serve;

use crate::configuration::{Config, DatabaseSettings, Secret};
use crate::database::{Database, Role};
use crate::telemetry::{self, LogFormat};
use clap::{Args, Parser, Subcommand};
use deadpool_postgres::Pool;
use output::CannotRun;
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

/// One subcommand: how it runs, once clap has parsed its flags into the type and the
/// configuration file has been read.
trait Run {
    async fn run(self, cli: &Invocation, config: Config) -> anyhow::Result<ExitCode>;
}

/// Declares the subcommands once: the enum clap parses (each variant named for its type, in the
/// order `--help` lists them) and the dispatch to each type's [`Run::run`], with the configuration
/// read first; a command marked `[unconfigured]` runs without it (`init`, which writes it).
macro_rules! commands {
    ($($variant:ident($command:ty) $([$unconfigured:ident])?,)*) => {
        #[derive(Debug, Subcommand)]
        enum Command {
            $($variant($command),)*
        }

        impl Command {
            async fn run(self, cli: &Invocation) -> anyhow::Result<ExitCode> {
                match self {
                    $(Command::$variant(command) => {
                        commands!(@run command, cli $(, $unconfigured)?)
                    })*
                }
            }
        }
    };
    (@run $command:ident, $cli:ident) => {
        $command.run($cli, $cli.config()?).await
    };
    (@run $command:ident, $cli:ident, unconfigured) => {
        $command.run($cli).await
    };
}

commands! {
    Serve(serve::Serve),
    Init(init::Init) [unconfigured],
    Marketplace(marketplace::Marketplace),
    Orders(orders::Orders),
    Migrate(database::Migrate),
    MigratePartitions(database::MigratePartitions),
    Stats(database::Stats),
    Verify(audit::Verify),
    Archive(audit::Archive),
    Keygen(audit::Keygen),
    Checkpoint(audit::SignCheckpoint),
    Replay(audit::Replay),
    Export(audit::Export),
    Report(audit::Report),
    Backup(database::Backup),
    Restore(database::Restore),
    Outbox(outbox::Outbox),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.common.log_format;
    telemetry::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let invocation = Invocation { common: cli.common };
    match runtime.block_on(cli.command.run(&invocation)) {
        Ok(code) => code,
        Err(error) => {
            // Once: a log line for JSON logs (collected with the rest), plain text otherwise.
            match log_format {
                LogFormat::Json => tracing::error!("{error:#}"),
                LogFormat::Human => eprintln!("error: {error:#}"),
            }
            ExitCode::from(output::CANNOT_RUN)
        }
    }
}

/// The server `owner` (`LEDGER_MIGRATE_DATABASE_URL`) names, reached as the schema's owner for
/// everything: what migrates, and what only the owner may do (`archive --drop`).
fn as_owner(owner: Secret) -> DatabaseSettings {
    DatabaseSettings::External {
        url: owner.clone(),
        migrate_url: Some(owner),
    }
}

/// What a subcommand may ask of the command line it was given: the configuration, where the
/// database is, and a connection with the role it needs.
pub struct Invocation {
    common: CommonArgs,
}

impl Invocation {
    /// The `--config` file, with the environment's overrides.
    fn config(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.common.config.as_deref(), |name| {
            std::env::var(name).ok()
        })?)
    }

    /// The database a command works on: `DATABASE_URL`'s server, or the embedded cluster under
    /// `--data-dir` when it is unset.
    fn database(&self, config: &Config) -> anyhow::Result<DatabaseSettings> {
        self.database_settings(config, false)
    }

    /// As [`Self::database`], for the commands that migrate: `LEDGER_MIGRATE_DATABASE_URL` alone
    /// names their server too.
    fn database_to_migrate(&self, config: &Config) -> anyhow::Result<DatabaseSettings> {
        self.database_settings(config, true)
    }

    /// `LEDGER_MIGRATE_DATABASE_URL` alone names a server too: `migrate` migrates it, and every
    /// other command refuses rather than silently use the embedded cluster instead of the server
    /// the operator named.
    fn database_settings(
        &self,
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
            (None, Some(owner)) if migrating => as_owner(owner),
            (None, Some(_)) => anyhow::bail!(
                "LEDGER_MIGRATE_DATABASE_URL is set but DATABASE_URL is not: this command would \
                 use the embedded cluster under {}, not the server you named. Set DATABASE_URL \
                 to that server (as the role this command needs, docs/operating.md, \"Database roles\"), or \
                 unset LEDGER_MIGRATE_DATABASE_URL to use the embedded cluster",
                self.common.data_dir.display()
            ),
            (None, None) => DatabaseSettings::Embedded {
                dir: self.common.data_dir.clone(),
                wal_archive_dir: config.wal_archive_dir.clone(),
            },
        })
    }

    /// Runs `work` on a pool connected to `settings` as `role`, beside a running `serve` too and
    /// never migrating, then closes it. The audits read only (a replica will do); what writes
    /// takes the service's rights or, for the schema's own changes, the owner's.
    async fn on_database(
        &self,
        settings: &DatabaseSettings,
        role: Role,
        work: impl AsyncFnOnce(&Pool) -> Result<ExitCode, CannotRun>,
    ) -> anyhow::Result<ExitCode> {
        let database = Database::open_as(settings, role).await?;
        let outcome = work(&database.pool).await;
        database.close().await;
        outcome.map_err(|CannotRun(message)| anyhow::anyhow!(message))
    }
}
