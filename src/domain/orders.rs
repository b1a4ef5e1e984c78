//! Marketplace orders: what each callback does to a package (DESIGN §4).

use super::Draft;
use crate::domain::catalog::{Catalog, Sku};
use chrono::{DateTime, Utc};
use projections::events::{
    Event, ExpiryReason, ExpirySource, OrderCreated, OrderCredentialRotated, OrderDilated,
    OrderExpired, OrderExpiryHeld, OrderReleased, OrderRenewed, OrderUpgraded, StopReason,
};
use projections::ids::{InstanceId, JdPin, OrderRef, SkuId};
use projections::{FoldError, Package, PackageStatus};
use rust_decimal::Decimal;

/// The keys the ledger looks a purchase and a held expiry notice up by, from the event catalog.
pub use projections::keys::{create_key, expiry_held_key};

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
    let bytes_granted = sku
        .bytes
        .checked_mul(u64::from(command.units))
        .ok_or(Refusal::Overflow)?;
    let amount = sku
        .price
        .checked_mul(Decimal::from(command.units))
        .ok_or(Refusal::Overflow)?;
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
    if let Some(earlier) = earlier {
        let same = |event: &Event| matches!(event, Event::OrderRenewed(e) if e.expires_at == command.expires_at);
        return repeat(earlier, same, &command.order);
    }
    changeable(draft, &command.instance_id)?;
    let package = draft.package(&command.instance_id).expect("checked above");
    let units = package.units;
    let sku = package_sku(package, catalog, recorded)?;
    let event = Event::OrderRenewed(OrderRenewed {
        instance_id: command.instance_id.clone(),
        order_id: command.order.id().cloned(),
        order_number: command.order.number().cloned(),
        sku_id: sku.id.clone(),
        sku_name: sku.name.clone(),
        bytes_granted: sku
            .bytes
            .checked_mul(u64::from(units))
            .ok_or(Refusal::Overflow)?,
        unit_price: sku.price,
        amount: sku
            .price
            .checked_mul(Decimal::from(units))
            .ok_or(Refusal::Overflow)?,
        currency: sku.currency.clone(),
        expires_at: command.expires_at,
        units: Some(units),
    });
    draft.emit(event.clone())?;
    draft.expire_if_due(&command.instance_id)?;
    draft.resume_tasks(&command.instance_id)?;
    Ok(Outcome::Recorded(event))
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
    if let Some(earlier) = earlier {
        let same =
            |event: &Event| matches!(event, Event::OrderUpgraded(e) if e.sku_id == command.sku_id);
        return repeat(earlier, same, &command.order);
    }
    changeable(draft, &command.instance_id)?;
    let sku = catalog
        .get(&command.sku_id)
        .ok_or_else(|| Refusal::UnknownSku(command.sku_id.clone()))?;
    let package = draft.package(&command.instance_id).expect("checked above");
    let units = package.units;
    let event = Event::OrderUpgraded(OrderUpgraded {
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
    });
    draft.emit(event.clone())?;
    draft.resume_tasks(&command.instance_id)?;
    Ok(Outcome::Recorded(event))
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
    if let Some(earlier) = earlier {
        let same =
            |event: &Event| matches!(event, Event::OrderDilated(e) if e.units == command.units);
        return repeat(earlier, same, &command.order);
    }
    changeable(draft, &command.instance_id)?;
    let package = draft.package(&command.instance_id).expect("checked above");
    let sku = package_sku(package, catalog, recorded)?;
    let event = Event::OrderDilated(OrderDilated {
        instance_id: command.instance_id.clone(),
        order_id: command.order.id().cloned(),
        order_number: command.order.number().cloned(),
        sku_id: sku.id.clone(),
        sku_name: sku.name.clone(),
        units: command.units,
        bytes_granted: sku
            .bytes
            .checked_mul(u64::from(command.units))
            .ok_or(Refusal::Overflow)?,
        unit_price: sku.price,
        amount: sku
            .price
            .checked_mul(Decimal::from(command.units))
            .ok_or(Refusal::Overflow)?,
        currency: sku.currency.clone(),
    });
    draft.emit(event.clone())?;
    draft.resume_tasks(&command.instance_id)?;
    Ok(Outcome::Recorded(event))
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
mod tests {
    use super::*;
    use projections::events::{ReportAction, TaskCreated, TrafficConsumed};
    use projections::ids::{Bytes, OrderId, OrderNumber, ReportId, TaskId};
    use projections::{Projection, TaskState};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// An order named by its `orderId` alone, as before the current revision.
    fn order(id: &str) -> OrderRef {
        OrderRef::new(None, Some(OrderId::parse(id).unwrap())).unwrap()
    }

    fn id() -> InstanceId {
        InstanceId::parse("biz-1").unwrap()
    }

    fn create_command() -> CreateOrder {
        CreateOrder {
            instance_id: id(),
            jd_pin: JdPin::parse("pin").unwrap(),
            order: order("o-1"),
            service_code: "dts".into(),
            sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
            units: 2,
            expires_at: Some(now() + chrono::Duration::days(30)),
            template: None,
        }
    }

    fn created() -> Draft {
        let mut draft = Draft::new(Projection::default(), now());
        create(&mut draft, &create_command(), &Catalog::built_in(), None).unwrap();
        let mut draft = Draft::new(draft.projection, now());
        draft
            .emit(Event::TaskCreated(TaskCreated {
                task_id: TaskId::parse("t-1").unwrap(),
                instance_id: id(),
            }))
            .unwrap();
        Draft::new(draft.projection, now())
    }

    fn exhaust(draft: &mut Draft) {
        let package = draft.package(&id()).unwrap();
        let bytes = package
            .bytes_remaining
            .checked_add(Bytes::new(5).unwrap())
            .unwrap();
        draft
            .emit(Event::TrafficConsumed(TrafficConsumed {
                task_id: TaskId::parse("t-1").unwrap(),
                report_id: ReportId::parse("r").unwrap(),
                instance_id: id(),
                bytes,
                period_start: None,
                period_end: now(),
                action: ReportAction::Stop,
                reason: Some(StopReason::QuotaExhausted),
                bytes_remaining: Bytes::ZERO,
                bytes_overage: Bytes::new(5).unwrap(),
            }))
            .unwrap();
        draft.stop_tasks(&id(), StopReason::QuotaExhausted).unwrap();
    }

    #[test]
    fn a_purchase_grants_sku_bytes_times_account_num_at_the_catalog_price() {
        let draft = created();
        let package = draft.package(&id()).unwrap();
        assert_eq!(package.bytes_granted.get(), 2 << 40);
        assert_eq!(package.unit_price.to_string(), "1000.00");
    }

    #[test]
    fn the_same_purchase_replays_and_a_different_one_conflicts() {
        let mut draft = created();
        let original = Event::OrderCreated(
            match create(
                &mut Draft::new(Projection::default(), now()),
                &create_command(),
                &Catalog::built_in(),
                None,
            )
            .unwrap()
            {
                Outcome::Recorded(Event::OrderCreated(e)) => e,
                other => panic!("{other:?}"),
            },
        );
        let again = create(
            &mut draft,
            &create_command(),
            &Catalog::built_in(),
            Some(original.clone()),
        );
        assert_eq!(again.unwrap(), Outcome::Replayed(original.clone()));
        let mut different = create_command();
        different.units = 3;
        let refused = create(&mut draft, &different, &Catalog::built_in(), Some(original));
        assert!(matches!(refused, Err(Refusal::Conflict(_))));
        assert!(draft.events.is_empty());
    }

    #[test]
    fn an_unknown_sku_is_refused() {
        let mut draft = Draft::new(Projection::default(), now());
        let mut command = create_command();
        command.sku_id = SkuId::parse("nope").unwrap();
        assert!(matches!(
            create(&mut draft, &command, &Catalog::built_in(), None),
            Err(Refusal::UnknownSku(_))
        ));
        assert!(draft.events.is_empty());
    }

    #[test]
    fn a_renewal_covers_overage_and_resumes_stopped_tasks() {
        let mut draft = created();
        exhaust(&mut draft);
        assert_eq!(
            draft.task(&TaskId::parse("t-1").unwrap()).unwrap().state,
            TaskState::Stopped
        );
        let renewal = RenewOrder {
            instance_id: id(),
            order: order("o-2"),
            expires_at: now() + chrono::Duration::days(60),
        };
        renew(&mut draft, &renewal, &Catalog::built_in(), None, None).unwrap();
        let package = draft.package(&id()).unwrap();
        assert_eq!(package.bytes_overage, Bytes::ZERO);
        assert_eq!(
            package.bytes_remaining.get(),
            (2 << 40) - 5,
            "a term for each of 2 units"
        );
        assert_eq!(
            draft.task(&TaskId::parse("t-1").unwrap()).unwrap().state,
            TaskState::Running
        );
        assert_eq!(draft.events.last().unwrap().event_type(), "TaskResumed");
    }

    #[test]
    fn an_expiry_while_expires_at_is_ahead_is_held_once_and_never_undoes_a_renewal() {
        let mut draft = created();
        let outcome = expire(&mut draft, &id(), None).unwrap();
        let held = Event::OrderExpiryHeld(OrderExpiryHeld {
            instance_id: id(),
            expires_at: now() + chrono::Duration::days(30),
        });
        assert_eq!(outcome, Outcome::Recorded(held.clone()));
        assert_eq!(
            draft.events,
            std::slice::from_ref(&held),
            "the package does not expire"
        );
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Active);
        assert_eq!(
            held.idempotency_key(),
            Some(expiry_held_key(&id(), now() + chrono::Duration::days(30)))
        );
        // The same notice again: the earlier one answers, nothing new is recorded.
        let mut again = Draft::new(draft.projection.clone(), now());
        assert_eq!(
            expire(&mut again, &id(), Some(held.clone())).unwrap(),
            Outcome::Replayed(held)
        );
        assert!(again.events.is_empty());

        // Expired by the clock, renewed, then the marketplace's expiry arrives late: held against
        // the renewed expiry, the renewal stands.
        let mut draft = Draft::new(draft.projection, now() + chrono::Duration::days(31));
        assert!(draft.expire_if_due(&id()).unwrap());
        let renewal = RenewOrder {
            instance_id: id(),
            order: order("o-2"),
            expires_at: now() + chrono::Duration::days(90),
        };
        renew(&mut draft, &renewal, &Catalog::built_in(), None, None).unwrap();
        let outcome = expire(&mut draft, &id(), None).unwrap();
        assert!(
            matches!(outcome, Outcome::Recorded(Event::OrderExpiryHeld(ref e))
                if e.expires_at == now() + chrono::Duration::days(90)),
            "{outcome:?}"
        );
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Active);
    }

    #[test]
    fn an_operator_applies_a_held_notice_and_nothing_else() {
        let mut draft = created();
        assert!(matches!(
            apply_held_expiry(&mut draft, &id(), ExpiryReason::Refund, false),
            Err(Refusal::NoHeldNotice(_))
        ));
        assert!(draft.events.is_empty());
        let outcome = apply_held_expiry(&mut draft, &id(), ExpiryReason::Refund, true).unwrap();
        assert!(matches!(
            outcome.event(),
            Some(Event::OrderExpired(OrderExpired {
                source: ExpirySource::Operator,
                reason: Some(ExpiryReason::Refund),
                ..
            }))
        ));
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Expired);
        assert_eq!(
            draft
                .task(&TaskId::parse("t-1").unwrap())
                .unwrap()
                .stop_reason,
            Some(StopReason::OrderExpired)
        );
        assert_eq!(
            apply_held_expiry(&mut draft, &id(), ExpiryReason::Refund, true).unwrap(),
            Outcome::Unchanged("already expired")
        );
    }

    #[test]
    fn a_renewal_grants_a_term_for_every_unit_at_todays_price() {
        let mut draft = created();
        let renewal = RenewOrder {
            instance_id: id(),
            order: OrderRef::new(
                Some(OrderNumber::parse("529107885755794112").unwrap()),
                None,
            )
            .unwrap(),
            expires_at: now() + chrono::Duration::days(60),
        };
        let outcome = renew(&mut draft, &renewal, &Catalog::built_in(), None, None).unwrap();
        match outcome.event() {
            Some(e @ Event::OrderRenewed(renewed)) => {
                assert_eq!(renewed.units, Some(2));
                assert_eq!(renewed.bytes_granted.get(), 2 << 40);
                assert_eq!(renewed.amount.to_string(), "2000.00");
                assert_eq!(e.event_version(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(draft.package(&id()).unwrap().bytes_granted.get(), 4 << 40);
    }

    #[test]
    fn a_retry_is_found_by_its_order_number_or_by_the_order_id_it_was_recorded_under() {
        let mut draft = created();
        let recorded = renew(
            &mut draft,
            &RenewOrder {
                instance_id: id(),
                order: order("556596"),
                expires_at: now() + chrono::Duration::days(60),
            },
            &Catalog::built_in(),
            None,
            None,
        )
        .unwrap()
        .event()
        .cloned()
        .unwrap();
        let both = OrderRef::new(
            Some(OrderNumber::parse("529107885755794112").unwrap()),
            Some(OrderId::parse("556596").unwrap()),
        )
        .unwrap();
        let grants = draft.events.clone();
        assert_eq!(earlier_order(grants.clone(), &both), Some(recorded.clone()));
        let other = OrderRef::new(Some(OrderNumber::parse("1").unwrap()), None).unwrap();
        assert_eq!(earlier_order(grants, &other), None);
        let again = RenewOrder {
            instance_id: id(),
            order: both,
            expires_at: now() + chrono::Duration::days(60),
        };
        assert_eq!(
            renew(
                &mut draft,
                &again,
                &Catalog::built_in(),
                None,
                Some(recorded.clone())
            )
            .unwrap(),
            Outcome::Replayed(recorded)
        );
    }

    #[test]
    fn an_expired_package_renewed_into_the_future_is_active_again() {
        let mut draft = created();
        draft.now = now() + chrono::Duration::days(30);
        expire(&mut draft, &id(), None).unwrap();
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Expired);
        assert_eq!(
            draft
                .task(&TaskId::parse("t-1").unwrap())
                .unwrap()
                .stop_reason,
            Some(StopReason::OrderExpired)
        );
        assert_eq!(
            expire(&mut draft, &id(), None).unwrap(),
            Outcome::Unchanged("already expired")
        );
        let renewal = RenewOrder {
            instance_id: id(),
            order: order("o-2"),
            expires_at: now() + chrono::Duration::days(31),
        };
        renew(&mut draft, &renewal, &Catalog::built_in(), None, None).unwrap();
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Active);
        assert_eq!(
            draft.task(&TaskId::parse("t-1").unwrap()).unwrap().state,
            TaskState::Running
        );
    }

    #[test]
    fn a_renewal_into_the_past_leaves_the_package_expired() {
        let mut draft = created();
        let renewal = RenewOrder {
            instance_id: id(),
            order: order("o-2"),
            expires_at: now() - chrono::Duration::seconds(1),
        };
        renew(&mut draft, &renewal, &Catalog::built_in(), None, None).unwrap();
        assert_eq!(draft.package(&id()).unwrap().status, PackageStatus::Expired);
    }

    #[test]
    fn upgrades_grant_the_size_difference_for_every_unit() {
        let mut draft = created();
        let up = UpgradeOrder {
            instance_id: id(),
            order: order("o-3"),
            sku_id: SkuId::parse("FW_GOODS-500232-2").unwrap(),
        };
        let outcome = upgrade(&mut draft, &up, &Catalog::built_in(), None).unwrap();
        match outcome.event() {
            Some(Event::OrderUpgraded(e)) => {
                assert_eq!(e.units, Some(2));
                assert_eq!(e.bytes_granted.get(), 2 << 40);
                assert_eq!(e.amount.to_string(), "1600.00");
            }
            other => panic!("{other:?}"),
        }
        let down = UpgradeOrder {
            sku_id: SkuId::parse("FW_GOODS-500232-1").unwrap(),
            order: order("o-4"),
            ..up
        };
        match upgrade(&mut draft, &down, &Catalog::built_in(), None)
            .unwrap()
            .event()
        {
            Some(Event::OrderUpgraded(e)) => {
                assert!(e.bytes_granted.is_zero());
                assert!(e.amount.is_zero());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sku_removed_from_the_catalog_renews_and_expands_at_its_recorded_size_and_price() {
        let mut draft = created();
        let sku = Catalog::built_in()
            .get(&SkuId::parse("FW_GOODS-500232-1").unwrap())
            .unwrap()
            .clone();
        let removed = Catalog::new(vec![Catalog::built_in()
            .get(&SkuId::parse("FW_GOODS-500232-2").unwrap())
            .unwrap()
            .clone()])
        .unwrap();
        let renewal = RenewOrder {
            instance_id: id(),
            order: order("o-2"),
            expires_at: now() + chrono::Duration::days(60),
        };
        assert!(matches!(
            renew(&mut draft, &renewal, &removed, None, None),
            Err(Refusal::UnknownSku(_))
        ));
        let outcome = renew(&mut draft, &renewal, &removed, Some(&sku), None).unwrap();
        match outcome.event() {
            Some(Event::OrderRenewed(e)) => {
                assert_eq!(e.units, Some(2), "the package was bought with accountNum=2");
                assert_eq!(
                    (e.bytes_granted, e.amount),
                    (
                        sku.bytes.checked_mul(2).unwrap(),
                        sku.price * Decimal::from(2)
                    )
                );
            }
            other => panic!("{other:?}"),
        }
        let dilation = DilateOrder {
            instance_id: id(),
            order: order("o-3"),
            units: 2,
        };
        let outcome = dilate(&mut draft, &dilation, &removed, Some(&sku), None).unwrap();
        match outcome.event() {
            Some(Event::OrderDilated(e)) => {
                assert_eq!(e.bytes_granted.get(), 2 << 40);
                assert_eq!(e.amount.to_string(), "2000.00");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn release_forfeits_the_balance_stops_tasks_and_refuses_later_changes() {
        let mut draft = created();
        release(&mut draft, &id()).unwrap();
        let package = draft.package(&id()).unwrap();
        assert_eq!(package.bytes_forfeited.get(), 2 << 40);
        assert_eq!(
            draft
                .task(&TaskId::parse("t-1").unwrap())
                .unwrap()
                .stop_reason,
            Some(StopReason::OrderReleased)
        );
        assert_eq!(
            release(&mut draft, &id()).unwrap(),
            Outcome::Unchanged("already released")
        );
        let dilation = DilateOrder {
            instance_id: id(),
            order: order("o-5"),
            units: 1,
        };
        assert!(matches!(
            dilate(&mut draft, &dilation, &Catalog::built_in(), None, None),
            Err(Refusal::Released(_))
        ));
    }
}
