//! Settings: command-line flags and environment for the process, a TOML file for the product.
//!
//! The file is read once at start. Unknown keys are an error naming the key, so a typo never
//! silently falls back to a default. Secrets live in [`Secret`], which never prints its value.
//!
//! - `file.rs`: the file's schema, and the checks that turn each section into settings;
//! - `secret.rs`: [`Secret`] and the one rule for secrets (the environment overrides the file);
//! - `database.rs`: where the database is;
//! - the SKU catalog is a domain concept, in [`crate::domain::catalog`], re-exported here.
//!
//! Names put the unit before its qualifier: `retry_ms_base`, `retry_ms_max`, `age_s_max`,
//! `session_ttl_s`, `report_bytes_max`. A count has no unit: `attempts_max`. In
//! `checkpoint_every_s` "every" is part of the quantity's name (the period), not a qualifier.

mod database;
mod file;
mod secret;
#[cfg(test)]
mod tests;

pub use crate::domain::catalog::{Catalog, Sku, SKU_NAME_CHARS_MAX};
pub use database::{DatabaseSettings, POOL_SIZE_DEFAULT, POOL_SIZE_MAX};
pub use secret::{Secret, SECRET_CHARS_MIN};

use file::FileConfig;
use projections::ids::Bytes;
use std::path::{Path, PathBuf};

/// How far a `verify` (login-free sign-in) `timeStamp` may be from our clock by default.
pub const VERIFY_WINDOW_S_DEFAULT: u64 = 300;
/// Longest accepted window: a signed sign-in link must not stay usable for long.
pub const VERIFY_WINDOW_S_MAX: u64 = 3600;
/// How long a console session lasts after its last use.
pub const SESSION_TTL_S_DEFAULT: u64 = 600;
/// A day: a session left open longer than that is more likely forgotten than in use.
pub const SESSION_TTL_S_MAX: u64 = 86_400;
/// How long a console session lasts at most, however busy: a working day, so a session opened on
/// a shared or stolen machine ends by the evening even if something keeps using it.
pub const SESSION_MAX_S_DEFAULT: u64 = 12 * 3600;
/// A week: a session that outlives that is no longer its customer's.
pub const SESSION_MAX_S_MAX: u64 = 7 * 86_400;
/// A package this close to its expiry gets the console's expiry banner: a week, as cloud billing
/// centres warn, so a customer who signs in weekly sees it once before it is too late.
pub const EXPIRY_WARNING_DAYS_DEFAULT: u64 = 7;
/// A banner further ahead than a year would be on every package of a yearly plan.
pub const EXPIRY_WARNING_DAYS_MAX: u64 = 366;
/// How often the sweeper looks for orders whose expiry has passed.
pub const EXPIRY_SWEEP_S_DEFAULT: u64 = 30;
/// Runways announced by webhook when they come within these many days (`OrderRunwayShort`).
pub const RUNWAY_THRESHOLDS_DAYS_DEFAULT: [u32; 2] = [7, 1];
/// A runway threshold is at most a year: further out, the rate of one week says little.
pub const RUNWAY_THRESHOLD_DAYS_MAX: u32 = 366;
/// Thresholds, at most: each is one announcement per grant.
pub const RUNWAY_THRESHOLDS_MAX: usize = 8;
/// How often the runway check runs: a runway moves by hours, and each pass reads a week of
/// every busy package's traffic.
pub const RUNWAY_CHECK_S_DEFAULT: u64 = 600;
pub const RUNWAY_CHECK_S_MAX: u64 = 86_400;
/// A stopped task still reporting this long after its stop counts towards the alert.
pub const STOPPED_REPORTING_S_DEFAULT: u64 = 600;
pub const STOPPED_REPORTING_S_MAX: u64 = 7 * 86_400;
/// An hour: an expired package still usable for longer than that is a billing error.
pub const EXPIRY_SWEEP_S_MAX: u64 = 3600;
/// Most bytes one traffic report may carry by default: 1 TiB, more than a task moves between two
/// reports on any real link, so a larger number is a bug in the agent, not traffic.
pub const REPORT_BYTES_MAX_DEFAULT: u64 = 1 << 40;
/// The low-balance warning levels by default (% of everything granted that is consumed).
pub const LOW_BALANCE_PERCENTS_DEFAULT: [u8; 2] = [80, 95];
/// Ingest pipelines per process by default: one transaction in flight per pipeline, so while one
/// appends to the ledger the other prepares its batch; two keep both cores of a small machine busy.
pub const PIPELINES_DEFAULT: usize = 2;
/// Each pipeline holds a connection: more than this would starve the default pool.
pub const PIPELINES_MAX: usize = 16;
/// How long a traffic report's idempotency key is kept, in days, by default: far beyond any
/// agent's retry. A report whose `periodEnd` is older than this is refused (`report_too_late`)
/// instead of charged, so a removed key can never charge a report twice (invariant I13).
pub const KEY_RETENTION_DAYS_DEFAULT: u64 = 45;
/// Ten years: keys kept longer than that are kept for ever in all but name.
pub const KEY_RETENTION_DAYS_MAX: u64 = 3650;
/// Reporter tokens accepted; each names an agent fleet, so a handful is the norm.
pub const REPORTER_TOKENS_MAX: usize = 64;

/// Signed checkpoints of the ledger (`[audit]`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The Ed25519 key `checkpoint` and `serve` sign with; `None`: this process does not sign.
    pub signing_key_file: Option<PathBuf>,
    /// Ed25519 public keys (64 hex digits) whose checkpoints `verify` accepts, besides the
    /// signing key's own.
    pub public_keys: Vec<[u8; 32]>,
    /// How often `serve` checkpoints a ledger that moved.
    pub checkpoint_every_s: u64,
    /// A signed checkpoint line kept outside the database (the last one the checkpoint webhook's
    /// receiver holds, say): `serve` refuses a ledger that is behind it (see
    /// [`crate::audit::restore_proof`]).
    pub trusted_checkpoint_file: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            public_keys: Vec::new(),
            checkpoint_every_s: CHECKPOINT_EVERY_S_DEFAULT,
            trusted_checkpoint_file: None,
        }
    }
}

/// Five minutes: a rewrite is caught at the latest by the checkpoint after it, and a day's
/// checkpoints (288 rows) cost nothing to store or check.
const CHECKPOINT_EVERY_S_DEFAULT: u64 = 300;
/// A day: checkpoints rarer than that leave too much of the ledger unvouched for.
const CHECKPOINT_EVERY_S_MAX: u64 = 86_400;
/// More keys than any rotation needs; keeps a mistaken list from growing without bound.
const PUBLIC_KEYS_MAX: usize = 64;

/// Where and how stops, resumptions and warnings are pushed to the DTS control plane.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    /// First retry delay; each further one doubles, up to `retry_ms_max`, with jitter.
    pub retry_ms_base: u64,
    pub retry_ms_max: u64,
    /// Per delivery attempt.
    pub timeout_ms: u64,
    /// Failed attempts after which an entry becomes a dead letter.
    pub attempts_max: u32,
    /// How long after its first attempt an entry is still retried.
    pub age_s_max: u64,
    /// How long delivered entries are kept before they are pruned.
    pub retention_s: u64,
}

/// First retry delay: a receiver restarting is back within seconds.
pub const WEBHOOK_RETRY_MS_BASE_DEFAULT: u64 = 1_000;
/// An hour: a first retry later than that is no retry but an outage nobody hears about.
pub const WEBHOOK_RETRY_MS_BASE_MAX: u64 = 3_600_000;
/// Retries of a long outage are ten minutes apart: the receiver hears within ten minutes of
/// coming back, without being polled hard while it is away.
pub const WEBHOOK_RETRY_MS_MAX_DEFAULT: u64 = 600_000;
/// A day: retries rarer than that would outlast the default `age_s_max`.
pub const WEBHOOK_RETRY_MS_MAX_MAX: u64 = 86_400_000;
/// A receiver on the same network answers in milliseconds; five seconds covers a slow one.
pub const WEBHOOK_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// A minute: a delivery hanging longer holds up the entries queued behind it.
pub const WEBHOOK_TIMEOUT_MS_MAX: u64 = 60_000;
/// With the default delays (1 s doubling to 10 min) 20 attempts span about two hours: an outage
/// of the control plane longer than that needs an operator anyway.
pub const WEBHOOK_ATTEMPTS_MAX_DEFAULT: u64 = 20;
/// Beyond this a dead letter would in effect never be declared.
pub const WEBHOOK_ATTEMPTS_MAX_MAX: u64 = 10_000;
/// A day: a stop announced a day late is news for an operator rather than for the control plane.
pub const WEBHOOK_AGE_S_MAX_DEFAULT: u64 = 86_400;
/// Thirty days: an entry older than that describes a state long since changed.
pub const WEBHOOK_AGE_S_MAX_MAX: u64 = 30 * 86_400;
/// A week of delivered entries answers "was it sent?" for a recent incident; the ledger keeps
/// the events themselves for ever.
pub const WEBHOOK_RETENTION_S_DEFAULT: u64 = 7 * 86_400;
/// A year (and a day): enough for any audit of deliveries, bounded so the outbox table is too.
pub const WEBHOOK_RETENTION_S_MAX: u64 = 366 * 86_400;

impl WebhookConfig {
    /// A receiver with the default delays and bounds.
    pub fn new(url: String, secret: Secret) -> WebhookConfig {
        WebhookConfig {
            url,
            secret,
            retry_ms_base: WEBHOOK_RETRY_MS_BASE_DEFAULT,
            retry_ms_max: WEBHOOK_RETRY_MS_MAX_DEFAULT,
            timeout_ms: WEBHOOK_TIMEOUT_MS_DEFAULT,
            attempts_max: WEBHOOK_ATTEMPTS_MAX_DEFAULT as u32,
            age_s_max: WEBHOOK_AGE_S_MAX_DEFAULT,
            retention_s: WEBHOOK_RETENTION_S_DEFAULT,
        }
    }
}

/// What the product needs to know, from the file and the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ISV key that signs marketplace callbacks; `None` refuses every callback.
    pub marketplace_key: Option<Secret>,
    pub verify_window_s: u64,
    /// The base URL customers reach the service at (console links); `None`: the listen address.
    pub public_url: Option<String>,
    /// Signs order credentials (`authCode`) and console sessions. `None`: derived from the
    /// marketplace key.
    pub console_secret: Option<Secret>,
    pub session_ttl_s: u64,
    /// A console session ends this long after it opened, however busy.
    pub session_max_s: u64,
    /// The marketplace's renewal page; the console links to it with `instanceId=<id>` appended.
    pub renew_url: Option<String>,
    /// The marketplace's page for buying a package; the 续费 form links to it.
    pub buy_url: Option<String>,
    /// The console warns of a package's expiry this many days ahead (1-366).
    pub expiry_warning_days: u64,
    /// Bearer token of operators and finance for the read APIs.
    pub admin_token: Option<Secret>,
    /// Bearer tokens of DTS agents and the control plane (tasks and traffic).
    pub reporter_tokens: Vec<Secret>,
    pub expiry_sweep_s: u64,
    pub report_bytes_max: Bytes,
    pub low_balance_percents: Vec<u8>,
    pub pipelines: usize,
    /// `[traffic] key_retention_days`: how long traffic keys are kept (see
    /// [`KEY_RETENTION_DAYS_DEFAULT`]).
    pub key_retention_days: u64,
    /// `[runway] thresholds_days`: ascending, each 1 to a year.
    pub runway_thresholds_days: Vec<u32>,
    /// `[runway] check_s`: seconds between runway checks.
    pub runway_check_s: u64,
    /// `[alerts] stopped_reporting_s`: a stopped task still reporting this long after its stop
    /// is counted in `dts_ledger_tasks_reporting_after_stop`.
    pub stopped_reporting_s: u64,
    pub webhook: Option<WebhookConfig>,
    pub catalog: Catalog,
    /// True when no `[[sku]]` was configured and [`Catalog::built_in`] is in use.
    pub catalog_is_built_in: bool,
    pub pool_size: usize,
    /// `[database] wal_archive_dir`: where the embedded cluster archives every finished WAL
    /// segment, for `restore --to TIME` (see [`crate::database::backup`]); `None`: no archive.
    pub wal_archive_dir: Option<PathBuf>,
    pub audit: AuditConfig,
    /// `[metrics] listen`: a second address serving only `GET /metrics`, without a token.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Config {
    /// [`Config::key_retention_days`] as a duration.
    pub fn key_retention(&self) -> chrono::Duration {
        chrono::Duration::days(self.key_retention_days as i64)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl Config {
    /// Settings for tests and examples: the built-in catalog, no secrets, defaults everywhere.
    pub fn defaults() -> Config {
        Config {
            marketplace_key: None,
            verify_window_s: VERIFY_WINDOW_S_DEFAULT,
            public_url: None,
            console_secret: None,
            session_ttl_s: SESSION_TTL_S_DEFAULT,
            session_max_s: SESSION_MAX_S_DEFAULT,
            renew_url: None,
            buy_url: None,
            expiry_warning_days: EXPIRY_WARNING_DAYS_DEFAULT,
            admin_token: None,
            reporter_tokens: Vec::new(),
            expiry_sweep_s: EXPIRY_SWEEP_S_DEFAULT,
            report_bytes_max: Bytes::new(REPORT_BYTES_MAX_DEFAULT).expect("1 TiB fits"),
            low_balance_percents: LOW_BALANCE_PERCENTS_DEFAULT.to_vec(),
            pipelines: PIPELINES_DEFAULT,
            key_retention_days: KEY_RETENTION_DAYS_DEFAULT,
            runway_thresholds_days: RUNWAY_THRESHOLDS_DAYS_DEFAULT.to_vec(),
            runway_check_s: RUNWAY_CHECK_S_DEFAULT,
            stopped_reporting_s: STOPPED_REPORTING_S_DEFAULT,
            webhook: None,
            catalog: Catalog::built_in(),
            catalog_is_built_in: true,
            pool_size: POOL_SIZE_DEFAULT,
            wal_archive_dir: None,
            audit: AuditConfig::default(),
            metrics_listen: None,
        }
    }

    /// Reads the file (if any) and applies environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_file(path, &env).map_err(|message| ConfigError {
            path: path.map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
            message,
        })
    }

    /// One step per section of the file; each applies its defaults, limits and overrides.
    fn from_file(path: Option<&Path>, env: file::Env) -> Result<Config, String> {
        let file = FileConfig::read(path)?;
        let (catalog, catalog_is_built_in) = file::catalog(file.sku)?;
        let wal_archive_dir = file.database.wal_archive_dir(env)?;
        let pool_size = file.database.pool_size()?;
        let marketplace = file.marketplace.settings(env)?;
        let console = file.console.settings(env)?;
        let (admin_token, reporter_tokens) = file.api.settings(env)?;
        let traffic = file.traffic.settings()?;
        let webhook = file.webhook.settings(env)?;
        let expiry_sweep_s = file.orders.expiry_sweep_s()?;
        let (runway_thresholds_days, runway_check_s) = file.runway.settings()?;
        let stopped_reporting_s = file.alerts.stopped_reporting_s()?;
        let audit = file.audit.settings(env)?;
        let metrics_listen = file.metrics.listen(env)?;
        Ok(Config {
            marketplace_key: marketplace.key,
            verify_window_s: marketplace.verify_window_s,
            public_url: console.public_url,
            console_secret: console.secret,
            session_ttl_s: console.session_ttl_s,
            session_max_s: console.session_max_s,
            renew_url: console.renew_url,
            buy_url: console.buy_url,
            expiry_warning_days: console.expiry_warning_days,
            admin_token,
            reporter_tokens,
            expiry_sweep_s,
            report_bytes_max: traffic.report_bytes_max,
            low_balance_percents: traffic.low_balance_percents,
            pipelines: traffic.pipelines,
            key_retention_days: traffic.key_retention_days,
            runway_thresholds_days,
            runway_check_s,
            stopped_reporting_s,
            webhook,
            catalog,
            catalog_is_built_in,
            pool_size,
            wal_archive_dir,
            audit,
            metrics_listen,
        })
    }
}
