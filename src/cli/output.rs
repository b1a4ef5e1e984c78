//! What every subcommand shares in how it ends: its exit codes, the error it cannot run with, and
//! the two forms a listing is printed in.
//!
//! Exit codes: 0 when the command did what it says (a check passed, the output was written), 1
//! when it ran and found something wrong (a broken ledger, different projections, a refused
//! callback), 2 when it could not run (bad arguments, no configuration, an unreachable database).

use deadpool_postgres::Pool;

/// It ran and found something wrong: the ledger is broken, the projections differ, the service
/// refused the callback.
pub const FAILED: u8 = 1;
/// It could not run.
pub const CANNOT_RUN: u8 = 2;

/// A command that could not run, with what to tell the operator (exit [`CANNOT_RUN`]).
#[derive(Debug)]
pub struct CannotRun(pub String);

impl<E: std::fmt::Display> From<E> for CannotRun {
    fn from(error: E) -> CannotRun {
        CannotRun(error.to_string())
    }
}

/// How a listing is printed: aligned columns for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// `--limit` and `--format` of every listing.
#[derive(Debug, clap::Args)]
pub struct Listing {
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

impl Listing {
    /// `--limit`, held to the listing's bound.
    pub fn limit(&self, max: i64) -> Result<i64, CannotRun> {
        if (1..=max).contains(&self.limit) {
            Ok(self.limit)
        } else {
            Err(CannotRun(format!("--limit must be 1 to {max}")))
        }
    }
}

/// A connection from `pool`, or why there is none in the operator's words.
pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, CannotRun> {
    pool.get()
        .await
        .map_err(|e| CannotRun(crate::database::pool_failure(&e)))
}
