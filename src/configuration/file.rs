//! The TOML file as an operator writes it, and the checks that turn each section into settings.
//!
//! Every section is read into a `*File` struct of optional fields (unknown keys are an error
//! naming the key), then checked on its own by a method that applies the defaults, the limits and
//! the environment's overrides. Keys renamed to put units last keep their old name as an alias,
//! so a deployed file never stops parsing.
//!
//! Longer than the house's 600 lines on purpose: it is the whole schema of the file, one section
//! after another in the order an operator meets them, each struct beside its checks; cut apart,
//! a reader would lose the one place that says what every key means and bounds.

use super::secret::SecretSource;
use super::*;
use crate::domain::catalog::{Catalog, Sku, SKU_NAME_CHARS_MAX};
use projections::ids::{Bytes, SkuId};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Reads the environment: `Some` when the variable is set.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The TOML file, as written by an operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub marketplace: MarketplaceFile,
    #[serde(default)]
    pub console: ConsoleFile,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub orders: OrdersFile,
    #[serde(default)]
    pub traffic: TrafficFile,
    #[serde(default)]
    pub webhook: WebhookFile,
    #[serde(default)]
    pub database: DatabaseFile,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub metrics: MetricsFile,
    #[serde(default)]
    pub runway: RunwayFile,
    #[serde(default)]
    pub alerts: AlertsFile,
    #[serde(default)]
    pub sku: Option<Vec<SkuFile>>,
}

impl FileConfig {
    /// The file at `path`, or every section empty without one.
    pub fn read(path: Option<&Path>) -> Result<FileConfig, String> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
        toml::from_str(&text).map_err(|e| describe_toml_error(&text, &e))
    }
}

/// A TOML error as line, column and reason, without the quoted source line the parser's own text
/// carries: that line may hold a secret.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {}", error.message())
        }
        None => error.message().to_owned(),
    }
}

/// A whole number of `name` from 1 to `max`, `default` when unset.
fn in_range(name: &str, value: Option<u64>, default: u64, max: u64) -> Result<u64, String> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{name} must be 1 to {max}"))
    }
}

/// An `http://` or `https://` URL from the environment or the file; empty means unset.
fn http_url(
    name: &str,
    env: Env,
    var: Option<&str>,
    file: Option<String>,
) -> Result<Option<String>, String> {
    let url = var.and_then(env).or(file).filter(|url| !url.is_empty());
    match url {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => Err(format!(
            "{name} {url:?} must start with http:// or https://"
        )),
        url => Ok(url),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MarketplaceFile {
    key: Option<Secret>,
    verify_window_s: Option<u64>,
}

/// `[marketplace]`: the ISV key and the sign-in window.
pub(super) struct MarketplaceSettings {
    pub key: Option<Secret>,
    pub verify_window_s: u64,
}

impl MarketplaceFile {
    pub fn settings(self, env: Env) -> Result<MarketplaceSettings, String> {
        let key = SecretSource {
            key: "marketplace.key",
            var: "LEDGER_MARKETPLACE_KEY",
        };
        Ok(MarketplaceSettings {
            // The marketplace chooses this key, so its length is not ours to police.
            key: key.read(env, self.key),
            verify_window_s: in_range(
                "marketplace.verify_window_s",
                self.verify_window_s,
                VERIFY_WINDOW_S_DEFAULT,
                VERIFY_WINDOW_S_MAX,
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleFile {
    public_url: Option<String>,
    secret: Option<Secret>,
    session_ttl_s: Option<u64>,
    session_max_s: Option<u64>,
    renew_url: Option<String>,
    buy_url: Option<String>,
    expiry_warning_days: Option<u64>,
}

/// `[console]`: where customers reach us and how their sessions are signed.
pub(super) struct ConsoleSettings {
    pub public_url: Option<String>,
    pub secret: Option<Secret>,
    pub session_ttl_s: u64,
    pub session_max_s: u64,
    pub renew_url: Option<String>,
    pub buy_url: Option<String>,
    pub expiry_warning_days: u64,
}

impl ConsoleFile {
    pub fn settings(self, env: Env) -> Result<ConsoleSettings, String> {
        let secret = SecretSource {
            key: "console.secret",
            var: "LEDGER_CONSOLE_SECRET",
        };
        let public_url = http_url(
            "console.public_url",
            env,
            Some("LEDGER_PUBLIC_URL"),
            self.public_url,
        )?;
        Ok(ConsoleSettings {
            secret: secret.read_strong(env, self.secret)?,
            public_url: public_url.map(|url| url.trim_end_matches('/').to_owned()),
            renew_url: http_url("console.renew_url", env, None, self.renew_url)?,
            buy_url: http_url("console.buy_url", env, None, self.buy_url)?,
            session_ttl_s: in_range(
                "console.session_ttl_s",
                self.session_ttl_s,
                SESSION_TTL_S_DEFAULT,
                SESSION_TTL_S_MAX,
            )?,
            session_max_s: in_range(
                "console.session_max_s",
                self.session_max_s,
                SESSION_MAX_S_DEFAULT,
                SESSION_MAX_S_MAX,
            )?,
            expiry_warning_days: in_range(
                "console.expiry_warning_days",
                self.expiry_warning_days,
                EXPIRY_WARNING_DAYS_DEFAULT,
                EXPIRY_WARNING_DAYS_MAX,
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiFile {
    admin_token: Option<Secret>,
    reporter_tokens: Option<Vec<Secret>>,
}

impl ApiFile {
    /// `[api]`: the admin token and the reporter tokens.
    pub fn settings(self, env: Env) -> Result<(Option<Secret>, Vec<Secret>), String> {
        let admin = SecretSource {
            key: "api.admin_token",
            var: "LEDGER_ADMIN_TOKEN",
        };
        let reporters = SecretSource {
            key: "api.reporter_tokens",
            var: "LEDGER_REPORTER_TOKENS",
        };
        let admin_token = admin.read_strong(env, self.admin_token)?;
        let reporter_tokens = match env(reporters.var) {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .collect(),
            None => self.reporter_tokens.unwrap_or_default(),
        };
        if reporter_tokens.len() > REPORTER_TOKENS_MAX {
            return Err(format!(
                "api.reporter_tokens lists more than {REPORTER_TOKENS_MAX} tokens"
            ));
        }
        for token in &reporter_tokens {
            reporters.check_strength(token)?;
        }
        Ok((admin_token, reporter_tokens))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrafficFile {
    report_bytes_max: Option<i64>,
    low_balance_percents: Option<Vec<u8>>,
    pipelines: Option<usize>,
    key_retention_days: Option<u64>,
}

/// `[traffic]`: how reports are bounded, warned about and ingested.
pub(super) struct TrafficSettings {
    pub report_bytes_max: Bytes,
    pub low_balance_percents: Vec<u8>,
    pub pipelines: usize,
    pub key_retention_days: u64,
}

impl TrafficFile {
    pub fn settings(self) -> Result<TrafficSettings, String> {
        let report_bytes_max = match self.report_bytes_max {
            Some(max) => Bytes::from_i64(max)
                .ok()
                .filter(|b| !b.is_zero())
                .ok_or("traffic.report_bytes_max must be positive")?,
            None => Bytes::new(REPORT_BYTES_MAX_DEFAULT).expect("1 TiB fits"),
        };
        let mut low_balance_percents = self
            .low_balance_percents
            .unwrap_or_else(|| LOW_BALANCE_PERCENTS_DEFAULT.to_vec());
        low_balance_percents.sort_unstable();
        low_balance_percents.dedup();
        if low_balance_percents.iter().any(|p| !(1..=100).contains(p)) {
            return Err("traffic.low_balance_percents must be percentages from 1 to 100".into());
        }
        let pipelines = in_range(
            "traffic.pipelines",
            self.pipelines.map(|p| p as u64),
            PIPELINES_DEFAULT as u64,
            PIPELINES_MAX as u64,
        )? as usize;
        let key_retention_days = in_range(
            "traffic.key_retention_days",
            self.key_retention_days,
            super::KEY_RETENTION_DAYS_DEFAULT,
            super::KEY_RETENTION_DAYS_MAX,
        )?;
        Ok(TrafficSettings {
            report_bytes_max,
            low_balance_percents,
            pipelines,
            key_retention_days,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookFile {
    url: Option<String>,
    secret: Option<Secret>,
    #[serde(alias = "retry_base_ms")]
    retry_ms_base: Option<u64>,
    #[serde(alias = "retry_max_ms")]
    retry_ms_max: Option<u64>,
    timeout_ms: Option<u64>,
    attempts_max: Option<u64>,
    #[serde(alias = "age_max_s")]
    age_s_max: Option<u64>,
    retention_s: Option<u64>,
}

impl WebhookFile {
    /// `[webhook]`: `None` without a URL; a URL needs a secret, deliveries must be signed.
    pub fn settings(mut self, env: Env) -> Result<Option<WebhookConfig>, String> {
        let secret = SecretSource {
            key: "webhook.secret",
            var: "LEDGER_WEBHOOK_SECRET",
        };
        let secret = secret.read_strong(env, self.secret.take())?;
        // The URL is checked only once it is known to be used, as it always was.
        let url = Some("LEDGER_WEBHOOK_URL")
            .and_then(env)
            .or(self.url.take())
            .filter(|url| !url.is_empty());
        match (url, secret) {
            (None, _) => Ok(None),
            (Some(_), None) => Err("webhook.url is set but webhook.secret \
                 (LEDGER_WEBHOOK_SECRET) is not: deliveries must be signed"
                .into()),
            (Some(url), Some(secret)) => {
                let url = http_url("webhook.url", env, None, Some(url))?
                    .expect("a non-empty URL stays set");
                self.bounds(url, secret).map(Some)
            }
        }
    }

    /// The delays and limits of a configured receiver. An old key's name is shown with the new
    /// one, so an error names what the operator wrote.
    fn bounds(self, url: String, secret: Secret) -> Result<WebhookConfig, String> {
        let (retry_ms_base, retry_ms_max) = self.retry_ms()?;
        Ok(WebhookConfig {
            url,
            secret,
            retry_ms_base,
            retry_ms_max,
            timeout_ms: in_range(
                "webhook.timeout_ms",
                self.timeout_ms,
                WEBHOOK_TIMEOUT_MS_DEFAULT,
                WEBHOOK_TIMEOUT_MS_MAX,
            )?,
            attempts_max: in_range(
                "webhook.attempts_max",
                self.attempts_max,
                WEBHOOK_ATTEMPTS_MAX_DEFAULT,
                WEBHOOK_ATTEMPTS_MAX_MAX,
            )? as u32,
            age_s_max: in_range(
                "webhook.age_s_max (age_max_s)",
                self.age_s_max,
                WEBHOOK_AGE_S_MAX_DEFAULT,
                WEBHOOK_AGE_S_MAX_MAX,
            )?,
            retention_s: in_range(
                "webhook.retention_s",
                self.retention_s,
                WEBHOOK_RETENTION_S_DEFAULT,
                WEBHOOK_RETENTION_S_MAX,
            )?,
        })
    }

    /// The first and the longest retry delay; the longest is never below the first.
    fn retry_ms(&self) -> Result<(u64, u64), String> {
        let base = in_range(
            "webhook.retry_ms_base (retry_base_ms)",
            self.retry_ms_base,
            WEBHOOK_RETRY_MS_BASE_DEFAULT,
            WEBHOOK_RETRY_MS_BASE_MAX,
        )?;
        let max = in_range(
            "webhook.retry_ms_max (retry_max_ms)",
            self.retry_ms_max,
            WEBHOOK_RETRY_MS_MAX_DEFAULT,
            WEBHOOK_RETRY_MS_MAX_MAX,
        )?;
        Ok((base, max.max(base)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunwayFile {
    thresholds_days: Option<Vec<u32>>,
    check_s: Option<u64>,
}

impl RunwayFile {
    /// `[runway]`: the thresholds announced (ascending, deduplicated) and the check's period.
    pub fn settings(self) -> Result<(Vec<u32>, u64), String> {
        let mut thresholds = self
            .thresholds_days
            .unwrap_or_else(|| RUNWAY_THRESHOLDS_DAYS_DEFAULT.to_vec());
        thresholds.sort_unstable();
        thresholds.dedup();
        if thresholds
            .iter()
            .any(|days| !(1..=RUNWAY_THRESHOLD_DAYS_MAX).contains(days))
            || thresholds.len() > RUNWAY_THRESHOLDS_MAX
        {
            return Err(format!(
                "runway.thresholds_days must be at most {RUNWAY_THRESHOLDS_MAX} numbers of days \
                 from 1 to {RUNWAY_THRESHOLD_DAYS_MAX}"
            ));
        }
        let check_s = in_range(
            "runway.check_s",
            self.check_s,
            RUNWAY_CHECK_S_DEFAULT,
            RUNWAY_CHECK_S_MAX,
        )?;
        Ok((thresholds, check_s))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsFile {
    stopped_reporting_s: Option<u64>,
}

impl AlertsFile {
    /// `[alerts] stopped_reporting_s`.
    pub fn stopped_reporting_s(self) -> Result<u64, String> {
        in_range(
            "alerts.stopped_reporting_s",
            self.stopped_reporting_s,
            STOPPED_REPORTING_S_DEFAULT,
            STOPPED_REPORTING_S_MAX,
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrdersFile {
    expiry_sweep_s: Option<u64>,
}

impl OrdersFile {
    /// `[orders]`: how often the expiry sweeper runs.
    pub fn expiry_sweep_s(self) -> Result<u64, String> {
        in_range(
            "orders.expiry_sweep_s",
            self.expiry_sweep_s,
            EXPIRY_SWEEP_S_DEFAULT,
            EXPIRY_SWEEP_S_MAX,
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DatabaseFile {
    pool_size: Option<usize>,
    wal_archive_dir: Option<PathBuf>,
}

impl DatabaseFile {
    /// `[database] wal_archive_dir` (`LEDGER_WAL_ARCHIVE_DIR`): an absolute path, or nothing
    /// (empty is nothing). Absolute, because the archive command runs in the cluster's own
    /// directory, not where the operator started `serve`.
    pub fn wal_archive_dir(&self, env: Env) -> Result<Option<PathBuf>, String> {
        let dir = env("LEDGER_WAL_ARCHIVE_DIR")
            .map(PathBuf::from)
            .or_else(|| self.wal_archive_dir.clone())
            .filter(|path| !path.as_os_str().is_empty());
        match dir {
            Some(dir) if !dir.is_absolute() => Err(format!(
                "database.wal_archive_dir {:?} must be an absolute path",
                dir.display().to_string()
            )),
            Some(dir)
                if dir
                    .to_str()
                    .is_none_or(|text| text.contains(['\'', '\n', '%'])) =>
            {
                Err(format!(
                    "database.wal_archive_dir {:?} must be UTF-8 without quotes, newlines or %",
                    dir.display().to_string()
                ))
            }
            dir => Ok(dir),
        }
    }

    /// `[database]`: connections per process.
    pub fn pool_size(self) -> Result<usize, String> {
        let pool_size = self.pool_size.unwrap_or(POOL_SIZE_DEFAULT);
        if (1..=POOL_SIZE_MAX).contains(&pool_size) {
            Ok(pool_size)
        } else {
            Err(format!("database.pool_size must be 1 to {POOL_SIZE_MAX}"))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditFile {
    signing_key_file: Option<PathBuf>,
    public_keys: Option<Vec<String>>,
    checkpoint_every_s: Option<u64>,
    trusted_checkpoint_file: Option<PathBuf>,
}

impl AuditFile {
    /// `[audit]`: who signs checkpoints, whose checkpoints are trusted, and how often.
    pub fn settings(self, env: Env) -> Result<AuditConfig, String> {
        Ok(AuditConfig {
            signing_key_file: env("LEDGER_SIGNING_KEY_FILE")
                .map(PathBuf::from)
                .or(self.signing_key_file)
                .filter(|path| !path.as_os_str().is_empty()),
            public_keys: public_keys(self.public_keys.unwrap_or_default())?,
            checkpoint_every_s: in_range(
                "audit.checkpoint_every_s",
                self.checkpoint_every_s,
                CHECKPOINT_EVERY_S_DEFAULT,
                CHECKPOINT_EVERY_S_MAX,
            )?,
            trusted_checkpoint_file: env("LEDGER_TRUSTED_CHECKPOINT_FILE")
                .map(PathBuf::from)
                .or(self.trusted_checkpoint_file)
                .filter(|path| !path.as_os_str().is_empty()),
        })
    }
}

/// `[audit] public_keys`: each 64 hex digits (an Ed25519 public key).
fn public_keys(texts: Vec<String>) -> Result<Vec<[u8; 32]>, String> {
    if texts.len() > PUBLIC_KEYS_MAX {
        return Err(format!(
            "audit.public_keys holds at most {PUBLIC_KEYS_MAX} keys"
        ));
    }
    texts
        .iter()
        .map(|text| {
            hex::decode(text.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    format!("audit.public_keys: {text:?} is not a public key (64 hex digits)")
                })
        })
        .collect()
}

/// `[[sku]]`: the catalog, and whether it is the built-in one (no `[[sku]]` at all).
pub(super) fn catalog(skus: Option<Vec<SkuFile>>) -> Result<(Catalog, bool), String> {
    let Some(skus) = skus else {
        return Ok((Catalog::built_in(), true));
    };
    let skus = skus
        .into_iter()
        .map(SkuFile::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if skus.is_empty() {
        return Err("at least one [[sku]] is required".into());
    }
    Ok((Catalog::new(skus)?, false))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SkuFile {
    id: String,
    name: String,
    bytes: i64,
    price: String,
    currency: String,
}

impl SkuFile {
    fn parse(self) -> Result<Sku, String> {
        let id = SkuId::parse(self.id.clone()).map_err(|e| format!("sku id {:?} {e}", self.id))?;
        let context = |field: &str| format!("sku {id}: {field}");
        if self.name.trim().is_empty() || self.name.chars().count() > SKU_NAME_CHARS_MAX {
            return Err(format!(
                "{} must be 1 to {SKU_NAME_CHARS_MAX} characters",
                context("name")
            ));
        }
        let bytes = Bytes::from_i64(self.bytes).map_err(|e| format!("{} {e}", context("bytes")))?;
        if bytes.is_zero() {
            return Err(format!("{} must be positive", context("bytes")));
        }
        let price: Decimal = self.price.parse().map_err(|e| {
            format!(
                "{} {:?} is not a decimal: {e}",
                context("price"),
                self.price
            )
        })?;
        if price.is_sign_negative() {
            return Err(format!("{} must not be negative", context("price")));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "{} {:?} must be an ISO 4217 code such as CNY",
                context("currency"),
                self.currency
            ));
        }
        Ok(Sku {
            id,
            name: self.name,
            bytes,
            price,
            currency: self.currency,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetricsFile {
    listen: Option<String>,
}

impl MetricsFile {
    /// `[metrics] listen` (`LEDGER_METRICS_LISTEN`): an `IP:port`, or nothing (empty is nothing).
    pub fn listen(self, env: Env) -> Result<Option<std::net::SocketAddr>, String> {
        env("LEDGER_METRICS_LISTEN")
            .or(self.listen)
            .filter(|text| !text.trim().is_empty())
            .map(|text| {
                text.trim().parse().map_err(|_| {
                    format!("metrics.listen: {text:?} is not an address such as 127.0.0.1:9464")
                })
            })
            .transpose()
    }
}
