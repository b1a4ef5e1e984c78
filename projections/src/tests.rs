use super::*;
use crate::events::*;
use crate::ids::*;
use proptest::prelude::*;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn bytes(n: u64) -> Bytes {
    Bytes::new(n).unwrap()
}

fn instance(n: usize) -> InstanceId {
    InstanceId::parse(format!("biz-{n}")).unwrap()
}

fn task_id(n: usize) -> TaskId {
    TaskId::parse(format!("task-{n}")).unwrap()
}

fn created(n: usize, granted: u64) -> Event {
    Event::OrderCreated(OrderCreated {
        instance_id: instance(n),
        jd_pin: JdPin::parse("pin").unwrap(),
        order_id: Some(OrderId::parse(format!("order-{n}")).unwrap()),
        order_number: None,
        service_code: "dts".into(),
        sku_id: SkuId::parse("sku-1").unwrap(),
        sku_name: "DTS 1TB".into(),
        sku_bytes: bytes(granted),
        units: 1,
        bytes_granted: bytes(granted),
        unit_price: "10.00".parse().unwrap(),
        amount: "10.00".parse().unwrap(),
        currency: "CNY".into(),
        expires_at: None,
        template: None,
    })
}

fn dilated(n: usize, granted: u64) -> Event {
    Event::OrderDilated(OrderDilated {
        instance_id: instance(n),
        order_id: Some(OrderId::parse("order-d").unwrap()),
        order_number: None,
        sku_id: SkuId::parse("sku-1").unwrap(),
        sku_name: "DTS 1TB".into(),
        units: 1,
        bytes_granted: bytes(granted),
        unit_price: "10.00".parse().unwrap(),
        amount: "10.00".parse().unwrap(),
        currency: "CNY".into(),
    })
}

fn task_created(task: usize, package: usize) -> Event {
    Event::TaskCreated(TaskCreated {
        task_id: task_id(task),
        instance_id: instance(package),
    })
}

/// A traffic event with the answer fields the fold will produce, as the service would record it.
fn traffic(projection: &Projection, task: usize, n: u64) -> Event {
    let task = projection.task(&task_id(task)).unwrap();
    let mut package = projection.package(&task.instance_id).unwrap().clone();
    package.consume(bytes(n), at(0)).unwrap();
    Event::TrafficConsumed(TrafficConsumed {
        task_id: task.task_id.clone(),
        report_id: ReportId::parse(format!("r-{}", task.bytes_consumed)).unwrap(),
        instance_id: task.instance_id.clone(),
        bytes: bytes(n),
        period_start: None,
        period_end: at(1),
        action: ReportAction::Continue,
        reason: None,
        bytes_remaining: package.bytes_remaining,
        bytes_overage: package.bytes_overage,
    })
}

#[test]
fn consumption_beyond_the_balance_becomes_overage() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    p.apply(&task_created(1, 1), at(0)).unwrap();
    let e = traffic(&p, 1, 130);
    p.apply(&e, at(1)).unwrap();
    let package = p.package(&instance(1)).unwrap();
    assert_eq!(package.bytes_remaining, Bytes::ZERO);
    assert_eq!(package.bytes_overage, bytes(30));
    assert_eq!(package.bytes_net(), -30);
    assert_eq!(p.task(&task_id(1)).unwrap().bytes_consumed, bytes(130));
}

#[test]
fn a_grant_covers_overage_first() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    p.apply(&task_created(1, 1), at(0)).unwrap();
    let e = traffic(&p, 1, 130);
    p.apply(&e, at(1)).unwrap();
    p.apply(&dilated(1, 50), at(2)).unwrap();
    let package = p.package(&instance(1)).unwrap();
    assert_eq!(package.bytes_overage, Bytes::ZERO);
    assert_eq!(package.bytes_remaining, bytes(20));
    assert_eq!(package.bytes_granted, bytes(150));
    assert!(package.is_conserved());
}

#[test]
fn release_forfeits_exactly_the_remaining_bytes() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    let wrong = Event::OrderReleased(OrderReleased {
        instance_id: instance(1),
        bytes_forfeited: bytes(99),
    });
    assert!(matches!(
        p.clone().apply(&wrong, at(1)),
        Err(FoldError::Mismatch { .. })
    ));
    let right = Event::OrderReleased(OrderReleased {
        instance_id: instance(1),
        bytes_forfeited: bytes(100),
    });
    p.apply(&right, at(1)).unwrap();
    let package = p.package(&instance(1)).unwrap();
    assert_eq!(package.status, PackageStatus::Released);
    assert_eq!(package.bytes_forfeited, bytes(100));
    assert_eq!(package.bytes_remaining, Bytes::ZERO);
    assert!(p.apply(&dilated(1, 5), at(2)).is_err());
}

#[test]
fn warnings_are_forgotten_once_a_grant_lifts_the_balance_above_them() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    p.apply(&task_created(1, 1), at(0)).unwrap();
    let e = traffic(&p, 1, 90);
    p.apply(&e, at(1)).unwrap();
    for threshold_percent in [80, 95, 80] {
        let warn = Event::OrderBalanceLow(OrderBalanceLow {
            instance_id: instance(1),
            threshold_percent,
            bytes_granted: bytes(100),
            bytes_consumed: bytes(90),
            bytes_remaining: bytes(10),
        });
        p.apply(&warn, at(1)).unwrap();
    }
    assert_eq!(
        p.package(&instance(1)).unwrap().warned_percents,
        vec![80, 95]
    );
    // 90 of 110 is 81.8 %: 80 % stays crossed, 95 % is clear again.
    p.apply(&dilated(1, 10), at(2)).unwrap();
    assert_eq!(p.package(&instance(1)).unwrap().warned_percents, vec![80]);
}

#[test]
fn traffic_whose_recorded_answer_disagrees_is_refused() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    p.apply(&task_created(1, 1), at(0)).unwrap();
    let mut e = traffic(&p, 1, 10);
    if let Event::TrafficConsumed(t) = &mut e {
        t.bytes_remaining = bytes(11);
    }
    assert!(matches!(
        p.apply(&e, at(1)),
        Err(FoldError::Mismatch {
            field: "bytesRemaining",
            ..
        })
    ));
}

#[test]
fn task_lifecycle_follows_its_events() {
    let mut p = Projection::default();
    p.apply(&created(1, 100), at(0)).unwrap();
    p.apply(&created(2, 100), at(0)).unwrap();
    p.apply(&task_created(7, 1), at(0)).unwrap();
    assert!(p.apply(&task_created(7, 1), at(0)).is_err());
    let stop = Event::TaskStopped(TaskStopped {
        task_id: task_id(7),
        instance_id: instance(1),
        reason: StopReason::QuotaExhausted,
    });
    p.apply(&stop, at(1)).unwrap();
    assert_eq!(
        p.task(&task_id(7)).unwrap().stop_reason,
        Some(StopReason::QuotaExhausted)
    );
    let rebound = Event::TaskRebound(TaskRebound {
        task_id: task_id(7),
        from_instance_id: instance(1),
        instance_id: instance(2),
    });
    p.apply(&rebound, at(2)).unwrap();
    let resumed = Event::TaskResumed(TaskResumed {
        task_id: task_id(7),
        instance_id: instance(2),
    });
    p.apply(&resumed, at(2)).unwrap();
    let task = p.task(&task_id(7)).unwrap();
    assert_eq!((task.state, task.stop_reason), (TaskState::Running, None));
    assert_eq!(task.instance_id, instance(2));
    let destroyed = Event::TaskDestroyed(TaskDestroyed {
        task_id: task_id(7),
        instance_id: instance(2),
    });
    p.apply(&destroyed, at(3)).unwrap();
    assert_eq!(p.task(&task_id(7)).unwrap().destroyed_at, Some(at(3)));
    assert!(p.apply(&resumed, at(4)).is_err());
}

/// One step of a random workload over three packages and six tasks.
#[derive(Debug, Clone)]
enum Step {
    Consume { task: usize, bytes: u64 },
    Grant { package: usize, bytes: u64 },
    Release { package: usize },
    Expire { package: usize },
    Rebind { task: usize, package: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..6usize, 0..400u64).prop_map(|(task, bytes)| Step::Consume { task, bytes }),
        2 => (0..3usize, 0..300u64).prop_map(|(package, bytes)| Step::Grant { package, bytes }),
        1 => (0..3usize).prop_map(|package| Step::Release { package }),
        1 => (0..3usize).prop_map(|package| Step::Expire { package }),
        1 => (0..6usize, 0..3usize).prop_map(|(task, package)| Step::Rebind { task, package }),
    ]
}

proptest! {
    /// I3: `granted − consumed − forfeited = remaining − overage` after every event, with
    /// exact sums checked against a running tally kept outside the fold.
    #[test]
    fn conservation_holds_over_random_event_sequences(
        grants in prop::collection::vec(0..500u64, 3),
        steps in prop::collection::vec(step(), 0..200),
    ) {
        let mut p = Projection::default();
        let mut granted = [0u64; 3];
        let mut consumed = [0u64; 3];
        for (n, g) in grants.iter().enumerate() {
            p.apply(&created(n, *g), at(0)).unwrap();
            granted[n] += g;
        }
        for t in 0..6 {
            p.apply(&task_created(t, t % 3), at(0)).unwrap();
        }
        for (i, step) in steps.into_iter().enumerate() {
            let when = at(i as i64 + 1);
            let event = match step {
                Step::Consume { task, bytes: n } => {
                    let package = &p.task(&task_id(task)).unwrap().instance_id;
                    let index: usize = package.as_str()[4..].parse().unwrap();
                    consumed[index] += n;
                    traffic(&p, task, n)
                }
                Step::Grant { package, bytes: n } => {
                    if p.package(&instance(package)).unwrap().status == PackageStatus::Released {
                        continue;
                    }
                    granted[package] += n;
                    dilated(package, n)
                }
                Step::Release { package } => {
                    let current = p.package(&instance(package)).unwrap();
                    if current.status == PackageStatus::Released {
                        continue;
                    }
                    Event::OrderReleased(OrderReleased {
                        instance_id: instance(package),
                        bytes_forfeited: current.bytes_remaining,
                    })
                }
                Step::Expire { package } => {
                    if p.package(&instance(package)).unwrap().status != PackageStatus::Active {
                        continue;
                    }
                    Event::OrderExpired(OrderExpired {
                        instance_id: instance(package),
                        source: ExpirySource::Clock,
                        expires_at: None,
                        reason: None,
                    })
                }
                Step::Rebind { task, package } => {
                    let from = p.task(&task_id(task)).unwrap().instance_id.clone();
                    Event::TaskRebound(TaskRebound {
                        task_id: task_id(task),
                        from_instance_id: from,
                        instance_id: instance(package),
                    })
                }
            };
            p.apply(&event, when).unwrap();
            for (n, package) in p.packages.values().enumerate() {
                prop_assert!(package.is_conserved(), "{:?}", package);
                prop_assert_eq!(package.bytes_granted.get(), granted[n]);
                prop_assert_eq!(package.bytes_consumed.get(), consumed[n]);
            }
        }
        let by_tasks: u64 = p.tasks.values().map(|t| t.bytes_consumed.get()).sum();
        prop_assert_eq!(by_tasks, consumed.iter().sum::<u64>());
    }
}

mod revenue {
    use super::*;
    use crate::revenue::Revenue;
    use rust_decimal::Decimal;

    fn money(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    fn grant_event(kind: &str, n: usize, granted: u64, amount: &str) -> Event {
        match kind {
            "create" => match created(n, granted) {
                Event::OrderCreated(mut e) => {
                    e.amount = money(amount);
                    Event::OrderCreated(e)
                }
                _ => unreachable!(),
            },
            _ => match dilated(n, granted) {
                Event::OrderDilated(mut e) => {
                    e.amount = money(amount);
                    Event::OrderDilated(e)
                }
                _ => unreachable!(),
            },
        }
    }

    /// Applies to both folds; returns the money recognized by the event.
    fn step(p: &mut Projection, r: &mut Revenue, event: &Event) -> Decimal {
        p.apply(event, at(0)).unwrap();
        let recognized = r.apply(event).unwrap().map_or(Decimal::ZERO, |(_, m)| m);
        for package in p.packages.values() {
            assert_eq!(r.bytes_left(&package.instance_id), package.bytes_remaining);
        }
        recognized
    }

    #[test]
    fn grants_at_two_prices_burn_oldest_first_and_forfeits_are_recognized() {
        let (mut p, mut r) = (Projection::default(), Revenue::default());
        assert_eq!(
            step(&mut p, &mut r, &grant_event("create", 1, 100, "10.00")),
            money("0")
        );
        p.apply(&task_created(1, 1), at(0)).unwrap();
        let e = traffic(&p, 1, 30);
        assert_eq!(step(&mut p, &mut r, &e), money("3.00"));
        assert_eq!(
            step(&mut p, &mut r, &grant_event("dilate", 1, 200, "30.00")),
            money("0")
        );
        let e = traffic(&p, 1, 150);
        // 70 bytes at 0.10 and 80 at 0.15.
        assert_eq!(step(&mut p, &mut r, &e), money("19.00"));
        let e = traffic(&p, 1, 130);
        // The last 120 bytes at 0.15; 10 bytes of overage earn nothing yet.
        assert_eq!(step(&mut p, &mut r, &e), money("18.00"));
        assert_eq!(r.deferred(&instance(1)), money("0"));
        // A grant at 0.20 covers the 10 bytes of overage at once.
        assert_eq!(
            step(&mut p, &mut r, &grant_event("dilate", 1, 100, "20.00")),
            money("2.00")
        );
        assert_eq!(r.deferred(&instance(1)), money("18.00"));
        let release = Event::OrderReleased(OrderReleased {
            instance_id: instance(1),
            bytes_forfeited: p.package(&instance(1)).unwrap().bytes_remaining,
        });
        assert_eq!(step(&mut p, &mut r, &release), money("18.00"));
        assert_eq!(r.deferred(&instance(1)), money("0"));
        assert_eq!(r.currencies(), ["CNY".to_owned()]);
    }

    #[test]
    fn rounding_is_on_the_cumulative_figure_so_a_layer_earns_exactly_its_amount() {
        let (mut p, mut r) = (Projection::default(), Revenue::default());
        step(&mut p, &mut r, &grant_event("create", 1, 3, "10.00"));
        p.apply(&task_created(1, 1), at(0)).unwrap();
        let mut earned = Vec::new();
        for _ in 0..3 {
            let e = traffic(&p, 1, 1);
            earned.push(step(&mut p, &mut r, &e));
        }
        assert_eq!(earned, [money("3.33"), money("3.34"), money("3.33")]);
        assert_eq!(earned.iter().sum::<Decimal>(), money("10.00"));
    }
}
