//! Settings: command-line flags and environment for the process, a TOML file for the product.
//!
//! The file is read once at start. Unknown keys are an error naming the key, so a typo never
//! silently falls back to a default. Secrets live in [`Secret`], which never prints its value.

use projections::ids::{Bytes, SkuId};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value that must never reach a log line, an error message or the ledger.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Longest SKU display name: it is copied into every grant event and shown to customers.
pub const SKU_NAME_LEN_MAX: usize = 64;

/// One package size sold on the marketplace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku {
    pub id: SkuId,
    pub name: String,
    pub bytes: Bytes,
    pub price: Decimal,
    pub currency: String,
}

/// The SKU catalog: what each marketplace charge item grants and costs today. Grants copy the
/// figures into the ledger, so editing the catalog never rewrites history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    skus: BTreeMap<SkuId, Sku>,
}

impl Catalog {
    /// Two packages sized in powers of two, for trying the service without a config file. Their
    /// prices are placeholders: a real deployment lists its own SKUs.
    pub fn built_in() -> Catalog {
        let tib = 1u64 << 40;
        let sku = |id: &str, name: &str, bytes: u64, price: &str| Sku {
            id: SkuId::parse(id).expect("built-in SKU ids are valid"),
            name: name.to_owned(),
            bytes: Bytes::new(bytes).expect("built-in SKU sizes are valid"),
            price: price.parse().expect("built-in SKU prices are valid"),
            currency: "CNY".to_owned(),
        };
        Catalog::new(vec![
            sku("FW_GOODS-500232-1", "DTS 1TB", tib, "1000.00"),
            sku("FW_GOODS-500232-2", "DTS 2TB", 2 * tib, "1800.00"),
        ])
        .expect("the built-in catalog is valid")
    }

    pub fn new(skus: Vec<Sku>) -> Result<Catalog, String> {
        let mut by_id = BTreeMap::new();
        for sku in skus {
            if let Some(previous) = by_id.insert(sku.id.clone(), sku) {
                return Err(format!("sku id {} is listed twice", previous.id));
            }
        }
        Ok(Catalog { skus: by_id })
    }

    pub fn get(&self, id: &SkuId) -> Option<&Sku> {
        self.skus.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Sku> {
        self.skus.values()
    }
}

/// The TOML file, as written by an operator.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    marketplace: MarketplaceFile,
    #[serde(default)]
    console: ConsoleFile,
    #[serde(default)]
    api: ApiFile,
    #[serde(default)]
    orders: OrdersFile,
    #[serde(default)]
    traffic: TrafficFile,
    #[serde(default)]
    webhook: WebhookFile,
    #[serde(default)]
    database: DatabaseFile,
    #[serde(default)]
    audit: AuditFile,
    #[serde(default)]
    sku: Option<Vec<SkuFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    signing_key_file: Option<PathBuf>,
    public_keys: Option<Vec<String>>,
    checkpoint_every_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketplaceFile {
    key: Option<Secret>,
    verify_window_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleFile {
    public_url: Option<String>,
    secret: Option<Secret>,
    session_ttl_s: Option<u64>,
    renew_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiFile {
    admin_token: Option<Secret>,
    reporter_tokens: Option<Vec<Secret>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficFile {
    report_bytes_max: Option<i64>,
    low_balance_percents: Option<Vec<u8>>,
    pipelines: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: Option<String>,
    secret: Option<Secret>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    timeout_ms: Option<u64>,
    attempts_max: Option<u64>,
    age_max_s: Option<u64>,
    retention_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersFile {
    expiry_sweep_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseFile {
    pool_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuFile {
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
        if self.name.trim().is_empty() || self.name.chars().count() > SKU_NAME_LEN_MAX {
            return Err(format!(
                "{} must be 1 to {SKU_NAME_LEN_MAX} characters",
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

/// Connections each `serve` process keeps to PostgreSQL by default: enough for the ingest pipeline,
/// the control plane and the background workers, few enough that several processes fit in
/// PostgreSQL's default `max_connections` of 100.
pub const POOL_SIZE_DEFAULT: usize = 16;
/// Upper bound on the pool, far below any PostgreSQL `max_connections` in practice.
pub const POOL_SIZE_MAX: usize = 256;

/// How far a `verify` (login-free sign-in) `timeStamp` may be from our clock by default.
pub const VERIFY_WINDOW_S_DEFAULT: u64 = 300;
/// Longest accepted window: a signed sign-in link must not stay usable for long.
pub const VERIFY_WINDOW_S_MAX: u64 = 3600;
/// How long a console session lasts after its last use.
pub const SESSION_TTL_S_DEFAULT: u64 = 600;
pub const SESSION_TTL_S_MAX: u64 = 86_400;
/// How often the sweeper looks for orders whose expiry has passed.
pub const EXPIRY_SWEEP_S_DEFAULT: u64 = 30;
pub const EXPIRY_SWEEP_S_MAX: u64 = 3600;
/// Shortest secret or token accepted: anything shorter can be guessed.
pub const SECRET_LEN_MIN: usize = 16;
/// Most bytes one traffic report may carry by default: 1 TiB, more than a task moves between two
/// reports on any real link, so a larger number is a bug in the agent, not traffic.
pub const REPORT_BYTES_MAX_DEFAULT: u64 = 1 << 40;
/// The low-balance warning levels by default (% of everything granted that is consumed).
pub const LOW_BALANCE_PERCENTS_DEFAULT: [u8; 2] = [80, 95];
/// Ingest pipelines per process by default: one transaction in flight per pipeline, so while one
/// appends to the ledger the other prepares its batch; two keep both cores of a small machine busy.
pub const PIPELINES_DEFAULT: usize = 2;
pub const PIPELINES_MAX: usize = 16;
/// Reporter tokens accepted; each names an agent fleet, so a handful is the norm.
pub const REPORTER_TOKENS_MAX: usize = 64;

/// Where and how stops, resumptions and warnings are pushed to the DTS control plane.
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
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            signing_key_file: None,
            public_keys: Vec::new(),
            checkpoint_every_s: CHECKPOINT_EVERY_S_DEFAULT,
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

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    /// First retry delay; each further one doubles, up to `retry_max_ms`, with jitter.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Per delivery attempt.
    pub timeout_ms: u64,
    /// Failed attempts after which an entry becomes a dead letter.
    pub attempts_max: u32,
    /// How long after its first attempt an entry is still retried.
    pub age_max_s: u64,
    /// How long delivered entries are kept before they are pruned.
    pub retention_s: u64,
}

/// First retry delay: a receiver restarting is back within seconds.
pub const WEBHOOK_RETRY_BASE_MS_DEFAULT: u64 = 1_000;
pub const WEBHOOK_RETRY_BASE_MS_MAX: u64 = 3_600_000;
/// Retries of a long outage are ten minutes apart: the receiver hears within ten minutes of
/// coming back, without being polled hard while it is away.
pub const WEBHOOK_RETRY_MAX_MS_DEFAULT: u64 = 600_000;
pub const WEBHOOK_RETRY_MAX_MS_MAX: u64 = 86_400_000;
pub const WEBHOOK_TIMEOUT_MS_DEFAULT: u64 = 5_000;
pub const WEBHOOK_TIMEOUT_MS_MAX: u64 = 60_000;
/// With the default delays (1 s doubling to 10 min) 20 attempts span about two hours: an outage
/// of the control plane longer than that needs an operator anyway.
pub const WEBHOOK_ATTEMPTS_MAX_DEFAULT: u64 = 20;
/// Beyond this a dead letter would in effect never be declared.
pub const WEBHOOK_ATTEMPTS_MAX_MAX: u64 = 10_000;
/// A day: a stop announced a day late is news for an operator rather than for the control plane.
pub const WEBHOOK_AGE_MAX_S_DEFAULT: u64 = 86_400;
pub const WEBHOOK_AGE_MAX_S_MAX: u64 = 30 * 86_400;
/// A week of delivered entries answers "was it sent?" for a recent incident; the ledger keeps
/// the events themselves for ever.
pub const WEBHOOK_RETENTION_S_DEFAULT: u64 = 7 * 86_400;
pub const WEBHOOK_RETENTION_S_MAX: u64 = 366 * 86_400;

impl WebhookConfig {
    /// A receiver with the default delays and bounds.
    pub fn new(url: String, secret: Secret) -> WebhookConfig {
        WebhookConfig {
            url,
            secret,
            retry_base_ms: WEBHOOK_RETRY_BASE_MS_DEFAULT,
            retry_max_ms: WEBHOOK_RETRY_MAX_MS_DEFAULT,
            timeout_ms: WEBHOOK_TIMEOUT_MS_DEFAULT,
            attempts_max: WEBHOOK_ATTEMPTS_MAX_DEFAULT as u32,
            age_max_s: WEBHOOK_AGE_MAX_S_DEFAULT,
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
    /// The marketplace's renewal page; the console links to it with `instanceId=<id>` appended.
    pub renew_url: Option<String>,
    /// Bearer token of operators and finance for the read APIs.
    pub admin_token: Option<Secret>,
    /// Bearer tokens of DTS agents and the control plane (tasks and traffic).
    pub reporter_tokens: Vec<Secret>,
    pub expiry_sweep_s: u64,
    pub report_bytes_max: Bytes,
    pub low_balance_percents: Vec<u8>,
    pub pipelines: usize,
    pub webhook: Option<WebhookConfig>,
    pub catalog: Catalog,
    /// True when no `[[sku]]` was configured and [`Catalog::built_in`] is in use.
    pub catalog_is_built_in: bool,
    pub pool_size: usize,
    pub audit: AuditConfig,
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
            renew_url: None,
            admin_token: None,
            reporter_tokens: Vec::new(),
            expiry_sweep_s: EXPIRY_SWEEP_S_DEFAULT,
            report_bytes_max: Bytes::new(REPORT_BYTES_MAX_DEFAULT).expect("1 TiB fits"),
            low_balance_percents: LOW_BALANCE_PERCENTS_DEFAULT.to_vec(),
            pipelines: PIPELINES_DEFAULT,
            webhook: None,
            catalog: Catalog::built_in(),
            catalog_is_built_in: true,
            pool_size: POOL_SIZE_DEFAULT,
            audit: AuditConfig::default(),
        }
    }
}

fn in_range(name: &str, value: Option<u64>, default: u64, max: u64) -> Result<u64, String> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{name} must be 1 to {max}"))
    }
}

fn strong(name: &str, secret: Option<Secret>) -> Result<Option<Secret>, String> {
    match secret {
        Some(secret) if secret.expose().is_empty() => Ok(None),
        Some(secret) if secret.expose().len() < SECRET_LEN_MIN => Err(format!(
            "{name} must be at least {SECRET_LEN_MIN} characters"
        )),
        other => Ok(other),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl Config {
    /// Reads the file (if any) and applies environment overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let shown = path.map_or_else(|| "(none)".to_owned(), |p| p.display().to_string());
        let fail = |message: String| ConfigError {
            path: shown.clone(),
            message,
        };
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| fail(format!("cannot be read: {e}")))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| fail(describe_toml_error(&text, &e)))?
            }
            None => FileConfig::default(),
        };
        let (catalog, catalog_is_built_in) = match file.sku {
            Some(skus) => {
                let skus = skus
                    .into_iter()
                    .map(SkuFile::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(&fail)?;
                if skus.is_empty() {
                    return Err(fail("at least one [[sku]] is required".into()));
                }
                (Catalog::new(skus).map_err(&fail)?, false)
            }
            None => (Catalog::built_in(), true),
        };
        let pool_size = file.database.pool_size.unwrap_or(POOL_SIZE_DEFAULT);
        if !(1..=POOL_SIZE_MAX).contains(&pool_size) {
            return Err(fail(format!(
                "database.pool_size must be 1 to {POOL_SIZE_MAX}"
            )));
        }
        let marketplace_key = env("LEDGER_MARKETPLACE_KEY")
            .map(Secret::new)
            .or(file.marketplace.key)
            .filter(|key| !key.expose().is_empty());
        let console_secret = strong(
            "console.secret (LEDGER_CONSOLE_SECRET)",
            env("LEDGER_CONSOLE_SECRET")
                .map(Secret::new)
                .or(file.console.secret),
        )
        .map_err(&fail)?;
        let admin_token = strong(
            "api.admin_token (LEDGER_ADMIN_TOKEN)",
            env("LEDGER_ADMIN_TOKEN")
                .map(Secret::new)
                .or(file.api.admin_token),
        )
        .map_err(&fail)?;
        let reporter_tokens = match env("LEDGER_REPORTER_TOKENS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .collect(),
            None => file.api.reporter_tokens.unwrap_or_default(),
        };
        if reporter_tokens.len() > REPORTER_TOKENS_MAX {
            return Err(fail(format!(
                "api.reporter_tokens lists more than {REPORTER_TOKENS_MAX} tokens"
            )));
        }
        for token in &reporter_tokens {
            strong(
                "api.reporter_tokens (LEDGER_REPORTER_TOKENS)",
                Some(token.clone()),
            )
            .map_err(&fail)?;
        }
        let report_bytes_max = match file.traffic.report_bytes_max {
            Some(max) => Bytes::from_i64(max)
                .ok()
                .filter(|b| !b.is_zero())
                .ok_or_else(|| fail("traffic.report_bytes_max must be positive".into()))?,
            None => Bytes::new(REPORT_BYTES_MAX_DEFAULT).expect("1 TiB fits"),
        };
        let mut low_balance_percents = file
            .traffic
            .low_balance_percents
            .unwrap_or_else(|| LOW_BALANCE_PERCENTS_DEFAULT.to_vec());
        low_balance_percents.sort_unstable();
        low_balance_percents.dedup();
        if low_balance_percents.iter().any(|p| !(1..=100).contains(p)) {
            return Err(fail(
                "traffic.low_balance_percents must be percentages from 1 to 100".into(),
            ));
        }
        let pipelines = in_range(
            "traffic.pipelines",
            file.traffic.pipelines.map(|p| p as u64),
            PIPELINES_DEFAULT as u64,
            PIPELINES_MAX as u64,
        )
        .map_err(&fail)? as usize;
        let webhook_url = env("LEDGER_WEBHOOK_URL")
            .or(file.webhook.url)
            .filter(|url| !url.is_empty());
        let webhook_secret = strong(
            "webhook.secret (LEDGER_WEBHOOK_SECRET)",
            env("LEDGER_WEBHOOK_SECRET")
                .map(Secret::new)
                .or(file.webhook.secret),
        )
        .map_err(&fail)?;
        let webhook = match (webhook_url, webhook_secret) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(fail(
                    "webhook.url is set but webhook.secret (LEDGER_WEBHOOK_SECRET) is not: \
                     deliveries must be signed"
                        .into(),
                ))
            }
            (Some(url), Some(secret)) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(fail(format!(
                        "webhook.url {url:?} must start with http:// or https://"
                    )));
                }
                let retry_base_ms = in_range(
                    "webhook.retry_base_ms",
                    file.webhook.retry_base_ms,
                    WEBHOOK_RETRY_BASE_MS_DEFAULT,
                    WEBHOOK_RETRY_BASE_MS_MAX,
                )
                .map_err(&fail)?;
                Some(WebhookConfig {
                    url,
                    secret,
                    retry_base_ms,
                    retry_max_ms: in_range(
                        "webhook.retry_max_ms",
                        file.webhook.retry_max_ms,
                        WEBHOOK_RETRY_MAX_MS_DEFAULT,
                        WEBHOOK_RETRY_MAX_MS_MAX,
                    )
                    .map_err(&fail)?
                    .max(retry_base_ms),
                    timeout_ms: in_range(
                        "webhook.timeout_ms",
                        file.webhook.timeout_ms,
                        WEBHOOK_TIMEOUT_MS_DEFAULT,
                        WEBHOOK_TIMEOUT_MS_MAX,
                    )
                    .map_err(&fail)?,
                    attempts_max: in_range(
                        "webhook.attempts_max",
                        file.webhook.attempts_max,
                        WEBHOOK_ATTEMPTS_MAX_DEFAULT,
                        WEBHOOK_ATTEMPTS_MAX_MAX,
                    )
                    .map_err(&fail)? as u32,
                    age_max_s: in_range(
                        "webhook.age_max_s",
                        file.webhook.age_max_s,
                        WEBHOOK_AGE_MAX_S_DEFAULT,
                        WEBHOOK_AGE_MAX_S_MAX,
                    )
                    .map_err(&fail)?,
                    retention_s: in_range(
                        "webhook.retention_s",
                        file.webhook.retention_s,
                        WEBHOOK_RETENTION_S_DEFAULT,
                        WEBHOOK_RETENTION_S_MAX,
                    )
                    .map_err(&fail)?,
                })
            }
        };
        let public_url = env("LEDGER_PUBLIC_URL")
            .or(file.console.public_url)
            .filter(|url| !url.is_empty());
        if let Some(url) = &public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(fail(format!(
                    "console.public_url {url:?} must start with http:// or https://"
                )));
            }
        }
        let renew_url = file.console.renew_url.filter(|url| !url.is_empty());
        if let Some(url) = &renew_url {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(fail(format!(
                    "console.renew_url {url:?} must start with http:// or https://"
                )));
            }
        }
        Ok(Config {
            marketplace_key,
            renew_url,
            verify_window_s: in_range(
                "marketplace.verify_window_s",
                file.marketplace.verify_window_s,
                VERIFY_WINDOW_S_DEFAULT,
                VERIFY_WINDOW_S_MAX,
            )
            .map_err(&fail)?,
            public_url: public_url.map(|url| url.trim_end_matches('/').to_owned()),
            console_secret,
            session_ttl_s: in_range(
                "console.session_ttl_s",
                file.console.session_ttl_s,
                SESSION_TTL_S_DEFAULT,
                SESSION_TTL_S_MAX,
            )
            .map_err(&fail)?,
            admin_token,
            reporter_tokens,
            report_bytes_max,
            low_balance_percents,
            pipelines,
            webhook,
            expiry_sweep_s: in_range(
                "orders.expiry_sweep_s",
                file.orders.expiry_sweep_s,
                EXPIRY_SWEEP_S_DEFAULT,
                EXPIRY_SWEEP_S_MAX,
            )
            .map_err(&fail)?,
            catalog,
            catalog_is_built_in,
            pool_size,
            audit: AuditConfig {
                signing_key_file: env("LEDGER_SIGNING_KEY_FILE")
                    .map(PathBuf::from)
                    .or(file.audit.signing_key_file)
                    .filter(|path| !path.as_os_str().is_empty()),
                public_keys: public_keys(file.audit.public_keys.unwrap_or_default())
                    .map_err(&fail)?,
                checkpoint_every_s: in_range(
                    "audit.checkpoint_every_s",
                    file.audit.checkpoint_every_s,
                    CHECKPOINT_EVERY_S_DEFAULT,
                    CHECKPOINT_EVERY_S_MAX,
                )
                .map_err(&fail)?,
            },
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

/// Where `serve` and the audit commands find their database and files.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// `DATABASE_URL`: an existing server, reached as the service's (or the reader's) role;
    /// `LEDGER_MIGRATE_DATABASE_URL`: the same server as the schema's owner, for migrating.
    External {
        url: Secret,
        migrate_url: Option<Secret>,
    },
    /// No `DATABASE_URL`: an embedded cluster under this directory.
    Embedded(PathBuf),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &str) -> Result<Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        Config::load(Some(file.path()), |_| None)
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load("[marketplace]\nkee = \"x\"\n").unwrap_err();
        assert!(err.message.contains("kee"), "{err}");
        let err = load(
            "[[sku]]\nid=\"a\"\nname=\"n\"\nbytes=1\nprice=\"1\"\ncurrency=\"CNY\"\ncolour=1\n",
        )
        .unwrap_err();
        assert!(err.message.contains("colour"), "{err}");
    }

    #[test]
    fn skus_are_checked() {
        let sku = |bytes: &str, price: &str, currency: &str| {
            format!("[[sku]]\nid=\"a\"\nname=\"DTS\"\nbytes={bytes}\nprice=\"{price}\"\ncurrency=\"{currency}\"\n")
        };
        assert!(load(&sku("0", "1", "CNY"))
            .unwrap_err()
            .message
            .contains("bytes"));
        assert!(load(&sku("-1", "1", "CNY")).is_err());
        assert!(load(&sku("10", "abc", "CNY"))
            .unwrap_err()
            .message
            .contains("price"));
        assert!(load(&sku("10", "-1", "CNY")).is_err());
        assert!(load(&sku("10", "1", "yuan"))
            .unwrap_err()
            .message
            .contains("currency"));
        let twice = format!("{}{}", sku("10", "1", "CNY"), sku("10", "1", "CNY"));
        assert!(load(&twice).unwrap_err().message.contains("twice"));
        let config = load(&sku("1099511627776", "1000.00", "CNY")).unwrap();
        let parsed = config.catalog.get(&SkuId::parse("a").unwrap()).unwrap();
        assert_eq!(parsed.price.to_string(), "1000.00");
        assert!(!config.catalog_is_built_in);
    }

    #[test]
    fn environment_overrides_the_file_key_and_secrets_do_not_print() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"[marketplace]\nkey = \"from-file\"\n")
            .unwrap();
        let config = Config::load(Some(file.path()), |name| {
            (name == "LEDGER_MARKETPLACE_KEY").then(|| "from-env".to_owned())
        })
        .unwrap();
        assert_eq!(
            config.marketplace_key.as_ref().unwrap().expose(),
            "from-env"
        );
        assert!(!format!("{config:?}").contains("from-env"));
        assert!(config.catalog_is_built_in);
    }

    #[test]
    fn short_secrets_and_out_of_range_settings_are_refused() {
        assert!(load("[api]\nadmin_token = \"short\"\n")
            .unwrap_err()
            .message
            .contains("admin_token"));
        assert!(load("[console]\nsecret = \"short\"\n")
            .unwrap_err()
            .message
            .contains("secret"));
        assert!(load("[marketplace]\nverify_window_s = 0\n").is_err());
        assert!(load("[orders]\nexpiry_sweep_s = 99999\n").is_err());
        assert!(load("[console]\npublic_url = \"ftp://x\"\n").is_err());
        assert!(load("[console]\nrenew_url = \"javascript:alert(1)\"\n").is_err());
        let renew = load("[console]\nrenew_url = \"https://market.example.com/renew\"\n").unwrap();
        assert_eq!(
            renew.renew_url.as_deref(),
            Some("https://market.example.com/renew")
        );
        let config = load("[console]\npublic_url = \"https://dts.example.com/\"\n").unwrap();
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://dts.example.com")
        );
        assert_eq!(config.verify_window_s, VERIFY_WINDOW_S_DEFAULT);
    }

    #[test]
    fn traffic_and_webhook_settings_are_checked() {
        assert!(load("[webhook]\nurl = \"http://cp\"\n")
            .unwrap_err()
            .message
            .contains("secret"));
        assert!(load("[traffic]\nlow_balance_percents = [0]\n").is_err());
        assert!(load("[traffic]\nreport_bytes_max = 0\n").is_err());
        assert!(load("[api]\nreporter_tokens = [\"short\"]\n").is_err());
        let config = load(
            "[traffic]\nlow_balance_percents = [95, 50, 95]\n\
             [webhook]\nurl = \"http://cp/hook\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        assert_eq!(config.low_balance_percents, vec![50, 95]);
        let webhook = config.webhook.unwrap();
        assert_eq!((webhook.retry_base_ms, webhook.timeout_ms), (1_000, 5_000));
        assert!(!format!("{webhook:?}").contains("0123456789abcdef"));
        assert_eq!(
            (webhook.attempts_max, webhook.age_max_s, webhook.retention_s),
            (20, 86_400, 604_800)
        );
    }

    #[test]
    fn webhook_bounds_are_read_and_checked() {
        let hook = "[webhook]\nurl = \"http://cp/hook\"\nsecret = \"0123456789abcdef\"\n";
        let config = load(&format!(
            "{hook}attempts_max = 3\nage_max_s = 60\nretention_s = 3600\n"
        ))
        .unwrap();
        let webhook = config.webhook.unwrap();
        assert_eq!(
            (webhook.attempts_max, webhook.age_max_s, webhook.retention_s),
            (3, 60, 3_600)
        );
        for bad in [
            "attempts_max = 0",
            "attempts_max = 10001",
            "age_max_s = 0",
            "retention_s = 0",
            "retention_s = 99999999",
        ] {
            let error = load(&format!("{hook}{bad}\n")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(error.message.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn parse_errors_do_not_quote_the_line_with_a_secret() {
        let err = load("[marketplace]\nkey = \"sup3r\\qsecret\"\n").unwrap_err();
        assert!(err.message.contains("line 2"), "{err}");
        assert!(!err.to_string().contains("sup3r"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/ledger.toml")), |_| None).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/ledger.toml"),
            "{err}"
        );
    }
}
