//! Idempotency keys: the key under which each external input is recorded once, and the key each
//! event answers.
//!
//! A key is part of the ledger's bytes: the hash of every row before hash version 4 covers the key
//! the row stores, and `idempotency_keys` holds each key's digest. A key, once written, never
//! changes its spelling; a new kind of input gets a new `kind`.

use crate::events::{Event, OrderDilated, OrderRenewed, OrderUpgraded};
use crate::ids::{Bytes, InstanceId, OrderRef, ReportId, TaskId};
use chrono::{DateTime, Utc};

/// `kind/len:part/len:part`, lengths in bytes: unambiguous whatever characters the ids contain.
fn keyed(kind: &str, parts: &[&str]) -> String {
    let mut key = kind.to_owned();
    for part in parts {
        key.push_str(&format!("/{}:{part}", part.len()));
    }
    key
}

/// The idempotency key of a purchase: one `OrderCreated` per `orderBizId`.
pub fn create_key(instance_id: &InstanceId) -> String {
    keyed("createInstance", &[instance_id.as_str()])
}

/// The idempotency key a renewal, upgrade or expansion is recorded under: `(instanceId,
/// orderNumber)` when the callback named an `orderNumber`, else `(instanceId, orderId)` (the key
/// of every such grant before the current revision). A retry is found by its order, not by this
/// key (see [`OrderRef::same_order`]): the key keeps two grants of one order out of the ledger.
pub fn order_key(instance_id: &InstanceId, order: &OrderRef) -> String {
    match (order.number(), order.id()) {
        (Some(number), _) => keyed("orderNumber", &[instance_id.as_str(), number.as_str()]),
        (None, Some(id)) => keyed("order", &[instance_id.as_str(), id.as_str()]),
        (None, None) => unreachable!("an order reference names an order"),
    }
}

/// The key of a held expiry notice: one per package and `expiresAt`, however often the
/// marketplace repeats the notice.
pub fn expiry_held_key(instance_id: &InstanceId, expires_at: DateTime<Utc>) -> String {
    keyed(
        "expiryHeld",
        &[
            instance_id.as_str(),
            &expires_at.timestamp_micros().to_string(),
        ],
    )
}

/// The idempotency key of the acceptance of the loss behind one trusted checkpoint: a second
/// start with the flag (or two processes at once) records nothing more.
pub fn acceptance_key(checkpoint_position: i64, checkpoint_ledger_hash: &str) -> String {
    keyed(
        "restore-accepted",
        &[&checkpoint_position.to_string(), checkpoint_ledger_hash],
    )
}

/// The key of one short-runway announcement. The grant generation is the package's
/// `bytesGranted`, which every grant raises: a renewal, upgrade or expansion re-arms each
/// threshold.
pub fn runway_short_key(
    instance_id: &InstanceId,
    threshold_days: u32,
    bytes_granted: Bytes,
) -> String {
    keyed(
        "runwayShort",
        &[
            instance_id.as_str(),
            &threshold_days.to_string(),
            &bytes_granted.get().to_string(),
        ],
    )
}

/// The idempotency key of a traffic report: one `TrafficConsumed` per task and report.
pub fn traffic_key(task_id: &TaskId, report_id: &ReportId) -> String {
    keyed("traffic", &[task_id.as_str(), report_id.as_str()])
}

impl Event {
    /// The idempotency key the event answers, if it answers an external input.
    pub fn idempotency_key(&self) -> Option<String> {
        match self {
            Event::OrderCreated(e) => Some(create_key(&e.instance_id)),
            Event::OrderRenewed(OrderRenewed { instance_id, .. })
            | Event::OrderUpgraded(OrderUpgraded { instance_id, .. })
            | Event::OrderDilated(OrderDilated { instance_id, .. }) => {
                Some(order_key(instance_id, &self.order_ref()?))
            }
            Event::OrderExpiryHeld(e) => Some(expiry_held_key(&e.instance_id, e.expires_at)),
            Event::LedgerRestoreAccepted(e) => Some(acceptance_key(
                e.checkpoint_position,
                &e.checkpoint_ledger_hash,
            )),
            Event::OrderRunwayShort(e) => Some(runway_short_key(
                &e.instance_id,
                e.threshold_days,
                e.bytes_granted,
            )),
            Event::TrafficConsumed(e) => Some(traffic_key(&e.task_id, &e.report_id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{
        LedgerRestoreAccepted, OrderExpiryHeld, OrderRunwayShort, ReportAction, TrafficConsumed,
    };
    use crate::ids::{OrderId, OrderNumber};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn id() -> InstanceId {
        InstanceId::parse("biz-1").unwrap()
    }

    /// An order named by its `orderId` alone, as before the current revision.
    fn order(id: &str) -> OrderRef {
        OrderRef::new(None, Some(OrderId::parse(id).unwrap())).unwrap()
    }

    fn traffic(task: &str, report: &str) -> Event {
        Event::TrafficConsumed(TrafficConsumed {
            task_id: TaskId::parse(task).unwrap(),
            report_id: ReportId::parse(report).unwrap(),
            instance_id: id(),
            bytes: Bytes::new(1).unwrap(),
            period_start: None,
            period_end: now(),
            action: ReportAction::Continue,
            reason: None,
            bytes_remaining: Bytes::ZERO,
            bytes_overage: Bytes::ZERO,
        })
    }

    /// The keys are part of the ledger's bytes (the hash of rows before version 4 covers them,
    /// `idempotency_keys` holds their digests): each input's key, exactly as recorded.
    #[test]
    fn every_inputs_key_keeps_its_exact_bytes() {
        let by_number = OrderRef::new(
            Some(OrderNumber::parse("529107885755794112").unwrap()),
            Some(OrderId::parse("o-1").unwrap()),
        )
        .unwrap();
        let traffic = |task, report| traffic(task, report).idempotency_key().unwrap();
        let pinned = [
            (create_key(&id()), "createInstance/5:biz-1"),
            (
                order_key(&id(), &by_number),
                "orderNumber/5:biz-1/18:529107885755794112",
            ),
            (order_key(&id(), &order("o-1")), "order/5:biz-1/3:o-1"),
            (
                expiry_held_key(&id(), now()),
                "expiryHeld/5:biz-1/16:1800000000000000",
            ),
            (acceptance_key(1450, "ab"), "restore-accepted/4:1450/2:ab"),
            (
                runway_short_key(&id(), 7, Bytes::new(1 << 40).unwrap()),
                "runwayShort/5:biz-1/1:7/13:1099511627776",
            ),
            (traffic("t:1", "r/2"), "traffic/3:t:1/3:r/2"),
            // Lengths count bytes, not characters.
            (traffic("任务", "r"), "traffic/6:任务/1:r"),
        ];
        for (key, exact) in pinned {
            assert_eq!(key, exact);
        }
    }

    #[test]
    fn keys_cannot_collide_across_id_boundaries() {
        let a = order_key(&InstanceId::parse("a:b").unwrap(), &order("c"));
        let b = order_key(&InstanceId::parse("a").unwrap(), &order("b:c"));
        assert_ne!(a, b);
        let number = OrderRef::new(Some(OrderNumber::parse("c").unwrap()), None).unwrap();
        assert_ne!(order_key(&id(), &number), order_key(&id(), &order("c")));
    }

    #[test]
    fn each_checkpoint_is_accepted_under_its_own_key() {
        let a = acceptance_key(1450, "ab");
        assert_eq!(a, acceptance_key(1450, "ab"));
        assert_ne!(a, acceptance_key(1451, "ab"));
        assert_ne!(a, acceptance_key(1450, "ac"));
    }

    /// Each keyed event answers the key its input is looked up by.
    #[test]
    fn an_event_answers_the_key_of_its_input() {
        let held = Event::OrderExpiryHeld(OrderExpiryHeld {
            instance_id: id(),
            expires_at: now(),
        });
        assert_eq!(held.idempotency_key(), Some(expiry_held_key(&id(), now())));
        let short = Event::OrderRunwayShort(OrderRunwayShort {
            instance_id: id(),
            threshold_days: 7,
            runs_out_on: chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
            rate_per_day: Bytes::new(1).unwrap(),
            bytes_remaining: Bytes::new(5).unwrap(),
            bytes_granted: Bytes::new(9).unwrap(),
        });
        assert_eq!(
            short.idempotency_key(),
            Some(runway_short_key(&id(), 7, Bytes::new(9).unwrap()))
        );
        let accepted = Event::LedgerRestoreAccepted(LedgerRestoreAccepted {
            checkpoint_position: 1450,
            checkpoint_ledger_hash: "ab".into(),
            checkpoint_key_id: "cd".into(),
            checkpoint_signed_at: now(),
            ledger_head: 1400,
            lost_events: Some(50),
            reason: "ticket 42".into(),
        });
        assert_eq!(accepted.idempotency_key(), Some(acceptance_key(1450, "ab")));
        assert_eq!(
            traffic("t:1", "r/2").idempotency_key(),
            Some(traffic_key(
                &TaskId::parse("t:1").unwrap(),
                &ReportId::parse("r/2").unwrap()
            ))
        );
    }
}
