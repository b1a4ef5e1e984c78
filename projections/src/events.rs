//! The ledger's event catalog.
//!
//! Event type names and field names are part of the public ledger format: finance queries them with
//! plain SQL (`payload->>'bytesGranted'`). A stored event's meaning never changes; a new shape of an
//! event gets a new `event_version` and a new decoder arm, never an edit of an old one.
//!
//! Every event holds what it needs to be replayed without outside data: a grant records its bytes
//! and the catalog's price at that moment, a traffic event the package it was charged to (in
//! version 2, the package of its stream, which the hash covers like the payload).

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

/// A traffic event's payload as version 2 stores it (README, "The ledger"): `a` action (absent:
/// `continue`), `b` bytes, `e` periodEnd, `l` bytesRemaining ("left"), `o` bytesOverage (absent:
/// 0), `r` reportId, `s` periodStart (absent: none), `t` taskId, `w` reason ("why"; absent: none).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConsumedV2 {
    #[serde(rename = "t")]
    task_id: TaskId,
    #[serde(rename = "r")]
    report_id: ReportId,
    #[serde(rename = "b")]
    bytes: Bytes,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    period_start: Option<DateTime<Utc>>,
    #[serde(rename = "e")]
    period_end: DateTime<Utc>,
    #[serde(rename = "a", default, skip_serializing_if = "continues")]
    action: ReportAction,
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    reason: Option<StopReason>,
    #[serde(rename = "l")]
    bytes_remaining: Bytes,
    #[serde(rename = "o", default, skip_serializing_if = "none")]
    bytes_overage: Bytes,
}

/// What version 2 of a traffic event leaves out (serde passes a reference).
fn continues(action: &ReportAction) -> bool {
    *action == ReportAction::Continue
}

fn none(bytes: &Bytes) -> bool {
    bytes.is_zero()
}

/// A traffic event's payload as version 1 stored it: camelCase keys, `action` and `bytesOverage`
/// always present, the package named. Only decoded: nothing writes version 1 any more.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficConsumedV1 {
    task_id: TaskId,
    report_id: ReportId,
    instance_id: InstanceId,
    bytes: Bytes,
    /// Absent or null: version 1 rows written before absent options were left out hold nulls.
    #[serde(default)]
    period_start: Option<DateTime<Utc>>,
    period_end: DateTime<Utc>,
    action: ReportAction,
    #[serde(default)]
    reason: Option<StopReason>,
    bytes_remaining: Bytes,
    bytes_overage: Bytes,
}

impl Body for TrafficConsumed {
    fn to_payload(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(TrafficConsumedV2 {
            task_id: self.task_id.clone(),
            report_id: self.report_id.clone(),
            bytes: self.bytes,
            period_start: self.period_start,
            period_end: self.period_end,
            action: self.action,
            reason: self.reason,
            bytes_remaining: self.bytes_remaining,
            bytes_overage: self.bytes_overage,
        })
    }

    fn from_payload(version: i32, stream_id: &str, payload: &[u8]) -> serde_json::Result<Self> {
        if version == 1 {
            let v1: TrafficConsumedV1 = serde_json::from_slice(payload)?;
            return Ok(TrafficConsumed {
                task_id: v1.task_id,
                report_id: v1.report_id,
                instance_id: v1.instance_id,
                bytes: v1.bytes,
                period_start: v1.period_start,
                period_end: v1.period_end,
                action: v1.action,
                reason: v1.reason,
                bytes_remaining: v1.bytes_remaining,
                bytes_overage: v1.bytes_overage,
            });
        }
        let v2: TrafficConsumedV2 = serde_json::from_slice(payload)?;
        let instance_id = stream_id
            .strip_prefix("package-")
            .and_then(|id| InstanceId::parse(id).ok())
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "a version 2 traffic event belongs to a package's stream, package-<instanceId>",
                )
            })?;
        Ok(TrafficConsumed {
            task_id: v2.task_id,
            report_id: v2.report_id,
            instance_id,
            bytes: v2.bytes,
            period_start: v2.period_start,
            period_end: v2.period_end,
            action: v2.action,
            reason: v2.reason,
            bytes_remaining: v2.bytes_remaining,
            bytes_overage: v2.bytes_overage,
        })
    }
}

/// How an event's body becomes `events.payload` and back. Every body but a traffic event's is
/// its serde form, the same in every version ([`Event::event_version`] tells them apart by their
/// fields); a traffic event's two versions spell the same fields differently, and version 2
/// takes its package from the row's stream.
trait Body: Sized {
    fn to_payload(&self) -> serde_json::Result<serde_json::Value>;
    fn from_payload(version: i32, stream_id: &str, payload: &[u8]) -> serde_json::Result<Self>;
}

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

/// A stored event could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {event_type:?} version {event_version}")]
    UnknownType {
        event_type: String,
        event_version: i32,
    },
    #[error("{event_type} payload does not match version {event_version}: {source}")]
    Payload {
        event_type: &'static str,
        event_version: i32,
        source: serde_json::Error,
    },
}

/// The stream an event belongs to. Balance facts go to the package's stream (the package is the
/// consistency boundary of a balance), lifecycle facts of a task to the task's stream.
pub fn package_stream(instance_id: &InstanceId) -> String {
    format!("package-{instance_id}")
}

pub fn task_stream(task_id: &TaskId) -> String {
    format!("task-{task_id}")
}

/// One list of (variant, type name) drives the type name, the payload encoding and the decoder, so
/// the three can never disagree.
macro_rules! event_catalog {
    ($($variant:ident),* $(,)?) => {
        /// Every event type this version can decode, with the versions it knows.
        pub const EVENT_TYPES: &[&str] = &[$(stringify!($variant)),*];

        impl Event {
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => stringify!($variant),)*
                }
            }

            /// The payload as stored in `events.payload`.
            pub fn payload(&self) -> serde_json::Value {
                let encoded = match self {
                    $(Event::$variant(body) => body.to_payload(),)*
                };
                // Serialising plain structs of strings, integers and options cannot fail.
                encoded.expect("event payloads always serialise")
            }

            /// Decodes a payload straight from its JSON text (no intermediate `Value`), as stored
            /// in the stream `stream_id`.
            pub fn decode_json(
                event_type: &str,
                event_version: i32,
                stream_id: &str,
                payload: &[u8],
            ) -> Result<Event, DecodeError> {
                match (event_type, event_version) {
                    $((stringify!($variant), version)
                        if (1..=version_max(stringify!($variant))).contains(&version) =>
                        $variant::from_payload(version, stream_id, payload)
                        .map(Event::$variant)
                        // Each version has its own shape: a payload of another one is refused. (A
                        // traffic event's versions differ in spelling only, which its decoder
                        // checks.)
                        .and_then(|event| if event.event_version() != event_version
                            && !matches!(event, Event::TrafficConsumed(_))
                        {
                            Err(serde::de::Error::custom(
                                "the payload's fields belong to another version",
                            ))
                        } else if event.is_grant() && event.order_ref().is_none() {
                            Err(serde::de::Error::custom(
                                "a grant names neither orderNumber nor orderId",
                            ))
                        } else {
                            Ok(event)
                        })
                        .map_err(|source| DecodeError::Payload {
                            event_type: stringify!($variant),
                            event_version,
                            source,
                        }),)*
                    _ => Err(DecodeError::UnknownType {
                        event_type: event_type.to_owned(),
                        event_version,
                    }),
                }
            }

            pub fn decode(
                event_type: &str,
                event_version: i32,
                stream_id: &str,
                payload: serde_json::Value,
            ) -> Result<Event, DecodeError> {
                let text = serde_json::to_vec(&payload).expect("a JSON value serialises");
                Event::decode_json(event_type, event_version, stream_id, &text)
            }
        }
    };
}

/// Every event type: those whose body is its serde form, and those with their own
/// [`Body`] (a traffic event, whose version 2 spells its keys differently and takes its package
/// from the stream). One list, so the catalog and the bodies can never disagree.
macro_rules! catalog {
    (plain: [$($plain:ident),* $(,)?], own: [$($own:ident),* $(,)?] $(,)?) => {
        $(impl Body for $plain {
            fn to_payload(&self) -> serde_json::Result<serde_json::Value> {
                serde_json::to_value(self)
            }

            fn from_payload(_: i32, _: &str, payload: &[u8]) -> serde_json::Result<Self> {
                serde_json::from_slice(payload)
            }
        })*

        event_catalog!($($plain,)* $($own,)*);
    };
}

catalog!(
    plain: [
        OrderCreated,
        OrderRenewed,
        OrderUpgraded,
        OrderDilated,
        OrderExpired,
        OrderReleased,
        OrderBalanceLow,
        OrderRunwayShort,
        OrderExpiryHeld,
        OrderCredentialRotated,
        LedgerRestoreAccepted,
        TaskCreated,
        TaskRebound,
        TaskStopped,
        TaskResumed,
        TaskDestroyed,
    ],
    own: [TrafficConsumed],
);

/// The newest payload version of an event type this code decodes (older ones decode too); the
/// version of a decoded event must match the one it was stored with ([`Event::event_version`]).
fn version_max(event_type: &str) -> i32 {
    match event_type {
        "OrderUpgraded" => 3,
        "OrderCreated" | "OrderRenewed" | "OrderDilated" | "OrderExpired" | "TrafficConsumed" => 2,
        _ => 1,
    }
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
mod tests {
    use super::*;

    fn traffic() -> Event {
        Event::TrafficConsumed(TrafficConsumed {
            task_id: TaskId::parse("t-1").unwrap(),
            report_id: ReportId::parse("r-1").unwrap(),
            instance_id: InstanceId::parse("biz-1").unwrap(),
            bytes: Bytes::new(10).unwrap(),
            period_start: None,
            period_end: DateTime::from_timestamp(1_800_000_000, 123_456_000).unwrap(),
            action: ReportAction::Stop,
            reason: Some(StopReason::QuotaExhausted),
            bytes_remaining: Bytes::ZERO,
            bytes_overage: Bytes::new(3).unwrap(),
        })
    }

    #[test]
    fn payload_round_trips_through_decode() {
        let event = traffic();
        assert_eq!(event.event_version(), 2);
        let payload = event.payload();
        assert_eq!(payload["w"], "quota_exhausted");
        assert_eq!(payload["a"], "stop");
        assert_eq!(payload["o"], 3);
        let text = serde_json::to_vec(&payload).unwrap();
        assert_eq!(
            Event::decode_json(event.event_type(), 2, "package-biz-1", &text).unwrap(),
            event
        );
        let decoded = Event::decode(event.event_type(), 2, "package-biz-1", payload).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(decoded.stream_id(), "package-biz-1");
    }

    /// Version 2's text, key by key, as the hash covers it and the README describes it.
    #[test]
    fn a_traffic_event_is_stored_in_one_letter_keys_without_its_defaults() {
        let Event::TrafficConsumed(mut consumed) = traffic() else {
            unreachable!()
        };
        consumed.period_start = None;
        consumed.reason = None;
        consumed.action = ReportAction::Continue;
        consumed.bytes_remaining = Bytes::new(90).unwrap();
        consumed.bytes_overage = Bytes::ZERO;
        let event = Event::TrafficConsumed(consumed.clone());
        let text = serde_json::to_string(&event.payload()).unwrap();
        assert_eq!(
            text,
            r#"{"b":10,"e":"2027-01-15T08:00:00.123456Z","l":90,"r":"r-1","t":"t-1"}"#
        );
        // Explicit nulls and spelt-out defaults read the same.
        let spelt = r#"{"a":"continue","b":10,"e":"2027-01-15T08:00:00.123456Z","l":90,"o":0,"r":"r-1","s":null,"t":"t-1","w":null}"#;
        assert_eq!(
            Event::decode_json("TrafficConsumed", 2, "package-biz-1", spelt.as_bytes()).unwrap(),
            event
        );
        // The package is the stream's: a version 2 traffic event elsewhere is no traffic event.
        for stream in ["task-t-1", "package-", "biz-1"] {
            assert!(Event::decode_json("TrafficConsumed", 2, stream, text.as_bytes()).is_err());
        }
        let other = Event::decode_json("TrafficConsumed", 2, "package-biz-2", text.as_bytes());
        assert_eq!(other.unwrap().stream_id(), "package-biz-2");
        consumed.period_start = Some(DateTime::from_timestamp(1_799_999_990, 0).unwrap());
        let started = Event::TrafficConsumed(consumed);
        assert_eq!(started.payload()["s"], "2027-01-15T07:59:50Z");
        assert_eq!(
            Event::decode("TrafficConsumed", 2, "package-biz-1", started.payload()).unwrap(),
            started
        );
    }

    /// Rows of version 1 keep decoding, with their nulls or without, to the same event.
    #[test]
    fn version_1_traffic_events_still_decode() {
        let stored = [
            r#"{"action":"stop","bytes":10,"bytesOverage":3,"bytesRemaining":0,"instanceId":"biz-1","periodEnd":"2027-01-15T08:00:00.123456Z","reason":"quota_exhausted","reportId":"r-1","taskId":"t-1"}"#,
            r#"{"action":"stop","bytes":10,"bytesOverage":3,"bytesRemaining":0,"instanceId":"biz-1","periodEnd":"2027-01-15T08:00:00.123456Z","periodStart":null,"reason":"quota_exhausted","reportId":"r-1","taskId":"t-1"}"#,
        ];
        for text in stored {
            assert_eq!(
                Event::decode_json("TrafficConsumed", 1, "package-biz-1", text.as_bytes()).unwrap(),
                traffic()
            );
            // Each version has its own keys: a version 1 text is no version 2 payload.
            assert!(
                Event::decode_json("TrafficConsumed", 2, "package-biz-1", text.as_bytes()).is_err()
            );
        }
        let v2 = serde_json::to_vec(&traffic().payload()).unwrap();
        let err = Event::decode_json("TrafficConsumed", 1, "package-biz-1", &v2).unwrap_err();
        assert!(matches!(err, DecodeError::Payload { .. }), "{err}");
        // Version 1 spelt every field out: leaving one out is not version 1.
        let without_action = stored[0].replace(r#""action":"stop","#, "");
        assert!(Event::decode_json(
            "TrafficConsumed",
            1,
            "package-biz-1",
            without_action.as_bytes()
        )
        .is_err());
    }

    #[test]
    fn unknown_types_and_versions_are_named() {
        let err =
            Event::decode("OrderRefunded", 1, "package-biz-1", serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("OrderRefunded"), "{err}");
        let err =
            Event::decode("TrafficConsumed", 3, "package-biz-1", traffic().payload()).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownType { .. }), "{err}");
    }

    #[test]
    fn unexpected_fields_are_refused() {
        let mut payload = traffic().payload();
        payload["surprise"] = serde_json::json!(1);
        assert!(Event::decode("TrafficConsumed", 2, "package-biz-1", payload).is_err());
    }

    #[test]
    fn money_is_stored_as_decimal_strings() {
        let event = Event::OrderDilated(OrderDilated {
            instance_id: InstanceId::parse("biz-1").unwrap(),
            order_id: Some(OrderId::parse("o-2").unwrap()),
            order_number: None,
            sku_id: SkuId::parse("sku").unwrap(),
            sku_name: "DTS 1TB".into(),
            units: 2,
            bytes_granted: Bytes::new(2048).unwrap(),
            unit_price: "1000.00".parse().unwrap(),
            amount: "2000.00".parse().unwrap(),
            currency: "CNY".into(),
        });
        let payload = event.payload();
        assert_eq!(payload["amount"], "2000.00");
        assert_eq!(
            Event::decode("OrderDilated", 1, "package-biz-1", payload).unwrap(),
            event
        );
        assert_eq!(EVENT_TYPES.len(), 17);
    }

    fn upgraded(units: Option<u32>) -> Event {
        Event::OrderUpgraded(OrderUpgraded {
            instance_id: InstanceId::parse("biz-1").unwrap(),
            order_id: Some(OrderId::parse("o-3").unwrap()),
            order_number: None,
            from_sku_id: SkuId::parse("small").unwrap(),
            sku_id: SkuId::parse("big").unwrap(),
            sku_name: "DTS 2TB".into(),
            sku_bytes: Bytes::new(2048).unwrap(),
            bytes_granted: Bytes::new(1024).unwrap(),
            unit_price: "1800.00".parse().unwrap(),
            amount: "800.00".parse().unwrap(),
            currency: "CNY".into(),
            units,
        })
    }

    #[test]
    fn upgrades_of_both_versions_decode_and_each_version_keeps_its_shape() {
        let v1 = upgraded(None);
        assert_eq!(v1.event_version(), 1);
        assert!(v1.payload().get("units").is_none());
        assert_eq!(
            Event::decode("OrderUpgraded", 1, "package-biz-1", v1.payload()).unwrap(),
            v1
        );
        let v2 = upgraded(Some(3));
        assert_eq!(v2.event_version(), 2);
        assert_eq!(v2.payload()["units"], 3);
        assert_eq!(
            Event::decode("OrderUpgraded", 2, "package-biz-1", v2.payload()).unwrap(),
            v2
        );
        assert!(Event::decode("OrderUpgraded", 1, "package-biz-1", v2.payload()).is_err());
        assert!(Event::decode("OrderUpgraded", 2, "package-biz-1", v1.payload()).is_err());
        assert!(Event::decode("OrderDilated", 2, "package-biz-1", v1.payload()).is_err());
    }

    #[test]
    fn grants_named_by_order_number_are_a_new_version_and_by_order_id_alone_keep_the_old_one() {
        let v2 = upgraded(Some(3));
        let Event::OrderUpgraded(mut by_number) = v2.clone() else {
            unreachable!()
        };
        by_number.order_number = Some(OrderNumber::parse("529107885755794112").unwrap());
        by_number.order_id = None;
        let v3 = Event::OrderUpgraded(by_number);
        assert_eq!(v3.event_version(), 3);
        assert_eq!(v3.payload()["orderNumber"], "529107885755794112");
        assert!(v3.payload().get("orderId").is_none());
        assert_eq!(
            Event::decode("OrderUpgraded", 3, "package-biz-1", v3.payload()).unwrap(),
            v3
        );
        assert!(Event::decode("OrderUpgraded", 2, "package-biz-1", v3.payload()).is_err());
        assert_eq!(v2.order_ref().unwrap().id().unwrap().as_str(), "o-3");

        // A version 1 grant without its orderId, or a grant naming no order at all, is refused.
        let mut payload = v2.payload();
        payload.as_object_mut().unwrap().remove("orderId");
        assert!(Event::decode("OrderUpgraded", 2, "package-biz-1", payload.clone()).is_err());
        assert!(Event::decode("OrderUpgraded", 3, "package-biz-1", payload).is_err());
    }

    #[test]
    fn renewals_of_version_2_count_units_and_version_1_replays_as_recorded() {
        let v1 = Event::OrderRenewed(OrderRenewed {
            instance_id: InstanceId::parse("biz-1").unwrap(),
            order_id: Some(OrderId::parse("o-2").unwrap()),
            order_number: None,
            sku_id: SkuId::parse("sku").unwrap(),
            sku_name: "DTS 1TB".into(),
            bytes_granted: Bytes::new(1024).unwrap(),
            unit_price: "1000.00".parse().unwrap(),
            amount: "1000.00".parse().unwrap(),
            currency: "CNY".into(),
            expires_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            units: None,
        });
        assert_eq!(v1.event_version(), 1);
        assert_eq!(
            Event::decode("OrderRenewed", 1, "package-biz-1", v1.payload()).unwrap(),
            v1
        );
        let Event::OrderRenewed(mut three) = v1.clone() else {
            unreachable!()
        };
        three.units = Some(3);
        let v2 = Event::OrderRenewed(three);
        assert_eq!(v2.event_version(), 2);
        assert_eq!(v2.payload()["units"], 3);
        assert!(Event::decode("OrderRenewed", 1, "package-biz-1", v2.payload()).is_err());
        assert!(Event::decode("OrderRenewed", 2, "package-biz-1", v1.payload()).is_err());
    }

    #[test]
    fn an_operators_expiry_is_version_2_with_its_reason() {
        let by_clock = OrderExpired {
            instance_id: InstanceId::parse("biz-1").unwrap(),
            source: ExpirySource::Clock,
            expires_at: None,
            reason: None,
        };
        assert_eq!(Event::OrderExpired(by_clock.clone()).event_version(), 1);
        let refund = Event::OrderExpired(OrderExpired {
            source: ExpirySource::Operator,
            reason: Some(ExpiryReason::Refund),
            ..by_clock
        });
        assert_eq!(refund.event_version(), 2);
        assert_eq!(refund.payload()["reason"], "refund");
        assert_eq!(refund.payload()["source"], "operator");
        assert_eq!(
            Event::decode("OrderExpired", 2, "package-biz-1", refund.payload()).unwrap(),
            refund
        );
    }
}
