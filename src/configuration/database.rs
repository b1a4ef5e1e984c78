//! Where `serve` and the audit commands find their database.

use super::secret::Secret;
use std::path::PathBuf;

/// Connections each `serve` process keeps to PostgreSQL by default: enough for the ingest pipeline,
/// the control plane and the background workers, few enough that several processes fit in
/// PostgreSQL's default `max_connections` of 100.
pub const POOL_SIZE_DEFAULT: usize = 16;
/// Upper bound on the pool, far below any PostgreSQL `max_connections` in practice.
pub const POOL_SIZE_MAX: usize = 256;

/// Where `serve` and the audit commands find their database and files.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// `DATABASE_URL`: an existing server, reached as the service's (or the reader's) role;
    /// `LEDGER_MIGRATE_DATABASE_URL`: the same server as the schema's owner, for migrating.
    External {
        url: Secret,
        migrate_url: Option<Secret>,
    },
    /// No `DATABASE_URL`: an embedded cluster under `dir`, archiving its WAL into
    /// `wal_archive_dir` (`[database] wal_archive_dir`) when set. Every command that starts the
    /// cluster starts it with the same archive, so the archive has no gap.
    Embedded {
        dir: PathBuf,
        wal_archive_dir: Option<PathBuf>,
    },
}
