//! A package's balance: the read model behind `GET /v1/orders/{instanceId}` and the stop-at-zero rule.

use crate::events::{OrderCreated, OrderReleased};
use crate::ids::{Bytes, InstanceId, JdPin, SkuId};
use crate::FoldError;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageStatus {
    Active,
    Expired,
    Released,
}

impl PackageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageStatus::Active => "active",
            PackageStatus::Expired => "expired",
            PackageStatus::Released => "released",
        }
    }

    pub fn parse(value: &str) -> Option<PackageStatus> {
        [
            PackageStatus::Active,
            PackageStatus::Expired,
            PackageStatus::Released,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }
}

/// One package as the ledger's events leave it.
///
/// Conservation (invariant I3) holds after every event:
/// `bytes_granted − bytes_consumed − bytes_forfeited = bytes_remaining − bytes_overage`, and at most
/// one of `bytes_remaining` and `bytes_overage` is non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub instance_id: InstanceId,
    pub jd_pin: JdPin,
    /// The SKU the package is on now, with its size and price per unit when it was chosen: an
    /// upgrade grants the size difference and is worth the price difference.
    pub sku_id: SkuId,
    pub sku_bytes: Bytes,
    pub unit_price: Decimal,
    pub units: u32,
    pub status: PackageStatus,
    pub bytes_granted: Bytes,
    pub bytes_consumed: Bytes,
    pub bytes_forfeited: Bytes,
    pub bytes_remaining: Bytes,
    /// Bytes consumed beyond the balance (in-flight traffic of stopping tasks); a grant covers it
    /// before anything else.
    pub bytes_overage: Bytes,
    pub expires_at: Option<DateTime<Utc>>,
    /// Low-balance thresholds already announced and still crossed, ascending.
    pub warned_percents: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Package {
    pub(crate) fn created(event: &OrderCreated, at: DateTime<Utc>) -> Package {
        Package {
            instance_id: event.instance_id.clone(),
            jd_pin: event.jd_pin.clone(),
            sku_id: event.sku_id.clone(),
            sku_bytes: event.sku_bytes,
            unit_price: event.unit_price,
            units: event.units,
            status: PackageStatus::Active,
            bytes_granted: event.bytes_granted,
            bytes_consumed: Bytes::ZERO,
            bytes_forfeited: Bytes::ZERO,
            bytes_remaining: event.bytes_granted,
            bytes_overage: Bytes::ZERO,
            expires_at: event.expires_at,
            warned_percents: Vec::new(),
            created_at: at,
            updated_at: at,
        }
    }

    /// `remaining − overage`: what is left, negative when in overage.
    pub fn bytes_net(&self) -> i128 {
        i128::from(self.bytes_remaining.get()) - i128::from(self.bytes_overage.get())
    }

    /// True when invariant I3 holds for this package.
    pub fn is_conserved(&self) -> bool {
        let left = i128::from(self.bytes_granted.get())
            - i128::from(self.bytes_consumed.get())
            - i128::from(self.bytes_forfeited.get());
        left == self.bytes_net() && (self.bytes_remaining.is_zero() || self.bytes_overage.is_zero())
    }

    /// Whether the order itself is in force at `now` (active and not past its expiry).
    pub fn is_in_force_at(&self, now: DateTime<Utc>) -> bool {
        self.status == PackageStatus::Active && self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether tasks may run on this package at `now`.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.is_in_force_at(now) && !self.bytes_remaining.is_zero()
    }

    /// Whether at least `percent` % of everything granted has been consumed (exact, in integers).
    pub fn consumed_reaches(&self, percent: u8) -> bool {
        let granted = u128::from(self.bytes_granted.get());
        granted > 0 && u128::from(self.bytes_consumed.get()) * 100 >= granted * u128::from(percent)
    }

    pub(crate) fn grant(&mut self, bytes: Bytes, at: DateTime<Utc>) -> Result<(), FoldError> {
        self.bytes_granted = self
            .bytes_granted
            .checked_add(bytes)
            .ok_or(FoldError::Overflow("bytesGranted"))?;
        // A grant pays off the overage first; only the rest becomes usable balance.
        let covered = bytes.min(self.bytes_overage);
        self.bytes_overage = self.bytes_overage.saturating_sub(covered);
        self.bytes_remaining = self
            .bytes_remaining
            .checked_add(bytes.saturating_sub(covered))
            .ok_or(FoldError::Overflow("bytesRemaining"))?;
        // A threshold announced before is announced again only after the balance first climbs
        // back above it.
        let still_crossed: Vec<u8> = self
            .warned_percents
            .iter()
            .copied()
            .filter(|percent| self.consumed_reaches(*percent))
            .collect();
        self.warned_percents = still_crossed;
        self.updated_at = at;
        debug_assert!(self.is_conserved(), "{self:?}");
        Ok(())
    }

    /// `(remaining, overage)` once `bytes` more are consumed: the balance pays first, the rest is
    /// overage.
    pub fn after_consuming(&self, bytes: Bytes) -> Result<(Bytes, Bytes), FoldError> {
        self.bytes_consumed
            .checked_add(bytes)
            .ok_or(FoldError::Overflow("bytesConsumed"))?;
        let from_balance = bytes.min(self.bytes_remaining);
        let overage = self
            .bytes_overage
            .checked_add(bytes.saturating_sub(from_balance))
            .ok_or(FoldError::Overflow("bytesOverage"))?;
        Ok((self.bytes_remaining.saturating_sub(from_balance), overage))
    }

    pub(crate) fn consume(&mut self, bytes: Bytes, at: DateTime<Utc>) -> Result<(), FoldError> {
        let (remaining, overage) = self.after_consuming(bytes)?;
        self.bytes_consumed = self
            .bytes_consumed
            .checked_add(bytes)
            .ok_or(FoldError::Overflow("bytesConsumed"))?;
        self.bytes_remaining = remaining;
        self.bytes_overage = overage;
        self.updated_at = at;
        debug_assert!(self.is_conserved(), "{self:?}");
        Ok(())
    }

    pub(crate) fn release(
        &mut self,
        event: &OrderReleased,
        at: DateTime<Utc>,
    ) -> Result<(), FoldError> {
        if event.bytes_forfeited != self.bytes_remaining {
            return Err(FoldError::Mismatch {
                field: "bytesForfeited",
                recorded: event.bytes_forfeited.to_string(),
                folded: self.bytes_remaining.to_string(),
            });
        }
        self.bytes_forfeited = self
            .bytes_forfeited
            .checked_add(self.bytes_remaining)
            .ok_or(FoldError::Overflow("bytesForfeited"))?;
        self.bytes_remaining = Bytes::ZERO;
        self.status = PackageStatus::Released;
        self.updated_at = at;
        debug_assert!(self.is_conserved(), "{self:?}");
        Ok(())
    }
}
