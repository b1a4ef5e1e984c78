//! The connection to PostgreSQL: an external server (`DATABASE_URL`) or an embedded cluster.

pub mod embedded;
pub mod migrate;

use crate::configuration::DatabaseSettings;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use embedded::{Durability, EmbeddedPostgres};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

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

impl Database {
    /// Connects (starting the embedded cluster if that is the setting) and migrates.
    pub async fn open(
        settings: &DatabaseSettings,
        pool_size: usize,
        durability: Durability,
    ) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External(url) => (
                tokio_postgres::Config::from_str(url.expose()).map_err(|_| OpenError::BadUrl)?,
                None,
            ),
            DatabaseSettings::Embedded(dir) => {
                let dir = dir.clone();
                let cluster =
                    tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, durability))
                        .await
                        .expect("the start task does not panic")?;
                create_database_if_missing(&cluster).await?;
                (cluster.config(embedded::DATABASE_NAME), Some(cluster))
            }
        };
        let (mut client, connection) = config.connect(NoTls).await.map_err(OpenError::Connect)?;
        let driver = tokio::spawn(connection);
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database schema migrated");
        }
        drop(client);
        let _ = driver.await;
        Ok(Database {
            pool: build_pool(config, pool_size),
            embedded,
        })
    }

    /// Connects without migrating, for the audit commands (which must work on a read replica):
    /// an external server, the cluster of a `serve` running on the same data directory, or the
    /// embedded cluster started for the command and stopped after it.
    pub async fn open_for_reading(settings: &DatabaseSettings) -> Result<Database, OpenError> {
        let (config, embedded) = match settings {
            DatabaseSettings::External(url) => (
                tokio_postgres::Config::from_str(url.expose()).map_err(|_| OpenError::BadUrl)?,
                None,
            ),
            DatabaseSettings::Embedded(dir) => {
                let root = dir.clone();
                let started = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(&root, Durability::Durable)
                })
                .await
                .expect("the start task does not panic");
                match started {
                    Ok(cluster) => (cluster.config(embedded::DATABASE_NAME), Some(cluster)),
                    Err(embedded::EmbeddedError::InUse(_)) => (
                        embedded::running_cluster_config(dir, embedded::DATABASE_NAME)?,
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

async fn create_database_if_missing(cluster: &EmbeddedPostgres) -> Result<(), OpenError> {
    let (client, connection) = cluster
        .config("postgres")
        .connect(NoTls)
        .await
        .map_err(OpenError::Connect)?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&embedded::DATABASE_NAME],
        )
        .await
        .map_err(OpenError::Prepare)?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", embedded::DATABASE_NAME))
            .await
            .map_err(OpenError::Prepare)?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
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
