//! The ledger's event catalog.
//!
//! Event type names and field names are part of the public ledger format: finance queries them with
//! plain SQL (`payload->>'bytesGranted'`). A stored event's meaning never changes; a new shape of
//! an event gets a new `event_version` and a new decoder arm, never an edit of an old one.
//!
//! Every event holds what it needs to be replayed without outside data: a grant records its bytes
//! and the catalog's price at that moment, a traffic event the package it was charged to (in
//! version 2, the package of its stream, which the hash covers like the payload).
//!
//! Each event spells out all of its fields, although the grants share a run of them (the order
//! reference, the SKU, the money): the format reads off one struct per event, and a shared part
//! pulled in with `#[serde(flatten)]` would lose `deny_unknown_fields`, which keeps a stray field
//! out of the ledger.

use crate::ids::{
    Bytes, InstanceId, JdPin, OrderId, OrderNumber, OrderRef, ReportId, SkuId, TaskId,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why a task does not (or may not) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The package's balance reached zero.
    QuotaExhausted,
    /// The package's order expired.
    OrderExpired,
    /// The package's order was released (cancelled and refunded).
    OrderReleased,
    /// The task was destroyed (only ever an answer to a report, never a `TaskStopped` reason).
    TaskDestroyed,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::QuotaExhausted => "quota_exhausted",
            StopReason::OrderExpired => "order_expired",
            StopReason::OrderReleased => "order_released",
            StopReason::TaskDestroyed => "task_destroyed",
        }
    }

    pub fn parse(value: &str) -> Option<StopReason> {
        [
            StopReason::QuotaExhausted,
            StopReason::OrderExpired,
            StopReason::OrderReleased,
            StopReason::TaskDestroyed,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == value)
    }
}

/// What a traffic report tells its agent to do next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportAction {
    #[default]
    Continue,
    Stop,
}

/// Who noticed that an order expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpirySource {
    /// The marketplace called `expiredInstance`.
    Marketplace,
    /// Our own clock passed the order's `expiresAt`.
    Clock,
    /// An operator applied a notice the marketplace sent while `expiresAt` was still ahead
    /// ([`OrderExpiryHeld`]); version 2 of [`OrderExpired`] says why.
    Operator,
}

/// Why an operator expired a package before its `expiresAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    /// The order was refunded: the marketplace's `expiredInstance` after a refund.
    Refund,
}

impl ExpiryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryReason::Refund => "refund",
        }
    }

    pub fn parse(value: &str) -> Option<ExpiryReason> {
        (value == "refund").then_some(ExpiryReason::Refund)
    }
}

/// A new package was bought (`createInstance`).
///
/// Version 1 always carries `orderId`; version 2 carries `orderNumber`, and `orderId` only when
/// the marketplace sent both. A purchase that names only an `orderId` is still written as
/// version 1, the same shape as before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCreated {
    pub instance_id: InstanceId,
    pub jd_pin: JdPin,
    /// The deprecated `orderId`, when the marketplace sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    /// Version 2: the `orderNumber` of the notify interface's current revision, when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<OrderNumber>,
    pub service_code: String,
    pub sku_id: SkuId,
    pub sku_name: String,
    /// The SKU's size when bought, per unit.
    pub sku_bytes: Bytes,
    /// `accountNum`: how many packages of the SKU this purchase is for.
    pub units: u32,
    pub bytes_granted: Bytes,
    /// The SKU's catalog price when bought, per unit.
    pub unit_price: Decimal,
    /// `unit_price × units`: the money this grant stands for.
    pub amount: Decimal,
    pub currency: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub template: Option<String>,
}

/// A renewal was paid (`renewInstance`): one more term of the package's SKU, at the catalog's
/// price of the day, and a new expiry.
///
/// Version 1 (no `units`) granted one SKU's bytes worth one unit price, whatever the package's
/// units, and always named an `orderId`. Version 2 records the units the term covers and grants
/// `SKU bytes × units` worth `unit price × units`; it names `orderNumber` and/or `orderId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderRenewed {
    pub instance_id: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<OrderNumber>,
    pub sku_id: SkuId,
    pub sku_name: String,
    /// Version 1: the SKU's bytes; version 2: that `× units`.
    pub bytes_granted: Bytes,
    pub unit_price: Decimal,
    /// Version 1: the unit price; version 2: that `× units`.
    pub amount: Decimal,
    pub currency: String,
    pub expires_at: DateTime<Utc>,
    /// Version 2: the package's units the term covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u32>,
}

/// The package moved to another SKU (`upgradeInstance`); only a size increase grants bytes.
///
/// Version 1 (no `units`) granted the difference once, whatever the package's units; version 2
/// records the units it covers and grants the difference for each of them; version 3 is version
/// 2 naming an `orderNumber` (and `orderId` only when sent too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderUpgraded {
    pub instance_id: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<OrderNumber>,
    pub from_sku_id: SkuId,
    pub sku_id: SkuId,
    pub sku_name: String,
    /// The new SKU's size per unit.
    pub sku_bytes: Bytes,
    /// Version 1: `max(0, new SKU bytes − old SKU bytes)`; version 2: that `× units`.
    pub bytes_granted: Bytes,
    /// The new SKU's catalog price per unit.
    pub unit_price: Decimal,
    /// Version 1: `max(0, new price − old price)`; version 2: that `× units`. The money the
    /// granted bytes stand for.
    pub amount: Decimal,
    pub currency: String,
    /// Version 2: the package's units the upgrade covers (absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<u32>,
}

/// Capacity was added (`dilateInstance`, 扩容). Version 2 names an `orderNumber` (and `orderId`
/// only when sent too); version 1 always an `orderId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderDilated {
    pub instance_id: InstanceId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<OrderNumber>,
    pub sku_id: SkuId,
    pub sku_name: String,
    pub units: u32,
    pub bytes_granted: Bytes,
    pub unit_price: Decimal,
    pub amount: Decimal,
    pub currency: String,
}

/// The order expired; its tasks stop (each with its own `TaskStopped`).
///
/// Version 2 is an operator's: `source` is `operator` and `reason` says why (version 1 has no
/// `reason`: the marketplace or the clock expired it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderExpired {
    pub instance_id: InstanceId,
    pub source: ExpirySource,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExpiryReason>,
}

/// The marketplace said the order expired (`expiredInstance`) while its `expiresAt` was still
/// ahead: after a refund, or a stale or replayed notice of an expiry a renewal has since paid
/// for. The package stays active (a paid renewal is never undone by a stale notice), and the
/// notice is kept, once per package and `expiresAt`, for an operator to apply if it was a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderExpiryHeld {
    pub instance_id: InstanceId,
    /// The package's `expiresAt` the notice was held against.
    pub expires_at: DateTime<Utc>,
}

/// The order was released; the remaining bytes are forfeited and the package is never usable again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderReleased {
    pub instance_id: InstanceId,
    pub bytes_forfeited: Bytes,
}

/// The package's order credential (`authCode`) was replaced: the code of every earlier
/// generation stops working at once. The ledger keeps only the generation, never a code: each is
/// derived from the server's secret, the package and its generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderCredentialRotated {
    pub instance_id: InstanceId,
    /// 1 for the first rotation, then one more each time (the purchase's code is generation 0).
    pub generation: u32,
}

/// An operator started `serve` on a ledger that is behind a trusted checkpoint kept outside the
/// database (a restore that lost acknowledged events), and said to go on
/// (`serve --accept-restore-loss REASON`). Recorded once per trusted checkpoint, in the ledger's
/// own stream; it changes no balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LedgerRestoreAccepted {
    /// The trusted checkpoint the ledger is behind: its position, ledger hash (64 hex digits),
    /// signer (`keyId`, 16 hex digits) and signing time.
    pub checkpoint_position: i64,
    pub checkpoint_ledger_hash: String,
    pub checkpoint_key_id: String,
    pub checkpoint_signed_at: DateTime<Utc>,
    /// The ledger's last position when the operator accepted.
    pub ledger_head: i64,
    /// `checkpointPosition − ledgerHead` when the ledger ended before the checkpoint; absent when
    /// it reached that position with other events (how many were lost is then unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_events: Option<i64>,
    /// Why the operator went on, in their words.
    pub reason: String,
}

/// The stream of facts about the ledger itself rather than a package or a task.
pub const LEDGER_STREAM: &str = "ledger";

/// At the rate of its last 7 days of traffic, the package runs out within `thresholdDays` (once
/// per package, threshold and grant generation: a grant re-arms it). Changes no balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderRunwayShort {
    pub instance_id: InstanceId,
    /// The threshold crossed: the runway is this many days or fewer.
    pub threshold_days: u32,
    /// The day (China Standard Time) the package runs out at that rate.
    pub runs_out_on: chrono::NaiveDate,
    /// Bytes per day over the last 7 days (or since the first traffic, at least 24 hours).
    pub rate_per_day: Bytes,
    pub bytes_remaining: Bytes,
    /// Everything granted to the package so far: its grant generation, which every grant raises.
    pub bytes_granted: Bytes,
}

/// The package's consumption crossed a warning threshold (once per crossing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrderBalanceLow {
    pub instance_id: InstanceId,
    pub threshold_percent: u8,
    pub bytes_granted: Bytes,
    pub bytes_consumed: Bytes,
    pub bytes_remaining: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskCreated {
    pub task_id: TaskId,
    pub instance_id: InstanceId,
}

/// The task now draws from another package of the same customer (renewal from the task list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskRebound {
    pub task_id: TaskId,
    pub from_instance_id: InstanceId,
    pub instance_id: InstanceId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskStopped {
    pub task_id: TaskId,
    pub instance_id: InstanceId,
    pub reason: StopReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskResumed {
    pub task_id: TaskId,
    pub instance_id: InstanceId,
}

/// The task and its data are gone for good; it never runs or reports new traffic again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskDestroyed {
    pub task_id: TaskId,
    pub instance_id: InstanceId,
}

/// Bytes a task moved, charged to the package it was bound to when the report was recorded.
///
/// It also records the answer the agent was given, so a repeated report gets the original one.
///
/// The ledger's most frequent row, so version 2 (every traffic event appended since) stores it
/// as [`TrafficConsumedV2`]: one-letter keys, nothing that says nothing, and no `instanceId`,
/// which the event's stream (`package-<instanceId>`) already names. Version 1
/// ([`TrafficConsumedV1`]) spelt every field out. Both decode to this one struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficConsumed {
    pub task_id: TaskId,
    pub report_id: ReportId,
    pub instance_id: InstanceId,
    pub bytes: Bytes,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: DateTime<Utc>,
    pub action: ReportAction,
    pub reason: Option<StopReason>,
    /// The package's remaining bytes right after this report.
    pub bytes_remaining: Bytes,
    /// The package's overage right after this report.
    pub bytes_overage: Bytes,
}

mod payload;
mod traffic;
pub use payload::{DecodeError, EVENT_TYPES};
pub use traffic::{TrafficConsumedV1, TrafficConsumedV2};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    OrderCreated(OrderCreated),
    OrderRenewed(OrderRenewed),
    OrderUpgraded(OrderUpgraded),
    OrderDilated(OrderDilated),
    OrderExpired(OrderExpired),
    OrderReleased(OrderReleased),
    OrderBalanceLow(OrderBalanceLow),
    OrderRunwayShort(OrderRunwayShort),
    OrderExpiryHeld(OrderExpiryHeld),
    OrderCredentialRotated(OrderCredentialRotated),
    LedgerRestoreAccepted(LedgerRestoreAccepted),
    TaskCreated(TaskCreated),
    TaskRebound(TaskRebound),
    TaskStopped(TaskStopped),
    TaskResumed(TaskResumed),
    TaskDestroyed(TaskDestroyed),
    TrafficConsumed(TrafficConsumed),
}

/// The stream an event belongs to. Balance facts go to the package's stream (the package is the
/// consistency boundary of a balance), lifecycle facts of a task to the task's stream.
pub fn package_stream(instance_id: &InstanceId) -> String {
    format!("{PACKAGE_STREAM_PREFIX}{instance_id}")
}

/// What a package's stream id starts with, before its instance id ([`package_stream`]).
pub const PACKAGE_STREAM_PREFIX: &str = "package-";

pub fn task_stream(task_id: &TaskId) -> String {
    format!("task-{task_id}")
}

/// Whether a grant names its order the way version 1 did: an `orderId` and no `orderNumber`.
fn by_order_id_only(number: &Option<OrderNumber>, id: &Option<OrderId>) -> bool {
    number.is_none() && id.is_some()
}

impl Event {
    /// The payload shape version of this event; bumped per type when a shape changes. It follows
    /// from the shape, so an event written the way an older version was keeps that version.
    pub fn event_version(&self) -> i32 {
        match self {
            Event::OrderCreated(e) if !by_order_id_only(&e.order_number, &e.order_id) => 2,
            Event::OrderDilated(e) if !by_order_id_only(&e.order_number, &e.order_id) => 2,
            Event::OrderRenewed(e)
                if e.units.is_some() || !by_order_id_only(&e.order_number, &e.order_id) =>
            {
                2
            }
            Event::OrderUpgraded(e) if !by_order_id_only(&e.order_number, &e.order_id) => 3,
            Event::OrderUpgraded(OrderUpgraded { units: Some(_), .. }) => 2,
            Event::OrderExpired(OrderExpired {
                reason: Some(_), ..
            }) => 2,
            // Every traffic event is written in version 2's shape; version 1 rows only decode.
            Event::TrafficConsumed(_) => 2,
            _ => 1,
        }
    }

    /// Whether the event grants bytes for a marketplace order (purchase, renewal, upgrade,
    /// expansion).
    pub fn is_grant(&self) -> bool {
        matches!(
            self,
            Event::OrderCreated(_)
                | Event::OrderRenewed(_)
                | Event::OrderUpgraded(_)
                | Event::OrderDilated(_)
        )
    }

    /// Whether the event is announced to the DTS control plane by webhook: what stops, resumes,
    /// warns of or ends a package's traffic.
    pub fn is_announced(&self) -> bool {
        matches!(
            self,
            Event::TaskStopped(_)
                | Event::TaskResumed(_)
                | Event::OrderBalanceLow(_)
                | Event::OrderRunwayShort(_)
                | Event::OrderExpired(_)
                | Event::OrderReleased(_)
        )
    }

    /// The marketplace order a grant answers (`None` for every other event).
    pub fn order_ref(&self) -> Option<OrderRef> {
        let (number, id) = match self {
            Event::OrderCreated(e) => (&e.order_number, &e.order_id),
            Event::OrderRenewed(e) => (&e.order_number, &e.order_id),
            Event::OrderUpgraded(e) => (&e.order_number, &e.order_id),
            Event::OrderDilated(e) => (&e.order_number, &e.order_id),
            _ => return None,
        };
        OrderRef::new(number.clone(), id.clone())
    }

    pub fn stream_id(&self) -> String {
        match self {
            Event::OrderCreated(e) => package_stream(&e.instance_id),
            Event::OrderRenewed(e) => package_stream(&e.instance_id),
            Event::OrderUpgraded(e) => package_stream(&e.instance_id),
            Event::OrderDilated(e) => package_stream(&e.instance_id),
            Event::OrderExpired(e) => package_stream(&e.instance_id),
            Event::OrderReleased(e) => package_stream(&e.instance_id),
            Event::OrderBalanceLow(e) => package_stream(&e.instance_id),
            Event::OrderRunwayShort(e) => package_stream(&e.instance_id),
            Event::OrderExpiryHeld(e) => package_stream(&e.instance_id),
            Event::OrderCredentialRotated(e) => package_stream(&e.instance_id),
            Event::LedgerRestoreAccepted(_) => LEDGER_STREAM.to_owned(),
            Event::TrafficConsumed(e) => package_stream(&e.instance_id),
            Event::TaskCreated(e) => task_stream(&e.task_id),
            Event::TaskRebound(e) => task_stream(&e.task_id),
            Event::TaskStopped(e) => task_stream(&e.task_id),
            Event::TaskResumed(e) => task_stream(&e.task_id),
            Event::TaskDestroyed(e) => task_stream(&e.task_id),
        }
    }
}

#[cfg(test)]
mod tests;
