//! The connection to PostgreSQL: an external server (`DATABASE_URL`) or an embedded cluster.

pub mod embedded;
pub mod migrate;
pub mod roles;

use crate::configuration::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use embedded::{Durability, EmbeddedPostgres};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Config, NoTls};

/// How long a request waits for a pooled connection, or for a new one to be made, before it is
/// answered 503: long enough to ride out a burst, short enough that a client retries elsewhere.
pub const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("DATABASE_URL is not a valid PostgreSQL connection string")]
    BadUrl,
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("cannot reach PostgreSQL: {0}")]
    Connect(tokio_postgres::Error),
    #[error("cannot prepare the database: {0}")]
    Prepare(tokio_postgres::Error),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("LEDGER_MIGRATE_DATABASE_URL is not a valid PostgreSQL connection string")]
    BadMigrateUrl,
    #[error(
        "the database schema is at version {found}, this binary needs {latest}, and DATABASE_URL \
         may not migrate: run `dts-ledger migrate` with LEDGER_MIGRATE_DATABASE_URL set to the \
         owner's connection, or give serve LEDGER_MIGRATE_DATABASE_URL as well"
    )]
    SchemaBehind { found: i32, latest: i32 },
}

/// The pool and, with an embedded cluster, the cluster itself.
pub struct Database {
    pub pool: Pool,
    embedded: Option<EmbeddedPostgres>,
}

pub fn build_pool(mut config: tokio_postgres::Config, size: usize) -> Pool {
    // Every statement of the service is prepared once per connection and runs with its generic
    // plan: planning again on every execution (what PostgreSQL does while it believes a custom plan
    // is cheaper) costs more than the small batches it plans for, and the generic plans are index
    // lookups throughout.
    let options = config.get_options().unwrap_or_default().to_owned();
    config.options(format!("{options} -c plan_cache_mode=force_generic_plan").trim());
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // A dead connection is noticed when it is used and then dropped; checking every
            // checkout with a query would cost a round trip on the hot path.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(POOL_WAIT_TIMEOUT))
        .recycle_timeout(Some(POOL_WAIT_TIMEOUT))
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

/// Which of the ledger's roles (see [`roles`]) a command acts as. With the embedded cluster it
/// picks the login; with `DATABASE_URL` the URL names the role and this is only the intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Service,
    Reader,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => roles::OWNER,
            Role::Service => roles::SERVICE,
            Role::Reader => roles::READER,
        }
    }
}

fn parse_url(url: &crate::configuration::Secret, bad: OpenError) -> Result<Config, OpenError> {
    Config::from_str(url.expose()).map_err(|_| bad)
}

impl Database {
    /// For `serve`: migrates when it holds the owner's credentials (the embedded cluster always;
    /// an external server with `LEDGER_MIGRATE_DATABASE_URL`, or when `DATABASE_URL` itself may
    /// act as the owner), otherwise refuses a schema older than this binary; then a pool as the
    /// service.
    pub async fn open(
        settings: &DatabaseSettings,
        pool_size: usize,
        durability: Durability,
    ) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External { url, migrate_url } => {
                let config = parse_url(url, OpenError::BadUrl)?;
                let privileged = connect_and(&config, |client| async move {
                    may_act_as_owner(&client).await.map_err(OpenError::Prepare)
                })
                .await?;
                if let Some(owner) = migrate_url {
                    migrate_with(&parse_url(owner, OpenError::BadMigrateUrl)?).await?;
                } else if privileged {
                    migrate_with(&config).await?;
                } else {
                    check_version(&config).await?;
                }
                if privileged {
                    tracing::warn!(
                        "DATABASE_URL connects as a superuser or the schema's owner: the service \
                         needs only the role {}; see the README, \"Database roles\"",
                        roles::SERVICE
                    );
                }
                (config, None)
            }
            DatabaseSettings::Embedded(dir) => {
                let cluster = start_embedded(dir, durability).await?;
                // As the superuser, which acts as the owner once it has handed over what a
                // cluster made before the roles left to itself.
                migrate_with(&cluster.config(embedded::DATABASE_NAME)).await?;
                (
                    cluster.config_as(embedded::DATABASE_NAME, roles::SERVICE),
                    Some(cluster),
                )
            }
        };
        Ok(Database {
            pool: build_pool(config, pool_size),
            embedded,
        })
    }

    /// For `dts-ledger migrate`: brings the schema up to date as its owner
    /// (`LEDGER_MIGRATE_DATABASE_URL`, else `DATABASE_URL`; in the embedded cluster the
    /// superuser, acting as the owner role).
    pub async fn migrate(settings: &DatabaseSettings) -> Result<Vec<i32>, OpenError> {
        match settings {
            DatabaseSettings::External { url, migrate_url } => {
                let config = match migrate_url {
                    Some(owner) => parse_url(owner, OpenError::BadMigrateUrl)?,
                    None => parse_url(url, OpenError::BadUrl)?,
                };
                migrate_with(&config).await
            }
            DatabaseSettings::Embedded(dir) => {
                let cluster = start_embedded(dir, Durability::Durable).await?;
                let applied = migrate_with(&cluster.config(embedded::DATABASE_NAME)).await;
                let database = Database {
                    pool: build_pool(cluster.config(embedded::DATABASE_NAME), 1),
                    embedded: Some(cluster),
                };
                // Stops the cluster, saying so if that fails.
                database.close().await;
                applied
            }
        }
    }

    /// Connects as the reader without migrating, for the audit commands (which must work on a
    /// read replica).
    pub async fn open_for_reading(settings: &DatabaseSettings) -> Result<Database, OpenError> {
        Database::open_as(settings, Role::Reader).await
    }

    /// Connects without migrating as `role`: an external server, the cluster of a `serve`
    /// running on the same data directory, or the embedded cluster started for the command and
    /// stopped after it.
    pub async fn open_as(settings: &DatabaseSettings, role: Role) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External { url, .. } => (parse_url(url, OpenError::BadUrl)?, None),
            DatabaseSettings::Embedded(dir) => {
                let root = dir.clone();
                let started = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(&root, Durability::Durable)
                })
                .await
                .expect("the start task does not panic");
                match started {
                    Ok(cluster) => {
                        prepare_cluster(&cluster, false).await?;
                        (
                            cluster.config_as(embedded::DATABASE_NAME, role.name()),
                            Some(cluster),
                        )
                    }
                    Err(embedded::EmbeddedError::InUse(_)) => (
                        embedded::running_cluster_config(
                            dir,
                            embedded::DATABASE_NAME,
                            role.name(),
                        )?,
                        None,
                    ),
                    Err(error) => return Err(error.into()),
                }
            }
        };
        // Fail now with a clear message rather than at the first query.
        let (client, connection) = config.connect(NoTls).await.map_err(OpenError::Connect)?;
        drop(client);
        drop(connection);
        Ok(Database {
            pool: build_pool(config, 2),
            embedded,
        })
    }

    /// Closes the pool, then stops the embedded cluster if there is one.
    pub async fn close(mut self) {
        self.pool.close();
        if let Some(mut cluster) = self.embedded.take() {
            let stopped = tokio::task::spawn_blocking(move || cluster.stop()).await;
            match stopped {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(error)) => {
                    tracing::error!(%error, "stopping the embedded PostgreSQL failed")
                }
                Err(error) => tracing::error!(%error, "stopping the embedded PostgreSQL panicked"),
            }
        }
    }
}

async fn start_embedded(
    dir: &std::path::Path,
    durability: Durability,
) -> Result<EmbeddedPostgres, OpenError> {
    let dir = dir.to_owned();
    let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, durability))
        .await
        .expect("the start task does not panic")?;
    prepare_cluster(&cluster, true).await?;
    Ok(cluster)
}

/// As the cluster's superuser: the ledger's roles and (with `database`) its database, owned by
/// the owner role (a cluster made before the roles existed is handed over here and by the next
/// migration).
async fn prepare_cluster(cluster: &EmbeddedPostgres, database: bool) -> Result<(), OpenError> {
    // The maintenance database, which every cluster has.
    connect_and(&cluster.config("postgres"), |client| async move {
        roles::create_login_roles(&client, None)
            .await
            .map_err(OpenError::Prepare)?;
        if !database {
            return Ok(());
        }
        let owner: Option<String> = client
            .query_opt(
                "SELECT datdba::regrole::text FROM pg_database WHERE datname = $1",
                &[&embedded::DATABASE_NAME],
            )
            .await
            .map_err(OpenError::Prepare)?
            .map(|row| row.get(0));
        let statement = match owner.as_deref() {
            None => Some(format!(
                "CREATE DATABASE {} OWNER {}",
                embedded::DATABASE_NAME,
                roles::OWNER
            )),
            Some(roles::OWNER) => None,
            Some(_) => Some(format!(
                "ALTER DATABASE {} OWNER TO {}",
                embedded::DATABASE_NAME,
                roles::OWNER
            )),
        };
        if let Some(statement) = statement {
            client
                .batch_execute(&statement)
                .await
                .map_err(OpenError::Prepare)?;
        }
        Ok(())
    })
    .await
}

/// Connects with `config`, runs `work` on the client, and closes the connection.
async fn connect_and<T, F, Fut>(config: &Config, work: F) -> Result<T, OpenError>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    let (client, connection) = config.connect(NoTls).await.map_err(OpenError::Connect)?;
    let driver = tokio::spawn(connection);
    let outcome = work(client).await;
    let _ = driver.await;
    outcome
}

async fn migrate_with(config: &Config) -> Result<Vec<i32>, OpenError> {
    connect_and(config, |mut client| async move {
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database schema migrated");
        }
        Ok(applied)
    })
    .await
}

/// Without the owner's credentials, `serve` only makes sure the schema is the one it was built
/// for.
async fn check_version(config: &Config) -> Result<(), OpenError> {
    connect_and(config, |client| async move {
        let found = migrate::current_version(&client).await?;
        let latest = migrate::latest_version();
        if found < latest {
            return Err(OpenError::SchemaBehind { found, latest });
        }
        if found > latest {
            return Err(migrate::MigrateError::TooNew { found, latest }.into());
        }
        Ok(())
    })
    .await
}

/// Whether the connection is a superuser, the owner role (or a member of it), or whoever owns
/// the ledger's table: credentials that can migrate, and more than the service needs.
async fn may_act_as_owner(client: &tokio_postgres::Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                 OR coalesce(pg_has_role(current_user, to_regrole($1)::oid, 'MEMBER'), false)
                 OR coalesce((SELECT pg_has_role(current_user, relowner, 'MEMBER')
                                FROM pg_class WHERE oid = to_regclass('public.events')), false)",
            &[&roles::OWNER],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether an error means "the database is not there right now" (answered 503, retried by the
/// caller) rather than a bug or a refused statement.
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // Class 08: connection exception; 57P0x: shutdown / cannot connect now; 53300: too many
        // connections.
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        // No SQLSTATE: the failure happened below the protocol (I/O, DNS, refused connection).
        None => true,
    }
}
