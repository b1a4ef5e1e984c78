//! The event catalog's encodings: every event round-trips through its payload, each version
//! keeps its shape, and a payload of another shape or version is refused.

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

/// Version 2's text, key by key, as the hash covers it and docs/ledger.md describes it.
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
