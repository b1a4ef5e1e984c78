//! The connection to PostgreSQL: an external server (`DATABASE_URL`) or an embedded cluster.
//!
//! - this file: opening a [`Database`] as one of the three roles ([`roles`]), migrated
//!   ([`migrate`]) or not, and the pool;
//! - `session`: the bounds of every session; `failures`: what a failure to connect says;
//! - [`embedded`]: the cluster this process owns, and [`backup`] of it; [`primary`]: writing only
//!   to a primary, and what protects its commits.

pub mod backup;
pub mod embedded;
pub mod migrate;
pub mod primary;
pub mod roles;

mod failures;
mod session;

pub use failures::{connect_failure, is_unavailable, pool_failure, target};
pub use session::{
    bound_session, reap_stalled_peers, ReapError, SessionBounds, IDLE_IN_TRANSACTION_TIMEOUT_MS,
    KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES_MAX, LOCK_TIMEOUT_MS,
    RANDOM_PAGE_COST, STALLED_AFTER_MS, STATEMENT_TIMEOUT_MS,
};

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
    /// What failed, where, and what to check; never the password or the URL itself.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
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

/// A pool of the service's sessions ([`SessionBounds::SERVICE`]), which write: a connection to
/// a read-only server is never lent, and connections made before a write met one are dropped
/// (see [`primary`]).
pub fn build_pool(config: tokio_postgres::Config, size: usize) -> Pool {
    pool_builder(config, size, &SessionBounds::SERVICE)
        .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
            Box::pin(primary::refuse_read_only(client))
        }))
        .pre_recycle(deadpool_postgres::Hook::sync_fn(primary::drop_if_suspect))
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

/// A pool of sessions bounded by `bounds`, which may be on a standby (the audits).
pub fn build_pool_with(
    config: tokio_postgres::Config,
    size: usize,
    bounds: &SessionBounds,
) -> Pool {
    pool_builder(config, size, bounds)
        .build()
        .expect("a pool with a runtime and timeouts always builds")
}

fn pool_builder(
    mut config: tokio_postgres::Config,
    size: usize,
    bounds: &SessionBounds,
) -> deadpool_postgres::PoolBuilder {
    bound_session(&mut config, bounds);
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
                         needs only the role {}; see docs/operating.md, \"Database roles\"",
                        roles::SERVICE
                    );
                }
                (config, None)
            }
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let cluster = start_embedded(dir, durability, wal_archive_dir.as_deref()).await?;
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
    /// superuser, acting as the owner role); the versions it applied.
    pub async fn migrate(settings: &DatabaseSettings) -> Result<Vec<i32>, OpenError> {
        Database::as_owner(settings, |_, applied| async move { Ok(applied) }).await
    }

    /// Brings the schema up to date as its owner (the credentials of [`Database::migrate`]),
    /// then runs `work` on that owner's connection with the versions it applied: for the owner's
    /// own commands (`dts-ledger migrate`, `migrate-partitions`). An embedded cluster is started
    /// for it and stopped after.
    pub async fn as_owner<T, F, Fut>(settings: &DatabaseSettings, work: F) -> Result<T, OpenError>
    where
        F: FnOnce(tokio_postgres::Client, Vec<i32>) -> Fut,
        Fut: std::future::Future<Output = Result<T, OpenError>>,
    {
        let config = match settings {
            DatabaseSettings::External { url, migrate_url } => match migrate_url {
                Some(owner) => parse_url(owner, OpenError::BadMigrateUrl)?,
                None => parse_url(url, OpenError::BadUrl)?,
            },
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let cluster =
                    start_embedded(dir, Durability::Durable, wal_archive_dir.as_deref()).await?;
                let config = cluster.config(embedded::DATABASE_NAME);
                let done = migrated_and(&config, work).await;
                let database = Database {
                    pool: build_pool(config, 1),
                    embedded: Some(cluster),
                };
                database.close().await;
                return done;
            }
        };
        migrated_and(&config, work).await
    }

    /// Connects without migrating as `role`: an external server, the cluster of a `serve`
    /// running on the same data directory, or the embedded cluster started for the command and
    /// stopped after it.
    pub async fn open_as(settings: &DatabaseSettings, role: Role) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External { url, .. } => (parse_url(url, OpenError::BadUrl)?, None),
            DatabaseSettings::Embedded {
                dir,
                wal_archive_dir,
            } => {
                let root = dir.clone();
                let archive = wal_archive_dir.clone();
                let started = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start_with(&root, Durability::Durable, archive.as_deref())
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
        // Fail now with a clear message rather than at the first query, and on a schema other
        // than the one this binary reads: an audit of a ledger not migrated yet (or migrated by a
        // newer release) would misread its rows.
        check_version(&config).await?;
        Ok(Database {
            pool: build_pool_with(config, 2, &SessionBounds::AUDIT),
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
    wal_archive_dir: Option<&std::path::Path>,
) -> Result<EmbeddedPostgres, OpenError> {
    let dir = dir.to_owned();
    let archive = wal_archive_dir.map(std::path::Path::to_owned);
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start_with(&dir, durability, archive.as_deref())
    })
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
/// One short administrative session (migrations, role and database set-up), bounded like a
/// migration ([`SessionBounds::MIGRATION`]).
async fn connect_and<T, F, Fut>(config: &Config, work: F) -> Result<T, OpenError>
where
    F: FnOnce(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    let mut config = config.clone();
    bound_session(&mut config, &SessionBounds::MIGRATION);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|error| OpenError::Connect(connect_failure(&config, &error)))?;
    let driver = tokio::spawn(connection);
    let outcome = work(client).await;
    let _ = driver.await;
    outcome
}

async fn migrate_with(config: &Config) -> Result<Vec<i32>, OpenError> {
    migrated_and(config, |_, applied| async move { Ok(applied) }).await
}

/// Connects with `config` as the owner, migrates, and runs `work` with the versions applied.
async fn migrated_and<T, F, Fut>(config: &Config, work: F) -> Result<T, OpenError>
where
    F: FnOnce(tokio_postgres::Client, Vec<i32>) -> Fut,
    Fut: std::future::Future<Output = Result<T, OpenError>>,
{
    connect_and(config, |mut client| async move {
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database schema migrated");
        }
        work(client, applied).await
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
