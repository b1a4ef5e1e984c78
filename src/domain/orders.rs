//! Marketplace orders: what each callback does to a package (DESIGN §4).

use super::Draft;
use crate::domain::catalog::{Catalog, Sku};
use chrono::{DateTime, Utc};
use projections::events::{
    Event, ExpiryReason, ExpirySource, OrderCreated, OrderCredentialRotated, OrderDilated,
    OrderExpired, OrderExpiryHeld, OrderReleased, OrderRenewed, OrderUpgraded, StopReason,
};
use projections::ids::{Bytes, InstanceId, JdPin, OrderRef, SkuId};
use projections::{FoldError, Package, PackageStatus};
use rust_decimal::Decimal;

/// `createInstance`, parsed. The package's id is the `orderBizId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub instance_id: InstanceId,
    pub jd_pin: JdPin,
    /// `orderNumber` and/or `orderId`.
    pub order: OrderRef,
    pub service_code: String,
    pub sku_id: SkuId,
    /// `accountNum`, 1 to [`UNITS_MAX`].
    pub units: u32,
    pub expires_at: Option<DateTime<Utc>>,
    pub template: Option<String>,
}

/// Largest `accountNum` accepted: a thousand packages in one order is far beyond any real purchase
/// and keeps `bytes × units` and `price × units` small.
pub const UNITS_MAX: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewOrder {
    pub instance_id: InstanceId,
    pub order: OrderRef,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeOrder {
    pub instance_id: InstanceId,
    pub order: OrderRef,
    pub sku_id: SkuId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DilateOrder {
    pub instance_id: InstanceId,
    pub order: OrderRef,
    pub units: u32,
}

/// Why a callback changes nothing. Each maps to a failure reply the marketplace retries.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("skuId {0} is not in the SKU catalog")]
    UnknownSku(SkuId),
    #[error("instanceId {0} is not known")]
    UnknownInstance(InstanceId),
    #[error("instance {0} was released and can never change again")]
    Released(InstanceId),
    #[error("{0}")]
    Conflict(String),
    #[error("the grant is too large to record")]
    Overflow,
    #[error("instance {0} has no held expiry notice to apply")]
    NoHeldNotice(InstanceId),
    #[error("the ledger refused the decision: {0}")]
    Fold(#[from] FoldError),
}

/// What a callback did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Decided now; the event is the order event the reply describes.
    Recorded(Event),
    /// The same order was recorded before; the reply repeats the original event's.
    Replayed(Event),
    /// Nothing to do (expiring an expired package, releasing a released one).
    Unchanged(&'static str),
}

impl Outcome {
    pub fn event(&self) -> Option<&Event> {
        match self {
            Outcome::Recorded(event) | Outcome::Replayed(event) => Some(event),
            Outcome::Unchanged(_) => None,
        }
    }
}

/// The earlier grant of the same marketplace order among a package's renewals, upgrades and
/// expansions (a purchase is found by its `orderBizId`), if any.
pub fn earlier_order(grants: Vec<Event>, order: &OrderRef) -> Option<Event> {
    grants.into_iter().find(|event| {
        !matches!(event, Event::OrderCreated(_))
            && event
                .order_ref()
                .is_some_and(|earlier| earlier.same_order(order))
    })
}

/// The answer to an order recorded before: the same answer again when `same` says the call
/// repeats it, a conflict naming the order when it says something else.
fn repeat(
    earlier: Event,
    same: impl FnOnce(&Event) -> bool,
    order: &impl std::fmt::Display,
) -> Result<Outcome, Refusal> {
    if same(&earlier) {
        Ok(Outcome::Replayed(earlier))
    } else {
        Err(Refusal::Conflict(format!(
            "{order} was already recorded with different parameters"
        )))
    }
}

/// `createInstance`. `earlier` is the `OrderCreated` recorded under the same `orderBizId`, if any.
pub fn create(
    draft: &mut Draft,
    command: &CreateOrder,
    catalog: &Catalog,
    earlier: Option<Event>,
) -> Result<Outcome, Refusal> {
    if let Some(earlier) = earlier {
        let same = |event: &Event| {
            matches!(event, Event::OrderCreated(e)
                if e.jd_pin == command.jd_pin
                    && event.order_ref().is_some_and(|order| order.same_order(&command.order))
                    && e.service_code == command.service_code
                    && e.sku_id == command.sku_id
                    && e.units == command.units
                    && e.expires_at == command.expires_at
                    && e.template == command.template)
        };
        return repeat(
            earlier,
            same,
            &format_args!("orderBizId {}", command.instance_id),
        );
    }
    let sku = catalog
        .get(&command.sku_id)
        .ok_or_else(|| Refusal::UnknownSku(command.sku_id.clone()))?;
    let (bytes_granted, amount) = grant_of(sku, command.units)?;
    let event = Event::OrderCreated(OrderCreated {
        instance_id: command.instance_id.clone(),
        jd_pin: command.jd_pin.clone(),
        order_id: command.order.id().cloned(),
        order_number: command.order.number().cloned(),
        service_code: command.service_code.clone(),
        sku_id: sku.id.clone(),
        sku_name: sku.name.clone(),
        sku_bytes: sku.bytes,
        units: command.units,
        bytes_granted,
        unit_price: sku.price,
        amount,
        currency: sku.currency.clone(),
        expires_at: command.expires_at,
        template: command.template.clone(),
    });
    draft.emit(event.clone())?;
    // An order bought with an expiry already past is recorded, then expired right away.
    draft.expire_if_due(&command.instance_id)?;
    Ok(Outcome::Recorded(event))
}

/// The package a change applies to, which must exist and not be released. Expiry by our clock is
/// recorded first, so the history says the package had expired before it was renewed.
fn changeable(draft: &mut Draft, instance_id: &InstanceId) -> Result<(), Refusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| Refusal::UnknownInstance(instance_id.clone()))?;
    if package.status == PackageStatus::Released {
        return Err(Refusal::Released(instance_id.clone()));
    }
    draft.expire_if_due(instance_id)?;
    Ok(())
}

/// The SKU a package is on: the catalog's entry today or, once the SKU is removed from the
/// catalog, `recorded` (the size and price recorded on the package), so a removed SKU never
/// blocks the packages bought with it.
fn package_sku<'a>(
    package: &Package,
    catalog: &'a Catalog,
    recorded: Option<&'a Sku>,
) -> Result<&'a Sku, Refusal> {
    catalog
        .get(&package.sku_id)
        .or(recorded.filter(|sku| sku.id == package.sku_id))
        .ok_or_else(|| Refusal::UnknownSku(package.sku_id.clone()))
}

/// `units` more of the package's own SKU ([`package_sku`]) at today's price: the SKU, and what
/// they grant and cost. Renewal grants the package's units again; expansion adds units.
fn own_sku_grant<'a>(
    package: &Package,
    catalog: &'a Catalog,
    recorded: Option<&'a Sku>,
    units: u32,
) -> Result<(&'a Sku, Bytes, Decimal), Refusal> {
    let sku = package_sku(package, catalog, recorded)?;
    let (bytes, amount) = grant_of(sku, units)?;
    Ok((sku, bytes, amount))
}

/// What `units` of `sku` grant and cost: its bytes and its price, `units` times.
fn grant_of(sku: &Sku, units: u32) -> Result<(Bytes, Decimal), Refusal> {
    let bytes = sku
        .bytes
        .checked_mul(u64::from(units))
        .ok_or(Refusal::Overflow)?;
    let amount = sku
        .price
        .checked_mul(Decimal::from(units))
        .ok_or(Refusal::Overflow)?;
    Ok((bytes, amount))
}

/// An order that grants more on an existing package: the package and the marketplace order.
trait Grant {
    fn target(&self) -> (&InstanceId, &OrderRef);
}

impl Grant for RenewOrder {
    fn target(&self) -> (&InstanceId, &OrderRef) {
        (&self.instance_id, &self.order)
    }
}

impl Grant for UpgradeOrder {
    fn target(&self) -> (&InstanceId, &OrderRef) {
        (&self.instance_id, &self.order)
    }
}

impl Grant for DilateOrder {
    fn target(&self) -> (&InstanceId, &OrderRef) {
        (&self.instance_id, &self.order)
    }
}

/// A grant on an existing package (renewal, upgrade, expansion). With `earlier`, the grant
/// recorded before for the same order, the call is answered by it ([`repeat`]). Otherwise the
/// package must be changeable, `decide` builds the grant from it, and the tasks the grant makes
/// usable again resume.
fn grant_more(
    draft: &mut Draft,
    command: &impl Grant,
    earlier: Option<Event>,
    same: impl FnOnce(&Event) -> bool,
    decide: impl FnOnce(&Package) -> Result<Event, Refusal>,
) -> Result<Outcome, Refusal> {
    let (instance_id, order) = command.target();
    if let Some(earlier) = earlier {
        return repeat(earlier, same, order);
    }
    changeable(draft, instance_id)?;
    let event = decide(draft.package(instance_id).expect("checked above"))?;
    draft.emit(event.clone())?;
    // A renewal into the past leaves the package expired; the other grants keep the
    // `expiresAt` that `changeable` checked, so nothing expires here for them.
    draft.expire_if_due(instance_id)?;
    draft.resume_tasks(instance_id)?;
    Ok(Outcome::Recorded(event))
}

/// `renewInstance`: one more term of the package's SKU for each of its units (`SKU bytes × units`
/// at today's price), and a new expiry. `recorded`: the package's SKU as recorded on it, used
/// when the catalog no longer has it.
pub fn renew(
    draft: &mut Draft,
    command: &RenewOrder,
    catalog: &Catalog,
    recorded: Option<&Sku>,
    earlier: Option<Event>,
) -> Result<Outcome, Refusal> {
    let same = |event: &Event| matches!(event, Event::OrderRenewed(e) if e.expires_at == command.expires_at);
    grant_more(draft, command, earlier, same, |package| {
        let units = package.units;
        let (sku, bytes_granted, amount) = own_sku_grant(package, catalog, recorded, units)?;
        Ok(Event::OrderRenewed(OrderRenewed {
            instance_id: command.instance_id.clone(),
            order_id: command.order.id().cloned(),
            order_number: command.order.number().cloned(),
            sku_id: sku.id.clone(),
            sku_name: sku.name.clone(),
            bytes_granted,
            unit_price: sku.price,
            amount,
            currency: sku.currency.clone(),
            expires_at: command.expires_at,
            units: Some(units),
        }))
    })
}

/// `upgradeInstance`: switch SKU; a bigger one grants the difference for each of the package's
/// units, a smaller one takes nothing. The old SKU's size and price are those recorded on the
/// package, so upgrading from a SKU since removed from the catalog works.
pub fn upgrade(
    draft: &mut Draft,
    command: &UpgradeOrder,
    catalog: &Catalog,
    earlier: Option<Event>,
) -> Result<Outcome, Refusal> {
    let same =
        |event: &Event| matches!(event, Event::OrderUpgraded(e) if e.sku_id == command.sku_id);
    grant_more(draft, command, earlier, same, |package| {
        let sku = catalog
            .get(&command.sku_id)
            .ok_or_else(|| Refusal::UnknownSku(command.sku_id.clone()))?;
        let units = package.units;
        Ok(Event::OrderUpgraded(OrderUpgraded {
            instance_id: command.instance_id.clone(),
            order_id: command.order.id().cloned(),
            order_number: command.order.number().cloned(),
            from_sku_id: package.sku_id.clone(),
            sku_id: sku.id.clone(),
            sku_name: sku.name.clone(),
            sku_bytes: sku.bytes,
            bytes_granted: sku
                .bytes
                .saturating_sub(package.sku_bytes)
                .checked_mul(u64::from(units))
                .ok_or(Refusal::Overflow)?,
            unit_price: sku.price,
            amount: (sku.price - package.unit_price)
                .max(Decimal::ZERO)
                .checked_mul(Decimal::from(units))
                .ok_or(Refusal::Overflow)?,
            currency: sku.currency.clone(),
            units: Some(units),
        }))
    })
}

/// `dilateInstance` (扩容): `accountNum` more units of the package's SKU at today's price.
/// `recorded`: the package's SKU as recorded on it, used when the catalog no longer has it.
pub fn dilate(
    draft: &mut Draft,
    command: &DilateOrder,
    catalog: &Catalog,
    recorded: Option<&Sku>,
    earlier: Option<Event>,
) -> Result<Outcome, Refusal> {
    let same = |event: &Event| matches!(event, Event::OrderDilated(e) if e.units == command.units);
    grant_more(draft, command, earlier, same, |package| {
        let (sku, bytes_granted, amount) =
            own_sku_grant(package, catalog, recorded, command.units)?;
        Ok(Event::OrderDilated(OrderDilated {
            instance_id: command.instance_id.clone(),
            order_id: command.order.id().cloned(),
            order_number: command.order.number().cloned(),
            sku_id: sku.id.clone(),
            sku_name: sku.name.clone(),
            units: command.units,
            bytes_granted,
            unit_price: sku.price,
            amount,
            currency: sku.currency.clone(),
        }))
    })
}

/// `expiredInstance`: the marketplace says the order ended. Idempotent by state.
///
/// While the package's `expiresAt` is still ahead, the package does not expire: the notice may
/// speak of an expiry a renewal has since paid for (a late or retried call, or a captured URL
/// replayed), and a paid renewal is never undone by it. But the marketplace also sends it after
/// a refund, so the notice is not dropped: it is recorded as [`OrderExpiryHeld`], once per
/// package and `expiresAt` (`held` is the one recorded before for the current `expiresAt`, if
/// any), for an operator to apply ([`apply_held_expiry`]). Our clock expires the package anyway
/// once `expiresAt` passes.
pub fn expire(
    draft: &mut Draft,
    instance_id: &InstanceId,
    held: Option<Event>,
) -> Result<Outcome, Refusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| Refusal::UnknownInstance(instance_id.clone()))?;
    match package.status {
        PackageStatus::Released => Ok(Outcome::Unchanged("already released")),
        PackageStatus::Expired => Ok(Outcome::Unchanged("already expired")),
        PackageStatus::Active => match package.expires_at {
            Some(expires_at) if expires_at > draft.now => match held {
                Some(held) => Ok(Outcome::Replayed(held)),
                None => {
                    let event = Event::OrderExpiryHeld(OrderExpiryHeld {
                        instance_id: instance_id.clone(),
                        expires_at,
                    });
                    draft.emit(event.clone())?;
                    Ok(Outcome::Recorded(event))
                }
            },
            _ => {
                let event = Event::OrderExpired(OrderExpired {
                    instance_id: instance_id.clone(),
                    source: ExpirySource::Marketplace,
                    expires_at: package.expires_at,
                    reason: None,
                });
                draft.emit(event.clone())?;
                draft.stop_tasks(instance_id, StopReason::OrderExpired)?;
                Ok(Outcome::Recorded(event))
            }
        },
    }
}

/// The customer (console) or an operator replaces the package's order credential: generation
/// `current + 1`, whose code is the only one that opens anything from then on. A released
/// package signs no one in, so its credential is not rotated.
pub fn rotate_credential(
    draft: &mut Draft,
    instance_id: &InstanceId,
    current: u32,
) -> Result<Event, Refusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| Refusal::UnknownInstance(instance_id.clone()))?;
    if package.status == PackageStatus::Released {
        return Err(Refusal::Released(instance_id.clone()));
    }
    let event = Event::OrderCredentialRotated(OrderCredentialRotated {
        instance_id: instance_id.clone(),
        generation: current.checked_add(1).ok_or(Refusal::Overflow)?,
    });
    draft.emit(event.clone())?;
    Ok(event)
}

/// An operator applies a held expiry notice (`dts-ledger orders expire ID --reason refund`): the
/// package expires now, although its `expiresAt` is still ahead, and its running tasks stop.
/// `held` says whether the package has a notice held since it last expired; without one there is
/// nothing to apply, so an operator cannot expire a package the marketplace never said ended.
pub fn apply_held_expiry(
    draft: &mut Draft,
    instance_id: &InstanceId,
    reason: ExpiryReason,
    held: bool,
) -> Result<Outcome, Refusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| Refusal::UnknownInstance(instance_id.clone()))?;
    match package.status {
        PackageStatus::Released => return Err(Refusal::Released(instance_id.clone())),
        PackageStatus::Expired => return Ok(Outcome::Unchanged("already expired")),
        PackageStatus::Active if !held => {
            return Err(Refusal::NoHeldNotice(instance_id.clone()));
        }
        PackageStatus::Active => {}
    }
    let event = Event::OrderExpired(OrderExpired {
        instance_id: instance_id.clone(),
        source: ExpirySource::Operator,
        expires_at: package.expires_at,
        reason: Some(reason),
    });
    draft.emit(event.clone())?;
    draft.stop_tasks(instance_id, StopReason::OrderExpired)?;
    Ok(Outcome::Recorded(event))
}

/// `releaseInstance`: cancelled and refunded. The remaining bytes are forfeited (recorded), the
/// tasks stop, and the package is never usable again. Idempotent by state.
pub fn release(draft: &mut Draft, instance_id: &InstanceId) -> Result<Outcome, Refusal> {
    let package = draft
        .package(instance_id)
        .ok_or_else(|| Refusal::UnknownInstance(instance_id.clone()))?;
    if package.status == PackageStatus::Released {
        return Ok(Outcome::Unchanged("already released"));
    }
    let event = Event::OrderReleased(OrderReleased {
        instance_id: instance_id.clone(),
        bytes_forfeited: package.bytes_remaining,
    });
    draft.emit(event.clone())?;
    draft.stop_tasks(instance_id, StopReason::OrderReleased)?;
    Ok(Outcome::Recorded(event))
}

#[cfg(test)]
mod tests;
