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
    database: DatabaseFile,
    #[serde(default)]
    sku: Option<Vec<SkuFile>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketplaceFile {
    key: Option<Secret>,
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

/// What the product needs to know, from the file and the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// The ISV key that signs marketplace callbacks; `None` refuses every callback.
    pub marketplace_key: Option<Secret>,
    pub catalog: Catalog,
    /// True when no `[[sku]]` was configured and [`Catalog::built_in`] is in use.
    pub catalog_is_built_in: bool,
    pub pool_size: usize,
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
                toml::from_str::<FileConfig>(&text).map_err(|e| fail(e.to_string()))?
            }
            None => FileConfig::default(),
        };
        let (catalog, catalog_is_built_in) = match file.sku {
            Some(skus) => {
                let skus = skus
                    .into_iter()
                    .map(SkuFile::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail)?;
                if skus.is_empty() {
                    return Err(fail("at least one [[sku]] is required".into()));
                }
                (Catalog::new(skus).map_err(fail)?, false)
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
        Ok(Config {
            marketplace_key,
            catalog,
            catalog_is_built_in,
            pool_size,
        })
    }
}

/// Where `serve` and the audit commands find their database and files.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    /// `DATABASE_URL`: an existing server.
    External(Secret),
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
    fn a_missing_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/ledger.toml")), |_| None).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/ledger.toml"),
            "{err}"
        );
    }
}
