//! Revenue recognition, per package (a pure fold like the balances).
//!
//! Every grant is a *layer*: its bytes and the money they stand for (`amount`, copied into the
//! event from the catalog when granted). Consumption burns layers oldest first; the money of a
//! layer is recognized in proportion to the bytes burned from it, rounded to the currency's cents
//! on the cumulative figure (so a fully burned layer recognizes exactly its amount, with no drift
//! from rounding each step). Forfeited bytes (release) are recognized when forfeited. Consumption
//! with no layer left is overage and earns nothing until a later grant covers it: the covered part
//! of that grant is burned at once. What is not recognized yet is deferred revenue.

use crate::events::Event;
use crate::ids::{Bytes, InstanceId};
use crate::FoldError;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::{BTreeMap, VecDeque};

/// Money is rounded to this many decimals at least (cents), or to the amount's own scale if finer.
const MONEY_SCALE_MIN: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Layer {
    bytes: Bytes,
    amount: Decimal,
    burned: Bytes,
    recognized: Decimal,
}

impl Layer {
    fn left(&self) -> Bytes {
        self.bytes.saturating_sub(self.burned)
    }

    /// Burns up to `bytes`; returns the bytes burned and the money newly recognized.
    fn burn(&mut self, bytes: Bytes) -> (Bytes, Decimal) {
        let take = bytes.min(self.left());
        self.burned = self
            .burned
            .checked_add(take)
            .expect("at most the layer's bytes");
        let scale = self.amount.scale().max(MONEY_SCALE_MIN);
        let share = if self.burned == self.bytes {
            self.amount
        } else {
            // amount × burned / bytes, exact in i128 cents-of-cents before rounding.
            (self.amount * Decimal::from(self.burned.get()) / Decimal::from(self.bytes.get()))
                .round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero)
        };
        let recognized_now = share - self.recognized;
        self.recognized = share;
        (take, recognized_now)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Account {
    layers: VecDeque<Layer>,
    /// Bytes consumed beyond every layer, waiting for a grant to cover them.
    overage: Bytes,
}

/// Recognized and deferred revenue of every package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revenue {
    accounts: BTreeMap<InstanceId, Account>,
    currencies: Vec<String>,
}

impl Revenue {
    /// Folds one event; returns the package it concerns and the money it made recognized.
    pub fn apply(&mut self, event: &Event) -> Result<Option<(InstanceId, Decimal)>, FoldError> {
        let grant = match event {
            Event::OrderCreated(e) => {
                Some((&e.instance_id, e.bytes_granted, e.amount, &e.currency))
            }
            Event::OrderRenewed(e) => {
                Some((&e.instance_id, e.bytes_granted, e.amount, &e.currency))
            }
            Event::OrderUpgraded(e) => {
                Some((&e.instance_id, e.bytes_granted, e.amount, &e.currency))
            }
            Event::OrderDilated(e) => {
                Some((&e.instance_id, e.bytes_granted, e.amount, &e.currency))
            }
            _ => None,
        };
        if let Some((instance_id, bytes, amount, currency)) = grant {
            if !self.currencies.contains(currency) {
                self.currencies.push(currency.clone());
            }
            let account = self.accounts.entry(instance_id.clone()).or_default();
            if bytes.is_zero() {
                // Money with no bytes to burn (a dearer SKU of the same size) is earned at once.
                return Ok(Some((instance_id.clone(), amount)));
            }
            let mut layer = Layer {
                bytes,
                amount,
                burned: Bytes::ZERO,
                recognized: Decimal::ZERO,
            };
            // The grant first covers earlier overage: those bytes are already used.
            let (covered, recognized) = layer.burn(account.overage);
            account.overage = account.overage.saturating_sub(covered);
            if !layer.left().is_zero() {
                account.layers.push_back(layer);
            }
            return Ok(Some((instance_id.clone(), recognized)));
        }
        match event {
            Event::TrafficConsumed(e) => {
                let account = self
                    .accounts
                    .get_mut(&e.instance_id)
                    .ok_or_else(|| FoldError::UnknownPackage(e.instance_id.clone()))?;
                let mut left = e.bytes;
                let mut recognized = Decimal::ZERO;
                while !left.is_zero() {
                    let Some(layer) = account.layers.front_mut() else {
                        break;
                    };
                    let (taken, money) = layer.burn(left);
                    left = left.saturating_sub(taken);
                    recognized += money;
                    if layer.left().is_zero() {
                        account.layers.pop_front();
                    }
                }
                account.overage = account
                    .overage
                    .checked_add(left)
                    .ok_or(FoldError::Overflow("overage"))?;
                Ok(Some((e.instance_id.clone(), recognized)))
            }
            Event::OrderReleased(e) => {
                let account = self
                    .accounts
                    .get_mut(&e.instance_id)
                    .ok_or_else(|| FoldError::UnknownPackage(e.instance_id.clone()))?;
                let mut recognized = Decimal::ZERO;
                let mut forfeited = Bytes::ZERO;
                for mut layer in account.layers.drain(..) {
                    let left = layer.left();
                    forfeited = forfeited
                        .checked_add(left)
                        .ok_or(FoldError::Overflow("forfeit"))?;
                    recognized += layer.burn(left).1;
                }
                if forfeited != e.bytes_forfeited {
                    return Err(FoldError::Mismatch {
                        field: "bytesForfeited",
                        recorded: e.bytes_forfeited.to_string(),
                        folded: forfeited.to_string(),
                    });
                }
                Ok(Some((e.instance_id.clone(), recognized)))
            }
            _ => Ok(None),
        }
    }

    /// Money granted to the package and not recognized yet.
    pub fn deferred(&self, instance_id: &InstanceId) -> Decimal {
        self.accounts
            .get(instance_id)
            .map_or(Decimal::ZERO, |account| {
                account
                    .layers
                    .iter()
                    .map(|layer| layer.amount - layer.recognized)
                    .sum()
            })
    }

    /// The bytes still to burn, which equal the package's `bytes_remaining`.
    pub fn bytes_left(&self, instance_id: &InstanceId) -> Bytes {
        self.accounts
            .get(instance_id)
            .map_or(Bytes::ZERO, |account| {
                account
                    .layers
                    .iter()
                    .fold(Bytes::ZERO, |sum, layer| sum.saturating_add(layer.left()))
            })
    }

    /// Every currency seen in a grant, in order of first appearance.
    pub fn currencies(&self) -> &[String] {
        &self.currencies
    }
}
