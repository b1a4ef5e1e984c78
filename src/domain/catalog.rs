//! The SKU catalog: what each marketplace charge item grants and costs today.
//!
//! A domain concept, not a setting: orders are decided against it. The configuration file only
//! lists the SKUs (see `crate::configuration`).

use projections::ids::{Bytes, SkuId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Longest SKU display name, in characters: it is copied into every grant event and shown to
/// customers.
pub const SKU_NAME_CHARS_MAX: usize = 64;

/// One package size sold on the marketplace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku {
    pub id: SkuId,
    pub name: String,
    pub bytes: Bytes,
    pub price: Decimal,
    pub currency: String,
}

/// The SKUs on sale. Grants copy the figures into the ledger, so editing the catalog never
/// rewrites history.
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
