//! The decisions on marketplace orders, each against the state it works on: a purchase, a
//! repeat and a conflict, grants on an existing package, expiry notices held and applied, release.

use super::*;
use projections::events::{ReportAction, TaskCreated, TrafficConsumed};
use projections::ids::{Bytes, OrderId, OrderNumber, ReportId, TaskId};
use projections::keys::expiry_held_key;
use projections::{Projection, Task, TaskState};

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

/// The package's task, t-1.
fn task_1(draft: &Draft) -> &Task {
    draft.task(&TaskId::parse("t-1").unwrap()).unwrap()
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
    assert_eq!(task_1(&draft).state, TaskState::Stopped);
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
    assert_eq!(task_1(&draft).state, TaskState::Running);
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
    assert_eq!(task_1(&draft).stop_reason, Some(StopReason::OrderExpired));
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
    assert_eq!(task_1(&draft).stop_reason, Some(StopReason::OrderExpired));
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
    assert_eq!(task_1(&draft).state, TaskState::Running);
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
    assert_eq!(task_1(&draft).stop_reason, Some(StopReason::OrderReleased));
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
